import Foundation
import TandemDaemon

/// A blocking client for a daemon's control socket (ControlProtocol): one request line out,
/// reply lines back, each wait bounded. A daemon that is stopped (SIGSTOP) or wedged still
/// accepts the connection in the kernel, so every wait has a limit: the first answer must come
/// within `answerLimit`, and a verb that takes time then has its own limit.
final class ControlClient {
    /// How long a daemon may take to answer a request at all (`status`, or `accepted`).
    static let answerLimit: TimeInterval = 10
    /// This client's limit for a first answer (the exporter's is shorter than a verb's).
    let firstAnswerLimit: TimeInterval

    private let fd: Int32
    private var buffer: [UInt8] = []
    let resource: String

    /// Connects; nil when no daemon answers at the resource's control socket.
    init?(resource: String, answerLimit: TimeInterval = ControlClient.answerLimit) {
        self.resource = resource
        firstAnswerLimit = answerLimit
        let path = Self.path(resource)
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
        // A wedged daemon must not hold the connect (its listen backlog full: connect waits
        // for room, up to the send timeout) nor the write of the request.
        var tv = timeval(tv_sec: Int(answerLimit.rounded(.up)), tv_usec: 0)
        setsockopt(s, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(s, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard rc == 0 else { close(s); return nil }
        fd = s
    }

    deinit { close(fd) }

    static func path(_ resource: String) -> String { "\(RuntimePaths.runDirectory)/\(resource).ctl" }

    func send(_ request: ControlRequest) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        var d = try encoder.encode(request)
        d.append(UInt8(ascii: "\n"))
        try d.withUnsafeBytes { p in
            var off = 0
            while off < p.count {
                let n = write(fd, p.baseAddress! + off, p.count - off)
                guard n > 0 else {
                    throw VerbFailure("\(resource): the daemon does not take requests (control socket write: \(String(cString: strerror(errno))))", exit: .timedOut)
                }
                off += n
            }
        }
    }

    /// The next line; nil at the end of the stream. Waits at most until `deadline` (nil: no
    /// limit), then fails with `timedOut`.
    func receiveLine(deadline: Date?, waitingFor what: String) throws -> String? {
        while true {
            if let nl = buffer.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: buffer[..<nl], as: UTF8.self)
                buffer.removeSubrange(...nl)
                return line
            }
            if buffer.count > ControlProtocol.maxLineBytes * 16 {
                throw VerbFailure("\(resource): the daemon sent a line longer than \(ControlProtocol.maxLineBytes * 16) bytes", exit: .usage)
            }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let waitMs: Int32 = deadline.map { Int32(max(0, min(Double(Int32.max), $0.timeIntervalSinceNow * 1000))) } ?? -1
            let ready = poll(&pfd, 1, waitMs)
            if ready < 0 && errno == EINTR { continue }
            if ready == 0 { throw timedOut(what) }
            var chunk = [UInt8](repeating: 0, count: 65536)
            let n = read(fd, &chunk, chunk.count)
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { return nil }
            buffer += chunk[0..<n]
        }
    }

    private func timedOut(_ what: String) -> VerbFailure {
        let pid = (try? String(contentsOfFile: "\(RuntimePaths.runDirectory)/\(resource).pid", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let who = pid.map { "the daemon (pid \($0))" } ?? "the daemon"
        let later = what.hasPrefix("`status`") ? "" : " (it may still carry out the request when it runs again: check `tandem status` then)"
        return VerbFailure("\(resource): \(who) did not answer \(what): it may be stopped (SIGSTOP) or wedged; see its log, and `kill -CONT` it if it was stopped\(later)", exit: .timedOut)
    }

    /// The next reply; a closed connection or an unreadable line is a failure.
    private func receiveReply(deadline: Date?, what: String) throws -> ControlReply {
        guard let line = try receiveLine(deadline: deadline, waitingFor: what) else {
            throw VerbFailure("\(resource): the daemon closed the control connection (it may be going down)")
        }
        do { return try ControlReply.decode(line: line) } catch {
            throw VerbFailure("\(resource): \(error.message)", exit: .usage)
        }
    }

    /// Sends a request and returns its final reply, failing with the daemon's error (and its
    /// exit code). The daemon must answer within `answerLimit`; a verb it accepted then has
    /// `limit` (nil: none) to finish.
    @discardableResult
    func request(_ request: ControlRequest, limit: TimeInterval? = 600) throws -> ControlReply {
        try send(request)
        let verb = request.verb.rawValue
        var reply = try receiveReply(deadline: Date().addingTimeInterval(firstAnswerLimit),
                                     what: "`\(verb)` within \(Int(firstAnswerLimit)) s")
        if reply.accepted == true {
            let what = limit.map { "`\(verb)` within \(Int($0)) s of taking it" } ?? "`\(verb)`"
            reply = try receiveReply(deadline: limit.map { Date().addingTimeInterval($0) }, what: what)
        }
        if reply.ok != true {
            let e = reply.error ?? ControlError("the daemon answered neither ok nor an error", kind: .failed)
            throw VerbFailure(e.message, exit: ExitCode(e.kind))
        }
        return reply
    }

    /// The daemon's status now.
    func status() throws -> StatusSnapshot {
        guard let s = try request(ControlRequest(.status)).status else {
            throw VerbFailure("\(resource): the daemon's status reply carries no status", exit: .usage)
        }
        return s
    }
}
