import Foundation
import Testing

/// A minimal NBD client speaking raw bytes, to send what well-behaved clients never send.
final class RawNBDClient {
    let fd: Int32
    init(unixPath: String) throws {
        fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { p in
            for (i, b) in unixPath.utf8.enumerated() { p[i] = b }
        }
        let rc = withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
        guard rc == 0 else { throw TestFailure("connect \(unixPath) failed") }
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }
    deinit { close(fd) }

    /// MSG_NOSIGNAL: a server that closed on us must fail the test, not kill the test run.
    func send(_ b: [UInt8]) { _ = b.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) } }
    func receive(_ n: Int) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: n)
        var got = 0
        while got < n {
            let r = out.withUnsafeMutableBytes { read(fd, $0.baseAddress! + got, n - got) }
            if r <= 0 { return nil }
            got += r
        }
        return out
    }
    static func be<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.bigEndian, Array.init) }

    /// Newstyle fixed handshake with NBD_OPT_GO; returns the export size and transmission flags.
    func handshake(export: String) throws -> (size: UInt64, flags: UInt16) {
        guard let greeting = receive(18), greeting[0..<8] == [0x4e, 0x42, 0x44, 0x4d, 0x41, 0x47, 0x49, 0x43] else {
            throw TestFailure("no NBD greeting")
        }
        send(Self.be(UInt32(3)))  // fixed newstyle, no zeroes
        let name = Array(export.utf8)
        send([0x49, 0x48, 0x41, 0x56, 0x45, 0x4f, 0x50, 0x54] + Self.be(UInt32(7)) + Self.be(UInt32(4 + name.count + 2))
             + Self.be(UInt32(name.count)) + name + Self.be(UInt16(0)))
        var size: UInt64 = 0, flags: UInt16 = 0
        while true {
            guard let h = receive(20) else { throw TestFailure("option reply missing") }
            let type = h[12..<16].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
            let len = Int(h[16..<20].reduce(UInt32(0)) { $0 << 8 | UInt32($1) })
            let data = len > 0 ? receive(len) ?? [] : []
            if type == 1 { return (size, flags) }
            if type == 3, data.count >= 12, data[0] == 0, data[1] == 0 {
                size = data[2..<10].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
                flags = UInt16(data[10]) << 8 | UInt16(data[11])
            }
            if type & 0x8000_0000 != 0 { throw TestFailure("option refused: \(type)") }
        }
    }

    /// Sends one request and returns the error of its simple reply (nil when the server closed).
    func request(type: UInt16, offset: UInt64, length: UInt32, handle: UInt64, data: [UInt8] = [], magic: UInt32 = 0x2560_9513) -> UInt32? {
        send(Self.be(magic) + Self.be(UInt16(0)) + Self.be(type) + Self.be(handle) + Self.be(offset) + Self.be(length) + data)
        guard let r = receive(16) else { return nil }
        let err = r[4..<8].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
        if type == 0 && err == 0 { _ = receive(Int(length)) }
        return err
    }
}

/// The NBD export: bad requests get NBD errors, a broken client is dropped alone, a secondary
/// refuses writes, SIGTERM takes the daemon down cleanly, `events` reports changes.
@Suite(.serialized) struct ExportTests {
    @Test func badRequestsGetErrorsAndOtherClientsKeepGoing() throws {
        let c = try Cluster(.init(size: 16 << 20))
        defer { c.shutdown() }
        try c.start()
        let sock = c.dir + "/alpha.nbd"
        let a = try RawNBDClient(unixPath: sock)
        let (size, flags) = try a.handshake(export: "r0")
        #expect(size == UInt64(try c.exportSize))
        #expect(flags & 2 == 0, "primary export must be writable")
        let block = [UInt8](repeating: 9, count: 4096)
        #expect(a.request(type: 1, offset: 0, length: 4096, handle: 1, data: block) == 0)
        #expect(a.request(type: 1, offset: 100, length: 512, handle: 2, data: [UInt8](repeating: 1, count: 512)) == 22, "unaligned write: EINVAL")
        #expect(a.request(type: 1, offset: size, length: 4096, handle: 3, data: block) == 28, "write past the end: ENOSPC")
        #expect(a.request(type: 0, offset: size - 512, length: 4096, handle: 4) == 22, "read past the end: EINVAL")
        #expect(a.request(type: 42, offset: 0, length: 0, handle: 5) == 22, "unknown command: EINVAL")
        #expect(a.request(type: 3, offset: 0, length: 0, handle: 6) == 0, "flush")
        // A second client opens, then the first sends garbage and is dropped; the second goes on.
        let b = try RawNBDClient(unixPath: sock)
        _ = try b.handshake(export: "r0")
        #expect(a.request(type: 0, offset: 0, length: 512, handle: 7, magic: 0xdead_beef) == nil, "bad magic closes that connection")
        #expect(b.request(type: 0, offset: 0, length: 4096, handle: 8) == 0)
        let info = try Tools.run("/usr/bin/nbdinfo", ["--size", c.uri("alpha")])
        #expect(info.status == 0)
        // Unknown export names are refused during the handshake.
        let d = try RawNBDClient(unixPath: sock)
        #expect(throws: TestFailure.self) { try d.handshake(export: "nope") }
        try c.waitInSync()
    }

