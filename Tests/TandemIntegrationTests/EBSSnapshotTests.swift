import Foundation
import Testing
import TandemAWS

/// `tandem snapshot` against moto with a delaying proxy in front of it (moto answers
/// CreateSnapshot at once): the EC2 node takes the snapshot exactly at the Primary's mark, holds
/// later writes while the call runs, tags it, and lets the writes go on afterwards.
@Suite(.serialized) struct EBSSnapshotTests {
    @Test func aSnapshotIsTakenAtTheMarkWhileLaterWritesWait() async throws {
        let v = try EBSTargetTests.Volumes([("data", 1, "attach")])
        defer { v.stop() }
        let proxyPort = Cluster.reservePorts()
        let marker = v.lab.dir + "/held"
        let proxy = try AWSLab.spawn("/usr/bin/env", ["python3", Tools.helpers + "/delay-proxy.py", "\(proxyPort)", "\(v.lab.motoPort)",
                                                      "CreateSnapshot", "3", marker], log: v.lab.dir + "/proxy.log")
        v.lab.processes.append(proxy)
        try AWSLab.waitForPort(proxyPort, what: "the delaying proxy", log: v.lab.dir + "/proxy.log")
        let section = v.section().replacingOccurrences(of: v.lab.endpoint, with: "http://127.0.0.1:\(proxyPort)")
        let c = try Cluster(.init(size: 64 << 20, betaDevice: "ebs:" + v.lab.volume("data"), betaHostExtra: section))
        defer { c.shutdown() }
        try c.start()
        // A: written and replicated.
        try #require(try Tools.run("/usr/bin/qemu-io", ["-f", "raw", "-c", "write -P 0xa1 0 4M", c.uri("alpha")]).status == 0)
        try c.waitInSync()
        let beta = v.loops["data"]!.device
        func region() throws -> String { String(try Tools.run("/bin/sh", ["-c", "head -c 8388608 \(beta) | sha256sum"]).out.prefix(64)) }
        let afterA = try region()
        // The snapshot, and B behind it.
        let snap = try BackgroundSnapshot(c)
        try #require(snap.heldWithin(20, marker: marker), "CreateSnapshot never reached the proxy: \(c.log("beta").suffix(1500))")
        let writeB = Process()
        writeB.executableURL = URL(fileURLWithPath: "/usr/bin/qemu-io")
        writeB.arguments = ["-f", "raw", "-c", "write -P 0xb2 4M 4M", c.uri("alpha")]
        writeB.standardOutput = FileHandle.nullDevice
        try writeB.run()
        usleep(800_000)
        // While CreateSnapshot runs: the volume holds A and not B, and B (protocol C) waits.
        #expect(try region() == afterA, "the volume changed while the snapshot was being taken")
        #expect(writeB.isRunning, "a protocol C write completed while the EC2 node held writes")
        let id = snap.id
        writeB.waitUntilExit()
        #expect(snap.process.terminationStatus == 0 && id.hasPrefix("snap-"), "snapshot printed '\(id)'")
        #expect(writeB.terminationStatus == 0)
        try c.waitInSync()
        #expect(try region() != afterA, "B never reached the volume")
        // The tags name the epoch the mark followed (alpha's log) and the data generation.
        let ec2 = v.lab.client()
        let snaps = try await ec2.describeSnapshots(tag: ("tandem:resource", "r0"))
        try #require(snaps.count == 1 && snaps[0].id == id, "\(snaps.map(\.id))")
        let tags = snaps[0].tags
        let markLine = c.log("alpha").split(separator: "\n").last { $0.contains("snapshot: mark") } ?? ""
        #expect(markLine.hasSuffix("after epoch \(tags["tandem:epoch"] ?? "?") sent to the peer"), "\(markLine) vs \(tags)")
        #expect(tags["tandem:consistency"] == "crash-consistent" && tags["team"] == "db" && tags["tandem:generation"] != nil, "\(tags)")
        #expect(snaps[0].volumeID == v.lab.volume("data"))
        // On the EC2 node itself: at its own epoch boundary.
        let local = try c.tandem("beta", "snapshot", "r0")
        #expect(local.status == 0 && local.out.hasPrefix("snap-"), "\(local.err)")
        let listed = try c.tandem("beta", "snapshots", "r0")
        #expect(listed.status == 0 && listed.out.contains(id) && listed.out.contains(local.out.trimmingCharacters(in: .whitespacesAndNewlines)),
                "\(listed.out) \(listed.err)")
        // Each line has its state, tier, epoch, consistency and the ebs section's tags.
        let line = listed.out.split(separator: "\n").first { $0.hasPrefix(id) } ?? ""
        #expect(line.contains("completed") && line.contains("standard") && line.contains(" \(tags["tandem:epoch"] ?? "?") ")
                && line.contains("crash-consistent") && line.hasSuffix("env=test,team=db"), "\(line)")
    }

    /// CreateSnapshot slower than snapshot-hold-limit: the writes are released, the snapshot is
    /// reported failed, and the late one is deleted.
    @Test func aSlowCreateSnapshotReleasesTheWrites() async throws {
        let v = try EBSTargetTests.Volumes([("data", 1, "attach")])
        defer { v.stop() }
        let proxyPort = Cluster.reservePorts()
        let proxy = try AWSLab.spawn("/usr/bin/env", ["python3", Tools.helpers + "/delay-proxy.py", "\(proxyPort)", "\(v.lab.motoPort)",
                                                      "CreateSnapshot", "4", v.lab.dir + "/held"], log: v.lab.dir + "/proxy.log")
        v.lab.processes.append(proxy)
        try AWSLab.waitForPort(proxyPort, what: "the delaying proxy", log: v.lab.dir + "/proxy.log")
        let section = v.section().replacingOccurrences(of: v.lab.endpoint, with: "http://127.0.0.1:\(proxyPort)")
            .replacingOccurrences(of: "ebs {", with: "ebs { snapshot-hold-limit 1;")
        let c = try Cluster(.init(size: 64 << 20, betaDevice: "ebs:" + v.lab.volume("data"), betaHostExtra: section))
        defer { c.shutdown() }
        try c.start()
        let start = Date()
        let r = try c.tandem("alpha", "snapshot", "r0")
        #expect(r.status != 0 && r.err.contains("did not return within 1 s"), "\(r.err)")
        #expect(Date().timeIntervalSince(start) < 4, "the command waited for the slow call")
        try #require(try Tools.run("/usr/bin/qemu-io", ["-f", "raw", "-c", "write -P 0x33 0 1M", c.uri("alpha")]).status == 0)
        // The late snapshot is deleted once CreateSnapshot returns.
        let ec2 = v.lab.client()
        var left = -1
        for _ in 0..<40 {
            left = try await ec2.describeSnapshots(tag: ("tandem:resource", "r0")).count
            if left == 0 && c.log("beta").contains("returned after the hold limit") { break }
            usleep(250_000)
        }
        #expect(left == 0 && c.log("beta").contains("returned after the hold limit; deleting it"), "\(c.log("beta").suffix(1200))")
    }

    /// The policy in the daemon: snapshot-after-resync takes one when a resync to the EC2 node
    /// completes (the initial sync, then one after a disconnect), snapshot-keep-last 1 prunes
    /// the older, and the operator's own snapshot stays.
    @Test func thePolicyTakesOneAfterEachResyncAndPrunes() async throws {
        let v = try EBSTargetTests.Volumes([("data", 1, "attach")])
        defer { v.stop() }
        let ec2 = v.lab.client()
        let operators = try await ec2.createSnapshot(volumeID: v.lab.volume("data"), description: "the operator's own", tags: [:])
        let section = v.section().replacingOccurrences(of: "ebs {", with: "ebs { snapshot-after-resync yes; snapshot-keep-last 1;")
        let c = try Cluster(.init(size: 64 << 20, betaDevice: "ebs:" + v.lab.volume("data"), betaHostExtra: section))
        defer { c.shutdown() }
        try c.start()
        func mine() async throws -> [EC2Snapshot] { try await ec2.describeSnapshots(tag: ("tandem:resource", "r0")) }
        func waitFor(_ what: String, _ check: ([EC2Snapshot]) -> Bool) async throws -> [EC2Snapshot] {
            var last: [EC2Snapshot] = []
            for _ in 0..<120 {
                last = try await mine()
                if check(last) { return last }
                usleep(250_000)
            }
            throw TestFailure("\(what): \(last.map(\.id)); beta: \(c.log("beta").suffix(1500))")
        }
        let first = try await waitFor("a snapshot after the initial sync") { $0.count == 1 }
        #expect(first[0].tags["tandem:consistency"] == "crash-consistent")
        // Apart, a write, together again: a resync, then one more snapshot and the first pruned.
        #expect(try c.tandem("beta", "disconnect", "r0").status == 0)
        try #require(try Tools.run("/usr/bin/qemu-io", ["-f", "raw", "-c", "write -P 0x5c 1M 2M", c.uri("alpha")]).status == 0)
        #expect(try c.tandem("beta", "connect", "r0").status == 0)
        try c.waitInSync()
        let second = try await waitFor("the first pruned after a second snapshot") { $0.count == 1 && $0[0].id != first[0].id }
        let log = c.log("beta")
        let resynced = log.range(of: "SyncTarget", options: .backwards)
        let taken = log.range(of: "snapshot policy: \(second[0].id) taken (after a resync)")
        #expect(resynced != nil && taken != nil && resynced!.lowerBound < taken!.lowerBound, "\(log.suffix(2000))")
        #expect(log.contains("snapshot policy: deleted \(first[0].id)"))
        let all = Set(try await ec2.describeSnapshots().filter { $0.volumeID == v.lab.volume("data") }.map(\.id))
        #expect(all == [operators.id, second[0].id], "\(all)")
    }

    /// Application-consistent: ext4 on the Primary's export, a writer busy on it, and
    /// before-snapshot / after-snapshot handlers that freeze and thaw it (fsfreeze). What the
    /// volume holds while CreateSnapshot runs (the snapshot's content) is a filesystem that
    /// needs no journal recovery and checks clean, and the snapshot is tagged so. Without the
    /// handlers the same reading is a mounted filesystem's (needs_recovery): the handlers are
    /// what makes the difference.
    @Test(arguments: [true, false])
    func aFrozenFilesystemMakesAnApplicationConsistentSnapshot(handlers: Bool) async throws {
        let v = try EBSTargetTests.Volumes([("data", 1, "attach")])
        defer { v.stop() }
        let proxyPort = Cluster.reservePorts()
        let marker = v.lab.dir + "/held"
        v.lab.processes.append(try AWSLab.spawn("/usr/bin/env", ["python3", Tools.helpers + "/delay-proxy.py", "\(proxyPort)", "\(v.lab.motoPort)",
                                                                "CreateSnapshot", "3", marker], log: v.lab.dir + "/proxy.log"))
        try AWSLab.waitForPort(proxyPort, what: "the delaying proxy", log: v.lab.dir + "/proxy.log")
        let section = v.section().replacingOccurrences(of: v.lab.endpoint, with: "http://127.0.0.1:\(proxyPort)")
        let mountFile = v.lab.dir + "/mountpoint"
        let handlerLog = v.lab.dir + "/handlers.log"
        let h = handlers ? "before-snapshot \"echo before >> \(handlerLog); fsfreeze -f $(cat \(mountFile))\"; after-snapshot \"fsfreeze -u $(cat \(mountFile)); echo after >> \(handlerLog)\";" : ""
        let c = try Cluster(.init(size: 64 << 20, handlers: h, betaDevice: "ebs:" + v.lab.volume("data"), betaHostExtra: section))
        defer { c.shutdown() }
        try c.start()
        let fs = try ExportVolume(uri: c.uri("alpha"))
        defer { fs.remove() }
        try fs.mkfs()
        try fs.mount()
        try fs.mountPoint.write(toFile: mountFile, atomically: true, encoding: .utf8)
        let writer = try Tools.spawn("/bin/sh", ["-c", "i=0; while true; do i=$((i+1)); dd if=/dev/urandom of=\(fs.mountPoint)/f$((i % 50)) bs=64k count=4 conv=fsync 2>/dev/null; done"])
        defer { kill(writer.processIdentifier, SIGKILL) }
        usleep(1_000_000)
        let snap = try BackgroundSnapshot(c)
        try #require(snap.heldWithin(30, marker: marker), "CreateSnapshot never reached the proxy: \(c.log("alpha").suffix(1500))")
        // The snapshot's content: the volume while the call is held.
        let image = v.lab.dir + "/image"
        #expect(try Tools.run("/bin/sh", ["-c", "head -c \(64 << 20) \(v.loops["data"]!.device) > \(image)"]).status == 0)
        let id = snap.id
        #expect(snap.process.terminationStatus == 0 && id.hasPrefix("snap-"), "snapshot printed '\(id)': \(c.log("alpha").suffix(1500))")
        #expect(writer.isRunning, "the writer stopped (the filesystem stayed frozen?)")
        let features = try Tools.run("/usr/sbin/dumpe2fs", ["-h", image]).out.split(separator: "\n").first { $0.hasPrefix("Filesystem features") } ?? ""
        let check = try Tools.run("/usr/sbin/e2fsck", ["-f", "-n", image])
        let tags = try await v.lab.client().describeSnapshots(ids: [id]).first?.tags ?? [:]
        if handlers {
            #expect(!features.isEmpty && !features.contains("needs_recovery"), "\(features)")
            #expect(check.status == 0, "e2fsck: \(check.status) \(check.out.suffix(800))")
            #expect(tags["tandem:consistency"] == "application-consistent", "\(tags)")
            let calls = (try? String(contentsOfFile: handlerLog, encoding: .utf8)) ?? ""
            #expect(calls == "before\nafter\n", "\(calls)")
            // Thawed: a write and sync complete (a frozen filesystem blocks them).
            let probe = try Tools.run("/usr/bin/timeout", ["20", "/bin/sh", "-c", "echo x > \(fs.mountPoint)/probe && sync -f \(fs.mountPoint)/probe"])
            #expect(probe.status == 0, "the filesystem stayed frozen after the snapshot")
            _ = try? Tools.run("/usr/sbin/fsfreeze", ["-u", fs.mountPoint])
        } else {
            #expect(features.contains("needs_recovery"), "a mounted filesystem's image without a freeze: \(features)")
            #expect(tags["tandem:consistency"] == "crash-consistent", "\(tags)")
        }
        kill(writer.processIdentifier, SIGKILL)
        writer.waitUntilExit()
        try fs.unmount()
    }
}

/// `tandem snapshot r0` on alpha run in the background, for tests that read the volume while
/// the delaying proxy holds CreateSnapshot: `heldWithin` waits for the proxy's marker file,
/// `id` waits for the command to end and gives what it printed.
final class BackgroundSnapshot {
    let process = Process()
    let out = Pipe()

    init(_ c: Cluster) throws {
        process.executableURL = URL(fileURLWithPath: Tools.tandem)
        process.arguments = ["-c", "\(c.dir)/alpha.conf", "--node", "alpha", "snapshot", "r0"]
        process.environment = ["TANDEM_RUN_DIR": c.runDir("alpha")]
        process.standardOutput = out
        try process.run()
    }

    /// Whether CreateSnapshot reached the proxy (its `marker` file exists) within `seconds`.
    func heldWithin(_ seconds: Double, marker: String) -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while !FileManager.default.fileExists(atPath: marker) && Date() < deadline { usleep(20_000) }
        return FileManager.default.fileExists(atPath: marker)
    }

    /// What the command printed (the snapshot's id), once it ended.
    var id: String {
        process.waitUntilExit()
        return String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
