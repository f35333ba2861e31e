import Foundation

/// The EC2 node's EBS snapshots of one resource: takes them with Tandem's tags, lists them, and
/// applies the policy (deletes and archives) to those Tandem tagged for this resource only, so
/// snapshots an operator made, or another resource's, are never touched.
public final class SnapshotKeeper: @unchecked Sendable {
    public let ec2: EC2Client
    public let resource: String
    public let volumeID: String
    public var policy: SnapshotPolicy
    /// The `ebs` section's tags, put on every snapshot too.
    public let extraTags: [String: String]

    /// Tandem's tag keys.
    public enum Tag {
        public static let resource = "tandem:resource"
        /// The data generation (current UUID, hex) the snapshot holds.
        public static let generation = "tandem:generation"
        /// The epoch the snapshot follows (the barrier number closed before the mark).
        public static let epoch = "tandem:epoch"
        /// When Tandem took it (seconds since 1970, the node's clock).
        public static let time = "tandem:time"
        /// crash-consistent, application-consistent, or inconsistent (taken with --force mid-resync).
        public static let consistency = "tandem:consistency"
    }

    public init(ec2: EC2Client, resource: String, volumeID: String, policy: SnapshotPolicy, extraTags: [String: String] = [:]) {
        self.ec2 = ec2
        self.resource = resource
        self.volumeID = volumeID
        self.policy = policy
        self.extraTags = extraTags
    }

    /// What a snapshot is a copy of.
    public struct Point: Sendable, Equatable {
        public var generation: UInt64
        public var epoch: UInt32
        public var time: Double
        public var consistency: String
        public init(generation: UInt64, epoch: UInt32, time: Double, consistency: String) {
            self.generation = generation; self.epoch = epoch; self.time = time; self.consistency = consistency
        }
    }

    /// CreateSnapshot of the volume, tagged with the point it holds. Its point in time is this
    /// call: the caller holds writes until it returns.
    public func take(_ p: Point) async throws -> EC2Snapshot {
        var tags = extraTags
        tags[Tag.resource] = resource
        tags[Tag.generation] = String(p.generation, radix: 16, uppercase: true)
        tags[Tag.epoch] = "\(p.epoch)"
        tags[Tag.time] = Self.timeTag(p.time)
        tags[Tag.consistency] = p.consistency
        return try await ec2.createSnapshot(volumeID: volumeID, description: "Tandem \(resource) epoch \(p.epoch) (\(p.consistency))", tags: tags)
    }

    /// Tandem's snapshots of this resource, newest first (by Tandem's time tag, then EC2's
    /// start time and the id, so two taken within a millisecond still have one order).
    public func list() async throws -> [EC2Snapshot] {
        try await ec2.describeSnapshots(tag: (Tag.resource, resource))
            .filter { $0.tags[Tag.resource] == resource }
            .sorted { (Self.takenAt($0), $0.startTime, $0.id) > (Self.takenAt($1), $1.startTime, $1.id) }
    }

    /// The time tag: seconds since 1970 with milliseconds (snapshots a policy takes after
    /// two quick resyncs fall within one second).
    public static func timeTag(_ t: Double) -> String {
        let ms = Int64((t * 1000).rounded())
        return "\(ms / 1000).\(String(format: "%03d", Int(ms % 1000)))"
    }

    /// When Tandem took it (its time tag; 0 when it has none).
    public static func takenAt(_ s: EC2Snapshot) -> Double { Double(s.tags[Tag.time] ?? "") ?? 0 }

    /// Applies the keep and archive rules at `now`; what was deleted and archived.
    public func prune(now: Double) async throws -> (deleted: [String], archived: [String]) {
        let mine = try await list()
        let decision = policy.prune(mine.map { SnapshotPolicy.Snapshot(id: $0.id, takenAt: Self.takenAt($0), state: $0.state, tier: $0.storageTier) },
                                    now: now)
        for id in decision.delete {
            // Never one this resource did not tag, whatever the policy said.
            precondition(mine.contains { $0.id == id && $0.tags[Tag.resource] == resource }, "pruning a snapshot Tandem did not take")
            try await ec2.deleteSnapshot(id: id)
        }
        for id in decision.archive { try await ec2.archive(snapshot: id) }
        return (decision.delete, decision.archive)
    }
}
