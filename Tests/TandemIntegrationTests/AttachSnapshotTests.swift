import Foundation
import Testing
import TandemAWS

/// A snapshot as the restore source, end to end against moto behind the EC2 stand-in proxy
/// (volumes stay creating and attaching for a few polls, as EC2's do; moto completes at once;
/// the archive-tier calls moto lacks): the snapshot's content is read off the volume while
/// CreateSnapshot is held; later writes; `attach-snapshot` makes a volume from the snapshot,
/// waits through the pending states, attaches it, finds its device (the test plays the kernel:
/// a loop device on the snapshot's content and the by-id link appear once EC2 says attached),
/// starts a new generation in its meta-data and switches the resource file; `restore` on the
/// on-prem node then brings back exactly the snapshot's data.
@Suite(.serialized) struct AttachSnapshotTests {
    /// moto, the stand-in proxy in front of it and the delaying proxy in front of that.
    struct Proxies {
        let standin: Int, delaying: Int
        let standinLog: String, held: String
    }

    static func proxies(_ v: EBSTargetTests.Volumes, delay: Double = 6) throws -> Proxies {
        let standin = Cluster.reservePorts()
        let delaying = Cluster.reservePorts()
        let p = Proxies(standin: standin, delaying: delaying, standinLog: v.lab.dir + "/standin.log", held: v.lab.dir + "/held")
        v.lab.processes.append(try AWSLab.spawn("/usr/bin/env", ["python3", Tools.helpers + "/ec2-standin-proxy.py", "\(standin)", "\(v.lab.motoPort)",
                                                                "3", "2", "2", p.standinLog], log: v.lab.dir + "/standin.out"))
        try AWSLab.waitForPort(standin, what: "the EC2 stand-in proxy", log: v.lab.dir + "/standin.out")
        v.lab.processes.append(try AWSLab.spawn("/usr/bin/env", ["python3", Tools.helpers + "/delay-proxy.py", "\(delaying)", "\(standin)",
                                                                "CreateSnapshot", "\(delay)", p.held], log: v.lab.dir + "/proxy.log"))
        try AWSLab.waitForPort(delaying, what: "the delaying proxy", log: v.lab.dir + "/proxy.log")
        return p
    }

    /// Plays the kernel and udev (attach-when-ec2-does.py, a process: the test's async tasks
    /// can wait minutes for a thread under the parallel suite): once EC2 says a volume made
    /// from `snapshot` is attached to the instance, a loop device on `image` appears with the
    /// volume's by-id link. `appeared` gives "DEVICE VOLUME", or nil.
    final class Kernel {
        let process: Process
        let out = Pipe()
        init(_ v: EBSTargetTests.Volumes, snapshot: String, image: String) throws {
            process = Process()
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["python3", Tools.helpers + "/attach-when-ec2-does.py", v.lab.endpoint, v.lab.accessKey, v.lab.secretKey,
                                 snapshot, v.lab.instance, image, v.devRoot + "/disk/by-id", "600"]
            process.standardOutput = out
            try process.run()
        }
        var appeared: String? {
            process.waitUntilExit()
            let s = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            return process.terminationStatus == 0 ? s : nil
        }
        func stop() { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
    }

