import Foundation
import Testing
import TandemAWS
import TandemCodecs
import TandemDaemon

/// The snapshot policy at work (SnapshotSchedule) against moto with a clock the test controls:
/// the schedule, after-resync, a restarted daemon that does not snapshot at once, a failed
/// snapshot retried a minute later (not at every tick), pruning after each snapshot, and
/// nobody else's snapshot touched.
@Suite struct SnapshotScheduleTests {
    final class Clock: @unchecked Sendable {
        var now = 1_800_000_000.0
        var failNext = false
    }

    @Test func snapshotsAreTakenAndPrunedAsConfigured() async throws {
        let lab = try AWSLab(volumes: "data:1:attach")
        defer { lab.stop() }
        let ec2 = lab.client()
        let vol = lab.volume("data")
        var policy = SnapshotPolicy()
        policy.everyMinutes = 60
        policy.afterResync = true
        policy.keepLast = 3
        let keeper = SnapshotKeeper(ec2: ec2, resource: "r0", volumeID: vol, policy: policy)
        let operators = try await ec2.createSnapshot(volumeID: vol, description: "the operator's own", tags: ["tandem:resource-like": "r0"])
        let clock = Clock()
        let attempts = Counter()
        func schedule() -> SnapshotSchedule {
            SnapshotSchedule(keeper: keeper, now: { clock.now }, log: { _ in }, take: {
                attempts.add()
                if clock.failNext { clock.failNext = false; throw PolicyFailure() }
                return try await keeper.take(.init(generation: 0xF00, epoch: 7, time: clock.now, consistency: "crash-consistent")).id
            })
        }
        var s = schedule()
        // The first tick with no snapshot yet takes one.
        var o = await s.tick()
        #expect(o.taken != nil)
        // Within the hour: nothing, however often it ticks.
        for _ in 0..<5 {
            clock.now += 10 * 60 - 1
            o = await s.tick()
            #expect(o.taken == nil && o.failed == nil)
        }
        // A completed resync: one at the next tick, off the hourly schedule.
        await s.resyncCompleted()
        clock.now += 10
        o = await s.tick()
        #expect(o.taken != nil, "after-resync took nothing")
        let afterResync = clock.now
        // A daemon restarted at once does not take one: the newest snapshot's time counts.
        s = schedule()
        clock.now += 30
        o = await s.tick()
        #expect(o.taken == nil, "a restarted schedule snapshotted at once")
        // An hour after the after-resync one: due; it fails; the next ticks within a minute
        // do not try again; a minute later it is taken.
        clock.now = afterResync + 3600
        clock.failNext = true
        let before = attempts.value
        o = await s.tick()
        #expect(o.failed != nil && o.taken == nil)
        clock.now += 20
        o = await s.tick()
        clock.now += 20
        o = await s.tick()
        #expect(attempts.value == before + 1, "a failed snapshot was retried at every tick")
        clock.now += 21
        o = await s.tick()
        #expect(o.taken != nil)
        // Three more hours: keep-last 3 leaves the newest three of Tandem's, and the operator's.
        for _ in 0..<3 {
            clock.now += 3600
            o = await s.tick()
            #expect(o.taken != nil)
        }
        let left = try await keeper.list()
        #expect(left.count == 3, "\(left.map(\.id))")
        #expect(left.map { SnapshotKeeper.takenAt($0) } == [clock.now, clock.now - 3600, clock.now - 7200])
        let all = Set(try await ec2.describeSnapshots().filter { $0.volumeID == vol }.map(\.id))
        #expect(all.contains(operators.id), "pruning deleted the operator's snapshot")
        #expect(all.count == 4)
    }

    /// The ebs section's policy options as the daemon reads them; a bad value is one line
    /// naming the option.
    @Test func thePolicyOptionsAreReadAndBadValuesRefused() throws {
        func opts(_ pairs: [(String, String)]) -> [ConfigOption] {
            pairs.enumerated().map { ConfigOption(name: $1.0, value: $1.1, location: SourceLocation(file: "r0.res", line: $0 + 1, column: 5)) }
        }
        let s = try BackingDisk.settings(opts([("snapshot-after-resync", "yes"), ("snapshot-every", "240"), ("snapshot-keep-last", "7"),
                                               ("snapshot-keep-days", "30"), ("snapshot-archive-after-days", "14")]))
        var want = SnapshotPolicy()
        want.afterResync = true; want.everyMinutes = 240; want.keepLast = 7; want.keepDays = 30; want.archiveAfterDays = 14
        #expect(s.policy == want)
        #expect(try BackingDisk.settings([]).policy == SnapshotPolicy(), "the default takes and prunes nothing")
        #expect(!SnapshotSchedule.isActive(SnapshotPolicy()) && SnapshotSchedule.isActive(want))
        for (name, value) in [("snapshot-every", "-5"), ("snapshot-every", "1h"), ("snapshot-keep-last", "x"), ("snapshot-keep-days", "99999999"),
                              ("snapshot-after-resync", "maybe")] {
            #expect { try BackingDisk.settings(opts([(name, value)])) } throws: { e in
                let text = "\(e)"
                return text.contains("ebs \(name)") && text.contains("'\(value)'") && text.contains("r0.res:1") && !text.contains("\n")
            }
        }
    }

    struct PolicyFailure: Error {}
    final class Counter: @unchecked Sendable {
        private let lock = NSLock()
        private var n = 0
        func add() { lock.withLock { n += 1 } }
        var value: Int { lock.withLock { n } }
    }
}
