import Foundation

/// The time of day as the daemon sees it, for what needs the calendar (log lines, snapshot
/// times and the snapshot schedule) and nothing else: timeouts, rates and the engine run on the
/// monotonic clock, so a wall clock stepped by NTP or by hand changes nothing there. Tests step
/// this one process's wall clock with TANDEM_WALL_CLOCK_OFFSET_FILE: a file holding seconds to
/// add to the system's time (read at most every 200 ms; absent or unreadable means 0).
public final class WallClock: @unchecked Sendable {
    private let offsetFile: String?
    private let lock = NSLock()
    private var offset: Double = 0
    private var readAtNs: UInt64 = 0

    public init(offsetFile: String?) { self.offsetFile = offsetFile }

    public static func fromEnvironment() -> WallClock {
        WallClock(offsetFile: ProcessInfo.processInfo.environment["TANDEM_WALL_CLOCK_OFFSET_FILE"])
    }

    public func now() -> Date {
        guard let path = offsetFile else { return Date() }
        lock.lock()
        defer { lock.unlock() }
        let t = DispatchTime.now().uptimeNanoseconds
        if t &- readAtNs >= 200_000_000 || readAtNs == 0 {
            readAtNs = t
            let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
            offset = Double(text.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        }
        return Date().addingTimeInterval(offset)
    }
}
