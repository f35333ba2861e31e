import Testing
import TandemDaemon

/// Repeated log messages: at most three a minute each, then one line saying how many were left
/// out; other messages are not held back.
@Suite struct LogLimiterTests {
    @Test func repeatsAreCountedNotWritten() {
        var l = LogLimiter(burst: 3, windowMs: 60_000)
        var written: [String] = []
        // 65 identical lines a second for 10 s, with a different one now and then.
        for ms in stride(from: UInt64(0), to: 10_000, by: 15) {
            written += l.lines(for: "local disk write failed during resync: No space left on device", nowMs: ms)
            if ms % 3000 == 0 { written += l.lines(for: "state: \(ms)", nowMs: ms) }
        }
        #expect(written.filter { $0.hasPrefix("local disk write failed") }.count == 3, "\(written)")
        #expect(written.filter { $0.hasPrefix("state: ") }.count == 4)
        // After the minute: the count of what was left out, then the message again.
        let later = l.lines(for: "local disk write failed during resync: No space left on device", nowMs: 61_000)
        #expect(later.count == 2, "\(later)")
        #expect(later.first?.hasPrefix("(664 more of: local disk write failed") == true, "\(later)")
        #expect(later.last == "local disk write failed during resync: No space left on device")
    }

    @Test func manyDistinctMessagesStayBounded() {
        var l = LogLimiter(burst: 1, windowMs: 60_000)
        var n = 0
        for i in 0..<10_000 { n += l.lines(for: "message \(i)", nowMs: UInt64(i)).count }
        #expect(n == 10_000, "distinct messages were held back")
    }
}
