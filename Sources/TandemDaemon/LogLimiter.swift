/// Keeps a daemon's log readable when something repeats: the same message (exact text) is
/// written at most `burst` times a minute; the rest are counted, and once that minute is over
/// the next time the message comes (or any other message does) one line says how many were
/// left out. A disk that fails every resync write, or a peer refused at every attempt, thus
/// costs a few lines a minute, not dozens a second. Time is the caller's (monotonic ms).
public struct LogLimiter: Sendable {
    public let burst: Int
    public let windowMs: UInt64
    private var seen: [String: (start: UInt64, count: Int, suppressed: Int)] = [:]
    /// At most this many distinct messages are tracked (the oldest windows go first).
    public static let trackedLimit = 256

    public init(burst: Int = 3, windowMs: UInt64 = 60_000) {
        precondition(burst >= 1 && windowMs > 0)
        self.burst = burst
        self.windowMs = windowMs
    }

    /// The lines to write for `message` at `nowMs`: none (suppressed), the message, or a note
    /// of what an ended window left out followed by the message.
    public mutating func lines(for message: String, nowMs: UInt64) -> [String] {
        var out: [String] = []
        // Windows that ended: say what they left out, and forget them.
        for (m, w) in seen where nowMs &- w.start >= windowMs {
            if w.suppressed > 0 { out.append("(\(w.suppressed) more of: \(m.prefix(120)))") }
            seen[m] = nil
        }
        if var w = seen[message] {
            if w.count >= burst {
                w.suppressed += 1
                seen[message] = w
                return out
            }
            w.count += 1
            seen[message] = w
        } else {
            if seen.count >= LogLimiter.trackedLimit, let oldest = seen.min(by: { $0.value.start < $1.value.start }) {
                if oldest.value.suppressed > 0 { out.append("(\(oldest.value.suppressed) more of: \(oldest.key.prefix(120)))") }
                seen[oldest.key] = nil
            }
            seen[message] = (nowMs, 1, 0)
        }
        out.append(message)
        return out
    }
}
