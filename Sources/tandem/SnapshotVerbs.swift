import ArgumentParser
import Foundation
import TandemAWS
import TandemDaemon

/// `snapshot [--force] RES`: an EBS snapshot of the EC2 node's volume at an epoch boundary
/// (run on the Primary, which marks the point in the replication stream, or on the EC2 node);
/// prints the snapshot's id.
struct Snapshot: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "snapshot", abstract: "Take an EBS snapshot on the EC2 node at a consistent point (a Tandem addition).")
    @OptionGroup var arguments: ResourceArguments
    @Flag(help: "Take it even of a disk that is not UpToDate (mid-resync); it is tagged inconsistent.") var force = false

    func run() throws {
        let r = try arguments.client().request(ControlRequest(.snapshot, force: force))
        print(r.result ?? "")
    }
}

/// `snapshots RES`: the EBS snapshots Tandem took of this resource, newest first, with state,
/// tier and tags (run on the EC2 node: it asks EC2 directly).
struct Snapshots: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "snapshots", abstract: "List the EBS snapshots Tandem took of the resource (on the EC2 node).")
    @OptionGroup var arguments: ResourceArguments

    func run() throws {
        let plan = try arguments.plan()
        guard let ebs = plan.ebs else { throw VerbFailure("\(plan.name): this node's disk is not an EBS volume; list snapshots on the EC2 node") }
        let keeper = BackingDisk.keeper(ebs, resource: plan.name)
        let list: [EC2Snapshot]
        do { list = try BackingDisk.wait { try await keeper.list() } } catch { throw VerbFailure("\(error)") }
        print("SNAPSHOT                STATE      TIER      TAKEN (UTC)           EPOCH  GENERATION        CONSISTENCY             TAGS")
        for s in list {
            let t = Double(s.tags[SnapshotKeeper.Tag.time] ?? "") ?? 0
            let when = ISO8601DateFormatter().string(from: Date(timeIntervalSince1970: t))
            func pad(_ x: String, _ n: Int) -> String { x.count >= n ? x + " " : x + String(repeating: " ", count: n - x.count) }
            print(pad(s.id, 24) + pad(s.state, 11) + pad(s.storageTier, 10) + pad(when, 22) + pad(s.tags[SnapshotKeeper.Tag.epoch] ?? "-", 7)
                  + pad(s.tags[SnapshotKeeper.Tag.generation] ?? "-", 18) + pad(s.tags[SnapshotKeeper.Tag.consistency] ?? "-", 24)
                  + Snapshots.otherTags(s.tags))
        }
    }

    /// The tags not in their own column (the ebs section's, an operator's), key=value sorted.
    static func otherTags(_ tags: [String: String]) -> String {
        let own: Set = [SnapshotKeeper.Tag.resource, SnapshotKeeper.Tag.generation, SnapshotKeeper.Tag.epoch,
                        SnapshotKeeper.Tag.time, SnapshotKeeper.Tag.consistency]
        let rest = tags.filter { !own.contains($0.key) }.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        return rest.isEmpty ? "-" : rest.joined(separator: ",")
    }
}

/// `attach-snapshot RES snap-...` on the EC2 node, its daemon down: a volume made from the
/// snapshot becomes this node's disk (AttachSnapshot), so that `restore` on the other node
/// pulls the snapshot's data.
struct AttachSnapshotVerb: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "attach-snapshot",
                                                    abstract: "Make a volume from an EBS snapshot this node's disk, as a restore source (a Tandem addition; on the EC2 node, resource down).")
    @OptionGroup var arguments: ResourceArguments
    @Argument(help: "The snapshot (snap-...).") var snapshot: String
    @Flag(help: "Use a snapshot that is not Tandem's of this resource, or was taken of an inconsistent disk.") var force = false
    @Option(name: .customLong("restore-archive"), help: "Restore an archived snapshot from the archive tier for DAYS days first (takes hours).")
    var restoreArchiveDays: Int?
    @Flag(help: "Wait for a restore from the archive tier to complete (hours).") var wait = false

    func run() throws {
        if ControlClient(resource: arguments.resource) != nil {
            throw VerbFailure("\(arguments.resource): up on this node: `tandem down \(arguments.resource)` first (the new volume replaces its disk)")
        }
        if let d = restoreArchiveDays, d < 1 || d > 180 { throw VerbFailure("--restore-archive: days from 1 to 180, not \(d)") }
        let local: LocalResource
        do {
            let config = try ConfigLoader.load(path: arguments.globals.config)
            local = try LocalResource(config: config, name: arguments.resource, node: arguments.globals.nodeName)
        } catch { throw VerbFailure("\(error)") }
        var request = AttachSnapshot.Request(snapshotID: snapshot)
        request.force = force
        request.restoreArchiveDays = restoreArchiveDays
        request.waitForArchive = wait
        do {
            let lines = try AttachSnapshot.run(local, request) { line in
                FileHandle.standardError.write(Data("\(line)\n".utf8))
            }
            for l in lines { print(l) }
        } catch { throw VerbFailure("\(error)") }
    }
}
