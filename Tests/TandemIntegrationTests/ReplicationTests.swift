import Foundation
import Testing

/// Two real daemons replicating over loopback TCP, written to by real NBD clients.
@Suite(.serialized) struct ReplicationTests {
    /// qemu-io writes random patterns at random offsets and sizes, nbdcopy copies random data:
    /// once both sides are UpToDate the secondary's data area is byte-identical.
    @Test(arguments: ["A", "B", "C"])
    func nbdClientWritesReachThePeer(wireProtocol: String) throws {
        let c = try Cluster(.init(wireProtocol: wireProtocol))
        defer { c.shutdown() }
        try c.start()
        var cmds: [String] = []
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<60 {
            let size = Int.random(in: 1...2048, using: &rng) * 512
            let off = Int.random(in: 0..<((c.size - (8 << 20) - size) / 512), using: &rng) * 512
            cmds += ["-c", "write -P \(Int.random(in: 1...255, using: &rng)) \(off) \(size)"]
        }
        // Zeroing and discards travel as P_ZEROES and P_TRIM.
        cmds += ["-c", "write -z 3M 1M", "-c", "discard 5M 2M", "-c", "write -z 9M 4k", "-c", "flush"]
        let q = try Tools.run("/usr/bin/qemu-io", ["-f", "raw"] + cmds + [c.uri("alpha")])
        #expect(q.status == 0, "qemu-io: \(q.err)")
        let src = c.dir + "/random.bin"
        try Tools.run("/bin/sh", ["-c", "head -c \(32 << 20) /dev/urandom > \(src)"])
        let n = try Tools.run("/usr/bin/nbdcopy", [src, c.uri("alpha")])
        #expect(n.status == 0, "nbdcopy: \(n.err)")
        try c.waitInSync()
        let size = try c.exportSize
        let a = try c.dataHash("alpha", bytes: size), b = try c.dataHash("beta", bytes: size)
        #expect(a == b, "data areas differ after protocol \(wireProtocol) replication")
        let copied = try Tools.run("/bin/sh", ["-c", "head -c \(32 << 20) \(c.disk("beta")) | cmp - \(src)"])
        #expect(copied.status == 0, "nbdcopy's data is not on the secondary")
    }

    /// fio's nbd engine (over the TCP export): a random-write job whose data verifies
    /// (crc32c), then the peer matches.
    @Test func fioRandomWritesVerify() throws {
        let c = try Cluster(.init(tcpExport: true))
        defer { c.shutdown() }
        try c.start()
        let f = try Tools.run("/usr/bin/fio", ["--name=verify", "--ioengine=nbd", "--uri=\(c.uri("alpha"))", "--rw=randwrite",
                                               "--bs=4k", "--size=64M", "--iodepth=16", "--verify=crc32c", "--do_verify=1",
                                               "--verify_state_save=0", "--output-format=terse"])
        #expect(f.status == 0, "fio: \(f.out) \(f.err)")
        #expect(!f.err.contains("verify:"), "fio reported verify errors: \(f.err)")
        try c.waitInSync()
        let size = try c.exportSize
        #expect(try c.dataHash("alpha", bytes: size) == c.dataHash("beta", bytes: size))
    }

    /// Protocol C: once a write is acknowledged, the secondary's disk holds it.
    @Test func protocolCAcknowledgedWritesAreOnThePeer() throws {
        let c = try Cluster(.init(wireProtocol: "C"))
        defer { c.shutdown() }
        try c.start()
        let peer = try FileHandle(forReadingFrom: URL(fileURLWithPath: c.disk("beta")))
        defer { try? peer.close() }
        for i in 0..<25 {
            let pattern = UInt8(i + 1)
            let off = UInt64(i) * (3 << 20) + UInt64(i % 7) * 512
            let q = try Tools.run("/usr/bin/qemu-io", ["-f", "raw", "-c", "write -P \(pattern) \(off) 8192", c.uri("alpha")])
            #expect(q.status == 0)
            try peer.seek(toOffset: off)
            let got = try peer.read(upToCount: 8192) ?? Data()
            #expect(got == Data(repeating: pattern, count: 8192), "write \(i) acknowledged but not on the secondary")
        }
    }

