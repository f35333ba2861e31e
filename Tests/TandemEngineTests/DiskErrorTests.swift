import Testing
import TandemCodecs
@testable import TandemEngine

/// #12 item 6: a read or write error of the local data area follows on-io-error. detach (the
/// default): the node goes Diskless and stays connected, a Diskless Primary serves reads and
/// writes through its peer, and the peer marks what the detached disk misses, so the mended
/// disk resyncs to identical. pass_on: the blocks are marked and the disk Inconsistent; reads go
/// to the peer. call-local-io-error: the handler runs and the disk detaches. Never a silent loss:
/// a write fails to the application only when no copy took it.
@Suite struct DiskErrorTests {
    static let block = [UInt8](repeating: 0, count: 4096)
    static func data(_ v: UInt8) -> [UInt8] { [UInt8](repeating: v, count: 4096) }
    static func failWrites(_ op: DiskOperation) -> String? {
        switch op {
        case .write, .zero, .flush: "Input/output error"
        case .read: nil
        }
    }
    static func failAll(_ op: DiskOperation) -> String? { "Input/output error" }

    /// Connected, in sync, node 0 Primary, one write (0xA1 at 0) on both.
    static func pair(_ policy: IOErrorPolicy, wireProtocol: UInt32 = 3) -> EnginePair {
        var s = PeerBadInputTests.settings()
        s.onIOError = policy
        s.wireProtocol = wireProtocol
        var pair = EnginePair(settings: s)
        for n in 0..<2 { pair.feed(n, .admin(token: 0, .connect)) }
        pair.connect()
        pair.settle()
        pair.feed(0, .admin(token: 1, .primary(force: false)))
        pair.settle()
        pair.feed(0, .appWrite(id: 100, offset: 0, data: data(0xA1), fua: false))
        pair.settle(ms: 200)
        return pair
    }

    /// A node restarted on its mended disk: the meta-data as it was before the fault (a
    /// detached disk's meta-data is never written again), its disk's content kept.
    static func restart(_ pair: inout EnginePair, _ n: Int, persistent: PersistentState, policy: IOErrorPolicy) {
        var s = PeerBadInputTests.settings()
        s.onIOError = policy
        var p = persistent
        p.crashedPrimary = p.primary
        pair.engines[n] = ReplicationEngine(settings: s, backingSectors: EnginePair.sectors, persistent: p,
                                            bitmap: OutOfSyncBitmap(bitCount: (EnginePair.sectors + 7) / 8))
        pair.diskFault[n] = { _ in nil }
        pair.feed(n, .tick(nowMs: pair.engines[1 - n].nowMs))
        pair.feed(n, .admin(token: 50, .connect))
    }

    /// Reconnected with the disk mended: the resync ends with both UpToDate, nothing marked,
    /// and the disks identical.
    static func reconnectAndExpectIdentical(_ pair: inout EnginePair) {
        pair.connect()
        pair.settle(ms: 5000)
        #expect(inSync(pair), "\(pair.states) \(pair.engines.map(\.status.disk)) \(pair.drops)")
        #expect(pair.disks[0] == pair.disks[1], "the mended disk differs from the peer's after the resync")
    }

    static func inSync(_ pair: EnginePair) -> Bool {
        pair.states == [.connected, .connected] && pair.engines.allSatisfy { $0.status.disk == .upToDate && $0.bitmap.setCount == 0 }
    }

