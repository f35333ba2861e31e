import Foundation
import Testing

/// The `tandem` command against drbdadm-84 for resource files, and its errors on bad input.
@Suite struct CommandLineTests {
    static let drbdadm = "/lib/drbd/drbdadm-84"

    @Test(arguments: [("valid-basic.res", ["r0"]), ("valid-features.res", ["r1", "r2", "r3"])])
    func dumpAgreesWithDrbdadm(file: String, resources: [String]) throws {
        let path = Tools.fixtures + "/" + file
        for r in resources {
            let theirs = try Tools.run(Self.drbdadm, ["-c", path, "dump", r], env: ["__DRBD_NODE__": "alpha"])
            let ours = try Tools.tandem("-c", path, "--node", "alpha", "dump", "--show-secrets", r)
            #expect(theirs.status == 0, "drbdadm refused \(file) \(r): \(theirs.err)")
            #expect(ours.status == 0, "\(ours.err)")
            #expect(ours.out == theirs.out, "\(file) \(r)")
        }
    }

    /// Values with characters beyond letters, digits and `-_./` are quoted as drbdadm quotes
    /// them, so the dump reads back (found by the config fuzz target: a `;` inside a quoted
    /// device URI was printed bare).
    @Test func dumpQuotesWhatDrbdadmQuotes() throws {
        let path = NSTemporaryDirectory() + "quoting-\(UUID().uuidString.prefix(6)).res"
        defer { try? FileManager.default.removeItem(atPath: path) }
        try """
            resource r0 {
              on alpha { device /dev/drbd0; disk "/tmp/a;b{c}#d\\"e:f=g"; address 10.0.0.1:7789; meta-disk internal; }
              on beta { device /dev/drbd0; disk "/tmp/x y+z@w"; address 10.0.0.2:7789; meta-disk internal; }
            }
            """.write(toFile: path, atomically: true, encoding: .utf8)
        let theirs = try Tools.run(Self.drbdadm, ["-c", path, "dump", "r0"], env: ["__DRBD_NODE__": "alpha"])
        let ours = try Tools.tandem("-c", path, "--node", "alpha", "dump", "r0")
        #expect(theirs.status == 0 && ours.status == 0, "\(theirs.err) \(ours.err)")
        #expect(ours.out == theirs.out)
        // And our dump reads back to the same dump.
        let again = path + ".dump"
        defer { try? FileManager.default.removeItem(atPath: again) }
        try ours.out.write(toFile: again, atomically: true, encoding: .utf8)
        let twice = try Tools.tandem("-c", again, "--node", "alpha", "dump", "r0")
        #expect(twice.status == 0, "\(twice.err)")
        #expect(twice.out.split(separator: "\n").dropFirst(2) == ours.out.split(separator: "\n").dropFirst(2))
    }

    /// Without --show-secrets, dump prints the shared secret as <hidden> and nothing else changes.
    @Test func dumpHidesTheSharedSecret() throws {
        let path = Tools.fixtures + "/valid-basic.res"
        let shown = try Tools.tandem("-c", path, "--node", "alpha", "dump", "--show-secrets", "r0")
        let hidden = try Tools.tandem("-c", path, "--node", "alpha", "dump", "r0")
        #expect(shown.out.contains("s3cret"))
        #expect(!hidden.out.contains("s3cret"), "\(hidden.out)")
        #expect(hidden.out == shown.out.replacingOccurrences(of: "s3cret", with: "<hidden>"))
    }

    @Test(arguments: ["broken-unknown-option.res", "broken-range.res", "broken-unterminated.res", "broken-duplicate-section.res"])
    func brokenFilesAreRefusedByBoth(file: String) throws {
        let path = Tools.fixtures + "/" + file
        let theirs = try Tools.run(Self.drbdadm, ["-c", path, "dump", "r0"], env: ["__DRBD_NODE__": "alpha"])
        let ours = try Tools.tandem("-c", path, "--node", "alpha", "dump", "r0")
        #expect(theirs.status != 0)
        #expect(ours.status != 0)
        #expect(ours.err.hasPrefix("tandem: \(path):"), "\(ours.err)")
        #expect(ours.err.split(separator: "\n").count == 1)
        // Same line as drbdadm's report.
        let line = theirs.err.split(separator: "\n").compactMap { l -> String? in
            guard let r = l.range(of: path + ":") else { return nil }
            return String(l[r.upperBound...].prefix { $0.isNumber })
        }.first
        #expect(line != nil && ours.err.hasPrefix("tandem: \(path):\(line!):"), "drbdadm: \(theirs.err) tandem: \(ours.err)")
    }

    @Test func unknownResourceOrNodeIsAClearError() throws {
        let path = Tools.fixtures + "/valid-basic.res"
        let r = try Tools.tandem("-c", path, "--node", "gamma", "dump", "r0")
        #expect(r.status != 0 && r.err.contains("'r0' not defined in your config"))
        let missing = try Tools.tandem("-c", "/nonexistent.conf", "dump", "r0")
        #expect(missing.status != 0 && missing.err.contains("cannot read configuration file"))
    }

