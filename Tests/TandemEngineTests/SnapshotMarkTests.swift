import Testing
import TandemCodecs
@testable import TandemEngine

/// The snapshot mark (a Tandem extension): the EC2 node snapshots exactly at the Primary's
/// mark, holds later writes until the snapshot is taken, answers the Primary; a disk that is
/// not UpToDate is refused without --force.
@Suite struct SnapshotMarkTests {
    static func connectedPrimary() -> EnginePair {
        var pair = EnginePair(settings: EngineSettings())
        for n in 0..<2 { pair.feed(n, .admin(token: 0, .connect)) }
        pair.connect()
        pair.settle()
        pair.feed(0, .admin(token: 1, .primary(force: false)))
        pair.settle()
        return pair
    }

    static func write(_ pair: inout EnginePair, id: UInt64, at offset: UInt64, byte: UInt8) {
        pair.feed(0, .appWrite(id: id, offset: offset, data: [UInt8](repeating: byte, count: 4096), fua: false))
    }

    @Test func theSnapshotIsAtTheMarkAndLaterWritesWait() {
        var pair = Self.connectedPrimary()
        Self.write(&pair, id: 100, at: 0, byte: 0xA1)
        pair.settle(ms: 200)
        #expect(pair.completed.contains(100))
        pair.feed(0, .admin(token: 5, .snapshot(force: false)))
        Self.write(&pair, id: 101, at: 8192, byte: 0xB2)
        pair.settle(ms: 2000)
        // The EC2 node was asked once, at the mark, and holds B.
        #expect(pair.snapshotsAsked.count == 1)
        guard let (node, id, point) = pair.snapshotsAsked.first else { return }
        #expect(node == 1 && point.consistency == "crash-consistent" && point.epoch >= 1)
        #expect(pair.disks[1][0] == 0xA1 && pair.disks[1][8192] == 0, "B reached the EC2 node's disk before the snapshot")
        #expect(!pair.completed.contains(101), "a protocol C write completed while the EC2 node held writes")
        #expect(pair.adminDone[5] == nil)
        pair.feed(1, .snapshotTaken(id: id, snapshotID: "snap-0123", error: nil))
        pair.settle(ms: 2000)
        #expect(pair.disks[1][8192] == 0xB2 && pair.completed.contains(101))
        #expect(pair.adminResults[5] == "snap-0123" && pair.adminDone[5] == .some(nil), "\(pair.adminDone)")
        #expect(pair.drops.isEmpty, "\(pair.drops)")
    }

    @Test func aFailedSnapshotIsReportedAndReleasesTheWrites() {
        var pair = Self.connectedPrimary()
        pair.feed(0, .admin(token: 6, .snapshot(force: false)))
        Self.write(&pair, id: 102, at: 0, byte: 0x42)
        pair.settle(ms: 500)
        guard let (_, id, _) = pair.snapshotsAsked.first else { Issue.record("no snapshot asked"); return }
        pair.feed(1, .snapshotTaken(id: id, snapshotID: nil, error: "CreateSnapshot: AccessDenied"))
        pair.settle(ms: 500)
        #expect(pair.completed.contains(102) && pair.disks[1][0] == 0x42)
        #expect(pair.adminDone[6] == .some("the peer took no snapshot: CreateSnapshot: AccessDenied"), "\(pair.adminDone)")
    }

    @Test func anInconsistentDiskNeedsForce() {
        var pair = EnginePair(settings: EngineSettings(), persistent: PersistentState())
        pair.feed(1, .admin(token: 7, .snapshot(force: false)))
        #expect((pair.adminDone[7] ?? nil)?.contains("this node's disk is Inconsistent") == true, "\(pair.adminDone)")
        #expect(pair.snapshotsAsked.isEmpty)
        pair.feed(1, .admin(token: 8, .snapshot(force: true)))
        pair.settle(ms: 100)
        #expect(pair.snapshotsAsked.count == 1 && pair.snapshotsAsked.first?.2.consistency == "inconsistent")
    }

