import Foundation
import Testing

/// Online verify, checksum-based resync, invalidate and invalidate-remote between two real
/// daemons (#9 items 4 and 5).
@Suite(.serialized) struct VerifyTests {
    /// Overwrites 4 KiB blocks of a node's backing file directly, as a fault below Tandem would
    /// (the data area starts at offset 0 with internal meta-data), made durable.
    func changeBehindTandem(_ c: Cluster, _ node: String, blocks: [Int]) throws {
        let fd = open(c.disk(node), O_WRONLY)
        try #require(fd >= 0, "open \(c.disk(node))")
        defer { close(fd) }
        for b in blocks {
            let bytes = [UInt8]((0..<4096).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ b) })
            try #require(pwrite(fd, bytes, 4096, off_t(b) * 4096) == 4096)
        }
        try #require(fsync(fd) == 0)
    }

    /// A write load through alpha's export over 32-40 MiB for as long as the verify runs.
    func startLoad(_ c: Cluster) throws -> Process {
        let script = "i=0; while [ $i -lt 400 ]; do qemu-io -f raw -c \"write -P $((i % 250)) $((32 + i % 8))M 256k\" '\(c.uri("alpha"))' >/dev/null || exit 1; i=$((i+1)); done"
        return try Tools.spawn("/bin/sh", ["-c", script])
    }

    /// Blocks changed behind Tandem's back on either disk are exactly what the verify finds and
    /// marks on both nodes, logged as DRBD's "Out of sync: start=S, size=8 (sectors)" ranges,
    /// while application writes go on elsewhere; `resync` then makes the disks identical.
    @Test(arguments: ["alpha", "beta"]) func verifyFindsExactlyTheChangedBlocks(node: String) throws {
        let c = try Cluster(.init(size: 64 << 20, net: "verify-alg sha1;", disk: "c-max-rate 16M;"))
        defer { c.shutdown() }
        try c.start()
        try #require(try Tools.run("/usr/bin/qemu-io", ["-f", "raw", "-c", "write -P 0x42 0 48M", c.uri("alpha")]).status == 0)
        try c.waitInSync()
        let onBeta = [5, 1000, 1001], onAlpha = [2048, 12000]
        try changeBehindTandem(c, "beta", blocks: onBeta)
        try changeBehindTandem(c, "alpha", blocks: onAlpha)
        let load = try startLoad(c)
        defer { if load.isRunning { load.terminate() } }
        let v = try c.tandem(node, "verify", "--wait", "r0")
        // Differences found: a failed check, for a script as for an operator.
        #expect(v.status == 1, "verify --wait exited \(v.status) having found differences: \(v.err)")
        #expect(load.isRunning, "the write load ended before the verify did: it did not run alongside")
        load.terminate()
        load.waitUntilExit()
        #expect(v.err.contains("verify found 20 KiB out of sync"), "\(v.err)")
        for n in c.nodes {
            let s = try c.status(n)
            #expect(s["out-of-sync-kib"] as? Int == 20, "\(n): \(s)")
            #expect(s["connection"] as? String == "Connected", "\(n): \(s)")
            // Both UpToDate by state, yet the blocks differ: `holds` must not say in sync.
            let holds = s["holds"] as? String ?? ""
            #expect(!holds.contains("in sync") && holds.contains("20 KiB out of sync"), "\(n): \(holds)")
        }
        let log = c.log(node)
        // Runs of adjacent blocks are one range, as DRBD logs them.
        for (sector, size) in [(40, 8), (8000, 16), (16384, 8), (96000, 8)] {
            #expect(log.contains("Out of sync: start=\(sector), size=\(size) (sectors)"), "no range \(sector)+\(size) in the log")
        }
        #expect(log.contains("Online verify found 5 4k block out of sync!"))
        // The verify resynced nothing by itself; resync mends what it found.
        let r = try c.tandem("alpha", "resync", "--wait", "r0")
        #expect(r.status == 0, "\(r.err)")
        let size = try c.exportSize
        #expect(try c.dataHash("alpha", bytes: size) == c.dataHash("beta", bytes: size))
        // A second verify finds nothing.
        let again = try c.tandem(node, "verify", "--wait", "r0")
        #expect(again.out.contains("verify found no block out of sync"), "\(again.out) \(again.err)")
    }

    /// A verify cut short by a disconnect starts again where it stopped (DRBD's start sector),
    /// and `--start` chooses the sector.
    @Test func verifyResumesWhereItStopped() throws {
        let c = try Cluster(.init(size: 96 << 20, net: "verify-alg crc32c;", disk: "c-max-rate 8M;"))
        defer { c.shutdown() }
        try c.start()
        #expect(try c.tandem("alpha", "verify", "r0").status == 0)
        try c.wait("alpha", timeout: 30, "a verify half way") { ($0["verify-done-kib"] as? Int ?? 0) > 40 << 10 }
        #expect(try c.tandem("alpha", "disconnect", "r0").status == 0)
        let s = try c.status("alpha")
        let resume = try #require(s["verify-resume-sector"] as? Int, "no resume sector: \(s)")
        #expect(resume > 80_000 && resume < 190_000, "resume at sector \(resume)")
        #expect(try c.tandem("alpha", "connect", "r0").status == 0)
        try c.waitInSync()
        #expect(try c.tandem("alpha", "verify", "--wait", "r0").status == 0)
        #expect(c.log("alpha").contains("Online verify started at sector \(resume / 8 * 8)"), "the second verify did not start at \(resume)")
        let done = try c.status("alpha")["verify-total-kib"] as? Int ?? 0
        #expect(done < 60 << 10, "the second verify covered \(done) KiB")
        #expect(try c.tandem("alpha", "verify", "--start", "1000000000", "r0").status != 0)
        #expect(try c.tandem("alpha", "verify", "--wait", "--start", "8", "r0").status == 0)
        #expect(c.log("alpha").contains("Online verify started at sector 8 "))
    }

    /// Verify needs verify-alg: refused with the reason, nothing changes.
    @Test func verifyWithoutVerifyAlgIsRefused() throws {
        let c = try Cluster(.init(size: 16 << 20))
        defer { c.shutdown() }
        try c.start()
        let r = try c.tandem("alpha", "verify", "r0")
        #expect(r.status != 0 && r.err.contains("verify-alg is not set"), "\(r.err)")
        #expect(try c.status("alpha")["connection"] as? String == "Connected")
    }

    /// csums-alg: blocks marked out of sync that are in fact identical move as digests. 8 MiB
    /// rewritten with the bytes they held while disconnected: beta's connections receive a
    /// small fraction of it (kernel counters), status counts it as found in sync.
    @Test func csumsResyncMovesDigestsForIdenticalBlocks() throws {
        let c = try Cluster(.init(size: 64 << 20, net: "csums-alg md5; compression off;"))
        defer { c.shutdown() }
        try c.start()
        try #require(try Tools.run("/usr/bin/qemu-io", ["-f", "raw", "-c", "write -P 0x6b 8M 8M", c.uri("alpha")]).status == 0)
        try c.waitInSync()
        #expect(try c.tandem("alpha", "disconnect", "r0").status == 0)
        // The same bytes again, plus 1 MiB that does differ.
        try #require(try Tools.run("/usr/bin/qemu-io", ["-f", "raw", "-c", "write -P 0x6b 8M 8M", "-c", "write -P 0x11 20M 1M", c.uri("alpha")]).status == 0)
        #expect(try c.status("alpha")["out-of-sync-kib"] as? Int == 9216)
        // The initial full sync of blank disks found its blocks in sync by digest already.
        let sameBefore = try c.status("alpha")["resync-same-kib"] as? Int ?? 0
        #expect(sameBefore > 0, "the initial sync of two blank disks found no block in sync by digest")
        #expect(try c.tandem("alpha", "resync", "--wait", "r0").status == 0)
        let wire = try CompressionTests().bytesReceived(c)
        print("csums-alg: \(wire) bytes received by the target for 9 MiB marked, 1 MiB of it different")
        #expect(wire < (1 << 20) + (1 << 20) / 2, "the target received \(wire) bytes")
        let same = (try c.status("alpha")["resync-same-kib"] as? Int ?? 0) - sameBefore
        #expect(same == 8192, "the source found \(same) KiB in sync by digest")
        #expect(c.log("beta").contains("comparing md5 digests first"))
        let size = try c.exportSize
        #expect(try c.dataHash("alpha", bytes: size) == c.dataHash("beta", bytes: size))
    }

    /// invalidate on the Secondary (connected): every block comes back from the peer, even the
    /// ones changed behind Tandem's back; invalidate-remote on the Primary does the same the
    /// other way; a disconnected invalidate marks the disk Inconsistent until the next connect.
    @Test func invalidateAndInvalidateRemote() throws {
        let c = try Cluster(.init(size: 32 << 20))
        defer { c.shutdown() }
        try c.start()
        try #require(try Tools.run("/usr/bin/qemu-io", ["-f", "raw", "-c", "write -P 0x21 0 24M", c.uri("alpha")]).status == 0)
        try c.waitInSync()
        let size = try c.exportSize
        let full = size / 1024
        try changeBehindTandem(c, "beta", blocks: [3, 4000])
        #expect(try c.tandem("beta", "invalidate", "r0").status == 0)
        try c.waitInSync()
        #expect(c.log("beta").contains("will sync \(full) KB"), "invalidate did not resync the whole device")
        #expect(try c.dataHash("alpha", bytes: size) == c.dataHash("beta", bytes: size))

        try changeBehindTandem(c, "beta", blocks: [77])
        #expect(try c.tandem("alpha", "invalidate-remote", "r0").status == 0)
        try c.waitInSync()
        #expect(c.log("alpha").contains("will sync \(full) KB"))
        #expect(try c.dataHash("alpha", bytes: size) == c.dataHash("beta", bytes: size))

        // The Primary refuses to invalidate itself; the Secondary refuses to invalidate its Primary.
        let r1 = try c.tandem("alpha", "invalidate", "r0")
        #expect(r1.status != 0 && r1.err.contains("Primary"), "\(r1.err)")
        let r2 = try c.tandem("beta", "invalidate-remote", "r0")
        #expect(r2.status != 0 && r2.err.contains("Primary"), "\(r2.err)")

        // Disconnected: beta's disk is Inconsistent with every block marked, then resyncs whole.
        #expect(try c.tandem("beta", "disconnect", "r0").status == 0)
        try changeBehindTandem(c, "beta", blocks: [1234])
        #expect(try c.tandem("beta", "invalidate", "r0").status == 0)
        let s = try c.status("beta")
        #expect(s["disk"] as? String == "Inconsistent" && s["out-of-sync-kib"] as? Int == full, "\(s)")
        #expect(try c.tandem("beta", "connect", "r0").status == 0)
        try c.waitInSync()
        #expect(try c.dataHash("alpha", bytes: size) == c.dataHash("beta", bytes: size))
    }
}
