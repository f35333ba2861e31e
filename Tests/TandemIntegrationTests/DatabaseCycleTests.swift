import Foundation
import Testing

/// A node's NBD export as a block device with a filesystem: nbdfuse exposes the export as a
/// file, a loop device goes on that file, ext4 on the loop device (this machine has no nbd
/// module).
final class ExportVolume {
    let work: String
    let device: String
    var mountPoint: String { work + "/fs" }
    private let fuse: Process

    init(uri: String) throws {
        work = NSTemporaryDirectory() + "tandem-vol-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: work + "/fuse", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: work + "/fs", withIntermediateDirectories: true)
        fuse = try Tools.spawn("/usr/bin/nbdfuse", [work + "/fuse/disk", uri])
        for _ in 0..<100 where !FileManager.default.fileExists(atPath: work + "/fuse/disk") { usleep(100_000) }
        let l = try Tools.run("/usr/sbin/losetup", ["-f", "--show", work + "/fuse/disk"])
        guard l.status == 0 else { fuse.terminate(); throw TestFailure("losetup: \(l.err)") }
        device = l.out.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func mkfs() throws {
        let r = try Tools.run("/usr/sbin/mkfs.ext4", ["-q", "-F", device])
        guard r.status == 0 else { throw TestFailure("mkfs.ext4: \(r.err)") }
    }

    func mount() throws {
        let r = try Tools.run("/usr/bin/mount", [device, mountPoint])
        guard r.status == 0 else { throw TestFailure("mount \(device): \(r.err)") }
    }

    func unmount() throws {
        let r = try Tools.run("/usr/bin/umount", [mountPoint])
        guard r.status == 0 else { throw TestFailure("umount: \(r.err)") }
    }

    /// e2fsck's verdict on the unmounted filesystem: exit status 0 is clean.
    func fsck() throws -> Tools.Result { try Tools.run("/usr/sbin/e2fsck", ["-f", "-n", device]) }

    /// Lazily: the export behind it may be gone (its daemon killed).
    func remove() {
        // A test that froze it (fsfreeze) and failed half way must not leave it frozen.
        _ = try? Tools.run("/usr/sbin/fsfreeze", ["-u", mountPoint])
        _ = try? Tools.run("/usr/bin/umount", ["-l", mountPoint])
        _ = try? Tools.run("/usr/sbin/losetup", ["-d", device])
        _ = try? Tools.run("/usr/bin/umount", ["-l", work + "/fuse"])
        if fuse.isRunning { fuse.terminate() }
        try? FileManager.default.removeItem(atPath: work)
    }
}

/// #10's database cycle: PostgreSQL on ext4 on the primary's export, under a client that
/// commits one row a transaction and logs each commit it saw. The primary's daemon is killed
/// mid-load (the DB server is lost); the secondary is promoted with a plain `primary`, its
/// filesystem checks clean after the journal replay, the database recovers and holds every
/// row the client saw committed (protocol C); it takes writes there; the old primary comes
/// back, `restore --wait`, the roles switch back, and the database on premises holds
/// everything; both disks are identical.
@Suite(.serialized) struct DatabaseCycleTests {
    let pg = Tools.helpers + "/pg-cycle.sh"

    func sh(_ args: String...) throws -> Tools.Result {
        let r = try Tools.runUnmasked("/bin/sh", [pg] + args)
        guard r.status == 0 else { throw TestFailure("pg-cycle.sh \(args.joined(separator: " ")): \(r.out) \(r.err)") }
        return r
    }

    func lines(_ path: String) -> Int {
        ((try? String(contentsOfFile: path, encoding: .utf8)) ?? "").split(separator: "\n").count
    }

    /// Runs the committing client for `seconds`, then stops it.
    func load(_ mount: String, _ port: Int, phase: String, log: String, seconds: UInt32) throws -> Process {
        let p = try Tools.spawn("/bin/sh", [pg, "load", mount, "\(port)", phase, log])
        sleep(seconds)
        return p
    }

