/// Waits for an EBS volume or snapshot to reach a state, as Tandem's own loop rather than
/// botocore's waiters (which spin on `in-use` while waiting for `available` and never fail
/// fast): exponential backoff between DescribeX calls, a time limit, and an immediate failure
/// on a state the wait cannot come back from.
public struct EBSWait: Sendable {
    public var limitSeconds: Double
    public var firstDelaySeconds = 1.0
    public var maxDelaySeconds = 15.0
    public init(limitSeconds: Double) { self.limitSeconds = limitSeconds }

    public enum Failure: Error, CustomStringConvertible, Equatable {
        case unexpectedState(String, String, wanted: String)
        case timedOut(String, String, wanted: String, seconds: Double)
        public var description: String {
            switch self {
            case .unexpectedState(let what, let state, let wanted): "\(what) is \(state), which never becomes \(wanted)"
            case .timedOut(let what, let state, let wanted, let s): "\(what) still \(state) after \(Int(s)) s (waiting for \(wanted))"
            }
        }
    }

    /// Polls `state` until it returns `wanted`; `failing` states end the wait at once.
    public func until(_ what: String, wanted: String, failing: Set<String>, now: @Sendable () -> Double,
                      sleep: @Sendable (Double) async throws -> Void, state: () async throws -> String) async throws {
        let start = now()
        var delay = firstDelaySeconds
        while true {
            let s = try await state()
            if s == wanted { return }
            if failing.contains(s) { throw Failure.unexpectedState(what, s, wanted: wanted) }
            guard now() - start + delay <= limitSeconds else { throw Failure.timedOut(what, s, wanted: wanted, seconds: now() - start) }
            try await sleep(delay)
            delay = min(maxDelaySeconds, delay * 2)
        }
    }
}

extension EC2Client {
    /// A volume's state (and, with `instance`, its attachment's there: "attached" and so on).
    public func volumeState(_ id: String, attachedTo instance: String? = nil) async throws -> String {
        guard let v = try await describeVolumes(ids: [id]).first else { return "deleted" }
        guard let instance else { return v.state }
        return v.attachments.first { $0.instanceID == instance }?.state ?? "detached"
    }

    /// Waits for a volume to be available (created from a snapshot), failing at once on error
    /// or deleted.
    public func waitUntilAvailable(_ id: String, wait: EBSWait) async throws {
        try await wait.until("volume \(id)", wanted: "available", failing: ["error", "deleted", "deleting", "in-use"], now: now, sleep: sleep) {
            try await volumeState(id)
        }
    }

    /// Waits for a volume's attachment to this instance to be attached.
    public func waitUntilAttached(_ id: String, instance: String, wait: EBSWait) async throws {
        try await wait.until("the attachment of \(id) to \(instance)", wanted: "attached", failing: ["detaching", "detached", "busy"],
                             now: now, sleep: sleep) {
            try await volumeState(id, attachedTo: instance)
        }
    }

    /// Waits for a snapshot to complete, failing at once on error.
    public func waitUntilCompleted(snapshot id: String, wait: EBSWait) async throws {
        try await wait.until("snapshot \(id)", wanted: "completed", failing: ["error"], now: now, sleep: sleep) {
            try await describeSnapshots(ids: [id]).first?.state ?? "deleted"
        }
    }

    /// Moves a snapshot to the archive tier (ModifySnapshotTier).
    public func archive(snapshot id: String) async throws {
        _ = try await call("ModifySnapshotTier", [("SnapshotId", id), ("StorageTier", "archive")])
    }

    /// Brings an archived snapshot back to the standard tier for `days` (RestoreSnapshotTier);
    /// this takes hours (AWS: up to 72).
    public func restoreFromArchive(snapshot id: String, days: Int) async throws {
        _ = try await call("RestoreSnapshotTier", [("SnapshotId", id), ("TemporaryRestoreDays", "\(days)")])
    }

    /// A snapshot's tier (standard or archive) and its last archive or restore operation
    /// (DescribeSnapshotTierStatus: archival-completed, temporary-restore-in-progress,
    /// temporary-restore-completed, ...), nil if there was none.
    public func tierStatus(snapshot id: String) async throws -> (tier: String, lastOperation: String?) {
        let x = try await call("DescribeSnapshotTierStatus", [("Filter.1.Name", "snapshot-id"), ("Filter.1.Value.1", id)])
        guard let item = x.items("snapshotTierStatusSet").first(where: { $0.string("snapshotId") == id }) else {
            throw AWSError.unexpected("DescribeSnapshotTierStatus", "snapshot \(id)")
        }
        return (item.string("storageTier") ?? "standard", item.string("lastTieringOperationStatus"))
    }
}
