import Testing
import TandemCodecs
@testable import TandemEngine

/// The size two engines agree on (DRBD's receive_sizes / drbd_new_dev_size), and `resize`.
@Suite struct SizeAgreementTests {
    static let fresh = PersistentState()  // just created: Inconsistent, no agreed size yet

    static func connected(_ sectors: (UInt64, UInt64), persistent: PersistentState = fresh,
                          settings: EngineSettings = EngineSettings()) -> EnginePair {
        var pair = EnginePair(settings: settings, sectors: sectors, persistent: persistent)
        for n in 0..<2 { pair.feed(n, .admin(token: 0, .connect)) }
        pair.connect()
        pair.settle()
        return pair
    }

    @Test func freshNodesAgreeOnTheSmallerDataArea() {
        var pair = Self.connected((16384, 24576))
        #expect(pair.engines.map(\.sizeSectors) == [16384, 16384])
        #expect(pair.engines.map(\.persistent.agreedSectors) == [16384, 16384])
        #expect(pair.engines[1].backingSectors == 24576)
        // The initial sync covers the agreed size only.
        pair.feed(0, .admin(token: 1, .primary(force: true)))
        pair.settle(ms: 20_000)
        #expect(pair.states == [.connected, .connected])
        #expect(pair.engines[1].status.disk == .upToDate && pair.engines[1].bitmap.setCount == 0)
        #expect(pair.engines[1].bitmap.nextSet(from: 0) == nil)
    }

    @Test func aPeerSmallerThanTheSizeInUseIsRefused() {
        let upToDate = PersistentState(current: 0xABCD_0000, consistent: true, wasUpToDate: true, agreedSectors: 24576)
        let pair = Self.connected((24576, 16384), persistent: upToDate)
        #expect(pair.engines[0].status.connection == .standAlone)
        #expect(pair.engines[0].status.lastError?.contains("the peer's disk is too small: its data area is 16384 sectors, this node's device is 24576 sectors") == true,
                "\(pair.engines[0].status.lastError ?? "")")
        #expect(pair.engines[0].sizeSectors == 24576)
    }

    @Test func theSmallerSizeOptionOfBothWins() {
        var a = EngineSettings(), b = EngineSettings()
        a.userSizeSectors = 12288
        b.userSizeSectors = 8192
        var pair = EnginePair(settings: a, sectors: (16384, 16384), persistent: Self.fresh)
        pair.engines[1] = ReplicationEngine(settings: b, backingSectors: 16384, persistent: Self.fresh, bitmap: OutOfSyncBitmap(bitCount: 2048))
        #expect(pair.engines.map(\.sizeSectors) == [12288, 8192])
        for n in 0..<2 { pair.feed(n, .admin(token: 0, .connect)) }
        pair.connect()
        pair.settle()
        #expect(pair.engines.map(\.sizeSectors) == [8192, 8192])
    }

    /// The last agreed size stands at attach, within the data area, and bits past it are clear.
    @Test func theLastAgreedSizeStandsAtAttach() {
        var bm = OutOfSyncBitmap(bitCount: 2048)
        _ = bm.set(0..<2048)
        let e = ReplicationEngine(settings: EngineSettings(), backingSectors: 16384,
                                  persistent: PersistentState(consistent: true, wasUpToDate: true, agreedSectors: 8192), bitmap: bm)
        #expect(e.sizeSectors == 8192 && e.bitmap.setCount == 1024)
    }

    /// `resize` on the Primary after both data areas grew: both grow, the grown part (only)
    /// resyncs from the Primary, whichever node ran the verb.
    @Test(arguments: [0, 1]) func resizeGrowsBothAndResyncsTheGrownPart(verbOn: Int) {
        let p = PersistentState(current: 0xABCD_0000, consistent: true, wasUpToDate: true, agreedSectors: 16384)
        var pair = Self.connected((16384, 16384), persistent: p)
        pair.feed(0, .admin(token: 1, .primary(force: false)))
        pair.settle()
        #expect(pair.states == [.connected, .connected])
        pair.backing = [24576, 20480]
        pair.feed(verbOn, .admin(token: 7, .resize))
        pair.settle(ms: 20_000)
        #expect(pair.engines.map(\.backingSectors) == [24576, 20480])
        #expect(pair.engines.map(\.sizeSectors) == [20480, 20480])
        #expect(pair.engines.map(\.persistent.agreedSectors) == [20480, 20480])
        #expect(pair.states == [.connected, .connected], "\(pair.drops)")
        #expect(pair.engines.allSatisfy { $0.status.disk == .upToDate && $0.bitmap.setCount == 0 })
        #expect(pair.engines[0].status.resyncDataBytes == (20480 - 16384) * 512, "only the grown part moves")
        #expect(pair.drops.isEmpty, "\(pair.drops)")
    }

    @Test func resizeIsRefusedWithoutAPrimary() {
        var pair = Self.connected((16384, 16384), persistent: PersistentState(current: 0xABCD_0000, consistent: true, wasUpToDate: true))
        var done: [String?] = []
        for a in pair.engines[0].handle(.admin(token: 3, .resize)) { if case .adminDone(_, let e) = a { done.append(e?.message) } }
        #expect(done == ["need one Primary to resize (as DRBD)"])
    }
}
