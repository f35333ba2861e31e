import Foundation
import Testing

/// The daemon's log as an operator's tools meet it: logrotate in both its modes, levels,
/// state changes that are never dropped, and journald's priority prefixes under systemd.
@Suite(.serialized) struct LogTests {
    static func logrotate(_ c: Cluster, _ body: String) throws {
        let conf = c.dir + "/logrotate.conf"
        try "\(c.runDir("alpha"))/r0.log {\n  su root root\n  rotate 2\n  missingok\n\(body)\n}\n"
            .write(toFile: conf, atomically: true, encoding: .utf8)
        let r = try Tools.run("/usr/sbin/logrotate", ["-f", "-s", c.dir + "/logrotate.state", conf])
        guard r.status == 0 else { throw TestFailure("logrotate: \(r.out) \(r.err)") }
    }

    /// Lines a disconnect and connect of alpha write (state changes: always logged).
    static func flap(_ c: Cluster) throws {
        #expect(try c.tandem("alpha", "disconnect", "r0").status == 0)
        try c.wait("alpha", "StandAlone") { $0["connection"] as? String == "StandAlone" }
        #expect(try c.tandem("alpha", "connect", "r0").status == 0)
        try c.wait("alpha", "Connected") { $0["connection"] as? String == "Connected" }
    }

    static func bytes(_ path: String) -> [UInt8] { (try? [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))) ?? [] }
    static func stateLines(_ text: String, _ what: String) -> Int {
        text.split(separator: "\n").filter { $0.contains("notice r0: state:") && $0.contains(what) }.count
    }

    /// copytruncate (the daemon keeps writing to the same file, now empty): the log goes on
    /// with no NUL bytes (the file is appended to); then create + SIGHUP: the daemon moves to
    /// the new file and the rotated one gets nothing more.
    @Test func logrotateInBothModes() throws {
        let c = try Cluster(.init(size: 16 << 20))
        defer { c.shutdown() }
        try c.start()
        let log = c.runDir("alpha") + "/r0.log"
        try Self.flap(c)
        let before = Self.bytes(log).count
        #expect(before > 0)
        try Self.logrotate(c, "  copytruncate")
        try Self.flap(c)
        let after = Self.bytes(log)
        let nuls = after.filter { $0 == 0 }.count
        #expect(nuls == 0, "\(nuls) NUL bytes of \(after.count) in the log after copytruncate")
        let text = String(decoding: after, as: UTF8.self)
        #expect(Self.stateLines(text, "StandAlone") == 1, "the log after copytruncate: \(text)")
        #expect(Self.bytes(log + ".1").count >= before, "the rotated copy lost lines")

        guard let pid = c.pid("alpha") else { throw TestFailure("no pid") }
        try Self.logrotate(c, "  create 0640 root root\n  postrotate\n    kill -HUP \(pid)\n  endscript")
        // The daemon says it reopened in the new file.
        let deadline = Date().addingTimeInterval(10)
        while !String(decoding: Self.bytes(log), as: UTF8.self).contains("log file opened again (SIGHUP)") && Date() < deadline { usleep(100_000) }
        try Self.flap(c)
        let fresh = String(decoding: Self.bytes(log), as: UTF8.self)
        let rotated = String(decoding: Self.bytes(log + ".1"), as: UTF8.self)
        #expect(fresh.contains("log file opened again (SIGHUP)") && Self.stateLines(fresh, "StandAlone") == 1, "new log: \(fresh)")
        #expect(Self.stateLines(rotated, "StandAlone") == 1 && !rotated.contains("opened again"), "the rotated log kept getting lines: \(rotated)")
        #expect(kill(pid, 0) == 0, "SIGHUP ended the daemon")
    }

    /// A link flapping 5 times within a minute shows 5 times (the repeat limiter drops only
    /// identical lines that are not state changes); lines carry their level.
    @Test func stateChangesAreNeverRateLimited() throws {
        let c = try Cluster(.init(size: 16 << 20))
        defer { c.shutdown() }
        try c.start()
        let start = Date()
        for _ in 0..<5 { try Self.flap(c) }
        #expect(Date().timeIntervalSince(start) < 60)
        let text = c.log("alpha")
        #expect(Self.stateLines(text, "StandAlone") == 5, "state lines: \(text.split(separator: "\n").filter { $0.contains("state:") })")
        #expect(text.contains(" info r0: up: r0 on alpha"), "no level on the up line")
        #expect(text.contains(" warning r0: connection lost: "), "a lost connection is a warning")
    }

    /// Under systemd (JOURNAL_STREAM names stderr) each line goes to stderr with its syslog
    /// priority prefix and no time stamp (journald adds it); no log file is written.
    @Test func journaldPrioritiesWhenStderrIsTheJournal() throws {
        let c = try Cluster(.init(size: 16 << 20))
        defer { c.shutdown() }
        let stream = c.dir + "/journal-stream"
        FileManager.default.createFile(atPath: stream, contents: nil)
        var st = stat()
        guard stat(stream, &st) == 0 else { throw TestFailure("stat \(stream)") }
        let out = try FileHandle(forWritingTo: URL(fileURLWithPath: stream))
        let p = try Tools.spawn(Tools.tandem, ["-c", "\(c.dir)/beta.conf", "--node", "beta", "up", "--foreground", "r0"],
                                env: ["TANDEM_RUN_DIR": c.runDir("beta"), "JOURNAL_STREAM": "\(st.st_dev):\(st.st_ino)"], output: out)
        defer { if p.isRunning { p.terminate() } }
        try c.up("alpha")
        try c.wait("beta", "Connected") { $0["connection"] as? String == "Connected" }
        #expect(try c.tandem("beta", "down", "r0").status == 0)
        p.waitUntilExit()
        let text = String(decoding: Self.bytes(stream), as: UTF8.self)
        #expect(text.contains("<6>r0: up: r0 on beta"), "\(text)")
        #expect(text.split(separator: "\n").contains { $0.hasPrefix("<5>r0: state:") }, "\(text)")
        #expect(text.split(separator: "\n").allSatisfy { $0.hasPrefix("<") || $0.hasPrefix("    ") }, "a line without its priority: \(text)")
        #expect(!FileManager.default.fileExists(atPath: c.runDir("beta") + "/r0.log") || Self.bytes(c.runDir("beta") + "/r0.log").isEmpty,
                "a log file was written under the journal")
    }
}