    @Test func restoreFromASnapshotBringsBackItsData() async throws {
        let v = try EBSTargetTests.Volumes([("data", 1, "attach")])
        defer { v.stop() }
        let p = try Self.proxies(v)
        let section = v.section().replacingOccurrences(of: v.lab.endpoint, with: "http://127.0.0.1:\(p.delaying)")
        let c = try Cluster(.init(size: 64 << 20, net: "csums-alg sha256;", betaDevice: "ebs:" + v.lab.volume("data"), betaHostExtra: section))
        defer { c.shutdown() }
        try c.start()
        // A, then the snapshot, whose content is read off the volume while CreateSnapshot is held.
        try #require(try Tools.run("/usr/bin/qemu-io", ["-f", "raw", "-c", "write -P 0xa1 0 8M", "-c", "write -P 0xa2 40M 1M", c.uri("alpha")]).status == 0)
        try c.waitInSync()
        let image = v.lab.dir + "/snapshot.img"
        let snap = try BackgroundSnapshot(c)
        try #require(snap.heldWithin(30, marker: p.held), "CreateSnapshot never reached the proxy")
        let copy = try Tools.run("/bin/dd", ["if=\(v.loops["data"]!.device)", "of=\(image)", "bs=4M", "conv=sparse", "status=none"])
        try #require(copy.status == 0, "\(copy.err)")
        let snapshotID = snap.id
        try #require(snap.process.terminationStatus == 0 && snapshotID.hasPrefix("snap-"), "snapshot: '\(snapshotID)'")
        // The device (alpha's data area, the agreed size): past it lies alpha's meta-data.
        let bytes = try #require(try c.status("alpha")["size-kib"] as? Int) * 1024
        let atSnapshot = try c.dataHash("alpha", bytes: bytes)
        let imageHash = String(try Tools.run("/bin/sh", ["-c", "head -c \(bytes) \(image) | sha256sum"]).out.prefix(64))
        let firstDiff = try Tools.run("/bin/sh", ["-c", "cmp -n \(bytes) \(image) \(c.disk("alpha")) | head -3"]).out
        #expect(imageHash == atSnapshot, "the volume while CreateSnapshot was held is not the primary's data at the mark: \(firstDiff)")
        // B after it: the on-prem data moves on.
        try #require(try Tools.run("/usr/bin/qemu-io", ["-f", "raw", "-c", "write -P 0xb2 4M 8M", c.uri("alpha")]).status == 0)
        try c.waitInSync()
        #expect(try c.dataHash("alpha", bytes: bytes) != atSnapshot)

        // While the EC2 node is up, attach-snapshot refuses; the on-prem node stays apart.
        let busy = try c.tandem("beta", "attach-snapshot", "r0", snapshotID)
        #expect(busy.status != 0 && busy.err.contains("`tandem down r0` first"), "\(busy.err)")
        #expect(try c.tandem("alpha", "secondary", "r0").status == 0)
        #expect(try c.tandem("alpha", "disconnect", "r0").status == 0)
        c.down("beta")
        let kernel = try Kernel(v, snapshot: snapshotID, image: image)
        defer { kernel.stop() }
        let attach = try c.tandem("beta", "attach-snapshot", "r0", snapshotID)
        // Once attach-snapshot found the device, the helper has printed it and is exiting.
        let appeared = attach.status == 0 ? kernel.appeared : nil
        try #require(attach.status == 0, "attach-snapshot: \(attach.err)")
        let parts = (appeared ?? "").split(separator: " ").map(String.init)
        try #require(parts.count == 2, "no volume from the snapshot was attached")
        v.loops["restored"] = (parts[0], image)
        let newVolume = parts[1]
        #expect(attach.out.contains("\(newVolume), made from \(snapshotID), is this node's disk"), "\(attach.out)")
        let conf = try String(contentsOfFile: "\(c.dir)/beta.conf", encoding: .utf8)
        #expect(conf.contains("ebs:\(newVolume)") && !conf.contains("ebs:\(v.lab.volume("data"))"))
        #expect(FileManager.default.fileExists(atPath: "\(c.dir)/beta.conf.before-attach-snapshot"))
        // EC2's side: in the instance's zone, tagged, and the waits followed the pending states.
        let made = try #require(try await v.lab.client().describeVolumes(ids: [newVolume]).first)
        #expect(made.availabilityZone == "us-east-1a" && made.tags["tandem:from-snapshot"] == snapshotID && made.tags["tandem:resource"] == "r0")
        let calls = (try? String(contentsOfFile: p.standinLog, encoding: .utf8)) ?? ""
        let polls = calls.split(separator: "\n").filter { $0.hasPrefix("DescribeVolumes") && $0.contains(newVolume) }.count
        #expect(polls >= 5, "the waits did not poll through creating and attaching: \(polls) DescribeVolumes")
        #expect(attach.err.contains("waiting until it is available") && attach.err.contains("attaching to"), "\(attach.err)")
        // The old volume is untouched and still attached.
        let old = try #require(try await v.lab.client().describeVolumes(ids: [v.lab.volume("data")]).first)
        #expect(old.attachments.first?.instanceID == v.lab.instance)

        // A new generation after the snapshot's: the other node syncs from it.
        try c.up("beta")
        let generation = try #require(try await v.lab.client().describeSnapshots(ids: [snapshotID]).first?.tags["tandem:generation"])
        let uuids = try c.status("beta")["uuids"] as? [String] ?? []
        #expect(uuids.count == 4 && UInt64(uuids[0], radix: 16) != UInt64(generation, radix: 16)
                && UInt64(uuids[2], radix: 16) == UInt64(generation, radix: 16) && uuids[1] == "0000000000000000",
                "the restored volume is not a new generation after the snapshot's \(generation): \(uuids)")
        let restore = try c.tandem("alpha", "restore", "--wait", "r0")
        #expect(restore.status == 0, "restore: \(restore.err) \(c.log("alpha").suffix(1500))")
        try c.waitInSync()
        #expect(try c.dataHash("alpha", bytes: bytes) == atSnapshot, "the on-prem node does not hold the snapshot's data")
        let restoredVolume = String(try Tools.run("/bin/sh", ["-c", "head -c \(bytes) \(parts[0]) | sha256sum"]).out.prefix(64))
        #expect(restoredVolume == atSnapshot, "the volume made from the snapshot changed")
        // csums-alg: only the blocks that differ crossed (B's 8 MiB, not the 64 MiB device).
        let st = try c.status("alpha")
        let same = st["resync-same-kib"] as? Int ?? 0
        #expect(same >= 50 * 1024, "the restore moved blocks that were the same: \(st)")
    }

