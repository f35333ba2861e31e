import Testing
@testable import TandemAWS

/// The snapshot policy with a clock the test sets: the schedule, the keep rules (count, age,
/// both), the archive rule, and what is never deleted.
@Suite struct SnapshotPolicyTests {
    static let day = 86400.0
    static let t0 = 1_800_000_000.0

    /// One completed snapshot a day for `days` days, the newest at `t0`.
    static func daily(_ days: Int, tier: String = "standard") -> [SnapshotPolicy.Snapshot] {
        (0..<days).map { SnapshotPolicy.Snapshot(id: "snap-\($0)", takenAt: t0 - Double($0) * day, state: "completed", tier: tier) }
    }

    @Test func theScheduleIsDueEveryNMinutes() {
        var p = SnapshotPolicy()
        #expect(!p.scheduledDue(now: Self.t0, lastScheduled: nil), "no schedule, never due")
        p.everyMinutes = 30
        #expect(p.scheduledDue(now: Self.t0, lastScheduled: nil))
        #expect(!p.scheduledDue(now: Self.t0 + 29 * 60, lastScheduled: Self.t0))
        #expect(p.scheduledDue(now: Self.t0 + 30 * 60, lastScheduled: Self.t0))
    }

    @Test func keepRules() {
        var p = SnapshotPolicy()
        #expect(p.prune(Self.daily(10), now: Self.t0).delete.isEmpty, "no keep rule deletes nothing")
        p.keepLast = 3
        #expect(p.prune(Self.daily(10), now: Self.t0).delete == (3..<10).map { "snap-\($0)" })
        p.keepLast = 0
        p.keepDays = 5
        // Younger than 5 days: snap-0 ... snap-4.
        #expect(p.prune(Self.daily(10), now: Self.t0 + 1).delete == (5..<10).map { "snap-\($0)" })
        p.keepLast = 7
        #expect(p.prune(Self.daily(10), now: Self.t0 + 1).delete == (7..<10).map { "snap-\($0)" }, "kept if either rule keeps it")
    }

    @Test func theNewestCompletedAndUnfinishedOnesAreNeverDeleted() {
        var p = SnapshotPolicy()
        p.keepDays = 1
        var s = Self.daily(4)
        s.append(.init(id: "snap-pending", takenAt: Self.t0 - 30 * Self.day, state: "pending", tier: "standard"))
        s.append(.init(id: "snap-error", takenAt: Self.t0 - 30 * Self.day, state: "error", tier: "standard"))
        let d = p.prune(s, now: Self.t0 + 100 * Self.day).delete
        #expect(!d.contains("snap-0") && !d.contains("snap-pending") && !d.contains("snap-error"))
        #expect(Set(d) == ["snap-1", "snap-2", "snap-3"])
    }

    @Test func olderOnesGoToTheArchiveTierButNotTheNewest() {
        var p = SnapshotPolicy()
        p.archiveAfterDays = 3
        p.keepLast = 8
        var s = Self.daily(10)
        s[4].tier = "archive"
        let r = p.prune(s, now: Self.t0)
        #expect(r.delete == ["snap-8", "snap-9"])
        #expect(r.archive == ["snap-3", "snap-5", "snap-6", "snap-7"], "\(r.archive)")
        #expect(p.prune(Self.daily(1), now: Self.t0 + 100 * Self.day).archive.isEmpty, "the only snapshot stays standard")
    }

    /// Two snapshots with one time (taken within a millisecond): the order given (the keeper's,
    /// newest first) decides, so the newest is kept. Found by the daemon test when the tag had
    /// whole seconds.
    @Test func equalTimesKeepTheOrderGiven() {
        var p = SnapshotPolicy()
        p.keepLast = 1
        let s = [SnapshotPolicy.Snapshot(id: "snap-new", takenAt: Self.t0, state: "completed", tier: "standard"),
                 SnapshotPolicy.Snapshot(id: "snap-old", takenAt: Self.t0, state: "completed", tier: "standard")]
        #expect(p.prune(s, now: Self.t0).delete == ["snap-old"])
        #expect(SnapshotKeeper.timeTag(1_800_000_000.6129) == "1800000000.613" && SnapshotKeeper.timeTag(5) == "5.000")
    }
}
