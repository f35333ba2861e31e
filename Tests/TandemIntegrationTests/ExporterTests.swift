import Foundation
import Testing

/// `tandem exporter` against real daemons: drbd-reactor's names and labels, counters that
/// follow the writes, the replication lag while the peer is stopped, promtool's check, and
/// scrapes that go on while a daemon is wedged, gone or going down.
@Suite(.serialized) struct ExporterTests {
    /// One sample of the text format: name, labels, value.
    struct Sample { var name: String; var labels: [String: String]; var value: Double }

    static func parse(_ text: String) -> [Sample] {
        text.split(separator: "\n").compactMap { line -> Sample? in
            guard !line.hasPrefix("#"), let space = line.lastIndex(of: " "), let v = Double(line[line.index(after: space)...]) else { return nil }
            let key = line[..<space]
            guard let brace = key.firstIndex(of: "{") else { return Sample(name: String(key), labels: [:], value: v) }
            var labels: [String: String] = [:]
            for pair in key[key.index(after: brace)..<key.index(before: key.endIndex)].split(separator: ",") {
                let kv = pair.split(separator: "=", maxSplits: 1)
                if kv.count == 2 { labels[String(kv[0])] = String(kv[1].dropFirst().dropLast()) }
            }
            return Sample(name: String(key[..<brace]), labels: labels, value: v)
        }
    }

    static func value(_ samples: [Sample], _ name: String, _ labels: [String: String] = [:]) -> Double? {
        samples.first { s in s.name == name && labels.allSatisfy { k, v in s.labels[k] == v } }?.value
    }

    final class ExporterProcess {
        let process: Process
        let port: Int
        init(runDir: String) throws {
            port = Cluster.reservePorts()
            process = try Tools.spawn(Tools.tandem, ["exporter", "--listen", "127.0.0.1:\(port)"], env: ["TANDEM_RUN_DIR": runDir])
            let deadline = Date().addingTimeInterval(10)
            while (try? Tools.run("/usr/bin/curl", ["-s", "-o", "/dev/null", "-m", "1", "http://127.0.0.1:\(port)/"]))?.status != 0, Date() < deadline {
                usleep(50_000)
            }
        }
        deinit { if process.isRunning { process.terminate() } }

        func scrape(_ path: String = "/metrics") throws -> (code: Int, body: String) {
            let r = try Tools.run("/usr/bin/curl", ["-s", "-m", "10", "-w", "\n%{http_code}", "http://127.0.0.1:\(port)\(path)"])
            let parts = r.out.split(separator: "\n", omittingEmptySubsequences: false)
            return (Int(parts.last ?? "") ?? 0, parts.dropLast().joined(separator: "\n"))
        }

        func samples() throws -> [Sample] {
            let s = try scrape()
            guard s.code == 200 else { throw TestFailure("scrape: HTTP \(s.code): \(s.body)") }
            return ExporterTests.parse(s.body)
        }
    }

    @Test func namesLabelsCountersAndPromtool() throws {
        let c = try Cluster(.init(size: 64 << 20))
        defer { c.shutdown() }
        try c.start()
        let exporter = try ExporterProcess(runDir: c.runDir("alpha"))
        let before = try exporter.samples()
        let res = ["name": "r0"], conn = ["name": "r0", "conn_name": "beta", "peer_node_id": "0"]
        let device = ["name": "r0", "volume": "0", "minor": "0"]
        #expect(Self.value(before, "drbd_resource_resources") == 1)
        #expect(Self.value(before, "drbd_resource_role", res.merging(["drbd_resource_role": "Primary"]) { $1 }) == 1)
        #expect(Self.value(before, "drbd_resource_role", res.merging(["drbd_resource_role": "Secondary"]) { $1 }) == 0)
        // drbd-reactor's enums: one series per state, the current one 1.
        let cstates = before.filter { $0.name == "drbd_connection_state" }
        #expect(cstates.count == 10 && cstates.filter { $0.value == 1 }.map { $0.labels["drbd_connection_state"] } == ["Connected"], "\(cstates.map { ($0.labels, $0.value) })")
        #expect(Self.value(before, "drbd_device_state", device.merging(["drbd_device_state": "UpToDate"]) { $1 }) == 1)
        #expect(Self.value(before, "drbd_peerdevice_outofsync_bytes", conn.merging(["volume": "0"]) { $1 }) == 0)
        #expect(Self.value(before, "drbd_device_size_bytes", device) == Double(try c.exportSize))
        #expect(Self.value(before, "tandem_replication_lag_bytes", res) == 0)

        let w = try Tools.run("/usr/bin/qemu-io", ["-f", "raw", "-c", "write -P 0x5a 1M 4M", c.uri("alpha")])
        try #require(w.status == 0, "\(w.err)")
        try c.waitInSync()
        let after = try exporter.samples()
        for name in ["drbd_device_written_bytes_total", "drbd_peerdevice_sent_bytes_total", "tandem_replicated_data_bytes_total"] {
            let a = Self.value(before, name) ?? -1, b = Self.value(after, name) ?? -1
            let least: Double = name == "drbd_peerdevice_sent_bytes_total" ? 1 : Double(4 << 20)
            #expect(b >= a + least, "\(name): \(a) -> \(b)")
        }
        // LZ4 made the pattern smaller on the wire.
        #expect((Self.value(after, "tandem_replicated_wire_bytes_total") ?? 0) < (Self.value(after, "tandem_replicated_data_bytes_total") ?? 0))

        // promtool: every metric has HELP, counters end in _total, the format is clean.
        let body = try exporter.scrape().body
        let file = c.dir + "/metrics.txt"
        try body.write(toFile: file, atomically: true, encoding: .utf8)
        let check = try Tools.run("/bin/sh", ["-c", "/usr/bin/promtool check metrics < \(file)"])
        #expect(check.status == 0 && check.out.isEmpty && check.err.isEmpty, "promtool: \(check.out) \(check.err)")
        #expect(body.contains("# HELP drbd_connection_state ") && body.contains("# TYPE drbd_device_written_bytes_total counter"))
        #expect(try exporter.scrape("/nope").code == 404)
    }

