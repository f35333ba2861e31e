import Foundation
import Testing

/// `resync`, `pause-sync` and `resume-sync` against real daemons.
@Suite(.serialized) struct ResyncVerbTests {
    /// `primary --force --wait` returns once the initial full sync has ended, with its progress
    /// as lines (no terminal here).
    @Test func primaryForceWaitFollowsTheInitialSync() throws {
        let c = try Cluster(.init(size: 64 << 20, disk: "c-max-rate 20M;"))
        defer { c.shutdown() }
        for n in c.nodes { try c.up(n) }
        try c.wait("alpha", "connected") { $0["connection"] as? String == "Connected" }
        let r = try c.tandem("alpha", "primary", "--force", "--wait", "r0")
        #expect(r.status == 0, "\(r.err)")
        // Returned at the end: both UpToDate at once, nothing left.
        let s = try c.status("alpha")
        #expect(s["disk"] as? String == "UpToDate" && s["peer-disk"] as? String == "UpToDate" && s["out-of-sync-kib"] as? Int == 0, "\(s)")
        let lines = r.out.split(separator: "\n")
        #expect(!lines.isEmpty && lines.last?.contains("100.0%") == true && !r.out.contains("\r"), "\(r.out)")
    }

    /// Writes made while StandAlone are marked; `resync --wait` connects, resyncs exactly them
    /// and returns once both disks are UpToDate and identical.
    @Test func resyncConnectsAndMovesTheMarkedBlocks() throws {
        let c = try Cluster(.init(size: 64 << 20))
        defer { c.shutdown() }
        try c.start()
        #expect(try c.tandem("alpha", "disconnect", "r0").status == 0)
        let w = try Tools.run("/usr/bin/qemu-io", ["-f", "raw", "-c", "write -P 0x5a 4M 2M", "-c", "write -P 0x33 40M 512k", c.uri("alpha")])
        try #require(w.status == 0, "\(w.err)")
        let marked = try c.status("alpha")["out-of-sync-kib"] as? Int
        #expect(marked == 2560, "\(marked ?? -1) KiB marked")
        let r = try c.tandem("alpha", "resync", "--wait", "r0")
        #expect(r.status == 0, "\(r.err)")
        // Without a terminal: whole lines (no redrawing), at most one every 10 s and the last.
        let lines = r.out.split(separator: "\n")
        #expect(!r.out.contains("\r") && !lines.isEmpty && lines.count <= 3, "--wait without a terminal printed: \(r.out)")
        #expect(lines.last?.contains("100.0%") == true && lines.last?.hasSuffix("Connected") == true, "\(r.out)")
        let s = try c.status("alpha")
        #expect(s["connection"] as? String == "Connected" && s["out-of-sync-kib"] as? Int == 0 && s["peer-disk"] as? String == "UpToDate", "\(s)")
        #expect(c.log("alpha").contains("will sync 2560 KB"), "the resync did not move exactly the marked blocks")
        let size = try c.exportSize
        #expect(try c.dataHash("alpha", bytes: size) == c.dataHash("beta", bytes: size))
        // Connected with nothing marked: resync finds nothing to move and says so by returning.
        #expect(try c.tandem("alpha", "resync", "--wait", "r0").status == 0)
        // The Secondary does not push over its Primary.
        let refused = try c.tandem("beta", "resync", "r0")
        #expect(refused.status != 0 && refused.err.contains("the peer is Primary"), "\(refused.err)")
    }

