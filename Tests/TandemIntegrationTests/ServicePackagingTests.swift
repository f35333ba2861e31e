import Foundation
import TandemDaemon
import Testing

/// dist/ as scripts/install puts it on a machine: the units pass `systemd-analyze verify`, the
/// daemon speaks systemd's notify protocol as Type=notify expects (READY=1 only once it
/// serves, STOPPING=1 on down), the logrotate snippet parses, completion completes verbs and
/// resource names, and the man page renders without a warning.
@Suite(.serialized) struct ServicePackagingTests {
    /// scripts/install into a fresh root (DESTDIR) with the binary under test.
    static func install() throws -> String {
        let root = NSTemporaryDirectory() + "tandem-root-\(UUID().uuidString.prefix(8))"
        let r = try Tools.run(Tools.packageRoot + "/scripts/install", [], env: ["DESTDIR": root, "TANDEM_BIN": Tools.tandem])
        guard r.status == 0 else { throw TestFailure("scripts/install: \(r.out) \(r.err)") }
        return root
    }

    @Test func installedUnitsVerifyAndTheRestWorks() throws {
        let root = try Self.install()
        defer { try? FileManager.default.removeItem(atPath: root) }
        for f in ["/usr/local/sbin/tandem", "/usr/local/lib/systemd/system/tandem@.service",
                  "/usr/local/lib/systemd/system/tandem-exporter.service", "/etc/logrotate.d/tandem",
                  "/usr/local/share/bash-completion/completions/tandem", "/usr/local/share/man/man8/tandem.8"] {
            #expect(FileManager.default.fileExists(atPath: root + f), "not installed: \(f)")
        }
        let v = try Tools.run(root + "/usr/local/sbin/tandem", ["--version"])
        #expect(v.status == 0 && v.out.contains("TANDEM_VERSION="))

        // systemd-analyze verify: the units as installed, their binary path under this root,
        // the man page of Documentation= found there.
        let units = root + "/verify"
        try FileManager.default.createDirectory(atPath: units, withIntermediateDirectories: true)
        for u in ["tandem@.service", "tandem-exporter.service"] {
            let text = try String(contentsOfFile: root + "/usr/local/lib/systemd/system/" + u, encoding: .utf8)
            try text.replacingOccurrences(of: "/usr/local/sbin/tandem", with: root + "/usr/local/sbin/tandem")
                .write(toFile: units + "/" + u, atomically: true, encoding: .utf8)
        }
        let man = ["MANPATH": root + "/usr/local/share/man"]
        let verify = try Tools.run("/usr/bin/systemd-analyze", ["verify", units + "/tandem@.service", units + "/tandem@r0.service",
                                                                units + "/tandem-exporter.service"], env: man)
        #expect(verify.status == 0 && verify.out.isEmpty && verify.err.isEmpty, "systemd-analyze verify: \(verify.out) \(verify.err)")
        let unit = try String(contentsOfFile: units + "/tandem@.service", encoding: .utf8)
        for line in ["Type=notify", "Restart=on-failure", "OOMScoreAdjust=-900", "up --foreground %i"] {
            #expect(unit.contains(line), "tandem@.service lacks \(line)")
        }
        // Hardened, but keeping what mlockall and PR_SET_IO_FLUSHER need.
        let caps = unit.split(separator: "\n").first { $0.hasPrefix("CapabilityBoundingSet=") } ?? ""
        #expect(caps.contains("CAP_IPC_LOCK") && caps.contains("CAP_SYS_RESOURCE") && caps.contains("CAP_SYS_ADMIN"), "\(caps)")

        // logrotate parses the snippet (debug mode: nothing is rotated).
        let lr = try Tools.run("/usr/sbin/logrotate", ["-d", root + "/etc/logrotate.d/tandem"])
        #expect(lr.status == 0 && !lr.err.contains("error"), "logrotate -d: \(lr.err)")

        // The man page renders with no warning.
        let m = try Tools.run("/usr/bin/man", ["--warnings", "-l", root + "/usr/local/share/man/man8/tandem.8"], env: ["MANWIDTH": "80"])
        #expect(m.status == 0 && m.err.isEmpty && m.out.contains("EXIT STATUS"), "man: \(m.err)")

        // Completion: verbs at the first word (every verb `tandem --help` lists), the node's
        // resource names after a verb, from the file given with -c.
        let conf = root + "/etc/tandem/tandem.conf"
        try """
            resource r0 { on alpha { device /dev/drbd0; disk /tmp/a0; address 127.0.0.1:7789; meta-disk internal; }
                          on beta { device /dev/drbd0; disk /tmp/b0; address 127.0.0.2:7789; meta-disk internal; } }
            resource db { on alpha { device /dev/drbd1; disk /tmp/a1; address 127.0.0.1:7790; meta-disk internal; }
                          on beta { device /dev/drbd1; disk /tmp/b1; address 127.0.0.2:7790; meta-disk internal; } }
            resource other { on gamma { device /dev/drbd2; disk /tmp/g; address 127.0.0.3:7791; meta-disk internal; }
                             on beta { device /dev/drbd2; disk /tmp/b2; address 127.0.0.2:7791; meta-disk internal; } }
            """.write(toFile: conf, atomically: true, encoding: .utf8)
        func complete(_ words: [String]) throws -> [String] {
            let script = """
                PATH=\(root)/usr/local/sbin:$PATH
                source \(root)/usr/local/share/bash-completion/completions/tandem
                COMP_WORDS=(\(words.map { "'\($0)'" }.joined(separator: " "))); COMP_CWORD=\(words.count - 1)
                _tandem; printf '%s\\n' "${COMPREPLY[@]}"
                """
            let r = try Tools.run("/bin/bash", ["-c", script])
            guard r.status == 0 else { throw TestFailure("completion: \(r.err)") }
            return r.out.split(separator: "\n").map(String.init)
        }
        #expect(try complete(["tandem", "-c", conf, "--node", "alpha", "up", ""]).sorted() == ["db", "r0"])
        #expect(try complete(["tandem", "-c", conf, "--node", "alpha", "status", "d"]) == ["db"])
        let firstWords = Set(try complete(["tandem", ""]))
        let help = try Tools.tandem("--help").out
        // The verbs: in SUBCOMMANDS, lines with two spaces and a name (descriptions wrap deeper).
        let section = help.components(separatedBy: "SUBCOMMANDS:").last ?? ""
        let verbsInHelp = section.split(separator: "\n").compactMap { line -> String? in
            guard line.hasPrefix("  "), !line.hasPrefix("   "), let w = line.split(separator: " ").first else { return nil }
            return String(w)
        }.filter { $0 != "See" }
        #expect(verbsInHelp.count >= 28, "\(verbsInHelp)")
        let missing = Set(verbsInHelp).subtracting(firstWords)
        #expect(missing.isEmpty, "verbs tandem --help lists that completion does not: \(missing.sorted())")
        #expect(try complete(["tandem", "primary", "--f"]) == ["--force"])
    }