    @Test func badMetaDataGivesOneLineErrors() throws {
        func check(size: Int, prepare: (String) throws -> Void = { _ in }, expect text: String) throws {
            let disk = Tools.sparseFile(size)
            defer { unlink(disk) }
            try prepare(disk)
            let conf = Tools.config(disk: disk)
            defer { unlink(conf) }
            for verb in ["dump-md", "get-gi", "show-gi"] {
                let r = try Tools.tandem("-c", conf, "--node", "alpha", verb, "r0")
                #expect(r.status != 0, "\(verb) accepted bad meta-data")
                #expect(r.err.contains(text) && r.err.split(separator: "\n").count == 1, "\(verb): \(r.err)")
            }
        }
        try check(size: 256 << 20, expect: "no DRBD meta-data found")
        try check(size: 16 << 10, expect: "too small")
        // Wrong magic in a superblock drbdmeta wrote.
        try check(size: 256 << 20, prepare: { disk in
            _ = try Tools.drbdmeta(disk, "create-md")
            let fh = try FileHandle(forUpdating: URL(fileURLWithPath: disk))
            try fh.seek(toOffset: 268_431_360 + 0x3C)
            fh.write(Data([0xDE, 0xAD, 0xBE, 0xEF]))
            try fh.close()
        }, expect: "no DRBD meta-data found")
        // A superblock whose offsets do not fit the device (as after a resize).
        try check(size: 256 << 20, prepare: { disk in
            _ = try Tools.drbdmeta(disk, "create-md")
            truncate(disk, off_t(512 << 20))
            let src = try FileHandle(forReadingFrom: URL(fileURLWithPath: disk))
            try src.seek(toOffset: 268_431_360)
            let sb = src.readData(ofLength: 4096)
            try src.close()
            let fh = try FileHandle(forUpdating: URL(fileURLWithPath: disk))
            try fh.seek(toOffset: (512 << 20) - 4096)
            fh.write(sb)
            try fh.close()
        }, expect: "do not match a device")
        let missingDisk = Tools.config(disk: "/nonexistent/disk.img")
        defer { unlink(missingDisk) }
        let r = try Tools.tandem("-c", missingDisk, "--node", "alpha", "dump-md", "r0")
        #expect(r.status != 0 && r.err == "tandem: /nonexistent/disk.img: no such file or device\n")
    }