    @Test func aMarkInsideAnOpenEpochIsAProtocolError() {
        var pair = Self.connectedPrimary()
        pair.hold = { to, p in if case .barrier = p { return to == 1 } else { return false } }
        Self.write(&pair, id: 103, at: 0, byte: 0x11)
        pair.settle(ms: 200)
        pair.feed(1, .packet(.snapshotMark(id: 9, epoch: 1, flags: 0), from: .data))
        pair.settle(ms: 200)
        #expect(pair.drops.contains { $0.contains("P_TANDEM_SNAPSHOT_MARK inside an open epoch") }, "\(pair.drops)")
    }

    /// With a before-snapshot handler: the mark waits for it, goes out when it exits 0 (tagged
    /// application-consistent, after-snapshot run right after the mark, before the snapshot
    /// is taken); a failing or hanging handler takes no snapshot and still calls after-snapshot.
    @Test func beforeSnapshotRunsFirstAndAfterSnapshotUndoesIt() {
        var settings = EngineSettings()
        settings.beforeSnapshotHandler = true
        settings.beforeSnapshotLimitMs = 5000
        var pair = EnginePair(settings: settings)
        for n in 0..<2 { pair.feed(n, .admin(token: 0, .connect)) }
        pair.connect()
        pair.settle()
        pair.feed(0, .admin(token: 1, .primary(force: false)))
        pair.settle()
        Self.write(&pair, id: 200, at: 0, byte: 0xA1)
        pair.settle(ms: 200)
        pair.feed(0, .admin(token: 10, .snapshot(force: false)))
        pair.settle(ms: 1000)
        #expect(pair.handlersRun.map(\.1) == [.beforeSnapshot] && pair.handlersRun.first?.0 == 0)
        #expect(pair.snapshotsAsked.isEmpty, "the mark went out before before-snapshot exited")
        // A second snapshot while the handler runs is refused.
        pair.feed(0, .admin(token: 11, .snapshot(force: false)))
        #expect((pair.adminDone[11] ?? nil)?.contains("still running") == true)
        pair.feed(0, .handlerDone(.beforeSnapshot, exitCode: 0))
        #expect(pair.handlersRun.map(\.1) == [.beforeSnapshot, .afterSnapshot], "after-snapshot did not follow the mark")
        pair.settle(ms: 1000)
        guard let (_, id, point) = pair.snapshotsAsked.first else { Issue.record("no snapshot asked"); return }
        #expect(point.consistency == "application-consistent")
        pair.feed(1, .snapshotTaken(id: id, snapshotID: "snap-app", error: nil))
        pair.settle(ms: 500)
        #expect(pair.adminResults[10] == "snap-app" && pair.adminDone[10] == .some(nil))
        // A failing handler: no mark, after-snapshot still runs, the command fails with the code.
        pair.handlersRun.removeAll()
        pair.feed(0, .admin(token: 12, .snapshot(force: false)))
        pair.feed(0, .handlerDone(.beforeSnapshot, exitCode: 3))
        pair.settle(ms: 500)
        #expect(pair.handlersRun.map(\.1) == [.beforeSnapshot, .afterSnapshot])
        #expect(pair.adminDone[12] == .some("before-snapshot exited with 3: no snapshot taken"), "\(pair.adminDone)")
        #expect(pair.snapshotsAsked.count == 1)
        // A hanging one: given up at the limit, after-snapshot called; its late exit changes nothing.
        pair.handlersRun.removeAll()
        pair.feed(0, .admin(token: 13, .snapshot(force: false)))
        pair.settle(ms: 6000)
        #expect(pair.handlersRun.map(\.1) == [.beforeSnapshot, .afterSnapshot])
        #expect((pair.adminDone[13] ?? nil)?.contains("did not exit within 5 s") == true, "\(pair.adminDone)")
        pair.feed(0, .handlerDone(.beforeSnapshot, exitCode: 0))
        pair.settle(ms: 500)
        #expect(pair.snapshotsAsked.count == 1 && pair.handlersRun.count == 2, "a late exit sent a mark")
        #expect(pair.drops.isEmpty, "\(pair.drops)")
    }
}
