import Foundation
import Testing

/// Outdating (#10 item 5) with `fencing resource-only`, as DRBD 8.4 does it: the Primary that
/// loses its peer calls fence-peer (here a script that runs `tandem outdate` on the peer, as
/// an operator's script would over ssh), the peer knows it is Outdated and refuses promotion
/// without --force, after a restart too; a graceful disconnect of the Primary outdates the
/// peer without the handler; a disk restarted while apart is Consistent and is promoted only
/// once fence-peer says the peer is fenced.
@Suite struct FencingTests {
    /// A cluster with fencing resource-only whose fence-peer handler runs `script` (written
    /// once the cluster's folder exists); the handler appends its environment to `calls`.
    func cluster(net: String = "ping-int 1; ping-timeout 5;") throws -> (Cluster, script: String, calls: String) {
        let base = NSTemporaryDirectory() + "tandem-fence-\(UUID().uuidString.prefix(8))"
        let script = base + ".sh", calls = base + ".calls"
        let c = try Cluster(.init(size: 32 << 20, net: net, disk: "fencing resource-only;",
                                  handlers: "fence-peer \"echo $DRBD_RESOURCE $DRBD_PEER $DRBD_NODE_NAME >> \(calls); /bin/sh \(script)\";"))
        return (c, script, calls)
    }

    /// The script an operator would write: outdate the peer (retried while the peer has not
    /// noticed the cut yet, as `outdate` is refused while Connected); exit 4 once done, 5 if
    /// the peer's daemon does not answer.
    func outdatePeerScript(_ c: Cluster, peer: String) -> String {
        """
        for i in $(seq 100); do
          TANDEM_RUN_DIR=\(c.runDir(peer)) \(Tools.tandem) -c \(c.dir)/\(peer).conf --node \(peer) outdate r0 2>/tmp/fence-$$.err && exit 4
          grep -q "while Connected" /tmp/fence-$$.err || exit 5
          sleep 0.1
        done
        exit 5
        """
    }

    @Test func lostPrimaryOutdatesThePeerThroughFencePeer() throws {
        let (c, script, calls) = try cluster()
        defer { c.shutdown(); unlink(script); unlink(calls) }
        try outdatePeerScript(c, peer: "beta").write(toFile: script, atomically: true, encoding: .utf8)
        try c.start()
        try c.cutLink()
        try c.wait("alpha", timeout: 30, "the peer fenced") { $0["peer-disk"] as? String == "Outdated" }
        #expect(c.log("alpha").contains("fence-peer helper returned 4 (peer was fenced)"), "\(c.log("alpha"))")
        #expect(try String(contentsOfFile: calls, encoding: .utf8) == "r0 beta alpha\n")
        #expect(try c.status("beta")["disk"] as? String == "Outdated")
        #expect(try (c.status("beta")["holds"] as? String ?? "").hasPrefix("Outdated: the peer has newer data"))
        #expect(try (c.status("alpha")["holds"] as? String ?? "").hasPrefix("the newest data (Primary) (the peer is Outdated)"))
        // The Primary goes on writing; the Outdated peer refuses promotion, after a restart too.
        try #require(try Tools.run("/usr/bin/qemu-io", ["-f", "raw", "-c", "write -P 0x4f 1M 1M", c.uri("alpha")]).status == 0)
        for restart in [false, true] {
            if restart { c.down("beta"); try c.up("beta") }
            let p = try c.tandem("beta", "primary", "r0")
            #expect(p.status != 0 && p.err.contains("local disk is Outdated"), "\(p.err)")
            #expect(try c.status("beta")["disk"] as? String == "Outdated")
        }
        // alpha restarted while apart knows its peer is outdated: UpToDate, no fencing needed.
        c.down("alpha")
        try c.up("alpha")
        #expect(try c.status("alpha")["disk"] as? String == "UpToDate")
        #expect(try c.tandem("alpha", "primary", "r0").status == 0)
        c.healLink()
        try c.waitInSync(timeout: 60)
        let size = try c.exportSize
        #expect(try c.dataHash("alpha", bytes: size) == c.dataHash("beta", bytes: size))
        #expect(try String(contentsOfFile: calls, encoding: .utf8) == "r0 beta alpha\n", "fence-peer ran again")
    }

    @Test func gracefulDisconnectOfThePrimaryOutdatesThePeer() throws {
        let (c, script, calls) = try cluster()
        defer { c.shutdown(); unlink(script); unlink(calls) }
        try "exit 4\n".write(toFile: script, atomically: true, encoding: .utf8)
        try c.start()
        #expect(try c.tandem("alpha", "disconnect", "r0").status == 0)
        #expect(try c.status("alpha")["peer-disk"] as? String == "Outdated")
        try c.wait("beta", timeout: 10, "beta Outdated") { $0["disk"] as? String == "Outdated" }
        #expect(c.log("beta").contains("the Primary disconnects and outdates this node's disk (fencing)"))
        #expect(!FileManager.default.fileExists(atPath: calls), "fence-peer ran for a graceful disconnect")
        // `outdate` itself: refused while connected and on the Primary.
        #expect(try c.tandem("alpha", "outdate", "r0").err.contains("Refusing to be Outdated while Primary"))
        #expect(try c.tandem("alpha", "connect", "r0").status == 0)
        try c.waitInSync(timeout: 60)
        #expect(try c.tandem("beta", "outdate", "r0").err.contains("Refusing to be Outdated while Connected"))
    }

    @Test func consistentDiskIsPromotedOnlyOnceThePeerIsFenced() throws {
        let (c, script, calls) = try cluster()
        defer { c.shutdown(); unlink(script); unlink(calls) }
        try "exit 5\n".write(toFile: script, atomically: true, encoding: .utf8)
        try c.start()
        #expect(try c.tandem("alpha", "secondary", "r0").status == 0)
        for n in ["alpha", "beta"] { c.down(n) }
        // beta comes back alone: it cannot know whether alpha wrote since.
        try c.up("beta")
        #expect(try c.status("beta")["disk"] as? String == "Consistent")
        #expect(try (c.status("beta")["holds"] as? String ?? "").hasPrefix("Consistent: restarted while apart"))
        let unreachable = try c.tandem("beta", "primary", "r0")
        #expect(unreachable.status != 0 && unreachable.err.contains("fence-peer could not outdate the peer (peer unreachable"),
                "\(unreachable.err)")
        #expect(try c.status("beta")["role"] as? String == "Secondary")
        try "exit 4\n".write(toFile: script, atomically: true, encoding: .utf8)
        let fenced = try c.tandem("beta", "primary", "r0")
        #expect(fenced.status == 0, "\(fenced.err)")
        let s = try c.status("beta")
        #expect(s["role"] as? String == "Primary" && s["disk"] as? String == "UpToDate" && s["peer-disk"] as? String == "Outdated", "\(s)")
        #expect(try String(contentsOfFile: calls, encoding: .utf8) == "r0 alpha beta\nr0 alpha beta\n")
    }
}
