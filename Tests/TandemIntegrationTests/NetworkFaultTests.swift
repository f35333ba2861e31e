import Foundation
import Testing

/// Faults on the link while an application writes through the export, in protocol C: between
/// two hosts (network namespaces joined by a veth pair) a pulled cable, a 10 Mbit/s link and
/// random loss; through a relay, delay with jitter. After each fault and its resync the disks
/// are identical, and every write the application saw acknowledged is on both.
@Suite struct NetworkFaultTests {
    /// Both disks identical over the loaded region, and each holds every acknowledged write.
    static func verify(_ c: Cluster, _ load: StampedLoad, blocks: Int) throws {
        try waitConverged(c)
        let area = try #require(try c.status("alpha")["data-area-kib"] as? Int) * 1024
        #expect(area >= blocks * 4096)
        #expect(try c.dataHash("alpha", bytes: area) == (try c.dataHash("beta", bytes: area)), "the disks differ")
        for n in c.nodes { try load.check(c.disk(n), n) }
    }

    /// Connected, nothing out of sync on either side, no write in flight.
    static func waitConverged(_ c: Cluster, timeout: Double = 120) throws {
        for n in c.nodes {
            try c.wait(n, timeout: timeout, "Connected with nothing out of sync") { s in
                s["connection"] as? String == "Connected" && s["out-of-sync-kib"] as? Int == 0 && s["peer-disk"] as? String == "UpToDate"
            }
        }
    }

    static func inNamespace(_ ns: String, _ args: [String]) throws -> Tools.Result {
        try Tools.run("/usr/sbin/ip", ["netns", "exec", ns] + args)
    }

    @Test func cableSpeedAndLossBetweenTwoHosts() throws {
        let blocks = 8192  // 32 MiB
        let c = try Cluster(.init(wireProtocol: "C", size: 48 << 20, net: "compression off;", disk: "c-max-rate 100M;", namespaces: true))
        defer { c.shutdown() }
        let h = try #require(c.hosts)
        try c.start()
        let load = try StampedLoad(c, blocks: blocks)
        defer { if load.process.isRunning { load.process.terminate() } }
        try load.waitForProgress(300)

        // 1. The cable pulled for 4 s: the primary notices (ping timeout), goes on alone,
        //    and resyncs what it wrote when the cable is back.
        try #require(try Tools.run("/usr/sbin/ip", ["-n", h.alpha, "link", "set", h.alphaLink, "down"]).status == 0)
        try c.wait("alpha", timeout: 30, "the cut noticed") { $0["connection"] as? String != "Connected" }
        try load.waitForProgress(200)
        let dirty = try c.status("alpha")["out-of-sync-kib"] as? Int ?? 0
        #expect(dirty > 0, "writes during the cut left nothing to resync")
        try #require(try Tools.run("/usr/sbin/ip", ["-n", h.alpha, "link", "set", h.alphaLink, "up"]).status == 0)
        try Self.waitConverged(c)
        try load.waitForProgress(200)

        // 2. 10 Mbit/s each way (tc tbf) while 4 MiB more are written past the load's blocks:
        //    whether they cross as replicated writes or (after a ping lost in the queue drops
        //    the link) as resync, both disks hold them only after at least 3.4 s at that rate.
        try c.limitLink(mbit: 10)
        let t0 = Date()
        let big = try Tools.run("/usr/bin/qemu-io", ["-f", "raw", "-c", "write -P 0x77 \(blocks * 4096) 4M", c.uri("alpha")])
        #expect(big.status == 0, "qemu-io: \(big.err)")
        try Self.waitConverged(c)
        let limited = Date().timeIntervalSince(t0)
        #expect(limited > 2.5, "4 MiB crossed a 10 Mbit/s link in \(limited) s")
        try load.waitForProgress(100)
        for (ns, dev) in [(h.alpha, h.alphaLink), (h.beta, h.betaLink)] {
            _ = try Self.inNamespace(ns, ["/usr/sbin/tc", "qdisc", "del", "dev", dev, "root"])
        }
        try Self.waitConverged(c)

        // 3. 5% of the link's packets dropped at random each way (nftables numgen): TCP
        //    retransmits; the link holds or comes back, and nothing is lost.
        for ns in [h.alpha, h.beta] {
            for cmd in [["add", "table", "inet", "loss"],
                        ["add", "chain", "inet", "loss", "input", "{ type filter hook input priority 0; }"],
                        ["add", "rule", "inet", "loss", "input", "meta", "l4proto", "tcp", "numgen", "random", "mod", "100", "<", "5", "counter", "drop"]] {
                let r = try Self.inNamespace(ns, ["/usr/sbin/nft"] + cmd)
                try #require(r.status == 0, "nft \(cmd.joined(separator: " ")): \(r.err)")
            }
        }
        try load.waitForProgress(300)
        let counted = try Self.inNamespace(h.beta, ["/usr/sbin/nft", "list", "table", "inet", "loss"])
        let dropped = Int(counted.out.components(separatedBy: "counter packets ").dropFirst().first?.prefix { $0.isNumber } ?? "") ?? 0
        #expect(dropped > 0, "no packet was dropped: \(counted.out)")
        for ns in [h.alpha, h.beta] { _ = try Self.inNamespace(ns, ["/usr/sbin/nft", "delete", "table", "inet", "loss"]) }
        try load.waitForProgress(100)

        let summary = try load.stop()
        try Self.verify(c, load, blocks: blocks)
        print("NetworkFaultTests two hosts: 3 faults, \(load.acks) writes acknowledged, load \(summary.trimmingCharacters(in: .whitespacesAndNewlines)), \(dirty) KiB dirty after the cut, 4 MiB in \(String(format: "%.1f", limited)) s at 10 Mbit/s, \(dropped) packets dropped")
    }

