import Foundation
import TandemAdapters
import TandemAWS
import TandemCodecs

/// Where a node keeps its data: a path (a file, a loop or block device), or on EC2 an EBS
/// volume named by id (`disk ebs:vol-...;`, a Tandem addition) that is found by its id and
/// checked (EBSTarget) before anything opens it for writing.
public enum BackingDisk {
    public static let ebsPrefix = "ebs:"

    /// The device path of `local`'s disk; for an EBS volume, after every check passed.
    public static func path(for local: LocalResource) throws -> String { try resolve(local).path }

    /// The device path, and for an EBS volume what the checks found.
    public static func resolve(_ local: LocalResource) throws -> (path: String, ebs: EBSVolumePlan?) {
        let d = local.diskPath
        guard d.hasPrefix(ebsPrefix) else {
            guard local.host.ebs.isEmpty else {
                throw ConfigError(local.host.ebs[0].location, "\(local.resource.name): an ebs section needs 'disk ebs:vol-...;' on \(local.node)")
            }
            return (d, nil)
        }
        let settings = try settings(local.host.ebs)
        let target = EBSTarget(volumeID: String(d.dropFirst(ebsPrefix.count)), settings: settings)
        let checked = try wait {
            try await target.check(deviceSize: { path in
                try FileBlockDevice(path: path, options: .init(readOnly: true, exclusive: false)).size
            })
        }
        return (checked.devicePath, EBSVolumePlan(volumeID: target.volumeID, settings: settings,
                                                  region: settings.region ?? checked.identity.region))
    }

    /// A snapshot keeper for the resource's volume (the EC2 node's).
    public static func keeper(_ ebs: EBSVolumePlan, resource: String) -> SnapshotKeeper {
        let imds = InstanceMetadata(endpoint: ebs.settings.imdsEndpoint)
        let chain = CredentialChain(metadata: imds)
        let ec2 = EC2Client(region: ebs.region, endpoint: ebs.settings.endpoint, credentials: { try await chain.credentials() })
        return SnapshotKeeper(ec2: ec2, resource: resource, volumeID: ebs.volumeID, policy: ebs.settings.policy, extraTags: ebs.settings.tags)
    }

    /// The `ebs` section as settings.
    public static func settings(_ options: [ConfigOption]) throws -> EBSSettings {
        var s = EBSSettings()
        for o in options {
            let v = o.value ?? ""
            switch o.name {
            case "region": s.region = v
            case "endpoint": s.endpoint = v
            case "imds-endpoint": s.imdsEndpoint = v
            case "kms-key-id": s.kmsKeyID = v
            case "device-root": s.deviceRoot = v
            case "sysfs-root": s.sysfsRoot = v
            case "snapshot-hold-limit":
                guard let n = Double(v), n > 0, n <= 40 else {
                    throw ConfigError(o.location, "ebs snapshot-hold-limit: seconds from 1 to 40 (below ko-count × timeout), not '\(v)'")
                }
                s.snapshotHoldSeconds = n
            case "snapshot-after-resync":
                guard v == "yes" || v == "no" else { throw ConfigError(o.location, "ebs snapshot-after-resync: yes or no, not '\(v)'") }
                s.policy.afterResync = v == "yes"
            case "snapshot-every": s.policy.everyMinutes = try count(o, v, "minutes", max: 525_600)
            case "snapshot-keep-last": s.policy.keepLast = try count(o, v, "snapshots", max: 10_000)
            case "snapshot-keep-days": s.policy.keepDays = try count(o, v, "days", max: 36_500)
            case "snapshot-archive-after-days":
                // An archived snapshot is a full copy, billed for at least 90 days there, and
                // takes hours to restore (README): the rule is for long-term retention.
                s.policy.archiveAfterDays = try count(o, v, "days", max: 36_500)
            case "tags":
                for pair in v.split(separator: ",") {
                    let kv = pair.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                    guard kv.count == 2, !kv[0].isEmpty else { throw ConfigError(o.location, "ebs tags: expected KEY=VALUE[,KEY=VALUE...], got '\(pair)'") }
                    s.tags[kv[0]] = kv[1]
                }
            default: throw ConfigError(o.location, "unknown option '\(o.name)' in ebs section")
            }
        }
        return s
    }

    /// A whole number from 0 to `max` for an ebs option.
    static func count(_ o: ConfigOption, _ v: String, _ unit: String, max: Int) throws -> Int {
        guard let n = Int(v), n >= 0, n <= max else { throw ConfigError(o.location, "ebs \(o.name): a number of \(unit) from 0 to \(max), not '\(v)'") }
        return n
    }

    /// Runs async work from a synchronous caller (the command line and the daemon's start,
    /// before any event loop of their own runs) and waits for it.
    public static func wait<T: Sendable>(_ work: @escaping @Sendable () async throws -> T) throws -> T {
        let box = ResultBox<T>()
        let done = DispatchSemaphore(value: 0)
        Task {
            do { box.result = .success(try await work()) } catch { box.result = .failure(error) }
            done.signal()
        }
        done.wait()
        return try box.result!.get()
    }
}

/// An EBS volume a node uses as its disk, as its checks found it.
public struct EBSVolumePlan: Sendable, Equatable {
    public var volumeID: String
    public var settings: EBSSettings
    public var region: String
}

/// The result of async work handed to the thread that waits for it (BackingDisk.wait).
final class ResultBox<T: Sendable>: @unchecked Sendable {
    var result: Result<T, Error>?
}
