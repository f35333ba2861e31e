import Foundation
import Testing

/// Each queue limit (QueueLimits, max-buffers) driven far past its bound: memory stays within
/// the documented bound, and nothing is lost.
@Suite(.serialized) struct QueueLimitTests {
    /// Samples a process's resident memory every 100 ms while `body` runs; returns the largest.
    func peakRSS(_ pid: Int32, during seconds: Double) throws -> Int {
        var peak = try Tools.rssKiB(pid)
        let end = Date().addingTimeInterval(seconds)
        while Date() < end {
            peak = max(peak, try Tools.rssKiB(pid))
            usleep(100_000)
        }
        return peak
    }

    /// 4000 pipelined 64 KiB writes (250 MiB) on one connection against a stopped secondary in
    /// protocol C: the export takes 32 MiB of them (QueueLimits.nbdBytesPerConnection) and stops
    /// reading; alpha grows by less than two copies of that (the request and its P_DATA in the
    /// socket queue) and a margin. When beta runs again every write completes and the disks agree.
    @Test func pipelinedNBDRequestsAgainstAStalledPeer() throws {
        let c = try Cluster(.init(wireProtocol: "C", size: 320 << 20, disk: "c-max-rate 1G;"))
        defer { if let p = c.pid("beta") { kill(p, SIGCONT) }; c.shutdown() }
        try c.start()
        let alpha = try #require(c.pid("alpha")), beta = try #require(c.pid("beta"))
        let before = try Tools.rssKiB(alpha)
        try #require(kill(beta, SIGSTOP) == 0)
        let writer = try PipedProcess("/usr/bin/python3", [Tools.helpers + "/pipeline-writes.py", c.uri("alpha"), "4000", "65536", "4"])
        let peak = try peakRSS(alpha, during: 4)
        let first = writer.line() ?? ""
        #expect(first.contains("\"done\": 0"), "writes completed while the peer was stopped: \(first)")
        let s = try c.status("alpha")
        let inFlight = s["writes-in-flight"] as? Int ?? -1
        #expect(inFlight > 0 && inFlight <= (32 << 20) / 65536, "writes in flight \(inFlight)")
        let grown = peak - before
        #expect(grown < 2 * 32 * 1024 + 24 * 1024, "alpha grew by \(grown) KiB with 250 MiB of writes pipelined")
        try #require(kill(beta, SIGCONT) == 0)
        writer.process.waitUntilExit()
        #expect(writer.process.terminationStatus == 0, "not every write succeeded: \(writer.line() ?? "")")
        try c.waitInSync()
        let size = try c.exportSize
        #expect(try c.dataHash("alpha", bytes: size) == c.dataHash("beta", bytes: size))
    }

    /// alpha's own disk is slow (nbdkit's delay filter under a loop device) and a client
    /// pipelines 2000 writes of 64 KiB: the disk thread's queue is bounded by what the export
    /// takes in (QueueLimits.nbd*), so alpha grows by less than the same bound as above while
    /// the writes crawl to its disk, and every one of them lands (the disks agree afterwards).
    @Test func slowPrimaryDiskKeepsTheDiskQueueBounded() throws {
        let disk = try FilteredDisk(["--filter=delay", "memory", "192M", "delay-write=20ms"])
        defer { disk.remove() }
        let c = try Cluster(.init(wireProtocol: "C", size: 192 << 20, disk: "c-max-rate 1G;", alphaDevice: disk.device))
        defer { c.shutdown() }
        try c.start()
        let alpha = try #require(c.pid("alpha"))
        let before = try Tools.rssKiB(alpha)
        let writer = try PipedProcess("/usr/bin/python3", [Tools.helpers + "/pipeline-writes.py", c.uri("alpha"), "2000", "65536", "3"])
        let peak = try peakRSS(alpha, during: 3)
        let first = writer.line() ?? ""
        let grown = peak - before
        #expect(grown < 2 * 32 * 1024 + 24 * 1024, "alpha grew by \(grown) KiB with 125 MiB of writes pipelined onto a slow disk")
        #expect(!first.contains("\"done\": 2000"), "the slow disk took every write within 3 s: the queue was never full (\(first))")
        writer.process.waitUntilExit()
        #expect(writer.process.terminationStatus == 0, "not every write succeeded")
        try c.waitInSync()
        let size = try c.exportSize
        #expect(try c.dataHash("alpha", bytes: size) == c.dataHash("beta", bytes: size))
    }

