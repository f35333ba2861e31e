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

    /// `adjust` replaces the settings a running engine may take, and refuses (changing nothing)
    /// when any other differs, naming it.
    @Test func adjustTakesLiveSettingsAndRefusesTheRest() {
        var pair = Self.connectedPrimary()
        var live = pair.engines[0].settings
        live.cMaxRateKiB = 40_000
        live.pingTimeoutMs = 1000
        pair.feed(0, .adjust(token: 20, live))
        #expect(pair.adminDone[20] == .some(nil), "\(pair.adminDone)")
        #expect(pair.engines[0].settings.cMaxRateKiB == 40_000 && pair.engines[0].settings.pingTimeoutMs == 1000)
        var other = pair.engines[0].settings
        other.wireProtocol = 1
        other.resyncRateKiB = 999
        pair.feed(0, .adjust(token: 21, other))
        #expect((pair.adminDone[21] ?? nil)?.contains("protocol cannot change on a running node") == true, "\(pair.adminDone)")
        #expect(pair.engines[0].settings.wireProtocol == 3 && pair.engines[0].settings.resyncRateKiB != 999, "a refused adjust changed settings")
        let d = SettingsAdjustment.differences(pair.engines[0].settings, other)
        #expect(d.live == ["resync-rate"] && d.needsRestart == ["protocol"], "\(d)")
    }
}
