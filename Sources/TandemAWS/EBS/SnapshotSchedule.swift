import Foundation

/// The snapshot policy at work on the EC2 node: takes a snapshot when the schedule or a
/// completed resync asks for one, and prunes and archives Tandem's own snapshots after each
/// one it takes and once an hour. The snapshot itself is taken by `take` (the daemon's: through
/// the engine, which holds writes at an epoch boundary); the clock is injected, so a test
/// drives a day in a second. One `tick` runs at a time; the daemon calls it every few seconds.
public actor SnapshotSchedule {
    public let keeper: SnapshotKeeper
    let now: @Sendable () -> Double
    let take: @Sendable () async throws -> String
    let log: @Sendable (String) -> Void
    var policy: SnapshotPolicy { keeper.policy }
    /// When the last scheduled snapshot was taken; at the first tick, the newest Tandem
    /// snapshot's time (a restarted daemon does not take one at once).
    var lastScheduled: Double?
    var started = false
    /// A resync completed and no snapshot was taken since.
    var afterResyncDue = false
    /// After a failed attempt, the next is not before this time (the schedule's failures are
    /// retried a minute later, not at every tick).
    var retryAt: Double = 0
    var lastPrune: Double?
    static let retrySeconds = 60.0
    static let pruneSeconds = 3600.0

    public init(keeper: SnapshotKeeper, now: @escaping @Sendable () -> Double, log: @escaping @Sendable (String) -> Void,
                take: @escaping @Sendable () async throws -> String) {
        self.keeper = keeper; self.now = now; self.log = log; self.take = take
    }

    /// Whether the policy asks for anything at all (the daemon does not tick otherwise).
    public static func isActive(_ p: SnapshotPolicy) -> Bool {
        p.afterResync || p.everyMinutes > 0 || p.keepLast > 0 || p.keepDays > 0 || p.archiveAfterDays > 0
    }

    /// A resync to this node completed: the next tick takes a snapshot (after-resync).
    public func resyncCompleted() {
        guard policy.afterResync else { return }
        afterResyncDue = true
    }

    /// What one tick did: the snapshot taken (or why not), what was deleted and archived.
    public struct Outcome: Sendable, Equatable {
        public var taken: String?
        public var failed: String?
        public var deleted: [String] = []
        public var archived: [String] = []
    }

    /// Takes a snapshot if one is due, then prunes if due. AWS errors are logged and retried
    /// later; they never end the schedule.
    @discardableResult
    public func tick() async -> Outcome {
        var out = Outcome()
        let t = now()
        if !started {
            do {
                lastScheduled = try await keeper.list().first.map { SnapshotKeeper.takenAt($0) }
                started = true
            } catch {
                log("snapshot policy: listing snapshots failed: \(error)")
                return out
            }
        }
        let scheduled = policy.scheduledDue(now: t, lastScheduled: lastScheduled)
        if (scheduled || afterResyncDue) && t >= retryAt {
            let why = afterResyncDue ? "after a resync" : "every \(policy.everyMinutes) min"
            do {
                let id = try await take()
                out.taken = id
                log("snapshot policy: \(id) taken (\(why))")
                afterResyncDue = false
                lastScheduled = t
                lastPrune = nil  // prune now: there is one more
            } catch {
                out.failed = "\(error)"
                retryAt = t + Self.retrySeconds
                log("snapshot policy: no snapshot (\(why)): \(error); trying again in \(Int(Self.retrySeconds)) s")
            }
        }
        let prunes = policy.keepLast > 0 || policy.keepDays > 0 || policy.archiveAfterDays > 0
        if prunes && (lastPrune.map { t - $0 >= Self.pruneSeconds } ?? true) {
            do {
                let r = try await keeper.prune(now: t)
                out.deleted = r.deleted
                out.archived = r.archived
                lastPrune = t
                if !r.deleted.isEmpty { log("snapshot policy: deleted \(r.deleted.joined(separator: " "))") }
                if !r.archived.isEmpty { log("snapshot policy: moved to the archive tier: \(r.archived.joined(separator: " "))") }
            } catch {
                lastPrune = t - Self.pruneSeconds + Self.retrySeconds
                log("snapshot policy: pruning failed: \(error); trying again in \(Int(Self.retrySeconds)) s")
            }
        }
        return out
    }
}