    /// The Grafana dashboard is valid JSON, installed, and asks only for metrics the exporter
    /// writes (a renamed metric would leave a panel empty without a word).
    @Test func theDashboardUsesTheExportersMetrics() throws {
        let root = try Self.install()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let data = try Data(contentsOf: URL(fileURLWithPath: root + "/usr/local/share/tandem/tandem-dashboard.json"))
        let dash = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let panels = try #require(dash["panels"] as? [[String: Any]])
        let exprs = panels.flatMap { ($0["targets"] as? [[String: Any]] ?? []).compactMap { $0["expr"] as? String } }
        #expect(exprs.count >= 12)
        let names = Set(exprs.flatMap { $0.matches(of: /\b(?:drbd|tandem)_[a-z_]+/).map { String($0.output) } })
        let unknown = names.subtracting(StatusMetrics.catalog.keys)
        #expect(unknown.isEmpty, "the dashboard asks for metrics the exporter does not write: \(unknown.sorted())")
        for needed in ["tandem_replication_lag_bytes", "tandem_snapshot_age_seconds", "drbd_connection_state", "drbd_device_written_bytes_total"] {
            #expect(names.contains(needed), "no panel shows \(needed)")
        }
    }

    /// Type=notify as systemd runs it, against a notify socket the test reads: READY=1 comes
    /// once the control socket answers and the export listens (both checked when it arrives),
    /// STATUS= follows the state, STOPPING=1 comes on down, and the daemon then exits 0.
    @Test func theNotifyProtocol() throws {
        let c = try Cluster(.init(size: 16 << 20))
        defer { c.shutdown() }
        let sockPath = c.dir + "/notify.sock"
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue), 0)
        try #require(fd >= 0)
        defer { close(fd) }
        let bound = Tools.unixSocket(fd, sockPath, bind)
        try #require(bound == 0, "bind \(sockPath)")
        var tv = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        func receive() -> String? {
            var buf = [UInt8](repeating: 0, count: 4096)
            let n = recv(fd, &buf, buf.count, 0)
            return n > 0 ? String(decoding: buf[..<n], as: UTF8.self) : nil
        }

        let p = try Tools.spawn(Tools.tandem, ["-c", "\(c.dir)/alpha.conf", "--node", "alpha", "up", "--foreground", "r0"],
                                env: ["TANDEM_RUN_DIR": c.runDir("alpha"), "NOTIFY_SOCKET": sockPath])
        defer { if p.isRunning { p.terminate() } }
        let ready = receive() ?? ""
        // At READY=1 the daemon serves: both sockets take a connection at once (checked in
        // this process, before anything could catch up), status answers, the export works.
        func connects(_ path: String) -> Bool {
            let s = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
            defer { close(s) }
            return Tools.unixSocket(s, path, connect) == 0
        }
        let controlAtReady = connects(c.runDir("alpha") + "/r0.ctl"), exportAtReady = connects(c.dir + "/alpha.nbd")
        #expect(controlAtReady && exportAtReady, "at READY=1: control socket \(controlAtReady), export \(exportAtReady)")
        let status = try c.tandem("alpha", "status", "--json", "r0")
        let size = try Tools.run("/usr/bin/nbdinfo", ["--size", c.uri("alpha")])
        #expect(ready.contains("READY=1") && ready.contains("MAINPID=\(p.processIdentifier)"), "first notification: \(ready)")
        #expect(ready.contains("STATUS=Secondary/"), "\(ready)")
        #expect(status.status == 0 && size.status == 0, "READY=1 before the daemon served: \(status.err) \(size.err)")
        try c.up("beta")
        // STATUS follows the state; then down: STOPPING=1, exit 0.
        var seen: [String] = []
        while let m = receive() {
            seen.append(m)
            if m.contains("Connected") { break }
        }
        #expect(seen.contains { $0.contains("STATUS=") && $0.contains("Connected") }, "\(seen)")
        #expect(try c.tandem("alpha", "down", "r0").status == 0)
        var stopping = false
        while let m = receive() { if m.contains("STOPPING=1") { stopping = true; break } }
        #expect(stopping, "no STOPPING=1 on down")
        p.waitUntilExit()
        #expect(p.terminationStatus == 0)
    }
}
