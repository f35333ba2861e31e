import Foundation
import Testing

/// #12 item 6, as a new user met it: the secondary's disk is a file on a filesystem that fills
/// up during the full sync (ENOSPC). With on-io-error pass_on the secondary refuses the write
/// and drops the link, and the nodes reconnect with a growing wait instead of about 13 times a
/// second, with repeated log lines limited; when space returns the sync resumes and ends
/// identical. With detach (the default) the secondary goes Diskless and stays connected; once
/// space returns, `down` and `up` bring its disk back and the sync ends identical.
@Suite struct DiskFullTests {
    /// A tmpfs of 20 MiB holding beta's 40 MiB sparse disk: its meta-data (at the end) is
    /// written by create-md, its data fills the filesystem half way through the sync.
    final class SmallFilesystem {
        let mount = NSTemporaryDirectory() + "tandem-full-\(UUID().uuidString.prefix(8))"
        var disk: String { mount + "/beta.img" }
        init() throws {
            try FileManager.default.createDirectory(atPath: mount, withIntermediateDirectories: true)
            let r = try Tools.run("/bin/mount", ["-t", "tmpfs", "-o", "size=20m", "tmpfs", mount])
            guard r.status == 0 else { throw TestFailure("mount tmpfs: \(r.err)") }
            FileManager.default.createFile(atPath: disk, contents: nil)
            truncate(disk, off_t(40 << 20))
        }
        func grow() throws {
            let r = try Tools.run("/bin/mount", ["-o", "remount,size=64m", mount])
            guard r.status == 0 else { throw TestFailure("remount: \(r.err)") }
        }
        func remove() {
            _ = try? Tools.run("/bin/umount", ["-l", mount])
            try? FileManager.default.removeItem(atPath: mount)
        }
    }

    @Test func aSecondaryWhoseFilesystemFillsBacksOffAndResumes() throws {
        let fs = try SmallFilesystem()
        defer { fs.remove() }
        let c = try Cluster(.init(wireProtocol: "C", size: 40 << 20, net: "compression off;",
                                  disk: "c-max-rate 100M; on-io-error pass_on;", betaDevice: fs.disk))
        defer { c.shutdown() }
        // alpha's data is not zeroes (random data does not compress away, and every block moves).
        try #require(try Tools.run("/bin/sh", ["-c", "head -c \(36 << 20) /dev/urandom | dd of=\(c.disk("alpha")) conv=notrunc status=none"]).status == 0)
        // Count the connection attempts: SYNs to either replication port.
        let table = "tandem_syn_\(c.ports.0)"
        for cmd in [["add", "table", "inet", table], ["add", "chain", "inet", table, "input", "{ type filter hook input priority 0; }"],
                    ["add", "rule", "inet", table, "input", "tcp", "dport", "{ \(c.ports.0), \(c.ports.1) }", "tcp", "flags", "&", "(syn|ack)", "==", "syn", "counter"]] {
            let r = try Tools.run("/usr/sbin/nft", cmd)
            try #require(r.status == 0, "nft \(cmd.joined(separator: " ")): \(r.err)")
        }
        defer { _ = try? Tools.run("/usr/sbin/nft", ["delete", "table", "inet", table]) }
        func syns() throws -> Int {
            let out = try Tools.run("/usr/sbin/nft", ["list", "table", "inet", table]).out
            return Int(out.components(separatedBy: "counter packets ").dropFirst().first?.prefix { $0.isNumber } ?? "") ?? -1
        }
        for n in c.nodes { try c.up(n) }
        try c.wait("alpha", timeout: 30, "connected") { $0["connection"] as? String == "Connected" }
        #expect(try c.tandem("alpha", "primary", "--force", "r0").status == 0)
        // The sync runs into the full filesystem.
        try c.wait("beta", timeout: 60, "the write error") { s in (s["last-error"] as? String ?? "").contains("No space left") }
        let linesAt = c.nodes.map { c.log($0).split(separator: "\n").count }
        let synsAt = try syns()
        sleep(20)
        let attempts = try syns() - synsAt
        let newLines = c.nodes.enumerated().map { i, n in c.log(n).split(separator: "\n").dropFirst(linesAt[i]) }
        // 13 reconnects a second would be over 500 SYNs in 20 s; the backoff allows about 8.
        #expect(attempts >= 2 && attempts <= 40, "\(attempts) connection attempts in 20 s while the disk is full")
        // State changes are never limited (a handful per attempt, which the backoff bounds);
        // the repeated error lines are.
        let repeated = newLines.map { $0.filter { !$0.contains(" notice ") }.count }
        let states = newLines.map { $0.filter { $0.contains(" notice ") }.count }
        #expect(repeated.allSatisfy { $0 <= 40 }, "other log lines in 20 s while the disk is full: \(repeated)\n\(c.log("beta").suffix(3000))")
        #expect(states.allSatisfy { $0 <= 10 * max(attempts, 1) }, "state lines \(states) for \(attempts) attempts")
        // Space returns: the sync resumes (within the longest wait, connect-int 10 s) and ends
        // identical.
        try fs.grow()
        try c.waitInSync(timeout: 120)
        let area = try #require(try c.status("alpha")["data-area-kib"] as? Int) * 1024
        #expect(try c.dataHash("alpha", bytes: area) == (try c.dataHash("beta", bytes: area)), "the disks differ")
        print("DiskFullTests: \(attempts) connection attempts and \(repeated) other and \(states) state log lines in 20 s with the secondary's filesystem full")
    }

