import Foundation
import Logging
import TandemEngine

/// Where the daemon's log goes, and the one swift-log handler that writes it.
///
/// - Under systemd (JOURNAL_STREAM names the daemon's stderr): each line on stderr with its
///   syslog priority prefix (`<3>` error .. `<7>` debug), which journald reads as the level;
///   journald adds the time.
/// - Otherwise a file, opened with O_APPEND (so `logrotate copytruncate` leaves no hole of NUL
///   bytes: every write lands at the end, wherever that is now) and opened again on SIGHUP (so
///   `logrotate create` with a postrotate SIGHUP moves to the new file). The file also becomes
///   the daemon's stderr, so whatever else writes there (a crash report) lands in it too.
///
/// Which file: the resource's `log-file` option, else RES.log in $TANDEM_LOG_DIR, else in
/// $TANDEM_RUN_DIR when that is set (several nodes on one machine), else in /var/log/tandem.
public final class DaemonLog: @unchecked Sendable {
    public enum Destination: Equatable, Sendable {
        case journal
        case file(String)
    }

    public let destination: Destination
    private let lock = NSLock()
    private let timeFormat: ISO8601DateFormatter = {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f
    }()
    /// The wall clock for time stamps (the daemon's, which a test may step).
    private let now: @Sendable () -> Date

    /// The default file for a resource when no `log-file` is given.
    public static func defaultPath(resource: String, environment: [String: String] = ProcessInfo.processInfo.environment) -> String {
        func dir(_ k: String) -> String? { environment[k].flatMap { $0.isEmpty ? nil : $0 } }
        let d = dir("TANDEM_LOG_DIR") ?? dir("TANDEM_RUN_DIR") ?? "/var/log/tandem"
        return "\(d)/\(resource).log"
    }

    /// Whether stderr is the journal: JOURNAL_STREAM ("DEV:INODE") names the very descriptor
    /// (an inherited variable with stderr redirected elsewhere does not count).
    public static var stderrIsJournal: Bool {
        guard let v = ProcessInfo.processInfo.environment["JOURNAL_STREAM"] else { return false }
        let parts = v.split(separator: ":")
        guard parts.count == 2, let dev = UInt64(parts[0]), let ino = UInt64(parts[1]) else { return false }
        var st = stat()
        guard fstat(STDERR_FILENO, &st) == 0 else { return false }
        return UInt64(st.st_dev) == dev && UInt64(st.st_ino) == ino
    }

    /// Opens the destination: the journal when stderr is it, else the file (made with its
    /// directory if missing).
    public init(file: String, now: @escaping @Sendable () -> Date) throws {
        self.now = now
        if Self.stderrIsJournal {
            destination = .journal
            return
        }
        destination = .file(file)
        try FileManager.default.createDirectory(atPath: (file as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try reopen()
    }

    /// Opens the file again (after logrotate moved it) onto stderr; a no-op for the journal.
    public func reopen() throws {
        guard case .file(let path) = destination else { return }
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw DaemonLogError(path: path, errno: errno) }
        lock.withLock {
            _ = dup2(fd, STDERR_FILENO)
            _ = close(fd)
        }
    }

    /// syslog's priority for a level, as journald reads it from the line's prefix.
    public static func priority(_ level: Logger.Level) -> Int {
        switch level {
        case .critical: 2
        case .error: 3
        case .warning: 4
        case .notice: 5
        case .info: 6
        case .debug, .trace: 7
        }
    }

    /// The line as written: `<P>r0: message` for the journal, `TIME LEVEL r0: message` to a file.
    public func format(level: Logger.Level, label: String, message: String) -> String {
        switch destination {
        case .journal: "<\(Self.priority(level))>\(label): \(message)"
        case .file: "\(timeFormat.string(from: now())) \(level) \(label): \(message)"
        }
    }

    /// Writes one line whole (one write(2) of an O_APPEND descriptor is not interleaved).
    public func write(level: Logger.Level, label: String, message: String) {
        // A message with newlines stays one entry: continuation lines are indented.
        let text = format(level: level, label: label, message: message).replacingOccurrences(of: "\n", with: "\n    ") + "\n"
        lock.withLock {
            text.utf8CString.withUnsafeBufferPointer { p in
                var off = 0
                let n = p.count - 1
                while off < n {
                    let w = Glibc.write(STDERR_FILENO, p.baseAddress! + off, n - off)
                    if w < 0 && errno == EINTR { continue }
                    guard w > 0 else { return }
                    off += w
                }
            }
        }
    }

    /// The level an engine line is logged at.
    public static func level(_ weight: LogWeight) -> Logger.Level {
        switch weight {
        case .note: .info
        case .stateChange: .notice
        case .warning: .warning
        case .error: .error
        }
    }

    /// The level below which lines are dropped: $TANDEM_LOG_LEVEL (trace, debug, info, notice,
    /// warning, error, critical), else info.
    public static var threshold: Logger.Level {
        ProcessInfo.processInfo.environment["TANDEM_LOG_LEVEL"].flatMap { Logger.Level(rawValue: $0.lowercased()) } ?? .info
    }
}

/// swift-log's view of DaemonLog: every Logger of the daemon writes through it.
public struct DaemonLogHandler: LogHandler {
    public let sink: DaemonLog
    public let label: String
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level

    public init(sink: DaemonLog, label: String, level: Logger.Level = DaemonLog.threshold) {
        self.sink = sink
        self.label = label
        logLevel = level
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String,
                    file: String, function: String, line: UInt) {
        sink.write(level: level, label: label, message: message.description)
    }
}

/// The log file could not be opened.
public struct DaemonLogError: Error, CustomStringConvertible {
    public var path: String
    public var errno: Int32
    public var description: String { "cannot open the log file \(path): \(String(cString: strerror(errno)))" }
}
