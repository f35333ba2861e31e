import Foundation
import Testing

/// Misconfiguration and misbehaving peers: clear errors in status and logs, no crash, no
/// acknowledged write lost.
@Suite(.serialized) struct FaultTests {
    @Test func wrongSharedSecretIsRefusedOnBothSides() throws {
        let c = try Cluster(.init(size: 8 << 20, secrets: ("right-secret", "wrong-secret")))
        defer { c.shutdown() }
        for n in c.nodes { try c.up(n) }
        for n in c.nodes {
            try c.wait(n, timeout: 20, "a refused connection") { s in
                s["connection"] as? String == "StandAlone" && (s["last-error"] as? String ?? "").contains("Authentication")
            }
            #expect(c.log(n).contains("Authentication of peer failed"), "\(n) did not log the refusal")
        }
        // Both daemons are still alive and answer.
        for n in c.nodes { #expect(try c.tandem(n, "status", "r0").status == 0) }
    }

    @Test func matchingSharedSecretAuthenticates() throws {
        let c = try Cluster(.init(size: 8 << 20, secrets: ("s3cret", "s3cret")))
        defer { c.shutdown() }
        try c.start()
        #expect(c.log("alpha").contains("Peer authenticated"))
        #expect(c.log("beta").contains("Peer authenticated"))
    }

    @Test func protocolMismatchIsRefusedWithTheReason() throws {
        let c = try Cluster(.init(size: 8 << 20, protocols: ("C", "A")))
        defer { c.shutdown() }
        for n in c.nodes { try c.up(n) }
        for n in c.nodes {
            do {
                try c.wait(n, timeout: 20, "protocol mismatch refusal") { s in
                    s["connection"] as? String == "StandAlone" && (s["last-error"] as? String ?? "").contains("incompatible communication protocols")
                }
            } catch {
                let logs = c.nodes.map { "\($0):\n" + c.log($0).split(separator: "\n").filter { !$0.hasPrefix(" ") }.prefix(14).joined(separator: "\n") }
                Issue.record("\(error)\n\(logs.joined(separator: "\n"))")
            }
        }
        let text = try c.tandem("alpha", "status", "--verbose", "r0")
        #expect(text.out.contains("last-error: incompatible communication protocols"))
    }

    /// A "peer" that sends garbage is dropped with a protocol error; the daemon keeps serving.
    @Test func garbageFromAPeerIsRefused() throws {
        let c = try Cluster(.init(size: 8 << 20))
        defer { c.shutdown() }
        try c.up("alpha")
        for attempt in 0..<3 {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = in_port_t(UInt16(c.ports.0).bigEndian)
            addr.sin_addr.s_addr = inet_addr("127.0.0.1")
            let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
            #expect(rc == 0)
            // A valid P_INITIAL_DATA, then a header announcing an absurd length, then noise.
            var junk: [UInt8] = [0x83, 0x74, 0x02, 0x67, 0xff, 0xf2, 0x00, 0x00]
            junk += attempt == 0 ? [0x86, 0x20, 0xec, 0x20, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0]
                : (0..<256).map { _ in UInt8.random(in: 0...255) }
            // MSG_NOSIGNAL: the daemon may already have dropped us (no SIGPIPE for the test run).
            _ = junk.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
            usleep(300_000)
            close(fd)
        }
        let s = try c.status("alpha")
        #expect(s["role"] as? String == "Secondary")
        #expect(c.log("alpha").contains("protocol error") || c.log("alpha").contains("connection from peer began"))
        // And a real peer still connects afterwards.
        try c.up("beta")
        try c.wait("alpha", timeout: 30, "connection with the real peer") { $0["connection"] as? String == "Connected" }
    }

    /// The secondary dies (kill -9) in the middle of writes: the primary keeps writing, marks
    /// what the peer did not confirm, and after the peer returns the resync makes both equal.
    @Test func peerVanishingMidWriteLosesNothing() throws {
        let c = try Cluster(.init(wireProtocol: "C", size: 64 << 20))
        defer { c.shutdown() }
        try c.start()
        let src = c.dir + "/random.bin"
        try Tools.run("/bin/sh", ["-c", "head -c \(48 << 20) /dev/urandom > \(src)"])
        let writer = Process()
        writer.executableURL = URL(fileURLWithPath: "/usr/bin/nbdcopy")
        writer.arguments = [src, c.uri("alpha")]
        try writer.run()
        usleep(100_000)
        let beta = try #require(c.pid("beta"), "no pid file for beta: the fault would not be injected")
        try #require(kill(beta, SIGKILL) == 0, "kill -9 of beta failed: \(errno)")
        writer.waitUntilExit()
        #expect(writer.terminationStatus == 0, "writes failed while the peer vanished")
        try c.wait("alpha", timeout: 20, "peer loss noticed") { $0["connection"] as? String != "Connected" }
        try c.up("beta")
        try c.waitInSync()
        let size = try c.exportSize
        #expect(try c.dataHash("alpha", bytes: size) == c.dataHash("beta", bytes: size))
        let copied = try Tools.run("/bin/sh", ["-c", "head -c \(48 << 20) \(c.disk("beta")) | cmp - \(src)"])
        #expect(copied.status == 0, "acknowledged writes missing on the peer after the resync")
    }

    /// Protocol A completes a write once its packet is in the socket buffer, so a peer that
    /// stops reading (SIGSTOP) holds the writer back instead of the primary buffering the
    /// writes in memory; when the peer runs again the writes complete and the disks agree.
    @Test func stalledPeerHoldsProtocolAWritesBack() throws {
        let c = try Cluster(.init(wireProtocol: "A", size: 128 << 20))
        defer { if let p = c.pid("beta") { kill(p, SIGCONT) }; c.shutdown() }
        try c.start()
        let alpha = try #require(c.pid("alpha")), beta = try #require(c.pid("beta"))
        func rssKiB() throws -> Int { try Tools.rssKiB(alpha) }
        let src = c.dir + "/random.bin"
        try Tools.run("/bin/sh", ["-c", "head -c \(96 << 20) /dev/urandom > \(src)"])
        let before = try rssKiB()
        kill(beta, SIGSTOP)
        let writer = try Tools.spawn("/usr/bin/nbdcopy", ["--connections=1", "--requests=4", "--request-size=1048576", src, c.uri("alpha")])
        sleep(3)
        let grown = try rssKiB() - before
        #expect(writer.isRunning, "96 MiB were acknowledged while the peer read nothing")
        #expect(grown < 48 * 1024, "the primary grew by \(grown) KiB while the peer was stopped")
        kill(beta, SIGCONT)
        writer.waitUntilExit()
        #expect(writer.terminationStatus == 0)
        try c.waitInSync()
        let size = try c.exportSize
        #expect(try c.dataHash("alpha", bytes: size) == c.dataHash("beta", bytes: size))
    }

    /// A faulty disk under alpha: nbdkit's memory plugin behind its error filter, exposed as a
    /// file by nbdfuse, with a loop device on it. While the inject file exists every write
    /// fails. A write to a cold extent then fails on its activity-log transaction: the disk
    /// detaches (Diskless), status and events say why, and the write, never issued to the
    /// failing disk, goes to beta alone and succeeds, as do the writes after it (a Diskless
    /// Primary serves through its UpToDate peer). `down` leaves the meta-data unclean.
    @Test func metaDataWriteFailureDetachesTheDisk() throws {
        // While this file exists, every write to the disk fails.
        let inject = NSTemporaryDirectory() + "tandem-inject-\(UUID().uuidString.prefix(8))"
        let disk = try FilteredDisk(["--filter=error", "memory", "64M", "error-pwrite=EIO", "error-pwrite-rate=100%",
                                     "error-pwrite-file=" + inject])
        defer { disk.remove(); try? FileManager.default.removeItem(atPath: inject) }
        let loop: String? = disk.device

        let c = try Cluster(.init(size: 64 << 20, alphaDevice: loop))
        defer { c.shutdown() }
        try c.start()
        // `events` is watching when the disk fails.
        let events = try PipedProcess("/usr/bin/env", ["TANDEM_RUN_DIR=\(c.runDir("alpha"))", Tools.tandem,
                                                      "-c", "\(c.dir)/alpha.conf", "--node", "alpha", "events", "r0"])
        defer { events.process.terminate() }
        _ = events.line()  // the "exists" line
        // Extent 5 (20 MiB in) is cold: a write there needs an activity-log transaction first.
        FileManager.default.createFile(atPath: inject, contents: nil)
        let offset = 20 << 20
        let r = try Tools.run("/usr/bin/python3", [Tools.helpers + "/aio-writes.py", c.uri("alpha"), "10", "\(offset)"])
        #expect(r.out.contains("\"failed\": []"), "the write was refused although beta took it: \(r.out) \(r.err)")
        try c.wait("alpha", timeout: 10, "the disk detached") { $0["disk"] as? String == "Diskless" }
        let s = try c.status("alpha")
        #expect((s["disk-error"] as? String ?? "").contains("meta-data write failed"), "\(s)")
        #expect(s["connection"] as? String == "Connected" && s["peer-disk"] as? String == "UpToDate", "\(s)")
        let text = try c.tandem("alpha", "status", "r0").out
        #expect(text.contains("disk:Diskless") && text.contains("disk-error: meta-data write failed"), "\(text)")
        #expect(c.log("alpha").contains("disk detached"))
        // The change is already in the pipe; if it is missing, the stream ends here instead of hanging.
        let watcher = events.process
        DispatchQueue.global().asyncAfter(deadline: .now() + 5) { if watcher.isRunning { watcher.terminate() } }
        var sawDetach = false
        while let line = events.line() {
            if line.contains("\"type\":\"change\"") && line.contains("\"disk\":\"Diskless\"") && line.contains("meta-data write failed") {
                sawDetach = true
                break
            }
        }
        #expect(sawDetach, "events did not report the detach with its reason")
        // The write reached beta only: alpha's disk never saw it.
        try FileManager.default.removeItem(atPath: inject)
        func block(_ n: String, _ at: Int) throws -> Int {
            let b = try Tools.run("/bin/sh", ["-c", "dd if=\(c.disk(n)) bs=4096 skip=\(at / 4096) count=1 status=none | tr -d '\\000' | wc -c"])
            return Int(b.out.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
        }
        #expect(try block("alpha", offset) == 0, "the detached disk holds the write")
        #expect(try block("beta", offset) > 0, "beta does not hold the write alpha acknowledged")
        // Further writes go on through beta, with the disk mended or not: it stays detached.
        let again = try Tools.run("/usr/bin/python3", [Tools.helpers + "/aio-writes.py", c.uri("alpha"), "10", "0"])
        #expect(again.out.contains("\"failed\": []"), "\(again.out)")
        #expect(try c.status("alpha")["disk"] as? String == "Diskless")
        c.down("alpha")
        #expect(c.log("alpha").contains("meta-data left unclean"))
    }

    /// #12 item 6: alpha's disk starts returning EIO (reads and writes) under a stamped write
    /// load. on-io-error detach (the default): alpha goes Diskless and stays Connected, the load
    /// goes on without an error through beta, and reads of the export (served by beta) return
    /// what beta holds. beta marks what alpha's disk missed. With the disk mended, `down` and
    /// `up` of alpha resync exactly that: the disks end identical and every acknowledged write
    /// is on both.
    @Test func aPrimaryWhoseDiskFailsUnderLoadServesThroughItsPeer() throws {
        let inject = NSTemporaryDirectory() + "tandem-inject-\(UUID().uuidString.prefix(8))"
        let disk = try FilteredDisk(["--filter=error", "memory", "64M",
                                     "error-pwrite=EIO", "error-pwrite-rate=100%", "error-pwrite-file=" + inject,
                                     "error-pread=EIO", "error-pread-rate=100%", "error-pread-file=" + inject])
        defer { disk.remove(); try? FileManager.default.removeItem(atPath: inject) }
        let c = try Cluster(.init(size: 64 << 20, alphaDevice: disk.device))
        defer { c.shutdown() }
        try c.start()
        // 32 MiB of blocks, some of them in cold extents: the fault meets data and meta-data writes.
        let load = try StampedLoad(c, blocks: 8192)
        try load.waitForProgress(300)
        FileManager.default.createFile(atPath: inject, contents: nil)
        try c.wait("alpha", timeout: 20, "the disk detached") { $0["disk"] as? String == "Diskless" }
        try load.waitForProgress(1000)
        let s = try c.status("alpha")
        #expect(s["role"] as? String == "Primary" && s["connection"] as? String == "Connected" && s["peer-disk"] as? String == "UpToDate", "\(s)")
        #expect((s["disk-error"] as? String ?? "").contains("failed"), "\(s)")
        let summary = try load.stop()
        #expect(summary.contains("\"err\": 0"), "the application saw errors: \(summary)")
        let b = try c.status("beta")
        #expect(b["peer-disk"] as? String == "Diskless" && (b["out-of-sync-kib"] as? Int ?? 0) > 0, "\(b)")
        // Reads go to beta: the whole export read through alpha is beta's data area.
        let size = try c.exportSize
        let copy = c.dir + "/export-copy"
        let cp = try Tools.run("/usr/bin/nbdcopy", [c.uri("alpha"), copy])
        #expect(cp.status == 0, "reading the export of the Diskless primary: \(cp.err)")
        let copyHash = try Tools.run("/bin/sh", ["-c", "sha256sum < \(copy)"]).out.prefix(64)
        #expect(String(copyHash) == (try c.dataHash("beta", bytes: size)), "reads through the Diskless primary differ from beta's disk")
        // Mended: the disk comes back with its meta-data and resyncs what it missed.
        try FileManager.default.removeItem(atPath: inject)
        c.down("alpha")
        try c.up("alpha")
        try c.waitInSync(timeout: 120)
        #expect(try c.dataHash("alpha", bytes: size) == (try c.dataHash("beta", bytes: size)), "the disks differ after the resync")
        try load.check(c.disk("alpha"), "alpha")
        try load.check(c.disk("beta"), "beta")
        print("FaultTests: \(summary.trimmingCharacters(in: .whitespacesAndNewlines)); beta marked \(b["out-of-sync-kib"] ?? "?") KiB for the detached disk")
    }

    /// on-io-error call-local-io-error: beta's disk fails its writes (nbdkit's error filter);
    /// beta runs its local-io-error handler (with the DRBD_* environment) and detaches, alpha's
    /// writes go on, and with the disk mended down/up of beta ends identical.
    @Test func callLocalIOErrorRunsTheHandlerOnTheFailingNode() throws {
        let inject = NSTemporaryDirectory() + "tandem-inject-\(UUID().uuidString.prefix(8))"
        let disk = try FilteredDisk(["--filter=error", "memory", "64M", "error-pwrite=EIO", "error-pwrite-rate=100%",
                                     "error-pwrite-file=" + inject])
        defer { disk.remove(); try? FileManager.default.removeItem(atPath: inject) }
        let ran = NSTemporaryDirectory() + "tandem-handler-\(UUID().uuidString.prefix(8))"
        defer { try? FileManager.default.removeItem(atPath: ran) }
        let c = try Cluster(.init(size: 64 << 20, disk: "on-io-error call-local-io-error;",
                                  handlers: "local-io-error \"echo $DRBD_RESOURCE $DRBD_PEER >> \(ran)\";", betaDevice: disk.device))
        defer { c.shutdown() }
        try c.start()
        FileManager.default.createFile(atPath: inject, contents: nil)
        let w = try Tools.run("/usr/bin/python3", [Tools.helpers + "/aio-writes.py", c.uri("alpha"), "10", "0"])
        #expect(w.out.contains("\"failed\": []"), "\(w.out) \(w.err)")
        try c.wait("beta", timeout: 20, "the detach") { $0["disk"] as? String == "Diskless" }
        try c.wait("alpha", timeout: 30, "Connected to a Diskless peer") {
            $0["connection"] as? String == "Connected" && $0["peer-disk"] as? String == "Diskless"
        }
        let deadline = Date().addingTimeInterval(10)
        while !FileManager.default.fileExists(atPath: ran) && Date() < deadline { usleep(100_000) }
        let out = (try? String(contentsOfFile: ran, encoding: .utf8)) ?? ""
        #expect(out.hasPrefix("r0 alpha"), "the local-io-error handler did not run on beta: \(out)")
        #expect(!out.contains("r0 beta"), "the handler ran on alpha: \(out)")
        let again = try Tools.run("/usr/bin/python3", [Tools.helpers + "/aio-writes.py", c.uri("alpha"), "10", "\(8 << 20)"])
        #expect(again.out.contains("\"failed\": []"), "\(again.out)")
        try FileManager.default.removeItem(atPath: inject)
        c.down("beta")
        try c.up("beta")
        try c.waitInSync(timeout: 60)
        let size = try c.exportSize
        #expect(try c.dataHash("alpha", bytes: size) == (try c.dataHash("beta", bytes: size)), "the disks differ after the resync")
    }
}
