import Foundation

/// `attach-snapshot`'s AWS part: makes a volume from an EBS snapshot in this instance's zone
/// (encrypted as the snapshot is, or with the ebs section's kms-key-id), attaches it to this
/// instance, and finds its device by id. Every wait is Tandem's own (EBSWait: a time limit,
/// fail fast on a state that never becomes the one waited for). A snapshot in the archive tier
/// must first be restored from it (hours): refused with how, or started (`restoreArchiveDays`)
/// and, with `waitForArchive`, waited for. A snapshot that is not Tandem's of this resource, or
/// was taken of an inconsistent disk, is refused unless `force`. A volume created and then not
/// usable is left as it is and named in the error (never deleted: it may be wanted).
public struct SnapshotAttacher: Sendable {
    public var settings: EBSSettings
    public var resource: String
    public var http: HTTPTransport = AsyncHTTPTransport()
    public var environment = ProcessInfo.processInfo.environment
    public var force = false
    public var restoreArchiveDays: Int?
    public var waitForArchive = false
    /// Time limits, seconds.
    public var snapshotLimit = 3600.0, volumeLimit = 900.0, attachLimit = 300.0, deviceLimit = 120.0
    public var archiveLimit = 80 * 3600.0
    /// Progress lines for the operator.
    public var progress: @Sendable (String) -> Void = { _ in }
    public var now: @Sendable () -> Double = { Date().timeIntervalSince1970 }
    public var sleep: @Sendable (Double) async throws -> Void = { try await Task.sleep(nanoseconds: UInt64($0 * 1e9)) }

    public init(settings: EBSSettings, resource: String) {
        self.settings = settings
        self.resource = resource
    }

    public enum Outcome: Sendable, Equatable {
        /// The volume made from the snapshot, attached here, and its device.
        case attached(volumeID: String, devicePath: String, snapshot: EC2Snapshot)
        /// The snapshot is being restored from the archive tier; run again once it is.
        case archiveRestoreStarted(snapshotID: String)
    }

    public struct Refused: Error, CustomStringConvertible, Equatable {
        public var why: String
        public var description: String { why }
    }