    /// beta's disk is slow (nbdkit's delay filter under a loop device) and alpha writes 96 MiB
    /// in protocol A: beta holds no more than max-buffers (512 pages, 2 MiB) of what it
    /// received and stops reading; alpha's writers are held back through TCP; beta grows by
    /// far less than the burst; the disks agree afterwards.
    @Test func slowSecondaryStaysWithinMaxBuffers() throws {
        let disk = try FilteredDisk(["--filter=delay", "memory", "192M", "delay-write=5ms"])
        defer { disk.remove() }
        let c = try Cluster(.init(wireProtocol: "A", size: 192 << 20, net: "max-buffers 512;", disk: "c-max-rate 1G;",
                                  alphaDevice: nil, betaDevice: disk.device))
        defer { c.shutdown() }
        try c.start()
        let beta = try #require(c.pid("beta"))
        let before = try Tools.rssKiB(beta)
        let src = c.dir + "/burst.bin"
        try Tools.run("/bin/sh", ["-c", "head -c \(96 << 20) /dev/urandom > \(src)"])
        let writer = try Tools.spawn("/usr/bin/nbdcopy", ["--requests=16", "--request-size=1048576", src, c.uri("alpha")])
        var peak = before
        while writer.isRunning { peak = max(peak, try Tools.rssKiB(beta)); usleep(100_000) }
        #expect(writer.terminationStatus == 0)
        let grown = peak - before
        #expect(grown < 24 * 1024, "beta grew by \(grown) KiB receiving a 96 MiB burst with max-buffers 512")
        #expect(c.log("beta").isEmpty == false)
        try c.waitInSync(timeout: 180)
        let size = try c.exportSize
        #expect(try c.dataHash("alpha", bytes: size) == c.dataHash("beta", bytes: size))
    }

    /// A peer that sends packet after packet before the handshake completes is cut off at
    /// QueueLimits.packetsBeforeHandshake, and the daemon goes on.
    @Test func tooManyPacketsBeforeTheHandshakeAreRefused() throws {
        let c = try Cluster(.init(size: 8 << 20))
        defer { c.shutdown() }
        try c.up("alpha")
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(c.ports.0).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        try #require(rc == 0)
        // P_INITIAL_DATA and P_CONNECTION_FEATURES (h80, protocol 86..101), then 200 P_PING in h100.
        var bytes: [UInt8] = [0x83, 0x74, 0x02, 0x67, 0xff, 0xf2, 0x00, 0x00]
        bytes += [0x83, 0x74, 0x02, 0x67, 0xff, 0xfe, 0x00, 0x48, 0, 0, 0, 86, 0, 0, 0, 0x0F, 0, 0, 0, 101] + [UInt8](repeating: 0, count: 60)
        for _ in 0..<200 { bytes += [0x86, 0x20, 0xec, 0x20, 0, 0, 0, 0x13, 0, 0, 0, 0, 0, 0, 0, 0] }
        _ = bytes.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        let deadline = Date().addingTimeInterval(10)
        while Date() < deadline && !c.log("alpha").contains("packets before the handshake completed") { usleep(100_000) }
        #expect(c.log("alpha").contains("more than 64 packets before the handshake completed"), "\(c.log("alpha").suffix(600))")
        #expect(try c.status("alpha")["role"] as? String == "Secondary")
    }
}
