/// When the EC2 node takes EBS snapshots and which of Tandem's own it deletes or moves to the
/// archive tier (the `ebs` section's snapshot options): after each completed resync, every N
/// minutes, keep the newest K and/or those younger than D days, archive those older than A
/// days (cheap long-term retention, as an S3-to-Glacier lifecycle). Pure: the snapshots and the
/// time come in, the decisions go out; only snapshots Tandem tagged for this resource are ever
/// given to it, so an operator's own snapshots are never touched.
public struct SnapshotPolicy: Sendable, Equatable {
    /// Take one after every completed resync (the first consistent point after one).
    public var afterResync = false
    /// Take one every this many minutes (0: never on a schedule).
    public var everyMinutes = 0
    /// Keep at least the newest this many (0: no count rule).
    public var keepLast = 0
    /// Keep those younger than this many days (0: no age rule).
    public var keepDays = 0
    /// Move those older than this many days to the archive tier (0: never).
    public var archiveAfterDays = 0
    public init() {}

    /// One of Tandem's snapshots as the policy sees it.
    public struct Snapshot: Sendable, Equatable {
        public var id: String
        /// When it was taken, seconds since 1970.
        public var takenAt: Double
        /// pending, completed, error, ...
        public var state: String
        /// standard or archive.
        public var tier: String
        public init(id: String, takenAt: Double, state: String, tier: String) {
            self.id = id; self.takenAt = takenAt; self.state = state; self.tier = tier
        }
    }

    public struct Decision: Sendable, Equatable {
        public var take: Bool
        public var delete: [String]
        public var archive: [String]
    }

    /// Whether the schedule wants a snapshot now (`lastScheduled`: when the last scheduled one
    /// was taken or tried).
    public func scheduledDue(now: Double, lastScheduled: Double?) -> Bool {
        guard everyMinutes > 0 else { return false }
        guard let last = lastScheduled else { return true }
        return now - last >= Double(everyMinutes) * 60
    }

    /// What to delete and archive among `snapshots` at `now`. With neither keep rule nothing is
    /// deleted; with both, a snapshot is kept if either rule keeps it. Snapshots not completed
    /// are never deleted (a pending one may be the newest good copy); the newest completed one
    /// is never deleted.
    public func prune(_ snapshots: [Snapshot], now: Double) -> (delete: [String], archive: [String]) {
        // Newest first; equal times keep the order given (the keeper's, newest first).
        let done = snapshots.enumerated().filter { $0.element.state == "completed" }
            .sorted { $0.element.takenAt != $1.element.takenAt ? $0.element.takenAt > $1.element.takenAt : $0.offset < $1.offset }
            .map(\.element)
        var delete: [String] = []
        if keepLast > 0 || keepDays > 0 {
            for (rank, s) in done.enumerated() where rank > 0 {
                let keptByCount = keepLast > 0 && rank < keepLast
                let keptByAge = keepDays > 0 && now - s.takenAt < Double(keepDays) * 86400
                if !keptByCount && !keptByAge { delete.append(s.id) }
            }
        }
        var archive: [String] = []
        if archiveAfterDays > 0 {
            // The newest stays in the standard tier: a restore from it starts at once.
            for s in done.dropFirst() where s.tier == "standard" && !delete.contains(s.id)
                && now - s.takenAt >= Double(archiveAfterDays) * 86400 {
                archive.append(s.id)
            }
        }
        return (delete, archive)
    }
}