    /// pause-sync holds a running resync (PausedSyncS/PausedSyncT on both sides, nothing moves)
    /// until resume-sync, from either node.
    @Test(arguments: ["alpha", "beta"]) func pauseAndResumeSync(node: String) throws {
        let c = try Cluster(.init(size: 96 << 20, disk: "c-max-rate 8M; c-plan-ahead 0; resync-rate 8M;"))
        defer { c.shutdown() }
        try c.start()
        #expect(try c.tandem("alpha", "disconnect", "r0").status == 0)
        try #require(try Tools.run("/usr/bin/qemu-io", ["-f", "raw", "-c", "write -P 0x11 0 64M", c.uri("alpha")]).status == 0)
        #expect(try c.tandem("alpha", "resync", "r0").status == 0)
        #expect(try c.tandem(node, "pause-sync", "r0").status == 0)
        try c.wait("alpha", timeout: 10, "PausedSyncS") { $0["connection"] as? String == "PausedSyncS" }
        try c.wait("beta", timeout: 10, "PausedSyncT") { $0["connection"] as? String == "PausedSyncT" }
        usleep(500_000)
        let before = try c.status("beta")["out-of-sync-kib"] as? Int ?? -1
        sleep(1)
        let after = try c.status("beta")["out-of-sync-kib"] as? Int ?? -2
        #expect(before == after && before > 0, "the paused resync moved: \(before) -> \(after) KiB left")
        #expect(try c.tandem(node, "resume-sync", "r0").status == 0)
        try c.waitInSync(timeout: 60)
        let size = try c.exportSize
        #expect(try c.dataHash("alpha", bytes: size) == c.dataHash("beta", bytes: size))
    }
}

/// A resync cut at about half way by kill -9 of either node resumes with what is left, never
/// from zero (#9's "resumable": bits reach the disk as blocks are synced).
@Suite(.serialized) struct ResumableResyncTests {
    @Test(arguments: ["alpha", "beta"]) func killedHalfWayResumesWithTheRest(victim: String) throws {
        let c = try Cluster(.init(size: 160 << 20, disk: "c-max-rate 24M; c-plan-ahead 0; resync-rate 24M;"))
        defer { c.shutdown() }
        try c.start()
        #expect(try c.tandem("alpha", "disconnect", "r0").status == 0)
        try #require(try Tools.run("/usr/bin/qemu-io", ["-f", "raw", "-c", "write -P 0x6b 0 128M", c.uri("alpha")]).status == 0)
        let total = try c.status("alpha")["out-of-sync-kib"] as? Int ?? 0
        try #require(total >= 128 * 1024)
        // The written extents leave the activity log once idle (10 s), so a crash of the primary
        // does not mark them all again.
        try c.wait("alpha", timeout: 30, "idle extents out of the activity log") { $0["al-extents-hot"] as? Int == 0 }
        #expect(try c.tandem("alpha", "resync", "r0").status == 0)
        // About half way at 24 MiB/s: wait until half is done, then kill.
        try c.wait("beta", timeout: 30, "half the resync") { s in
            let left = s["out-of-sync-kib"] as? Int ?? total
            return s["connection"] as? String == "SyncTarget" && left <= total / 2
        }
        // Held there until both bitmaps are on disk (the writeback's pace is the machine's fsync).
        try c.pauseUntilBitmapsAreDurable(on: "beta")
        let pid = try #require(c.pid(victim))
        try #require(kill(pid, SIGKILL) == 0)
        while kill(pid, 0) == 0 { usleep(20_000) }
        try c.up(victim)
        if victim == "alpha" { #expect(try c.tandem("beta", "resume-sync", "r0").status == 0) }
        try c.waitInSync(timeout: 120)
        // The second resync's size, from the source's log.
        let sizes = c.log("alpha").matches(of: /Began resync as SyncSource \(will sync (\d+) KB\)/).compactMap { Int($0.1) }
        let second = try #require(sizes.last)
        #expect(sizes.count >= 3, "no resync after the kill: \(sizes)")
        #expect(Double(second) <= 0.6 * Double(total), "after the kill the resync moved \(second) KB of \(total) KB")
        print("resumable (\(victim) killed): \(second) KB of \(total) KB after restart")
        let size = try c.exportSize
        #expect(try c.dataHash("alpha", bytes: size) == c.dataHash("beta", bytes: size))
    }
}
