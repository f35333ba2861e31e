import Testing
import TandemCodecs
@testable import TandemEngine

/// Operator verbs whose answers the command turns into exit codes.
@Suite struct AdminVerbTests {
    static func connectedPrimary() -> EnginePair { SnapshotMarkTests.connectedPrimary() }

    /// A marked block still makes `resync` reconnect and move it.
    @Test func resyncWithAMarkedBlockMovesIt() {
        var pair = Self.connectedPrimary()
        pair.feed(0, .admin(token: 8, .disconnect))
        pair.settle(ms: 200)
        pair.feed(0, .appWrite(id: 50, offset: 4096, data: [UInt8](repeating: 0x77, count: 4096), fua: false))
        pair.settle(ms: 200)
        #expect(pair.engines[0].status.outOfSyncBits == 1)
        pair.feed(0, .admin(token: 9, .resync))
        pair.connect()
        pair.settle(ms: 3000)
        #expect(pair.adminDone[9] == .some(nil), "\(pair.adminDone)")
        #expect(pair.engines[0].status.outOfSyncBits == 0 && pair.disks[1][4096] == 0x77)
    }

    /// A promotion that retrying cannot fix (no UpToDate data) is of its own kind (exit 17);
    /// two primaries are a refused state change (exit 11).
    @Test func primaryRefusalsSayTheirKind() {
        var pair = EnginePair(settings: EngineSettings(), persistent: PersistentState(current: 0xABCD_0000, consistent: false, wasUpToDate: false))
        var kinds: [UInt64: AdminRefusal.Kind?] = [:]
        func admin(_ n: Int, _ token: UInt64, _ cmd: AdminCommand) {
            for a in pair.engines[n].handle(.admin(token: token, cmd)) {
                if case .adminDone(let t, let e) = a { kinds[t] = .some(e?.kind) }
            }
        }
        admin(0, 1, .primary(force: false))
        #expect(kinds[1] == .some(.cannotPromote), "\(kinds)")
        var up = Self.connectedPrimary()
        var peerKind: AdminRefusal.Kind??
        for a in up.engines[1].handle(.admin(token: 2, .primary(force: false))) {
            if case .adminDone(_, let e) = a { peerKind = .some(e?.kind) }
        }
        up.settle()
        #expect(peerKind == .some(.refused), "\(String(describing: peerKind))")
    }
}
