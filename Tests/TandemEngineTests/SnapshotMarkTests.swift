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
}
