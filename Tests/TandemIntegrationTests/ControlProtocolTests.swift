import Foundation
import TandemDaemon
import Testing

/// The control socket against bad input, as a command of another version or a broken client
/// would send it: every request gets an answer naming what is wrong, the daemon goes on, and
/// nothing changes.
@Suite(.serialized) struct ControlProtocolTests {
    /// A raw client: sends bytes, reads one reply line (or the end of the stream).
    final class Raw {
        let fd: Int32
        init(_ path: String) throws {
            fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            guard Tools.unixSocket(fd, path, connect) == 0 else { throw TestFailure("connect \(path)") }
            var tv = timeval(tv_sec: 10, tv_usec: 0)
            setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        }
        deinit { close(fd) }
        func send(_ bytes: [UInt8]) { bytes.withUnsafeBytes { _ = write(fd, $0.baseAddress, $0.count) } }
        func send(_ s: String) { send(Array(s.utf8)) }
        func line() -> String? {
            var out: [UInt8] = []
            var b: UInt8 = 0
            while read(fd, &b, 1) == 1 {
                if b == UInt8(ascii: "\n") { return String(decoding: out, as: UTF8.self) }
                out.append(b)
            }
            return nil
        }
    }

    static func reply(_ line: String?) throws -> ControlReply {
        guard let l = line else { throw TestFailure("no reply") }
        return try ControlReply.decode(line: l)
    }

    @Test func badRequestsAreAnsweredAndChangeNothing() throws {
        let c = try Cluster(.init(size: 16 << 20))
        defer { c.shutdown() }
        try c.start()
        let path = c.runDir("alpha") + "/r0.ctl"
        let before = try c.status("alpha")

        let cases: [(String, ControlError.Kind, String)] = [
            (#"{"verb":"secondary"}"#, .versionMismatch, "without a protocol version"),
            (#"{"version":2,"verb":"secondary"}"#, .versionMismatch, "control protocol 2"),
            (#"{"version":1,"verb":"seconda"#, .badRequest, "malformed control request"),
            ("not json at all", .badRequest, "malformed control request"),
            (#"{"version":1,"verb":"format-disk"}"#, .badRequest, "unknown control verb 'format-disk'"),
            (#"{"version":1,"verb":"primary","force":"yes"}"#, .badRequest, "force"),
            (#"{"version":1,"verb":"verify","start-sector":-5}"#, .badRequest, "start-sector"),
            (#"[1,2,3]"#, .badRequest, "not a JSON object"),
        ]
        for (request, kind, words) in cases {
            let raw = try Raw(path)
            raw.send(request + "\n")
            let r = try Self.reply(raw.line())
            #expect(r.ok == false && r.error?.kind == kind && r.error?.message.contains(words) == true, "\(request): \(r.error?.message ?? "no error")")
            // The same connection still serves a good request after a bad one.
            raw.send(#"{"version":1,"verb":"status"}"# + "\n")
            #expect(try Self.reply(raw.line()).status?.role == "Primary", "\(request): no status after it")
        }
        // An oversized line (no newline within 64 KiB): answered, then the connection closed.
        let big = try Raw(path)
        big.send([UInt8](repeating: UInt8(ascii: "a"), count: ControlProtocol.maxLineBytes + 4096))
        let r = try Self.reply(big.line())
        #expect(r.error?.kind == .badRequest && r.error?.message.contains("longer than") == true, "\(r.error?.message ?? "")")
        #expect(big.line() == nil, "the connection stayed open after an oversized line")
        // A client that sends half a request and goes away.
        do {
            let half = try Raw(path)
            half.send(#"{"version":1,"ver"#)
        }
        // The command of this version against the daemon: nothing changed.
        let after = try c.status("alpha")
        for k in ["role", "connection", "disk", "peer-disk"] {
            #expect(after[k] as? String == before[k] as? String, "\(k) changed: \(before[k] ?? "-") -> \(after[k] ?? "-")")
        }
        #expect(kill(c.pid("alpha") ?? 0, 0) == 0, "the daemon died")
    }
}
