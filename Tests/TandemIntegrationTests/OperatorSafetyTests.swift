import Foundation
import Testing

/// What stands between an operator's verb and a running database: a Primary whose export is
/// open is not made Secondary or taken down (DRBD's "Device is held open", exit 11); a
/// resource with a second volume is refused instead of half replicated; a wedged daemon does
/// not hang the command; exit codes are drbdadm's.
@Suite(.serialized) struct OperatorSafetyTests {
    /// A client (python3-libnbd) holds alpha's export open and writes: `secondary` and `down`
    /// exit 11 with DRBD's message, change nothing, and the client's writes go on without an
    /// error; once it has disconnected both succeed.
    @Test func secondaryAndDownAreRefusedWhileTheExportIsOpen() throws {
        let c = try Cluster(.init(size: 64 << 20))
        defer { c.shutdown() }
        try c.start()
        let load = try StampedLoad(c, blocks: 4096)
        try load.waitForProgress(200)
        for verb in ["secondary", "down"] {
            let r = try c.tandem("alpha", verb, "r0")
            #expect(r.status == 11, "\(verb): exit \(r.status) \(r.err)")
            #expect(r.err.contains("Device is held open by someone") && r.err.contains("NBD client"), "\(verb): \(r.err)")
            let s = try c.status("alpha")
            #expect(s["role"] as? String == "Primary" && s["connection"] as? String == "Connected", "\(verb) changed the state: \(s)")
            try load.waitForProgress(100)
        }
        let summary = try load.stop()
        #expect(summary.contains("\"err\": 0"), "the client's writes failed: \(summary)")
        #expect(load.acks > 300)
        try c.waitInSync()
        try load.check(c.disk("beta"), "beta")
        // No client now: both succeed.
        let sec = try c.tandem("alpha", "secondary", "r0")
        #expect(sec.status == 0, "\(sec.err)")
        try c.wait("alpha", "Secondary") { $0["role"] as? String == "Secondary" }
        #expect(try c.tandem("alpha", "down", "r0").status == 0)
        #expect(try c.tandem("alpha", "status", "r0").status == 3, "status of a resource that is down exits 3 (not running)")
        // A name the file does not have is a typo, said as drbdadm says it, not "not up".
        let typo = try c.tandem("alpha", "status", "r9")
        #expect(typo.status == 1 && typo.err.contains("'r9' not defined in your config"), "\(typo.status) \(typo.err)")
    }

    /// `kill -STOP` of a daemon: `status` fails within 10 s with a clear message (exit 5);
    /// after `kill -CONT` it answers again.
    @Test func aStoppedDaemonDoesNotHangTheCommand() throws {
        let c = try Cluster(.init(size: 16 << 20))
        defer {
            if let p = c.pid("beta") { kill(p, SIGCONT) }
            c.shutdown()
        }
        try c.start()
        guard let pid = c.pid("beta") else { throw TestFailure("no pid for beta") }
        kill(pid, SIGSTOP)
        let started = Date()
        let r = try c.tandem("beta", "status", "r0")
        let took = Date().timeIntervalSince(started)
        #expect(r.status == 5 && took < 12, "exit \(r.status) after \(took) s: \(r.err)")
        #expect(r.err.contains("did not answer") && r.err.contains("SIGSTOP"), "\(r.err)")
        let verb = try c.tandem("beta", "disconnect", "r0")
        #expect(verb.status == 5, "disconnect on a stopped daemon: exit \(verb.status) \(verb.err)")
        kill(pid, SIGCONT)
        let again = try c.tandem("beta", "status", "--json", "r0")
        #expect(again.status == 0, "\(again.err)")
    }