    @Test func secondaryRefusesWrites() throws {
        let c = try Cluster(.init(size: 16 << 20))
        defer { c.shutdown() }
        try c.start()
        let q = try Tools.run("/usr/bin/qemu-io", ["-f", "raw", "-c", "write -P 1 0 4k", c.uri("beta")])
        #expect(q.status != 0 || q.out.contains("Operation not permitted") || q.err.contains("read-only") || q.err.contains("Operation not permitted"),
                "a write on the secondary was accepted: \(q.out) \(q.err)")
        let raw = try RawNBDClient(unixPath: c.dir + "/beta.nbd")
        let (_, flags) = try raw.handshake(export: "r0")
        #expect(flags & 2 != 0, "the secondary's export is not flagged read-only")
        #expect(raw.request(type: 1, offset: 0, length: 512, handle: 1, data: [UInt8](repeating: 1, count: 512)) == 1, "EPERM")
    }

    @Test func sigtermIsACleanDown() throws {
        let c = try Cluster(.init(size: 16 << 20))
        defer { c.shutdown() }
        try c.start()
        let q = try Tools.run("/usr/bin/qemu-io", ["-f", "raw", "-c", "write -P 3 0 1M", c.uri("alpha")])
        #expect(q.status == 0)
        let pid = try #require(c.pid("alpha"))
        kill(pid, SIGTERM)
        let deadline = Date().addingTimeInterval(20)
        while kill(pid, 0) == 0 && Date() < deadline { usleep(50_000) }
        #expect(kill(pid, 0) != 0, "daemon still running after SIGTERM")
        #expect(!FileManager.default.fileExists(atPath: "\(c.runDir("alpha"))/r0.ctl"), "control socket left behind")
        // Clean meta-data: dump-md works without --force and the superblock is not unclean.
        let dump = try c.tandem("alpha", "dump-md", "r0")
        #expect(dump.status == 0, "meta-data not clean after SIGTERM: \(dump.err)")
        #expect(c.log("alpha").contains("meta-data marked clean"))
    }

    @Test func eventsReportStateChanges() throws {
        let c = try Cluster(.init(size: 16 << 20))
        defer { c.shutdown() }
        for n in c.nodes { try c.up(n) }
        try c.wait("alpha", "connected") { $0["connection"] as? String == "Connected" }
        let out = Pipe()
        let ev = Process()
        ev.executableURL = URL(fileURLWithPath: Tools.tandem)
        ev.arguments = ["-c", "\(c.dir)/alpha.conf", "--node", "alpha", "events", "r0"]
        ev.environment = ["TANDEM_RUN_DIR": c.runDir("alpha")]
        ev.standardOutput = out
        try ev.run()
        usleep(300_000)
        #expect(try c.tandem("alpha", "primary", "--force", "r0").status == 0)
        try c.waitInSync()
        kill(ev.processIdentifier, SIGKILL)
        ev.waitUntilExit()
        let lines = String(decoding: out.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).split(separator: "\n")
        let objs = lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(objs.count == lines.count, "every events line is one JSON object")
        #expect(objs.first?["type"] as? String == "exists")
        #expect(objs.contains { $0["type"] as? String == "change" && $0["role"] as? String == "Primary" })
        #expect(objs.contains { $0["type"] as? String == "change" && $0["connection"] as? String == "SyncSource" })
    }
}