    /// Options Tandem does not honour are refused at `up`, naming the option, its value and why;
    /// an operator never believes they are in force.
    @Test(arguments: [("net", "rr-conflict violently;", "rr-conflict violently is not supported"),
                      ("net", "after-sb-0pri discard-node-gamma;", "after-sb-0pri discard-node-gamma: gamma is not a host of this resource"),
                      ("disk", "fencing resource-and-stonith;", "fencing resource-and-stonith is not supported: it freezes I/O"),
                      ("disk", "fencing resource-only;", "fencing resource-only needs a fence-peer handler"),
                      ("net", "data-integrity-alg sha1;", "data-integrity-alg sha1 is not supported"),
                      ("net", "csums-alg nosuchdigest;", "csums-alg nosuchdigest: unknown digest algorithm 'nosuchdigest'"),
                      ("disk", "max-bio-bvecs 8; resync-after 3;", "max-bio-bvecs 8 is not supported"),
                      ("disk", "on-io-error call-local-io-error;", "on-io-error call-local-io-error needs a local-io-error handler"),
                      ("startup", "degr-wfc-timeout 60;", "startup option degr-wfc-timeout is not supported"),
                      ("handlers", "pri-on-incon-degr \"/usr/lib/drbd/notify-pri-on-incon-degr.sh\";", "handler pri-on-incon-degr is not supported: Tandem calls only"),
                      ("handlers", "after-snapshot \"fsfreeze -u /srv\";", "an after-snapshot handler needs a before-snapshot handler")])
    func unhonouredOptionsAreRefusedAtUp(section: String, options: String, message: String) throws {
        let c = try Cluster(section == "net" ? .init(size: 8 << 20, net: options) : section == "disk" ? .init(size: 8 << 20, disk: options)
                            : section == "startup" ? .init(size: 8 << 20, startup: options) : .init(size: 8 << 20, handlers: options))
        defer { c.shutdown() }
        let r = try c.tandem("alpha", "up", "r0")
        #expect(r.status != 0, "up accepted \(options)")
        #expect(r.err.contains(message) && r.err.split(separator: "\n").count == 1, "\(r.err)")
        if options.contains("resync-after") { #expect(r.err.contains("(and 1 more option)"), "\(r.err)") }
        #expect(c.pid("alpha") == nil)
    }

    /// sndbuf-size and rcvbuf-size reach the replication sockets (the kernel reports twice the
    /// size set, for its bookkeeping); connect-int is accepted.
    @Test func socketBufferSizesAreApplied() throws {
        let c = try Cluster(.init(size: 8 << 20, net: "sndbuf-size 512k; rcvbuf-size 768k; connect-int 3;"))
        defer { c.shutdown() }
        for n in c.nodes { try c.up(n) }
        try c.wait("alpha", "connected") { $0["connection"] as? String == "Connected" }
        // The sockets of the two replication connections (data and meta), from alpha's side.
        var out = ""
        for _ in 0..<20 {
            out = try Tools.run("/usr/bin/ss", ["-tmnH", "state", "established", "( sport = :\(c.ports.0) or dport = :\(c.ports.1) )"]).out
            if out.contains("tb1048576") && out.contains("rb1572864") { break }
            usleep(100_000)
        }
        #expect(out.contains("tb1048576") && out.contains("rb1572864"), "\(out)")
    }

    @Test func daemonVerbsFailWithOneLine() throws {
        let missingDisk = Tools.config(disk: "/nonexistent/disk.img")
        defer { unlink(missingDisk) }
        let run = NSTemporaryDirectory() + "tandem-run-\(UUID().uuidString.prefix(8))"
        let up = try Tools.run(Tools.tandem, ["-c", missingDisk, "--node", "alpha", "up", "r0"], env: ["TANDEM_RUN_DIR": run])
        #expect(up.status != 0)
        #expect(up.err.hasPrefix("tandem: r0: the daemon did not start:") && up.err.contains("/nonexistent/disk.img"), "\(up.err)")
        #expect(up.err.split(separator: "\n").count == 1)
        let st = try Tools.run(Tools.tandem, ["-c", missingDisk, "--node", "alpha", "status", "r0"], env: ["TANDEM_RUN_DIR": run])
        #expect(st.status != 0 && st.err.contains("r0: not up"))
        let down = try Tools.run(Tools.tandem, ["-c", missingDisk, "--node", "alpha", "down", "r0"], env: ["TANDEM_RUN_DIR": run])
        #expect(down.status == 0, "down of a resource that is not up is a no-op")
    }

    /// `device /dev/nbdN;` attaches the kernel's NBD client; where there is no such device (no
    /// nbd module here; /dev/nbd4095 exists nowhere by default) `up` says so in one line.
    /// The attach itself is checked in a VM by scripts/kernel-nbd.
    @Test func kernelNBDDeviceWithoutTheModuleIsAClearError() throws {
        let disk = Tools.sparseFile(64 << 20)
        defer { unlink(disk) }
        let conf = Tools.config(disk: disk, device: "/dev/nbd4095")
        defer { unlink(conf) }
        let md = try Tools.tandem("-c", conf, "--node", "alpha", "create-md", "--force", "r0")
        #expect(md.status == 0, "\(md.err)")
        let run = NSTemporaryDirectory() + "tandem-run-\(UUID().uuidString.prefix(8))"
        let up = try Tools.run(Tools.tandem, ["-c", conf, "--node", "alpha", "up", "r0"], env: ["TANDEM_RUN_DIR": run])
        #expect(up.status != 0)
        #expect(up.err.contains("/dev/nbd4095: no such device; is the nbd module loaded (modprobe nbd)?"), "\(up.err)")
        #expect(up.err.split(separator: "\n").count == 1)
        #expect(!FileManager.default.fileExists(atPath: "\(run)/r0.ctl"))
    }

    @Test func everyVerbIsListedAndDaemonVerbsSayWhenNothingIsUp() throws {
        let r = try Tools.tandem("snapshot", "r0")
        #expect(r.status != 0 && r.err.contains("r0: not up"), "\(r.err)")
        let help = try Tools.tandem("--help")
        for verb in ["create-md", "dump-md", "get-gi", "show-gi", "wipe-md", "dump", "up", "down", "primary", "status", "resync",
                     "verify", "invalidate", "invalidate-remote", "restore", "resize", "snapshot", "snapshots"] {
            #expect(help.out.contains("  \(verb) "), "help lacks \(verb)")
        }
    }

    @Test func wipeNeedsForceWithoutATerminal() throws {
        let disk = Tools.sparseFile(64 << 20)
        defer { unlink(disk) }
        let conf = Tools.config(disk: disk)
        defer { unlink(conf) }
        #expect(try Tools.tandem("-c", conf, "--node", "alpha", "create-md", "r0").status == 0)
        let refused = try Tools.tandem("-c", conf, "--node", "alpha", "wipe-md", "r0")
        #expect(refused.status != 0 && refused.err.contains("--force"))
        #expect(try Tools.tandem("-c", conf, "--node", "alpha", "wipe-md", "--force", "r0").status == 0)
        let after = try Tools.drbdmeta(disk, "dump-md")
        #expect(after.status != 0)
    }
}
