import Foundation
import TandemDaemon

/// A blocking client for a daemon's control socket: one JSON line out, JSON lines back.
final class ControlClient {
    private let fd: Int32
    private var buffer: [UInt8] = []

    /// Connects; nil when no daemon answers at `path`.
    init?(path: String) {
        let s = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard s >= 0 else { return nil }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { close(s); return nil }
        withUnsafeMutableBytes(of: &addr.sun_path) { p in
            for (i, b) in bytes.enumerated() { p[i] = b }
            p[bytes.count] = 0
        }
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(s, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else { close(s); return nil }
        fd = s
    }

    deinit { close(fd) }

    func send(_ obj: [String: Any]) throws {
        var d = try JSONSerialization.data(withJSONObject: obj)
        d.append(UInt8(ascii: "\n"))
        try d.withUnsafeBytes { p in
            var off = 0
            while off < p.count {
                let n = write(fd, p.baseAddress! + off, p.count - off)
                guard n > 0 else { throw VerbFailure("control socket: write failed") }
                off += n
            }
        }
    }

    /// The next line as a JSON object; nil at end of stream.
    func receive() -> [String: Any]? {
        while true {
            if let nl = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = Array(buffer[..<nl])
                buffer.removeSubrange(...nl)
                return (try? JSONSerialization.jsonObject(with: Data(line))) as? [String: Any]
            }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = read(fd, &chunk, chunk.count)
            guard n > 0 else { return nil }
            buffer += chunk[0..<n]
        }
    }

    /// Sends a request and returns its answer, failing with the daemon's error.
    func request(_ obj: [String: Any]) throws -> [String: Any] {
        try send(obj)
        guard let r = receive() else { throw VerbFailure("the daemon closed the control connection") }
        if r["ok"] as? Bool == false { throw VerbFailure(r["error"] as? String ?? "failed") }
        return r
    }

    static func path(_ resource: String) -> String { "\(RuntimePaths.runDirectory)/\(resource).ctl" }
}
