import Foundation
import Testing

/// The README's failover and failback runbook, command for command (#10 item 3): the primary
/// (on premises) is lost, the secondary (EC2) is promoted with a plain `primary`, written to,
/// the old primary comes back, `restore` brings it what it missed, and the roles switch back.
@Suite(.serialized) struct FailoverTests {
    @Test func failoverAndFailbackByTheRunbook() throws {
        // compression lz4, not auto: on loopback a resync can leave faster than auto's 300 MB/s
        // threshold, and the link here stands for the WAN to EC2.
        let c = try Cluster(.init(size: 128 << 20, net: "compression lz4;"))
        defer { c.shutdown() }
        try c.start()
        let size = try c.exportSize
        // Before: data written on premises, replicated (protocol C).
        try #require(try Tools.run("/usr/bin/qemu-io", ["-f", "raw", "-c", "write -P 0x11 0 64M", c.uri("alpha")]).status == 0)
        // 1. The on-prem node is lost.
        let pid = try #require(c.pid("alpha"))
        try #require(kill(pid, SIGKILL) == 0)
        while kill(pid, 0) == 0 { usleep(20_000) }
        try c.wait("beta", timeout: 30, "the peer gone") { $0["connection"] as? String == "WFConnection" }
        // status says at each step where the good copy is.
        let lost = try holds(c, "beta")
        #expect(lost.hasPrefix("UpToDate when last connected;") && lost.contains("promote this node only if the peer is lost"), "\(lost)")
        // 2. On EC2: `tandem primary r0` (no --force: under fencing dont-care its disk stays UpToDate).
        let promote = try c.tandem("beta", "primary", "r0")
        #expect(promote.status == 0, "\(promote.err)")
        // The application goes on there: 5% of the device's 4 KiB blocks written.
        let src = c.dir + "/random.bin"
        try Tools.run("/bin/sh", ["-c", "head -c \(8 << 20) /dev/urandom > \(src)"])
        let scatter = try Tools.run("/usr/bin/python3", [Tools.helpers + "/scatter-pages.py", c.uri("beta"), src, "0.05", "3"])
        try #require(scatter.status == 0, "\(scatter.err)")
        let written = try c.status("beta")["out-of-sync-kib"] as? Int ?? 0
        #expect(written >= size / 1024 / 20 - 64, "beta marked \(written) KiB")
        let newest = try holds(c, "beta")
        #expect(newest.hasPrefix("the newest data (Primary);") && newest.contains("\(written) KiB changed since the peer was last connected"), "\(newest)")
        // 3. The on-prem node is back: `tandem up r0`, then `tandem restore --wait r0`.
        try c.up("alpha")
        let restore = try c.tandem("alpha", "restore", "--wait", "r0")
        #expect(restore.status == 0, "\(restore.err)")
        let wire = try bytesReceived(c, node: "alpha")
        let moved = c.log("alpha").matches(of: /Began resync as SyncTarget \(will sync (\d+) KB/).compactMap { Int($0.1) }.last ?? -1
        print("failback: \(moved) KB resynced (\(written) KiB written on EC2), \(wire) bytes received by alpha, device \(size / 1024) KiB")
        // The resync covers what EC2 wrote plus the extents the crashed primary's activity log
        // held (64 MiB were being written when it died), as DRBD does; what crosses the link is
        // about the 5% written on EC2 (the extents' blocks are the same on both sides and go
        // compressed), not the device.
        #expect(moved >= written, "the failback resynced \(moved) KB for \(written) KiB written")
        #expect(wire < written * 1024 * 13 / 10, "alpha received \(wire) bytes for \(written) KiB written on EC2")
        #expect(try c.dataHash("alpha", bytes: size) == c.dataHash("beta", bytes: size))
        #expect(try holds(c, "alpha") == "in sync with the peer (both UpToDate); restore here would pull every block again (\(size >> 20) MiB)")
        #expect(try holds(c, "beta") == "in sync with the peer (both UpToDate)")
        // 4. Switch back: `tandem secondary r0` on EC2, `tandem primary r0` on premises.
        #expect(try c.tandem("beta", "secondary", "r0").status == 0)
        let back = try c.tandem("alpha", "primary", "r0")
        #expect(back.status == 0, "\(back.err)")
        try #require(try Tools.run("/usr/bin/qemu-io", ["-f", "raw", "-c", "write -P 0x22 100M 1M", c.uri("alpha")]).status == 0)
        try c.waitInSync()
        #expect(try c.dataHash("alpha", bytes: size) == c.dataHash("beta", bytes: size))
    }

    func holds(_ c: Cluster, _ node: String) throws -> String { try c.status(node)["holds"] as? String ?? "(no holds)" }

    /// Bytes a node received on its replication connections (kernel counters).
    func bytesReceived(_ c: Cluster, node: String) throws -> Int {
        let (mine, theirs) = node == "alpha" ? (c.ports.0, c.ports.1) : (c.ports.1, c.ports.0)
        let r = try Tools.run("/usr/bin/ss", ["-tinH", "state", "established", "( sport = :\(mine) or dport = :\(theirs) )"])
        return r.out.matches(of: /bytes_received:(\d+)/).reduce(0) { $0 + (Int($1.1) ?? 0) }
    }
}