    /// A resource with volumes 0 and 1 (data and WAL) is refused at create-md and up, naming
    /// volume 1; `dump` still prints it.
    @Test func aSecondVolumeIsRefusedNamingIt() throws {
        let dir = NSTemporaryDirectory() + "tandem-vol-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for n in ["d0", "d1"] {
            FileManager.default.createFile(atPath: "\(dir)/\(n).img", contents: nil)
            truncate("\(dir)/\(n).img", 16 << 20)
        }
        let conf = "\(dir)/r0.conf"
        try """
            resource r0 {
              on alpha {
                address 127.0.0.1:7789;
                volume 0 { device /dev/drbd0; disk \(dir)/d0.img; meta-disk internal; }
                volume 1 { device /dev/drbd1; disk \(dir)/d1.img; meta-disk internal; }
              }
              on beta {
                address 127.0.0.2:7789;
                volume 0 { device /dev/drbd0; disk /tmp/b0.img; meta-disk internal; }
                volume 1 { device /dev/drbd1; disk /tmp/b1.img; meta-disk internal; }
              }
            }
            """.write(toFile: conf, atomically: true, encoding: .utf8)
        let env = ["TANDEM_RUN_DIR": dir + "/run"]
        for verb in ["create-md", "up", "dump-md", "apply-al"] {
            let r = try Tools.run(Tools.tandem, ["-c", conf, "--node", "alpha", verb, "r0"], env: env)
            #expect(r.status != 0 && r.err.contains("volume 1 (disk \(dir)/d1.img) is refused"), "\(verb): \(r.status) \(r.err)")
        }
        // Nothing was written to either disk.
        for n in ["d0", "d1"] {
            let data = try Data(contentsOf: URL(fileURLWithPath: "\(dir)/\(n).img"))
            #expect(data.allSatisfy { $0 == 0 }, "\(n) was written")
        }
        let dump = try Tools.run(Tools.tandem, ["-c", conf, "--node", "alpha", "dump", "r0"], env: env)
        #expect(dump.status == 0 && dump.out.contains("volume 1"), "\(dump.err)")
    }

    /// `floating` sections (drbdadm matches them by the host's addresses) are refused with what
    /// to write instead, not reported as a resource that does not exist.
    @Test func floatingSectionsAreRefusedWithTheReason() throws {
        let dir = NSTemporaryDirectory() + "tandem-float-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let conf = dir + "/r0.conf"
        try """
            resource r0 {
              floating 127.0.0.1:7789 { device /dev/drbd0; disk \(dir)/a.img; meta-disk internal; }
              floating 127.0.0.2:7789 { device /dev/drbd0; disk \(dir)/b.img; meta-disk internal; }
            }
            """.write(toFile: conf, atomically: true, encoding: .utf8)
        for verb in ["create-md", "up"] {
            let r = try Tools.run(Tools.tandem, ["-c", conf, "--node", "alpha", verb, "r0"], env: ["TANDEM_RUN_DIR": dir + "/run"])
            #expect(r.status != 0 && r.err.contains("floating sections") && r.err.contains("on alpha {"), "\(verb): \(r.err)")
        }
    }

    /// The command line's own contract: --version, --help, usage errors exit 20 naming the
    /// word, an unknown verb after -c is named as such.
    @Test func versionHelpAndUsageErrors() throws {
        let v = try Tools.tandem("--version")
        #expect(v.status == 0 && v.out.contains("TANDEM_VERSION=") && v.out.contains("DRBD_PROTOCOL_VERSIONS=86-101"), "\(v.out) \(v.err)")
        #expect(try Tools.tandem("--help").status == 0)
        #expect(try Tools.tandem("status", "--help").status == 0)
        let unknown = try Tools.tandem("-c", "/nonexistent.conf", "frobnicate", "r0")
        #expect(unknown.status == 20 && unknown.err.contains("unknown verb 'frobnicate'"), "\(unknown.status) \(unknown.err)")
        let badFlag = try Tools.tandem("status", "--no-such-flag", "r0")
        #expect(badFlag.status == 20, "\(badFlag.status) \(badFlag.err)")
        let missing = try Tools.tandem("primary")
        #expect(missing.status == 20, "\(missing.status) \(missing.err)")
    }
}