    /// The primary is killed during writes: drbdmeta apply-al marks the extents being written,
    /// and so does Tandem's own restart.
    @Test func killedPrimaryMarksActiveExtents() throws {
        let c = try Cluster()
        defer { c.shutdown() }
        try c.start()
        // Write into 100..108 MiB (activity-log extents 25 and 26) while killing the daemon.
        let writer = Process()
        writer.executableURL = URL(fileURLWithPath: "/usr/bin/qemu-io")
        writer.arguments = ["-f", "raw"] + (0..<400).flatMap { i in ["-c", "write -P 7 \((100 << 20) + (i % 16) * 512 * 1024) 524288"] } + [c.uri("alpha")]
        writer.standardOutput = FileHandle.nullDevice
        writer.standardError = FileHandle.nullDevice
        try writer.run()
        // Kill while both extents are being written: wait until the writes run (on a loaded
        // machine qemu-io may take longer than any fixed pause to start).
        let start = Date()
        while Date().timeIntervalSince(start) < 20 {
            let s = try c.status("alpha")
            if (s["al-extents-hot"] as? Int ?? 0) >= 2 && (s["replicated-data-kib"] as? Int ?? 0) >= 8192 { break }
            usleep(10_000)
        }
        let pid = try #require(c.pid("alpha"))
        try #require(kill(pid, SIGKILL) == 0, "kill -9 of alpha failed")
        writer.waitUntilExit()
        c.down("beta")
        for copy in ["drbdmeta", "tandem"] {
            try Tools.run("/bin/cp", ["--sparse=always", c.disk("alpha"), "\(c.dir)/\(copy).img"])
        }
        let applied = try Tools.drbdmeta("\(c.dir)/drbdmeta.img", "apply-al")
        #expect(applied.status == 0, "drbdmeta apply-al: \(applied.err)")
        let dump = try Tools.drbdmeta("\(c.dir)/drbdmeta.img", "dump-md")
        // Extents 25 and 26 are bits 25600..27647: bitmap words 400..431 must be all ones.
        let words = Cluster.bitmapWords(fromDump: dump.out)
        try #require(words.count > 431, "could not read the bitmap from dump-md")
        #expect(words[400..<432].allSatisfy { $0 == UInt64.max }, "apply-al did not mark the extents that were being written")
        // Tandem's restart of the killed node (peer down) reports at least those 8 MiB out of sync.
        try c.up("alpha")
        let s = try c.status("alpha")
        #expect((s["out-of-sync-kib"] as? Int ?? 0) >= 8192, "restart did not mark the active extents: \(s)")
        #expect(c.log("alpha").contains("activity log applied"))
    }

    /// A capture of the replication traffic decodes as DRBD in tshark, none malformed. With
    /// `compression off` every packet is DRBD's own (LZ4 resync replies are a Tandem extension).
    @Test func tsharkDecodesTheTraffic() throws {
        // The initial sync at 4 MiB/s: at loopback speed, on a busy machine, dumpcap drops
        // segments (seen in CI with 8 MiB in 0.4 s), and a lost segment hides packets.
        let c = try Cluster(.init(size: 8 << 20, net: "compression off;", disk: "c-max-rate 4M; resync-rate 4M;"))
        defer { c.shutdown() }
        let cap = c.dir + "/cap.pcapng"
        // A large capture buffer: at loopback speed a small one drops segments mid-PDU.
        let dump = try Tools.spawn("/usr/bin/dumpcap", ["-q", "-B", "256", "-i", "lo", "-f", "tcp port \(c.ports.0) or tcp port \(c.ports.1)", "-w", cap])
        sleep(2)
        try c.start()
        let q = try Tools.run("/usr/bin/qemu-io", ["-f", "raw", "-c", "write -P 3 0 64k", "-c", "write -P 4 1M 4k", "-c", "write -z 2M 64k",
                                                   "-c", "discard 3M 64k", "-c", "flush", c.uri("alpha")])
        #expect(q.status == 0)
        try c.waitInSync()
        sleep(1)
        dump.terminate()
        dump.waitUntilExit()
        let fields = try Tools.run("/usr/bin/tshark", ["-r", cap, "--enable-heuristic", "drbd_tcp", "-Y", "drbd", "-T", "fields", "-e", "drbd.command"])
        let commands = Set(fields.out.split(whereSeparator: { $0 == "\n" || $0 == "," }).compactMap { UInt32($0.dropFirst(2), radix: 16) })
        for (cmd, name) in [(0xfffe, "features"), (0x0b, "protocol"), (0x23, "sync-param"), (0x0c, "uuids"), (0x0d, "sizes"),
                            (0x0e, "state"), (0x00, "data"), (0x03, "barrier"), (0x16, "write ack"), (0x1c, "barrier ack"),
                            (0x09, "resync request"), (0x02, "resync data"), (0x31, "trim"), (0x36, "zeroes")] {
            #expect(commands.contains(UInt32(cmd)), "no \(name) packet decoded (got \(commands.sorted()))")
        }
        let lost = try Tools.run("/usr/bin/tshark", ["-r", cap, "-Y", "tcp.analysis.lost_segment"])
        #expect(lost.out.isEmpty, "the capture itself lost segments; decoding is incomplete")
        let malformed = try Tools.run("/usr/bin/tshark", ["-r", cap, "--enable-heuristic", "drbd_tcp", "-Y", "_ws.malformed || _ws.expert.severity >= error"])
        #expect(malformed.out.isEmpty, "malformed or erroneous frames: \(malformed.out.prefix(2000))")
    }
}

extension Cluster {
    /// The bitmap words of a `dump-md` listing (`N times 0x...;` runs expanded, comments skipped).
    static func bitmapWords(fromDump text: String) -> [UInt64] {
        guard let start = text.range(of: "bm {"), let end = text.range(of: "}", range: start.upperBound..<text.endIndex) else { return [] }
        let lines = text[start.upperBound..<end.lowerBound].split(separator: "\n").filter { !$0.trimmingCharacters(in: .whitespaces).hasPrefix("#") }
        var out: [UInt64] = []
        for item in lines.joined(separator: " ").split(separator: ";") {
            let parts = item.split(separator: " ")
            if parts.count == 3, parts[1] == "times", let n = Int(parts[0]), let v = UInt64(parts[2].dropFirst(2), radix: 16) {
                out += Array(repeating: v, count: n)
            } else if parts.count == 1, let v = UInt64(parts[0].dropFirst(2), radix: 16) {
                out.append(v)
            }
        }
        return out
    }
}
