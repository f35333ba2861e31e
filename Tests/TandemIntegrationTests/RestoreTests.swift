import Foundation
import Testing

/// `restore` (#10 item 1): the data comes back from the peer.
@Suite(.serialized) struct RestoreTests {
    /// Writes 24 MiB of random data through alpha (Primary) and waits until beta has it.
    func writeAndSync(_ c: Cluster) throws {
        let src = c.dir + "/data.bin"
        try Tools.run("/bin/sh", ["-c", "head -c \(24 << 20) /dev/urandom > \(src)"])
        try #require(try Tools.run("/usr/bin/nbdcopy", [src, c.uri("alpha")]).status == 0)
        try c.waitInSync()
    }

    /// A node's data area zeroed while it is down (its meta-data unchanged), then up again and
    /// Connected.
    func wipeDataArea(_ c: Cluster, _ node: String, bytes: Int) throws {
        c.down(node)
        try Tools.run("/bin/dd", ["if=/dev/zero", "of=\(c.disk(node))", "bs=1M", "count=\(bytes >> 20)", "conv=notrunc,fsync"])
        try c.up(node)
        try c.wait(node, timeout: 30, "Connected") { $0["connection"] as? String == "Connected" }
    }

    /// alpha's data area wiped under unchanged meta-data (both hold the same generation by the
    /// UUIDs): `restore --wait` pulls every block from beta and ends byte-identical.
    @Test func wipedDataAreaComesBackWhole() throws {
        let c = try Cluster(.init(size: 64 << 20))
        defer { c.shutdown() }
        try c.start()
        try writeAndSync(c)
        let size = try c.exportSize
        let want = try c.dataHash("beta", bytes: size)
        try wipeDataArea(c, "alpha", bytes: size)
        #expect(try c.dataHash("alpha", bytes: size) != want)
        let r = try c.tandem("alpha", "restore", "--wait", "r0")
        #expect(r.status == 0, "\(r.err)")
        #expect(c.log("alpha").contains("will sync \(size / 1024) KB"), "the restore did not pull the whole device")
        #expect(try c.dataHash("alpha", bytes: size) == want)
        let s = try c.status("alpha")
        #expect(s["disk"] as? String == "UpToDate" && s["out-of-sync-kib"] as? Int == 0, "\(s)")
    }

    /// Data and meta-data lost (a new disk, create-md on it): `restore` joins the full resync
    /// from the peer the UUIDs start, and waits for it with --wait.
    @Test func replacedDiskJoinsTheFullResync() throws {
        let c = try Cluster(.init(size: 64 << 20, disk: "c-max-rate 40M;"))
        defer { c.shutdown() }
        try c.start()
        try writeAndSync(c)
        let size = try c.exportSize
        c.down("alpha")
        try Tools.run("/usr/bin/truncate", ["-s", "0", c.disk("alpha")])
        try Tools.run("/usr/bin/truncate", ["-s", "\(64 << 20)", c.disk("alpha")])
        #expect(try c.tandem("alpha", "create-md", "--force", "r0").status == 0)
        try c.up("alpha")
        let r = try c.tandem("alpha", "restore", "--wait", "r0")
        #expect(r.status == 0, "\(r.err)")
        #expect(try c.dataHash("alpha", bytes: size) == c.dataHash("beta", bytes: size))
    }

    /// What restore refuses, with the reason, moving nothing: on a Primary; on the node the
    /// peer resyncs from; when this node holds writes the peer lacks (until --discard-my-data,
    /// which then pulls everything back); when the peer does not come within wfc-timeout.
    @Test func refusals() throws {
        let c = try Cluster(.init(size: 32 << 20, startup: "wfc-timeout 3;"))
        defer { c.shutdown() }
        try c.start()
        let onPrimary = try c.tandem("alpha", "restore", "r0")
        #expect(onPrimary.status != 0 && onPrimary.err.contains("Primary"), "\(onPrimary.err)")
        // alpha writes while disconnected: it holds data beta lacks.
        #expect(try c.tandem("alpha", "disconnect", "r0").status == 0)
        try #require(try Tools.run("/usr/bin/qemu-io", ["-f", "raw", "-c", "write -P 0x3c 1M 1M", c.uri("alpha")]).status == 0)
        #expect(try c.tandem("alpha", "secondary", "r0").status == 0)
        let newer = try c.tandem("alpha", "restore", "r0")
        #expect(newer.status != 0 && newer.err.contains("holds data the peer does not have"), "\(newer.err)")
        #expect(try c.status("alpha")["connection"] as? String == "StandAlone")
        // Nothing moved: beta still lacks the write.
        let size = try c.exportSize
        #expect(try c.dataHash("alpha", bytes: size) != c.dataHash("beta", bytes: size))
        // --discard-my-data: alpha's disk is Inconsistent and every block comes from beta.
        let discard = try c.tandem("alpha", "restore", "--wait", "--discard-my-data", "r0")
        #expect(discard.status == 0, "\(discard.err)")
        #expect(try c.dataHash("alpha", bytes: size) == c.dataHash("beta", bytes: size))
        // No peer: beta down, alpha waits wfc-timeout (3 s) and says so.
        #expect(try c.tandem("alpha", "disconnect", "r0").status == 0)
        c.down("beta")
        let t0 = Date()
        let alone = try c.tandem("alpha", "restore", "r0")
        #expect(alone.status != 0 && alone.err.contains("did not connect within 3 s"), "\(alone.err)")
        #expect(Date().timeIntervalSince(t0) < 10)
    }

