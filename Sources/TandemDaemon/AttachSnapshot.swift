import Foundation
import TandemAdapters
import TandemAWS
import TandemCodecs

/// `attach-snapshot RES snap-...` on the EC2 node (its daemon down): a volume made from the
/// snapshot (SnapshotAttacher) becomes this node's disk. Its meta-data, as the snapshot holds
/// it, becomes a new data generation descending from the snapshot's (so no peer ever counts as
/// in sync with it, and `restore` on the other node pulls from it), and the resource file's
/// `disk ebs:vol-OLD` becomes `disk ebs:vol-NEW` (the file is kept as FILE.before-attach-snapshot).
/// The old volume stays attached and untouched.
public enum AttachSnapshot {
    public struct Request: Sendable {
        public var snapshotID: String
        public var force = false
        public var restoreArchiveDays: Int?
        public var waitForArchive = false
        public init(snapshotID: String) { self.snapshotID = snapshotID }
    }

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
        init(_ d: String) { description = d }
    }

    /// Runs it; what to tell the operator, a line each. `progress` gets the steps as they go.
    public static func run(_ local: LocalResource, _ request: Request, progress: @escaping @Sendable (String) -> Void) throws -> [String] {
        let name = local.resource.name
        guard local.diskPath.hasPrefix(BackingDisk.ebsPrefix) else {
            throw Failure("\(name): this node's disk is \(local.diskPath), not an EBS volume (disk ebs:vol-...): run attach-snapshot on the EC2 node")
        }
        let oldVolume = String(local.diskPath.dropFirst(BackingDisk.ebsPrefix.count))
        let settings = try BackingDisk.settings(local.host.ebs)
        // The file to edit, found before anything is created.
        let file = local.host.location.file
        let token = BackingDisk.ebsPrefix + oldVolume
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { throw Failure("\(file): cannot read the resource file") }
        guard text.components(separatedBy: token).count == 2 else {
            throw Failure("\(file): '\(token)' must appear exactly once to be replaced (it appears \(text.components(separatedBy: token).count - 1) times)")
        }
        var attacher = SnapshotAttacher(settings: settings, resource: name)
        attacher.force = request.force
        attacher.restoreArchiveDays = request.restoreArchiveDays
        attacher.waitForArchive = request.waitForArchive
        attacher.progress = progress
        let outcome: SnapshotAttacher.Outcome
        do { outcome = try BackingDisk.wait { [attacher] in try await attacher.run(snapshotID: request.snapshotID) } } catch {
            throw Failure("\(name): \(error)")
        }
        guard case .attached(let volumeID, let path, let snapshot) = outcome else {
            return ["\(name): \(request.snapshotID) is being restored from the archive tier (hours, up to 72); run attach-snapshot again once `tandem snapshots \(name)` shows it standard, or with --wait"]
        }
        let left = "\(volumeID) (from \(request.snapshotID)) is attached as \(path) and left as it is; \(local.diskPath) is unchanged"
        let device: FileBlockDevice
        do { device = try FileBlockDevice(path: path) } catch { throw Failure("\(name): \(path): \(error); \(left)") }
        defer { device.close() }
        guard MetaDataStore.hasMetaData(device) else {
            throw Failure("\(name): \(path) holds no DRBD meta-data: \(request.snapshotID) is not a snapshot of a Tandem disk; \(left)")
        }
        let before: Superblock
        do { before = try MetaDataStore.readSuperblock(from: device).0 } catch { throw Failure("\(name): \(path): \(error); \(left)") }
        if let g = snapshot.tags[SnapshotKeeper.Tag.generation], UInt64(g, radix: 16) != before.currentUUID & ~1, !request.force {
            throw Failure("\(name): the meta-data in \(request.snapshotID) is of generation \(Hex.upper(before.currentUUID & ~1, digits: 16)), its tag says \(g): not the snapshot Tandem took; --force uses it anyway; \(left)")
        }
        var uuid: UInt64 = 0
        while uuid & ~1 == 0 || uuid & ~1 == Superblock.uuidJustCreated { uuid = UInt64.random(in: 1...UInt64.max) & ~1 }
        let after: Superblock
        do { after = try MetaDataStore.startGenerationFromSnapshot(on: device, uuid: uuid) } catch {
            throw Failure("\(name): writing the new generation to \(path): \(error); \(left)")
        }
        // The resource file, last: until here nothing the node uses has changed.
        do {
            try text.write(toFile: file + ".before-attach-snapshot", atomically: true, encoding: .utf8)
            try text.replacingOccurrences(of: token, with: BackingDisk.ebsPrefix + volumeID).write(toFile: file, atomically: true, encoding: .utf8)
        } catch {
            throw Failure("\(name): \(file): \(error); \(volumeID) is ready (generation \(Hex.upper(after.currentUUID, digits: 16))): put 'disk ebs:\(volumeID);' there yourself")
        }
        return [
            "\(name): \(volumeID), made from \(request.snapshotID), is this node's disk (\(path)); \(file) now says disk ebs:\(volumeID) (was \(oldVolume), kept in \(file).before-attach-snapshot)",
            "\(name): its data is generation \(Hex.upper(after.currentUUID, digits: 16)), following the snapshot's \(Hex.upper(before.currentUUID & ~1, digits: 16)): the other node syncs from it (`tandem restore r0` there, with --discard-my-data if it holds newer data)",
            "\(name): \(oldVolume) stays attached and unchanged; detach it when it is no longer wanted",
        ].map { $0.replacingOccurrences(of: "restore r0", with: "restore \(name)") }
    }
}
