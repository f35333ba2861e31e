/// An EBS volume as DescribeVolumes tells it.
public struct EC2Volume: Sendable, Equatable {
    public var id: String
    public var sizeGiB: Int
    /// creating, available, in-use, deleting, deleted, error.
    public var state: String
    public var availabilityZone: String
    public var encrypted: Bool
    public var kmsKeyID: String?
    public var snapshotID: String?
    public var attachments: [Attachment]
    public var tags: [String: String]

    public struct Attachment: Sendable, Equatable {
        public var instanceID: String
        public var device: String
        /// attaching, attached, detaching, detached, busy.
        public var state: String
        public var deleteOnTermination: Bool
    }

    init(_ x: XMLTree) throws {
        guard let id = x.string("volumeId") else { throw AWSError.unexpected("DescribeVolumes", "volumeId") }
        self.id = id
        sizeGiB = Int(x.string("size") ?? "") ?? 0
        state = x.string("status") ?? "unknown"
        availabilityZone = x.string("availabilityZone") ?? ""
        encrypted = x.string("encrypted") == "true"
        kmsKeyID = x.string("kmsKeyId")
        snapshotID = x.string("snapshotId").flatMap { $0.isEmpty ? nil : $0 }
        attachments = x.items("attachmentSet").map {
            Attachment(instanceID: $0.string("instanceId") ?? "", device: $0.string("device") ?? "",
                       state: $0.string("status") ?? "", deleteOnTermination: $0.string("deleteOnTermination") == "true")
        }
        tags = EC2Client.tags(x)
    }
}

/// An instance as DescribeInstances tells it: enough to know its zone and root device.
public struct EC2Instance: Sendable, Equatable {
    public var id: String
    public var availabilityZone: String
    public var rootDeviceName: String
    /// Device name to volume id.
    public var blockDevices: [String: String]
}

/// An EBS snapshot as DescribeSnapshots tells it.
public struct EC2Snapshot: Sendable, Equatable {
    public var id: String
    public var volumeID: String
    /// pending, completed, error, recoverable, recovering.
    public var state: String
    public var progress: String
    public var startTime: String
    public var encrypted: Bool
    public var kmsKeyID: String?
    /// standard or archive.
    public var storageTier: String
    /// The size of the volume it was taken of (a volume made from it has at least this).
    public var volumeSizeGiB: Int
    public var tags: [String: String]

    init(_ x: XMLTree) throws {
        guard let id = x.string("snapshotId") else { throw AWSError.unexpected("DescribeSnapshots", "snapshotId") }
        self.id = id
        volumeID = x.string("volumeId") ?? ""
        state = x.string("status") ?? "unknown"
        progress = x.string("progress") ?? ""
        startTime = x.string("startTime") ?? ""
        encrypted = x.string("encrypted") == "true"
        kmsKeyID = x.string("kmsKeyId")
        storageTier = x.string("storageTier") ?? "standard"
        volumeSizeGiB = Int(x.string("volumeSize") ?? "") ?? 0
        tags = EC2Client.tags(x)
    }
}

/// The calls the EBS target makes, typed.
extension EC2Client {
    static func tags(_ x: XMLTree) -> [String: String] {
        var out: [String: String] = [:]
        for t in x.items("tagSet") { if let k = t.string("key") { out[k] = t.string("value") ?? "" } }
        return out
    }

    static func list(_ name: String, _ values: [String]) -> [(String, String)] {
        values.enumerated().map { ("\(name).\($0.offset + 1)", $0.element) }
    }

    static func tagSpecification(_ resource: String, _ tags: [String: String]) -> [(String, String)] {
        guard !tags.isEmpty else { return [] }
        var p = [("TagSpecification.1.ResourceType", resource)]
        for (i, (k, v)) in tags.sorted(by: { $0.key < $1.key }).enumerated() {
            p += [("TagSpecification.1.Tag.\(i + 1).Key", k), ("TagSpecification.1.Tag.\(i + 1).Value", v)]
        }
        return p
    }

    public func describeVolumes(ids: [String]) async throws -> [EC2Volume] {
        let x = try await call("DescribeVolumes", Self.list("VolumeId", ids))
        return try x.items("volumeSet").map(EC2Volume.init)
    }

    public func describeInstance(id: String) async throws -> EC2Instance {
        let x = try await call("DescribeInstances", Self.list("InstanceId", [id]))
        guard let i = x.items("reservationSet").flatMap({ $0.items("instancesSet") }).first(where: { $0.string("instanceId") == id }) else {
            throw AWSError.unexpected("DescribeInstances", "instance \(id)")
        }
        var devices: [String: String] = [:]
        for m in i.items("blockDeviceMapping") {
            if let d = m.string("deviceName"), let v = m.child("ebs")?.string("volumeId") { devices[d] = v }
        }
        return EC2Instance(id: id, availabilityZone: i.child("placement")?.string("availabilityZone") ?? "",
                           rootDeviceName: i.string("rootDeviceName") ?? "", blockDevices: devices)
    }

    public func createSnapshot(volumeID: String, description: String, tags: [String: String]) async throws -> EC2Snapshot {
        let x = try await call("CreateSnapshot", [("VolumeId", volumeID), ("Description", description)] + Self.tagSpecification("snapshot", tags))
        return try EC2Snapshot(x)
    }

    /// Snapshots this account owns, optionally only those with a tag (key, value).
    public func describeSnapshots(ids: [String] = [], tag: (String, String)? = nil) async throws -> [EC2Snapshot] {
        var p = [("Owner.1", "self")] + Self.list("SnapshotId", ids)
        if let (k, v) = tag { p += [("Filter.1.Name", "tag:\(k)"), ("Filter.1.Value.1", v)] }
        return try await call("DescribeSnapshots", p).items("snapshotSet").map(EC2Snapshot.init)
    }

    public func deleteSnapshot(id: String) async throws {
        _ = try await call("DeleteSnapshot", [("SnapshotId", id)])
    }

    public func createVolume(snapshotID: String?, sizeGiB: Int?, availabilityZone: String, volumeType: String = "gp3",
                             encrypted: Bool, kmsKeyID: String?, tags: [String: String]) async throws -> EC2Volume {
        var p = [("AvailabilityZone", availabilityZone), ("VolumeType", volumeType)]
        if let s = snapshotID { p.append(("SnapshotId", s)) }
        if let g = sizeGiB { p.append(("Size", "\(g)")) }
        if encrypted { p.append(("Encrypted", "true")) }
        if let k = kmsKeyID { p.append(("KmsKeyId", k)) }
        let x = try await call("CreateVolume", p + Self.tagSpecification("volume", tags))
        return try EC2Volume(x)
    }

    public func attachVolume(volumeID: String, instanceID: String, device: String) async throws {
        _ = try await call("AttachVolume", [("VolumeId", volumeID), ("InstanceId", instanceID), ("Device", device)])
    }

    /// InstanceId is always sent (moto fails without it; EC2 accepts it).
    public func detachVolume(volumeID: String, instanceID: String) async throws {
        _ = try await call("DetachVolume", [("VolumeId", volumeID), ("InstanceId", instanceID)])
    }
}
