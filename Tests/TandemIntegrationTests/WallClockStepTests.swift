import Foundation
import Testing

/// The wall clock stepped forward by an hour and then back by an hour while a resync runs and
/// the application writes (protocol C) changes nothing: no timeout, no dropped link, no second
/// resync, a sane rate, identical disks with every acknowledged write. The daemons take their
/// wall clock from TANDEM_WALL_CLOCK_OFFSET_FILE (the machine's clock is not touched); their
/// log lines show the steps, proving they took it.
@Suite struct WallClockStepTests {
    @Test func anHourForwardAndBackChangesNothing() throws {
        let clock = NSTemporaryDirectory() + "tandem-clock-\(UUID().uuidString.prefix(8))"
        try "0\n".write(toFile: clock, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(atPath: clock) }
        let c = try Cluster(.init(wireProtocol: "C", size: 64 << 20, net: "compression off;", environment: ["TANDEM_WALL_CLOCK_OFFSET_FILE": clock],
                                  disk: "c-max-rate 3M; resync-rate 3M;"))
        defer { c.shutdown() }
        try c.start()
        // 24 MiB written while disconnected: a resync of about 8 s at 3 MiB/s.
        #expect(try c.tandem("alpha", "disconnect", "r0").status == 0)
        try #require(try Tools.run("/usr/bin/qemu-io", ["-f", "raw", "-c", "write -P 0x3c 32M 24M", c.uri("alpha")]).status == 0)
        let load = try StampedLoad(c, blocks: 4096)
        defer { if load.process.isRunning { load.process.terminate() } }
        try load.waitForProgress(50)
        let eventsFile = c.dir + "/events.json"
        let events = try Tools.spawn("/bin/sh", ["-c", "TANDEM_RUN_DIR=\(c.runDir("alpha")) TANDEM_WALL_CLOCK_OFFSET_FILE=\(clock) exec \(Tools.tandem) -c \(c.dir)/alpha.conf --node alpha events r0 > \(eventsFile)"])
        defer { events.terminate() }
        sleep(1)
        #expect(try c.tandem("alpha", "connect", "r0").status == 0)
        try c.wait("alpha", timeout: 30, "the resync") { $0["connection"] as? String == "SyncSource" }
        // From here on, nothing but the resync and the writes may happen.
        let linesBefore = c.nodes.map { c.log($0).split(separator: "\n").count }
        var rates: [Int] = []
        for offset in ["3600", "-3600"] {
            try "\(offset)\n".write(toFile: clock, atomically: true, encoding: .utf8)
            try load.waitForProgress(30)
            sleep(2)
            let s = try c.status("alpha")
            #expect(s["connection"] as? String == "SyncSource", "the resync is not running after the step to \(offset): \(s)")
            if let r = s["sync-rate-kib"] as? Int { rates.append(r) }
        }
        try "0\n".write(toFile: clock, atomically: true, encoding: .utf8)
        for n in c.nodes {
            try c.wait(n, timeout: 120, "in sync") { s in
                s["connection"] as? String == "Connected" && s["out-of-sync-kib"] as? Int == 0 && s["peer-disk"] as? String == "UpToDate"
            }
        }
        try load.stop()
        // The rate is measured on the monotonic clock: near 3 MiB/s at both steps (a rate on the
        // wall clock would be 24 MiB over an hour, under 10 KiB/s, after the step forward).
        #expect(rates.count == 2 && rates.allSatisfy { $0 > 100 && $0 < 100 * 1024 }, "sync rates after the steps (KiB/s): \(rates)")
        let iso = ISO8601DateFormatter()
        iso.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        for (i, n) in c.nodes.enumerated() {
            // (The log limiter's "(N more of: ...)" counts lines from before the resync.)
            let lines = c.log(n).split(separator: "\n").dropFirst(linesBefore[i]).filter { !$0.contains(" more of: ") }
            for bad in ["connection lost", "PingAck did not arrive", "Remote failed to finish", "timed out", "handshake"] {
                #expect(!lines.contains { $0.contains(bad) }, "\(n) logged \"\(bad)\" during the resync:\n\(lines.joined(separator: "\n"))")
            }
            #expect(!lines.contains { $0.contains("Began resync") }, "\(n) began another resync:\n\(lines.joined(separator: "\n"))")
        }
        // The daemon took the stepped clock: its events (a progress event a second during the
        // resync) carry times an hour ahead of the first and an hour behind it.
        events.terminate()
        events.waitUntilExit()
        let times = ((try? String(contentsOfFile: eventsFile, encoding: .utf8)) ?? "").split(separator: "\n").compactMap { line -> Date? in
            guard let o = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], let t = o["time"] as? String else { return nil }
            return iso.date(from: t)
        }
        let first = try #require(times.first, "no event with a time")
        #expect(times.contains { $0.timeIntervalSince(first) > 3000 }, "no event an hour ahead: \(times)")
        #expect(times.contains { $0.timeIntervalSince(first) < -1800 }, "no event an hour behind: \(times)")
        let area = try #require(try c.status("alpha")["data-area-kib"] as? Int) * 1024
        #expect(try c.dataHash("alpha", bytes: area) == (try c.dataHash("beta", bytes: area)), "the disks differ")
        for n in c.nodes { try load.check(c.disk(n), n) }
    }
}
