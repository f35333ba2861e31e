import Foundation

/// systemd's readiness protocol (sd_notify) without libsystemd: one datagram of `KEY=VALUE`
/// lines to the socket named by $NOTIFY_SOCKET (a path, or `@name` for the abstract
/// namespace). Under `Type=notify`, READY=1 tells systemd the daemon serves (its control socket
/// answers and its export listens), so units ordered after it start only then; STOPPING=1
/// says it is going down; STATUS= is what `systemctl status` shows. Without $NOTIFY_SOCKET
/// (not started by systemd) nothing is sent.
public enum SystemdNotify {
    /// The socket's address from the environment, or nil when systemd did not ask.
    static var socketPath: String? {
        ProcessInfo.processInfo.environment["NOTIFY_SOCKET"].flatMap { $0.isEmpty ? nil : $0 }
    }

    /// Sends `state` (newline-separated assignments); false when there is no socket or the
    /// datagram could not be sent.
    @discardableResult
    public static func send(_ state: String) -> Bool {
        guard let path = socketPath else { return false }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(path.utf8)
        // An abstract address starts with a NUL byte in place of the '@'.
        if bytes.first == UInt8(ascii: "@") { bytes[0] = 0 }
        guard bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { return false }
        withUnsafeMutableBytes(of: &addr.sun_path) { p in
            for (i, b) in bytes.enumerated() { p[i] = b }
        }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + bytes.count + (bytes.first == 0 ? 0 : 1))
        let message = Array(state.utf8)
        let sent = withUnsafePointer(to: &addr) { a in
            a.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in
                message.withUnsafeBytes { m in sendto(fd, m.baseAddress, m.count, Int32(MSG_NOSIGNAL), sa, length) }
            }
        }
        return sent == message.count
    }
}