    @Test func aPrimaryWhoseDiskFailsGoesOnThroughItsPeer() throws {
        var pair = Self.pair(.detach)
        let before = pair.engines[0].persistent
        let peerUUID = pair.engines[1].persistent.current
        pair.diskFault[0] = Self.failWrites
        // The failing write: the application never sees the error, the peer took the write.
        pair.feed(0, .appWrite(id: 101, offset: 1 << 20, data: Self.data(0xB2), fua: false))
        pair.settle(ms: 200)
        #expect(pair.completed.contains(101) && pair.appErrors[101] == nil, "\(pair.appErrors)")
        let s0 = pair.engines[0].status
        #expect(s0.disk == .diskless && s0.connection == .connected && s0.role == .primary, "\(s0)")
        #expect(s0.diskError?.contains("write of sector 2048 (4096 bytes) failed: Input/output error; disk detached") == true, "\(s0.diskError ?? "-")")
        #expect(pair.engines[1].status.peerDisk == .diskless)
        #expect(Array(pair.disks[1][1 << 20..<(1 << 20) + 4096]) == Self.data(0xB2))
        // The peer holds the only copy: a new generation, and the failed block is marked.
        #expect(pair.engines[1].persistent.bitmap == peerUUID && pair.engines[1].persistent.current != peerUUID)
        #expect(pair.engines[1].bitmap.isSet(256), "the block the detached disk missed is not marked on the peer")
        // Writes, zeroes, flushes and reads go on through the peer.
        pair.feed(0, .appWrite(id: 102, offset: 2 << 20, data: Self.data(0xC3), fua: true))
        pair.feed(0, .appZero(id: 103, offset: 0, length: 4096, discard: false, fua: false))
        pair.feed(0, .appFlush(id: 104))
        pair.settle(ms: 200)
        for id: UInt64 in [102, 103, 104] { #expect(pair.completed.contains(id) && pair.appErrors[id] == nil, "\(id): \(pair.appErrors)") }
        #expect(Array(pair.disks[1][2 << 20..<(2 << 20) + 4096]) == Self.data(0xC3))
        #expect(Array(pair.disks[0][2 << 20..<(2 << 20) + 4096]) == Self.block, "a write reached the detached disk")
        #expect(pair.engines[1].bitmap.isSet(512) && pair.engines[1].bitmap.isSet(0))
        pair.feed(0, .appRead(id: 105, offset: 1 << 20, length: 2 << 20))
        pair.settle(ms: 200)
        let read = try #require(pair.reads[105]?.data, "\(String(describing: pair.reads[105]))")
        #expect(Array(read[0..<4096]) == Self.data(0xB2) && Array(read[1 << 20..<(1 << 20) + 4096]) == Self.data(0xC3))
        // The disk is mended and comes back with the meta-data it had: it resyncs what it missed.
        pair.cut()
        Self.restart(&pair, 0, persistent: before, policy: .detach)
        Self.reconnectAndExpectIdentical(&pair)
    }

    @Test func aSecondaryWhoseDiskFailsDetachesAndThePrimaryMarksItsWrites() throws {
        var pair = Self.pair(.detach)
        let before = pair.engines[1].persistent
        pair.diskFault[1] = Self.failWrites
        pair.feed(0, .appWrite(id: 101, offset: 1 << 20, data: Self.data(0xB2), fua: false))
        pair.settle(ms: 200)
        #expect(pair.completed.contains(101) && pair.appErrors[101] == nil)
        // The secondary drops the link once (what it had not flushed is marked by the
        // primary) and reconnects Diskless.
        #expect(pair.drops.contains { $0.contains("node 1: the disk was detached") }, "\(pair.drops)")
        pair.connect()
        pair.settle(ms: 200)
        #expect(pair.engines[1].status.disk == .diskless && pair.states == [.connected, .connected], "\(pair.states)")
        #expect(pair.engines[0].status.peerDisk == .diskless)
        #expect(pair.engines[0].bitmap.isSet(256), "the write the secondary failed is not marked")
        #expect(pair.engines[0].persistent.bitmap != 0, "the primary did not start a new data generation")
        pair.feed(0, .appWrite(id: 102, offset: 2 << 20, data: Self.data(0xC3), fua: false))
        pair.settle(ms: 200)
        #expect(pair.appErrors[102] == nil && pair.engines[0].bitmap.isSet(512))
        pair.cut()
        Self.restart(&pair, 1, persistent: before, policy: .detach)
        Self.reconnectAndExpectIdentical(&pair)
    }

    /// A peer that attaches its disk again while Connected (DRBD's `attach`: P_UUIDS, then
    /// P_STATE with disk Negotiating) gets the handshake a connection would: the node that
    /// kept the only copy becomes the source and sends its bitmap.
    @Test func aPeerAttachingWhileConnectedIsResynced() throws {
        var pair = Self.pair(.detach)
        let before = pair.engines[1].persistent
        pair.diskFault[1] = Self.failWrites
        pair.feed(0, .appWrite(id: 101, offset: 1 << 20, data: Self.data(0xB2), fua: false))
        pair.settle(ms: 200)
        pair.connect()
        pair.settle(ms: 200)
        try #require(pair.engines[0].status.peerDisk == .diskless && pair.states[0] == .connected)
        pair.linkUp = false  // node 1 stands for the kernel now: its packets are made by hand
        pair.feed(0, .packet(.uuids(UUIDSet(current: before.current, bitmap: 0, history0: 0, history1: 0, bitsSet: 0, flags: 0)), from: .data))
        pair.feed(0, .packet(.state(StateWord(role: .secondary, peer: .primary, conn: .connected, disk: .negotiating, pdsk: .upToDate)), from: .data))
        #expect(pair.engines[0].status.connection == .wfBitMapS, "\(pair.engines[0].status.connection) \(pair.log(0).suffix(3))")
        #expect(pair.log(0).contains { $0.contains("uuid_compare()=1 by rule 70") }, "\(pair.log(0).suffix(5))")
    }

    /// While the peer has no disk, a write is marked durably before it reaches the disk: a
    /// crash of the only copy's node cannot forget what the detached disk missed.
    @Test func theOnlyCopyMarksAWriteDurablyBeforeIssuingIt() throws {
        var pair = Self.pair(.detach)
        pair.diskFault[0] = Self.failWrites
        pair.feed(0, .appWrite(id: 101, offset: 1 << 20, data: Self.data(0xB2), fua: false))
        pair.settle(ms: 200)
        try #require(pair.engines[0].status.disk == .diskless)
        pair.holdMeta[1] = true
        pair.feed(0, .appWrite(id: 102, offset: 3 << 20, data: Self.data(0xC3), fua: false))
        pair.settle(ms: 100)
        #expect(Array(pair.disks[1][3 << 20..<(3 << 20) + 4096]) == Self.block, "the write reached the disk before its bit was durable")
        #expect(!pair.completed.contains(102))
        #expect(!pair.heldMeta.isEmpty)
        pair.holdMeta[1] = false
        for (n, t) in pair.heldMeta { pair.diskQueue.append((n, t, .ok)) }
        pair.heldMeta = []
        pair.settle(ms: 100)
        #expect(Array(pair.disks[1][3 << 20..<(3 << 20) + 4096]) == Self.data(0xC3))
        #expect(pair.completed.contains(102) && pair.appErrors[102] == nil)
    }

    @Test func aReadErrorDetachesAndTheReadIsAnsweredByThePeer() throws {
        var pair = Self.pair(.detach)
        pair.diskFault[0] = Self.failAll
        // The daemon's own read of the UpToDate disk failed.
        pair.feed(0, .appReadFailed(id: 7, offset: 0, length: 4096, error: "Input/output error"))
        pair.settle(ms: 200)
        #expect(pair.reads[7]?.data == Self.data(0xA1), "\(String(describing: pair.reads[7]))")
        #expect(pair.engines[0].status.disk == .diskless)
    }

    @Test func withoutAPeerAFailedWriteFailsAndNothingMoreIsAccepted() throws {
        var pair = Self.pair(.detach)
        pair.cut()
        pair.feed(0, .admin(token: 9, .disconnect))
        pair.diskFault[0] = Self.failWrites
        pair.feed(0, .appWrite(id: 101, offset: 1 << 20, data: Self.data(0xB2), fua: false))
        pair.settle(ms: 200)
        #expect(pair.appErrors[101]?.contains("Input/output error") == true, "\(pair.appErrors)")
        #expect(pair.engines[0].status.disk == .diskless)
        pair.feed(0, .appWrite(id: 102, offset: 0, data: Self.data(0xC3), fua: false))
        pair.feed(0, .appRead(id: 103, offset: 0, length: 4096))
        pair.feed(0, .appFlush(id: 104))
        #expect(pair.appErrors[102] != nil && pair.appErrors[104] != nil && pair.reads[103]?.data == nil)
    }

    /// Detached, the Primary's write is good only if the peer wrote it: when the peer's disk
    /// fails too, the application gets the error.
    @Test func aWriteNoCopyTookFails() throws {
        var pair = Self.pair(.detach)
        pair.diskFault[0] = Self.failWrites
        pair.feed(0, .appWrite(id: 101, offset: 1 << 20, data: Self.data(0xB2), fua: false))
        pair.settle(ms: 200)
        try #require(pair.engines[0].status.disk == .diskless && pair.appErrors[101] == nil)
        pair.diskFault[1] = Self.failWrites
        pair.feed(0, .appWrite(id: 102, offset: 2 << 20, data: Self.data(0xC3), fua: false))
        pair.settle(ms: 200)
        #expect(pair.completed.contains(102) && pair.appErrors[102] != nil, "\(pair.appErrors)")
        #expect(pair.engines[1].status.disk == .diskless)
        pair.feed(0, .appWrite(id: 103, offset: 0, data: Self.data(0xD4), fua: false))
        #expect(pair.appErrors[103]?.contains("no UpToDate peer") == true, "\(pair.appErrors)")
    }

    @Test func passOnMarksTheBlockAndReadsItFromThePeer() throws {
        var pair = Self.pair(.passOn)
        pair.diskFault[0] = { op in
            if case .write(let o, _, _) = op, o == 1 << 20 { return "Input/output error" }
            return nil
        }
        pair.feed(0, .appWrite(id: 101, offset: 1 << 20, data: Self.data(0xB2), fua: false))
        pair.settle(ms: 200)
        #expect(pair.appErrors[101] == nil)
        let s0 = pair.engines[0].status
        #expect(s0.disk == .inconsistent && s0.connection == .connected && s0.diskError == nil, "\(s0)")
        #expect(pair.engines[0].bitmap.isSet(256) && !pair.engines[0].persistent.consistent)
        #expect(pair.engines[1].status.peerDisk == .inconsistent)
        // The marked block is read from the peer; others from the local disk; writes go on.
        pair.feed(0, .appRead(id: 102, offset: 1 << 20, length: 4096))
        pair.feed(0, .appRead(id: 103, offset: 0, length: 4096))
        pair.feed(0, .appWrite(id: 104, offset: 2 << 20, data: Self.data(0xC3), fua: false))
        pair.settle(ms: 200)
        #expect(pair.reads[102]?.data == Self.data(0xB2) && pair.reads[103]?.data == Self.data(0xA1))
        #expect(pair.appErrors[104] == nil && pair.completed.contains(104))
        // Mended: the next handshake resyncs the marked block to this disk.
        pair.diskFault[0] = { _ in nil }
        pair.cut()
        Self.reconnectAndExpectIdentical(&pair)
    }

    @Test func passOnOnTheSecondaryResyncsTheBlockAtOnce() throws {
        var pair = Self.pair(.passOn)
        var failures = 1
        pair.diskFault[1] = { op in
            if case .write = op, failures > 0 { failures -= 1; return "No space left on device" }
            return nil
        }
        pair.feed(0, .appWrite(id: 101, offset: 1 << 20, data: Self.data(0xB2), fua: false))
        pair.settle(ms: 3000)
        #expect(pair.appErrors[101] == nil)
        #expect(pair.log(1).contains { $0.contains("on-io-error pass_on") }, "\(pair.log(1))")
        #expect(Self.inSync(pair), "\(pair.states) \(pair.engines.map(\.status.disk)) \(pair.drops)")
        #expect(pair.disks[0] == pair.disks[1])
        #expect(pair.drops.isEmpty, "the link dropped: \(pair.drops)")
    }

    @Test func callLocalIOErrorRunsTheHandlerAndDetaches() throws {
        var pair = Self.pair(.callLocalIOError)
        pair.diskFault[1] = Self.failWrites
        pair.feed(0, .appWrite(id: 101, offset: 1 << 20, data: Self.data(0xB2), fua: false))
        pair.settle(ms: 200)
        #expect(pair.handlersRun.contains { $0 == (1, .localIOError) }, "\(pair.handlersRun)")
        #expect(pair.engines[1].status.disk == .diskless)
        #expect(pair.appErrors[101] == nil)
    }

    /// Protocol A: the detached Primary's write is good once it left for the peer; its flush
    /// waits for the peer's barrier ack (the peer's disk is the only one).
    @Test func aDetachedPrimaryFlushWaitsForThePeerInProtocolA() throws {
        var pair = Self.pair(.detach, wireProtocol: 1)
        pair.diskFault[0] = Self.failWrites
        pair.feed(0, .appWrite(id: 101, offset: 1 << 20, data: Self.data(0xB2), fua: false))
        pair.settle(ms: 200)
        try #require(pair.engines[0].status.disk == .diskless)
        pair.hold = { to, p in
            if to == 0, case .barrierAck = p { return true }
            return false
        }
        pair.feed(0, .appWrite(id: 102, offset: 2 << 20, data: Self.data(0xC3), fua: false))
        pair.feed(0, .appFlush(id: 103))
        pair.settle(ms: 200)
        #expect(pair.completed.contains(102))
        #expect(!pair.completed.contains(103), "the flush completed before the peer acknowledged the epoch")
        pair.hold = { _, _ in false }
        for (to, p, s) in pair.held { pair.feed(to, .packet(p, from: s)) }
        pair.held = []
        pair.settle(ms: 200)
        #expect(pair.completed.contains(103) && pair.appErrors[103] == nil)
    }
}