    @Test func postgresSurvivesFailoverAndFailback() throws {
        let c = try Cluster(.init(size: 256 << 20))
        defer { c.shutdown() }
        try c.start()
        let port = c.ports.0 + 2  // the cluster's ports: its exports are Unix sockets, so this one is free
        let committed = c.dir + "/committed.log"

        // On premises: a filesystem and a database on alpha's export, and the load.
        let onprem = try ExportVolume(uri: c.uri("alpha"))
        defer { onprem.remove() }
        try onprem.mkfs()
        try onprem.mount()
        _ = try sh("init", onprem.mountPoint, "\(port)")
        let client = try load(onprem.mountPoint, port, phase: "onprem", log: committed, seconds: 4)
        // The DB server is lost mid-load.
        let pid = try #require(c.pid("alpha"))
        try #require(kill(pid, SIGKILL) == 0)
        while kill(pid, 0) == 0 { usleep(20_000) }
        for _ in 0..<100 where client.isRunning { usleep(100_000) }
        if client.isRunning { client.terminate() }
        _ = try? sh("kill", onprem.mountPoint)
        onprem.remove()
        let seenOnPrem = lines(committed)
        #expect(seenOnPrem >= 20, "the client saw only \(seenOnPrem) commits on premises")

        // On EC2: a plain `primary`; the filesystem checks clean once its journal is replayed.
        try c.wait("beta", timeout: 30, "the peer gone") { $0["connection"] as? String == "WFConnection" }
        let promote = try c.tandem("beta", "primary", "r0")
        #expect(promote.status == 0, "\(promote.err)")
        let ec2 = try ExportVolume(uri: c.uri("beta"))
        defer { ec2.remove() }
        try ec2.mount()
        try ec2.unmount()
        let check = try ec2.fsck()
        #expect(check.status == 0, "e2fsck on EC2: \(check.out) \(check.err)")
        try ec2.mount()
        _ = try sh("start", ec2.mountPoint, "\(port)")
        let afterFailover = try sh("check", ec2.mountPoint, "\(port)", committed).out
        #expect(afterFailover.contains("missing=0"), "after the failover: \(afterFailover)")
        print("database cycle: \(seenOnPrem) commits seen on premises; on EC2 after the failover: \(afterFailover)")
        // The application goes on on EC2.
        let ec2Client = try load(ec2.mountPoint, port, phase: "ec2", log: committed, seconds: 2)
        ec2Client.terminate()
        ec2Client.waitUntilExit()
        _ = try sh("stop", ec2.mountPoint)
        try ec2.unmount()
        ec2.remove()
        let seenTotal = lines(committed)
        #expect(seenTotal > seenOnPrem, "no commits on EC2")

        // Failback: the on-prem node comes back, restores, and the roles switch back.
        try c.up("alpha")
        let restore = try c.tandem("alpha", "restore", "--wait", "r0")
        #expect(restore.status == 0, "\(restore.err)")
        #expect(try c.tandem("beta", "secondary", "r0").status == 0)
        let back = try c.tandem("alpha", "primary", "r0")
        #expect(back.status == 0, "\(back.err)")
        let home = try ExportVolume(uri: c.uri("alpha"))
        defer { home.remove() }
        try home.mount()
        _ = try sh("start", home.mountPoint, "\(port)")
        let afterFailback = try sh("check", home.mountPoint, "\(port)", committed).out
        #expect(afterFailback.contains("missing=0"), "after the failback: \(afterFailback)")
        let rows = Int(afterFailback.firstMatch(of: /rows=(\d+)/).map { String($0.1) } ?? "") ?? 0
        #expect(rows >= seenTotal, "after the failback the table has \(rows) rows; the client saw \(seenTotal) commits")
        print("database cycle: \(seenTotal) commits seen in all; on premises after the failback: \(afterFailback)")
        _ = try sh("stop", home.mountPoint)
        try home.unmount()
        home.remove()
        try c.waitInSync(timeout: 60)
        let size = try c.exportSize
        #expect(try c.dataHash("alpha", bytes: size) == c.dataHash("beta", bytes: size))
    }
}
