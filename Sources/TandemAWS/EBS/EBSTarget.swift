import Foundation

/// What the `ebs { }` section of an `on` host says (a Tandem addition): where the EC2 API and
/// the instance metadata are, tags, the snapshot hold limit and policy, and the /dev and /sys roots
/// (settable for tests).
public struct EBSSettings: Sendable, Equatable {
    /// Default: the instance's region (IMDS).
    public var region: String?
    /// Default: https://ec2.REGION.amazonaws.com.
    public var endpoint: String?
    /// Default: AWS_EC2_METADATA_SERVICE_ENDPOINT, else http://169.254.169.254.
    public var imdsEndpoint: String?
    /// Tags Tandem puts on what it creates (key=value pairs).
    public var tags: [String: String] = [:]
    public var deviceRoot = "/dev"
    public var sysfsRoot = "/sys"
    /// How long writes may be held while CreateSnapshot runs (then it counts as failed).
    public var snapshotHoldSeconds = 30.0
    /// The KMS key for volumes attach-snapshot creates (default: encrypted as the snapshot is).
    public var kmsKeyID: String?
    /// When snapshots are taken and which are pruned or archived (the snapshot-* options).
    public var policy = SnapshotPolicy()
    public init() {}
}

/// The EBS target's checks before Tandem writes a byte to a volume named by id
/// (`disk ebs:vol-...;`), each failure one line: IMDSv2 says who and where this instance is;
/// DescribeVolumes says the volume exists, is attached to this instance (not elsewhere, not
/// merely available), is in its zone, and is not its root volume; the device found for it (by
/// id, EBSDeviceResolver) has the volume's size. The size the peer's data needs is checked
/// when the peer announces it (P_SIZES): a peer whose data does not fit refuses this node.
public struct EBSTarget: Sendable {
    public let volumeID: String
    public let settings: EBSSettings

    public init(volumeID: String, settings: EBSSettings) {
        self.volumeID = volumeID
        self.settings = settings
    }

    /// What the checks found.
    public struct Checked: Sendable, Equatable {
        public var devicePath: String
        public var volume: EC2Volume
        public var identity: InstanceMetadata.Identity
    }

    public enum Failure: Error, CustomStringConvertible, Equatable {
        case refused(String)
        public var description: String { switch self { case .refused(let why): why } }
    }

    /// Runs every check; the device path to open.
    public func check(http: HTTPTransport = AsyncHTTPTransport(), environment: [String: String] = ProcessInfo.processInfo.environment,
                      deviceSize: (String) throws -> UInt64) async throws -> Checked {
        let id = volumeID
        guard EBSDeviceResolver.isVolumeID(id) else { throw EBSDeviceResolver.Failure.badVolumeID(id) }
        let imds = InstanceMetadata(endpoint: settings.imdsEndpoint, http: http)
        let me: InstanceMetadata.Identity
        do { me = try await imds.identity() } catch { throw Failure.refused("\(id): cannot tell which instance this is: \(error)") }
        let region = settings.region ?? me.region
        let chain = CredentialChain(environment: environment, metadata: imds)
        let ec2 = EC2Client(region: region, endpoint: settings.endpoint, http: http, credentials: { try await chain.credentials() })
        let volume: EC2Volume
        do {
            guard let v = try await ec2.describeVolumes(ids: [id]).first(where: { $0.id == id }) else {
                throw Failure.refused("\(id) does not exist in \(region)")
            }
            volume = v
        } catch let e as AWSError where e.code == "InvalidVolume.NotFound" {
            throw Failure.refused("\(id) does not exist in \(region)")
        }
        guard let mine = volume.attachments.first(where: { $0.instanceID == me.instanceID }) else {
            if let other = volume.attachments.first {
                throw Failure.refused("\(id) is attached to \(other.instanceID) (as \(other.device)), not to this instance \(me.instanceID)")
            }
            throw Failure.refused("\(id) is not attached to this instance \(me.instanceID) (it is \(volume.state)); attach it first")
        }
        guard mine.state == "attached" else { throw Failure.refused("\(id) is \(mine.state) on this instance, not attached") }
        guard volume.availabilityZone == me.availabilityZone else {
            throw Failure.refused("\(id) is in \(volume.availabilityZone), this instance in \(me.availabilityZone)")
        }
        let instance = try await ec2.describeInstance(id: me.instanceID)
        guard instance.blockDevices[instance.rootDeviceName] != id else {
            throw Failure.refused("\(id) is the root volume of this instance \(me.instanceID) (\(instance.rootDeviceName)); Tandem never writes to it")
        }
        let resolver = EBSDeviceResolver(deviceRoot: settings.deviceRoot, sysfsRoot: settings.sysfsRoot)
        let path: String
        do { path = try resolver.resolve(volumeID: id) } catch {
            // Not NVMe: the Xen names, confirmed by the block-device mapping.
            let mapping = (try? await imds.blockDeviceMapping()) ?? [:]
            path = try resolver.resolve(volumeID: id, xenDevice: (mine.device, Array(mapping.values)))
        }
        let bytes = try deviceSize(path)
        guard bytes == UInt64(volume.sizeGiB) << 30 else {
            throw Failure.refused("\(path), found for \(id), holds \(bytes) bytes but the volume is \(volume.sizeGiB) GiB: not the same volume")
        }
        return Checked(devicePath: path, volume: volume, identity: me)
    }
}