    @Test func delayAndJitterThroughARelay() throws {
        let blocks = 4096  // 16 MiB
        let relayBase = Cluster.reservePorts()
        // alpha reaches beta through relayBase, beta reaches alpha through relayBase + 1.
        let c = try Cluster(.init(wireProtocol: "C", size: 32 << 20, peerPort: ["alpha": relayBase, "beta": relayBase + 1]))
        defer { c.shutdown() }
        let control = c.dir + "/relay.control"
        try "0 0\n".write(toFile: control, atomically: true, encoding: .utf8)
        var relays: [Process] = []
        defer { for r in relays { r.terminate() } }
        for (listen, target) in [(relayBase, c.ports.1), (relayBase + 1, c.ports.0)] {
            relays.append(try Tools.spawn("/usr/bin/python3", [Tools.helpers + "/fault-relay.py", "\(listen)", "\(target)", control]))
        }
        sleep(1)
        try c.start()
        let load = try StampedLoad(c, blocks: blocks)
        defer { if load.process.isRunning { load.process.terminate() } }
        try load.waitForProgress(200)
        // 40 ms plus up to 60 ms of jitter each way, then 150 ms plus up to 50 ms (a ping
        // round trip near the 500 ms ping-timeout: the link may drop and come back).
        for setting in ["40 60", "150 50"] {
            try "\(setting)\n".write(toFile: control, atomically: true, encoding: .utf8)
            sleep(4)
            try load.waitForProgress(20, timeout: 120)
        }
        try "0 0\n".write(toFile: control, atomically: true, encoding: .utf8)
        let stats = try String(contentsOfFile: control + ".stats.\(relayBase)", encoding: .utf8).split(separator: " ").compactMap { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        #expect(stats.count == 3 && stats[2] > 50, "the relay delayed too little: \(stats)")
        let summary = try load.stop()
        try Self.verify(c, load, blocks: blocks)
        print("NetworkFaultTests relay: delay and jitter, \(load.acks) writes acknowledged, load \(summary.trimmingCharacters(in: .whitespacesAndNewlines)), relay chunks/bytes/delayed \(stats)")
    }
}