    @Test func aSecondaryWhoseFilesystemFillsDetachesAndComesBack() throws {
        let fs = try SmallFilesystem()
        defer { fs.remove() }
        let c = try Cluster(.init(wireProtocol: "C", size: 40 << 20, net: "compression off;", disk: "c-max-rate 100M;", betaDevice: fs.disk))
        defer { c.shutdown() }
        try #require(try Tools.run("/bin/sh", ["-c", "head -c \(36 << 20) /dev/urandom | dd of=\(c.disk("alpha")) conv=notrunc status=none"]).status == 0)
        for n in c.nodes { try c.up(n) }
        try c.wait("alpha", timeout: 30, "connected") { $0["connection"] as? String == "Connected" }
        #expect(try c.tandem("alpha", "primary", "--force", "r0").status == 0)
        try c.wait("beta", timeout: 60, "the detach") { $0["disk"] as? String == "Diskless" }
        // Connected with a Diskless peer: no reconnects, the primary marks what beta misses.
        try c.wait("alpha", timeout: 30, "Connected to a Diskless peer") {
            $0["connection"] as? String == "Connected" && $0["peer-disk"] as? String == "Diskless"
        }
        let b = try c.status("beta")
        #expect((b["disk-error"] as? String ?? "").contains("No space left on device"), "\(b)")
        let linesAt = c.nodes.map { c.log($0).split(separator: "\n").count }
        sleep(5)
        #expect(try c.status("alpha")["connection"] as? String == "Connected")
        let lines = c.nodes.enumerated().map { i, n in c.log(n).split(separator: "\n").count - linesAt[i] }
        #expect(lines.allSatisfy { $0 <= 5 }, "log lines in 5 s with the secondary detached: \(lines)")
        // Writes go on while beta is Diskless; they are marked for it.
        let w = try Tools.run("/usr/bin/python3", [Tools.helpers + "/aio-writes.py", c.uri("alpha"), "10", "0"])
        #expect(w.out.contains("\"failed\": []"), "\(w.out)")
        // Space returns; the operator brings the disk back.
        try fs.grow()
        c.down("beta")
        try c.up("beta")
        try c.waitInSync(timeout: 120)
        let area = try #require(try c.status("alpha")["data-area-kib"] as? Int) * 1024
        #expect(try c.dataHash("alpha", bytes: area) == (try c.dataHash("beta", bytes: area)), "the disks differ")
    }
}