    public func run(snapshotID: String) async throws -> Outcome {
        guard snapshotID.hasPrefix("snap-"), snapshotID.count > 5 else { throw Refused(why: "'\(snapshotID)' is not an EBS snapshot id (snap-...)") }
        let imds = InstanceMetadata(endpoint: settings.imdsEndpoint, http: http)
        let me: InstanceMetadata.Identity
        do { me = try await imds.identity() } catch { throw Refused(why: "cannot tell which instance this is: \(error)") }
        let region = settings.region ?? me.region
        let chain = CredentialChain(environment: environment, metadata: imds)
        let ec2 = EC2Client(region: region, endpoint: settings.endpoint, http: http, credentials: { try await chain.credentials() },
                            now: now, sleep: sleep)
        func wait(_ limit: Double, maxDelay: Double = 15) -> EBSWait {
            var w = EBSWait(limitSeconds: limit)
            w.maxDelaySeconds = maxDelay
            return w
        }

        // The snapshot: exists, is this resource's, consistent, complete, not archived.
        var snap: EC2Snapshot
        do {
            guard let s = try await ec2.describeSnapshots(ids: [snapshotID]).first(where: { $0.id == snapshotID }) else {
                throw Refused(why: "\(snapshotID) does not exist in \(region)")
            }
            snap = s
        } catch let e as AWSError where e.code == "InvalidSnapshot.NotFound" {
            throw Refused(why: "\(snapshotID) does not exist in \(region)")
        }
        let owner = snap.tags[SnapshotKeeper.Tag.resource]
        if owner != resource && !force {
            throw Refused(why: "\(snapshotID) is not a Tandem snapshot of \(resource) (its tandem:resource tag is \(owner.map { "'\($0)'" } ?? "missing")); --force attaches it anyway")
        }
        if snap.tags[SnapshotKeeper.Tag.consistency] == "inconsistent" && !force {
            throw Refused(why: "\(snapshotID) was taken of an inconsistent disk (mid-resync, --force); --force attaches it anyway")
        }
        switch snap.state {
        case "completed": break
        case "pending":
            progress("\(snapshotID) is still being taken (\(snap.progress)); waiting")
            try await ec2.waitUntilCompleted(snapshot: snapshotID, wait: wait(snapshotLimit))
        default: throw Refused(why: "\(snapshotID) is \(snap.state): no volume can be made from it")
        }
        if snap.storageTier == "archive" {
            let status = try await ec2.tierStatus(snapshot: snapshotID)
            let op = status.lastOperation ?? ""
            if op.hasSuffix("restore-completed") {
                progress("\(snapshotID) is restored from the archive tier (\(op))")
            } else {
                if !op.hasSuffix("restore-in-progress") {
                    guard let days = restoreArchiveDays else {
                        throw Refused(why: "\(snapshotID) is in the archive tier: it must be restored from it first, which takes hours (up to 72); --restore-archive DAYS starts that (for DAYS days), --wait waits for it")
                    }
                    try await ec2.restoreFromArchive(snapshot: snapshotID, days: days)
                    progress("\(snapshotID): restore from the archive tier started (for \(days) days); it takes hours")
                }
                guard waitForArchive else {
                    if !op.hasSuffix("restore-in-progress") { return .archiveRestoreStarted(snapshotID: snapshotID) }
                    throw Refused(why: "\(snapshotID) is being restored from the archive tier (\(op)); run again once it is, or with --wait")
                }
                progress("\(snapshotID): waiting for the restore from the archive tier (checked with backoff up to every 5 min)")
                try await wait(archiveLimit, maxDelay: 300).until("the restore of \(snapshotID) from the archive tier",
                                                                   wanted: "restored", failing: ["archival-failed", "temporary-restore-failed", "permanent-restore-failed"],
                                                                   now: now, sleep: sleep) {
                    let op = try await ec2.tierStatus(snapshot: snapshotID).lastOperation ?? ""
                    return op.hasSuffix("restore-completed") ? "restored" : op
                }
            }
        }

        // A free device name for the attachment (Nitro ignores it; Xen shows it).
        let instance = try await ec2.describeInstance(id: me.instanceID)
        let used = Set(instance.blockDevices.keys.map { $0.replacingOccurrences(of: "/dev/xvd", with: "/dev/sd") })
        guard let device = "fghijklmnop".map({ "/dev/sd\($0)" }).first(where: { !used.contains($0) }) else {
            throw Refused(why: "no free device name /dev/sdf-/dev/sdp on \(me.instanceID)")
        }
        var tags = settings.tags
        tags[SnapshotKeeper.Tag.resource] = resource
        tags["tandem:from-snapshot"] = snapshotID
        let encrypted = snap.encrypted || settings.kmsKeyID != nil
        let volume = try await ec2.createVolume(snapshotID: snapshotID, sizeGiB: nil, availabilityZone: me.availabilityZone,
                                                encrypted: encrypted, kmsKeyID: settings.kmsKeyID, tags: tags)
        progress("\(volume.id) created from \(snapshotID) in \(me.availabilityZone)\(encrypted ? ", encrypted\(settings.kmsKeyID.map { " with \($0)" } ?? " as the snapshot is")" : ""); waiting until it is available")
        func leftOver(_ error: Error) -> Refused {
            Refused(why: "\(error); \(volume.id), made from \(snapshotID), is left as it is (delete it when it is not wanted)")
        }
        do {
            try await ec2.waitUntilAvailable(volume.id, wait: wait(volumeLimit))
            try await ec2.attachVolume(volumeID: volume.id, instanceID: me.instanceID, device: device)
            progress("\(volume.id) attaching to \(me.instanceID) as \(device)")
            try await ec2.waitUntilAttached(volume.id, instance: me.instanceID, wait: wait(attachLimit))
        } catch { throw leftOver(error) }
        // The device node appears once the kernel and udev have seen the attachment.
        let resolver = EBSDeviceResolver(deviceRoot: settings.deviceRoot, sysfsRoot: settings.sysfsRoot)
        let start = now()
        while true {
            if let path = try? resolver.resolve(volumeID: volume.id) { return .attached(volumeID: volume.id, devicePath: path, snapshot: snap) }
            if let mapping = try? await imds.blockDeviceMapping(),
               let path = try? resolver.resolve(volumeID: volume.id, xenDevice: (device, Array(mapping.values))) {
                return .attached(volumeID: volume.id, devicePath: path, snapshot: snap)
            }
            guard now() - start < deviceLimit else {
                throw leftOver(Refused(why: "\(volume.id) is attached but no device for it appeared within \(Int(deviceLimit)) s"))
            }
            try await sleep(1)
        }
    }
}