    /// Instant access (#10 item 2): alpha's data area wiped, `restore`, then a plain `primary`
    /// while the restore runs: a reader of alpha's export gets the peer's data for blocks not
    /// yet restored (checked against beta's disk), alpha's writes land on both, and the restore
    /// ends byte-identical. The latency of reads served from the peer is printed.
    @Test func promotedDuringRestoreReadsFromThePeer() throws {
        let c = try Cluster(.init(size: 64 << 20, disk: "c-max-rate 4M; c-plan-ahead 0; resync-rate 4M;"))
        defer { c.shutdown() }
        try c.start()
        let size = try c.exportSize
        let src = c.dir + "/data.bin"
        try Tools.run("/bin/sh", ["-c", "head -c \(size) /dev/urandom > \(src)"])
        try #require(try Tools.run("/usr/bin/nbdcopy", [src, c.uri("alpha")]).status == 0)
        try c.waitInSync()
        try wipeDataArea(c, "alpha", bytes: size)
        #expect(try c.tandem("alpha", "restore", "r0").status == 0)
        let promote = try c.tandem("alpha", "primary", "r0")
        #expect(promote.status == 0, "\(promote.err)")
        var s = try c.status("alpha")
        #expect(s["role"] as? String == "Primary" && s["disk"] as? String == "Inconsistent" && s["connection"] as? String == "SyncTarget", "\(s)")
        #expect((s["out-of-sync-kib"] as? Int ?? 0) > size / 1024 / 2, "the restore went too fast for the test: \(s)")
        // Held (pause-sync) while the reads run, so they overlap the restore however slow the
        // machine: reads of blocks not restored yet come from beta, 200 random 4 KiB reads in
        // the second half, then the whole device.
        #expect(try c.tandem("alpha", "pause-sync", "r0").status == 0)
        let timed = try Tools.run("/usr/bin/python3", [Tools.helpers + "/timed-reads.py", c.uri("alpha"), src, "\(size / 2)", "\(size)", "200", "4096"])
        #expect(timed.status == 0 && timed.out.contains("\"differ\": 0"), "\(timed.out) \(timed.err)")
        print("instant access, 4 KiB reads of blocks not yet restored (served by the peer): \(timed.out)")
        let copy = c.dir + "/read.bin"
        #expect(try Tools.run("/usr/bin/nbdcopy", [c.uri("alpha"), copy]).status == 0)
        let readHash = try Tools.run("/bin/sh", ["-c", "sha256sum < \(copy)"]).out.prefix(64)
        #expect(readHash == (try c.dataHash("beta", bytes: size)), "alpha's export read other data than beta holds")
        s = try c.status("alpha")
        #expect(s["connection"] as? String == "PausedSyncT" && (s["out-of-sync-kib"] as? Int ?? 0) > 0,
                "the whole read was not during the restore: \(s)")
        #expect(try c.tandem("alpha", "resume-sync", "r0").status == 0)
        // Writes land on both, and read back at once.
        try #require(try Tools.run("/usr/bin/qemu-io", ["-f", "raw", "-c", "write -P 0x7e 48M 1M", "-c", "read -P 0x7e 48M 1M",
                                                        c.uri("alpha")]).status == 0)
        try c.waitInSync(timeout: 60)
        #expect(try c.dataHash("alpha", bytes: size) == c.dataHash("beta", bytes: size))
        let region = try Tools.run("/bin/sh", ["-c", "dd if=\(c.disk("beta")) bs=1M skip=48 count=1 status=none | od -An -v -tx1 | sort -u"])
        #expect(region.out.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "\n").count == 1 && region.out.contains("7e"))
        #expect(try c.status("alpha")["role"] as? String == "Primary")
        let back = try Tools.run("/usr/bin/python3", [Tools.helpers + "/timed-reads.py", c.uri("alpha"), src, "0", "\(40 << 20)", "200", "4096"])
        print("after the restore, 4 KiB reads from the local disk: \(back.out)")
    }

    /// A new, empty disk larger than the UpToDate peer's (an on-prem disk replaced by a larger
    /// one): the device takes the peer's size, as DRBD agrees it (an Inconsistent disk may
    /// shrink), and the restore fills that range. SizeTests has the refusal of a peer smaller
    /// than a size in use.
    @Test func restoreFromASmallerPeerTakesItsSize() throws {
        let c = try Cluster(.init(size: 32 << 20, startup: "wfc-timeout 10;"))
        defer { c.shutdown() }
        truncate(c.disk("beta"), off_t(24 << 20))
        #expect(try c.tandem("beta", "create-md", "--force", "r0").status == 0)
        try c.up("beta")
        #expect(try c.tandem("beta", "primary", "--force", "r0").status == 0)
        try #require(try Tools.run("/usr/bin/qemu-io", ["-f", "raw", "-c", "write -P 0x5e 0 8M", c.uri("beta")]).status == 0)
        #expect(try c.tandem("beta", "secondary", "r0").status == 0)
        let size = try c.status("beta")["size-kib"] as? Int ?? 0
        try c.up("alpha")
        let r = try c.tandem("alpha", "restore", "--wait", "r0")
        #expect(r.status == 0, "\(r.err)")
        try c.waitInSync(timeout: 60)
        let s = try c.status("alpha")
        #expect(s["size-kib"] as? Int == size && (s["data-area-kib"] as? Int ?? 0) > size, "\(s)")
        #expect(c.log("alpha").contains("size: \((s["data-area-kib"] as? Int ?? 0) * 2) -> \(size * 2) sectors"), "\(c.log("alpha"))")
        #expect(try c.dataHash("alpha", bytes: size * 1024) == c.dataHash("beta", bytes: size * 1024))
    }

    /// A restore cut at about half way by kill -9 of either node resumes with the rest after
    /// restart (the bitmap reaches the disk as blocks arrive), never from zero.
    @Test(arguments: ["alpha", "beta"]) func killedHalfWayResumes(victim: String) throws {
        let c = try Cluster(.init(size: 160 << 20, disk: "c-max-rate 24M; c-plan-ahead 0; resync-rate 24M;"))
        defer { c.shutdown() }
        try c.start()
        try writeAndSync(c)
        let size = try c.exportSize
        try wipeDataArea(c, "alpha", bytes: size)
        #expect(try c.tandem("alpha", "restore", "r0").status == 0)
        let total = size / 1024
        try c.wait("alpha", timeout: 30, "half the restore") { s in
            s["connection"] as? String == "SyncTarget" && (s["out-of-sync-kib"] as? Int ?? total) <= total / 2
        }
        // Held at half way until both bitmaps are on disk (how soon the writeback lands
        // depends on the machine's fsync latency; the kill must find it there).
        try c.pauseUntilBitmapsAreDurable(on: "alpha")
        let pid = try #require(c.pid(victim))
        try #require(kill(pid, SIGKILL) == 0)
        while kill(pid, 0) == 0 { usleep(20_000) }
        try c.up(victim)
        if victim == "beta" { #expect(try c.tandem("alpha", "resume-sync", "r0").status == 0) }
        // restore again on alpha: it joins the resync the reconnect starts.
        let r = try c.tandem("alpha", "restore", "--wait", "r0")
        #expect(r.status == 0, "\(r.err)")
        let sizes = c.log("alpha").matches(of: /Began resync as SyncTarget \(will sync (\d+) KB/).compactMap { Int($0.1) }
        let second = try #require(sizes.last)
        #expect(Double(second) <= 0.6 * Double(total), "after the kill the restore moved \(second) KB of \(total) KB; alpha: \(c.log("alpha").suffix(4000)) beta: \(c.log("beta").suffix(3000))")
        print("restore (\(victim) killed half way): \(second) KB of \(total) KB after restart")
        #expect(try c.dataHash("alpha", bytes: size) == c.dataHash("beta", bytes: size))
    }
}
