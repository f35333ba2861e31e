import Foundation
import Testing

/// #12 item 6, as a new user met it: the secondary's disk is a file on a filesystem that fills
/// up during the full sync (ENOSPC). The secondary refuses the write and drops the link, and the
/// nodes reconnect with a growing wait instead of about 13 times a second, with repeated log
/// lines limited; when space returns the sync resumes and ends identical.
@Suite struct DiskFullTests {
    @Test func aSecondaryWhoseFilesystemFillsBacksOffAndResumes() throws {
        let mount = NSTemporaryDirectory() + "tandem-full-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: mount, withIntermediateDirectories: true)
        try #require(try Tools.run("/bin/mount", ["-t", "tmpfs", "-o", "size=20m", "tmpfs", mount]).status == 0)
        defer {
            _ = try? Tools.run("/bin/umount", ["-l", mount])
            try? FileManager.default.removeItem(atPath: mount)
        }
        // beta's 40 MiB disk is a sparse file on 20 MiB of tmpfs: its meta-data (at the end) is
        // written by create-md, its data fills the filesystem half way through the sync.
        let betaDisk = mount + "/beta.img"
        FileManager.default.createFile(atPath: betaDisk, contents: nil)
        truncate(betaDisk, off_t(40 << 20))
        let c = try Cluster(.init(wireProtocol: "C", size: 40 << 20, net: "compression off;", disk: "c-max-rate 100M;", betaDevice: betaDisk))
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
        let lines = c.nodes.enumerated().map { i, n in c.log(n).split(separator: "\n").count - linesAt[i] }
        // 13 reconnects a second would be over 500 SYNs in 20 s; the backoff allows about 8.
        #expect(attempts >= 2 && attempts <= 40, "\(attempts) connection attempts in 20 s while the disk is full")
        #expect(lines.allSatisfy { $0 <= 60 }, "log lines in 20 s while the disk is full: \(lines)\n\(c.log("beta").suffix(3000))")
        // Space returns: the sync resumes (within the longest wait, connect-int 10 s) and ends
        // identical.
        try #require(try Tools.run("/bin/mount", ["-o", "remount,size=64m", mount]).status == 0)
        try c.waitInSync(timeout: 120)
        let area = try #require(try c.status("alpha")["data-area-kib"] as? Int) * 1024
        #expect(try c.dataHash("alpha", bytes: area) == (try c.dataHash("beta", bytes: area)), "the disks differ")
        print("DiskFullTests: \(attempts) connection attempts and \(lines) log lines in 20 s with the secondary's filesystem full")
    }
}