    /// Protocol A, a write load, the peer stopped (SIGSTOP): the lag gauge rises (writes the
    /// peer has not acknowledged, then the blocks marked when the link times out); the peer
    /// continued, it returns to 0.
    @Test func theLagRisesWhileThePeerIsStoppedAndReturnsToZero() throws {
        let c = try Cluster(.init(wireProtocol: "A", size: 64 << 20))
        defer {
            if let p = c.pid("beta") { kill(p, SIGCONT) }
            c.shutdown()
        }
        try c.start()
        let exporter = try ExporterProcess(runDir: c.runDir("alpha"))
        let load = try StampedLoad(c, blocks: 4096)
        try load.waitForProgress(200)
        guard let beta = c.pid("beta") else { throw TestFailure("no pid") }
        kill(beta, SIGSTOP)
        var peak = 0.0, age = 0.0
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline && !(peak > 0 && age >= 1) {
            let s = try exporter.samples()
            peak = max(peak, Self.value(s, "tandem_replication_lag_bytes") ?? 0)
            age = max(age, Self.value(s, "tandem_replication_lag_seconds") ?? 0)
            usleep(250_000)
        }
        #expect(peak >= 4096 && age >= 1, "lag while the peer was stopped: \(peak) bytes, \(age) s")
        kill(beta, SIGCONT)
        try load.stop()
        try c.waitInSync(timeout: 120)
        let s = try exporter.samples()
        #expect(Self.value(s, "tandem_replication_lag_bytes") == 0 && Self.value(s, "tandem_replication_lag_seconds") == 0,
                "lag after catching up: \(Self.value(s, "tandem_replication_lag_bytes") ?? -1)")
    }

    /// A wedged daemon (a control socket nobody answers), a gone one (a stale socket file) and
    /// a daemon going down while scraped: every scrape answers, with the daemons that answered,
    /// and counts the others.
    @Test func scrapesGoOnWhileDaemonsAreWedgedGoneOrGoingDown() throws {
        let c = try Cluster(.init(size: 16 << 20))
        defer { c.shutdown() }
        try c.start()
        let dir = c.runDir("alpha")
        // Wedged: listening, never accepting or answering.
        let wedged = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(wedged) }
        let bound = Tools.unixSocket(wedged, "\(dir)/wedged.ctl", bind)
        try #require(bound == 0 && listen(wedged, 4) == 0)
        // Gone: a socket file with nobody behind it.
        FileManager.default.createFile(atPath: "\(dir)/gone.ctl", contents: nil)
        let exporter = try ExporterProcess(runDir: dir)
        let started = Date()
        let s = try exporter.samples()
        #expect(Date().timeIntervalSince(started) < 8, "a scrape waited \(Date().timeIntervalSince(started)) s")
        #expect(Self.value(s, "drbd_resource_resources") == 1 && Self.value(s, "drbd_resource_role", ["name": "r0", "drbd_resource_role": "Primary"]) == 1)
        #expect(Self.value(s, "tandem_exporter_daemon_errors_total", ["name": "wedged"]) == 1)
        #expect(Self.value(s, "tandem_exporter_daemon_errors_total", ["name": "gone"]) == 1)

        // beta's exporter scraped in a loop while beta goes down: every scrape is answered.
        let betaExporter = try ExporterProcess(runDir: c.runDir("beta"))
        let codes = c.dir + "/codes", stopFile = c.dir + "/codes.stop"
        let loop = try Tools.spawn("/bin/sh", ["-c", "while [ ! -f \(stopFile) ]; do /usr/bin/curl -s -o /dev/null -m 10 -w '%{http_code}\\n' http://127.0.0.1:\(betaExporter.port)/metrics >> \(codes); done"])
        usleep(300_000)
        #expect(try c.tandem("beta", "down", "r0").status == 0)
        usleep(500_000)
        FileManager.default.createFile(atPath: stopFile, contents: nil)
        loop.waitUntilExit()
        let all = ((try? String(contentsOfFile: codes, encoding: .utf8)) ?? "").split(separator: "\n").map { Int($0) ?? -1 }
        #expect(all.count >= 3 && all.allSatisfy { $0 == 200 }, "scrapes while beta went down: \(all)")
        let last = try betaExporter.samples()
        #expect(Self.value(last, "drbd_resource_resources") == 0)
    }
}