    /// The attacher alone (TandemAWS) through the stand-in: what it refuses, with nothing
    /// created; an archived snapshot refused with how, its restore started and then waited
    /// for; kms-key-id encrypting the new volume with that key.
    @Test func archivedSnapshotsAndRefusals() async throws {
        let v = try EBSTargetTests.Volumes([("data", 1, "attach")])
        defer { v.stop() }
        let p = try Self.proxies(v, delay: 0)
        let direct = v.lab.client()
        var through = EBSSettings()
        through.region = "us-east-1"
        through.endpoint = "http://127.0.0.1:\(p.standin)"
        through.imdsEndpoint = v.lab.imdsEndpoint
        through.deviceRoot = v.devRoot
        let creds = v.lab.credentials
        let ec2 = EC2Client(region: "us-east-1", endpoint: through.endpoint, credentials: { creds })
        let vol = v.lab.volume("data")
        func take(_ tags: [String: String]) async throws -> String { try await direct.createSnapshot(volumeID: vol, description: "t", tags: tags).id }
        let mine = try await take(["tandem:resource": "r0", "tandem:consistency": "crash-consistent"])
        let other = try await take(["tandem:resource": "r1"])
        let untagged = try await take([:])
        let inconsistent = try await take(["tandem:resource": "r0", "tandem:consistency": "inconsistent"])
        func attacher(_ change: (inout SnapshotAttacher) -> Void = { _ in }) -> SnapshotAttacher {
            var a = SnapshotAttacher(settings: through, resource: "r0")
            a.environment = [:]
            a.deviceLimit = 60
            change(&a)
            return a
        }
        let volumesBefore = try await direct.describeVolumes(ids: []).count
        for (snap, expect) in [("snap-0123456789abcdef0", "does not exist"), ("vol-1", "is not an EBS snapshot id"),
                               (other, "is not a Tandem snapshot of r0 (its tandem:resource tag is 'r1')"),
                               (untagged, "its tandem:resource tag is missing"), (inconsistent, "taken of an inconsistent disk")] {
            await #expect { try await attacher().run(snapshotID: snap) } throws: { e in
                "\(e)".contains(expect) && "\(e)".contains("--force") == (snap == other || snap == untagged || snap == inconsistent) && !"\(e)".contains("\n")
            }
        }
        #expect(try await direct.describeVolumes(ids: []).count == volumesBefore, "a refused attach created a volume")

        // Archived: refused with how; --restore-archive starts it; again without --wait is
        // refused while it runs; with --wait it waits, then the volume is made.
        try await ec2.archive(snapshot: mine)
        await #expect { try await attacher().run(snapshotID: mine) } throws: { e in
            "\(e)".contains("is in the archive tier") && "\(e)".contains("--restore-archive DAYS")
        }
        let started = try await attacher { $0.restoreArchiveDays = 3 }.run(snapshotID: mine)
        #expect(started == .archiveRestoreStarted(snapshotID: mine))
        let log = { (try? String(contentsOfFile: p.standinLog, encoding: .utf8)) ?? "" }
        #expect(log().contains("RestoreSnapshotTier SnapshotId=\(mine) TemporaryRestoreDays=3"), "\(log())")
        await #expect { try await attacher().run(snapshotID: mine) } throws: { e in
            "\(e)".contains("is being restored from the archive tier") && "\(e)".contains("--wait")
        }
        let image = Tools.sparseFile(1 << 30)
        defer { unlink(image) }
        let kernel = try Kernel(v, snapshot: mine, image: image)
        defer { kernel.stop() }
        let kms = "arn:aws:kms:us-east-1:123456789012:key/0a1b2c3d-0000-4000-8000-000000000001"
        let done = try await attacher { $0.waitForArchive = true; $0.settings.kmsKeyID = kms }.run(snapshotID: mine)
        let appeared = kernel.appeared
        let parts = (appeared ?? "").split(separator: " ").map(String.init)
        if parts.count == 2 { v.loops["restored"] = (parts[0], image) }
        guard case .attached(let newVolume, let path, _) = done else { Issue.record("\(done)"); return }
        #expect(parts.count == 2 && parts[1] == newVolume && path == parts[0], "\(done) \(parts)")
        #expect(log().contains("DescribeSnapshotTierStatus"), "the restore was not waited for")
        let made = try #require(try await direct.describeVolumes(ids: [newVolume]).first)
        #expect(made.encrypted && made.kmsKeyID == kms && made.snapshotID == mine && made.availabilityZone == "us-east-1a", "\(made)")
    }
}
