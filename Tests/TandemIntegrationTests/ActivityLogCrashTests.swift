import Foundation
import Testing

/// The activity log against a real crash of both nodes: writes in flight to more extents than
/// `al-extents`, the secondary stalled (SIGSTOP) or the link cut, then kill -9 of both. After
/// `up` the crashed primary's activity log marks every extent a write may have reached, the
/// resync starts by itself on reconnect, and both disks end identical.
@Suite(.serialized) struct ActivityLogCrashTests {
    static let extent = 4 << 20
    /// 90 extents, one 4 KiB write each (at a different offset inside each extent).
    static let offsets = (0..<90).map { $0 * extent + ($0 % 7) * 8192 }

    struct Writes: Decodable { var done: [Int]; var failed: [Int] }

    /// Starts the writes, waits `seconds`, returns what completed (the rest stay in flight).
    func aioWrites(_ c: Cluster, wait seconds: Double) throws -> Writes {
        let r = try Tools.run("/usr/bin/python3", [Tools.helpers + "/aio-writes.py", c.uri("alpha"), "\(seconds)"]
                                + Self.offsets.map(String.init))
        guard r.status == 0, let w = try? JSONDecoder().decode(Writes.self, from: Data(r.out.utf8)) else {
            throw TestFailure("aio-writes: \(r.out) \(r.err)")
        }
        return w
    }

    /// kill -9 of both daemons, then `up` of both: the resync starts by itself and ends with
    /// both data areas identical.
    func crashBothAndCheck(_ c: Cluster) throws {
        let alpha = try #require(c.pid("alpha")), beta = try #require(c.pid("beta"))
        #expect(kill(alpha, SIGKILL) == 0 && kill(beta, SIGKILL) == 0)
        kill(beta, SIGCONT)
        for p in [alpha, beta] { while kill(p, 0) == 0 { usleep(20_000) } }
        for n in c.nodes { try c.up(n) }
        #expect(c.log("alpha").contains("meta-data was not cleanly closed: activity log applied"))
        try c.waitInSync(timeout: 120)
        #expect(c.log("alpha").contains("Began resync as SyncSource"), "the resync did not start by itself")
        for n in c.nodes { #expect(try c.status(n)["out-of-sync-kib"] as? Int == 0) }
        let size = try c.exportSize
        #expect(try c.dataHash("alpha", bytes: size) == c.dataHash("beta", bytes: size), "the disks differ after the resync")
    }

    /// Protocol C with the secondary stopped: no write completes; the first 67 hold the 67
    /// slots and the other 23 wait for one (status says so), evicting nothing.
    @Test func stalledPeerProtocolC() throws {
        let c = try Cluster(.init(wireProtocol: "C", size: 384 << 20, disk: "al-extents 67; c-max-rate 1G;"))
        defer { if let p = c.pid("beta") { kill(p, SIGCONT) }; c.shutdown() }
        try c.start()
        kill(try #require(c.pid("beta")), SIGSTOP)
        let w = try aioWrites(c, wait: 3)
        #expect(w.done.isEmpty && w.failed.isEmpty, "protocol C completed writes the stopped peer never saw: \(w)")
        let s = try c.status("alpha")
        #expect(s["al-writes-waiting"] as? Int == 23, "\(s)")
        #expect(s["al-extents-held"] as? Int == 67 && s["al-extents-hot"] as? Int == 67, "\(s)")
        let text = try c.tandem("alpha", "status", "r0").out
        #expect(text.contains("blocked:activity-log writes-waiting:23"), "\(text)")
        #expect(c.log("alpha").contains("writes wait for one"))
        try crashBothAndCheck(c)
    }

    /// Protocol A with the secondary stopped: the 67 writes that got a slot complete (their
    /// packets are in the socket buffer) but keep their extents until the peer acknowledges
    /// them; the other 23 wait.
    @Test func stalledPeerProtocolA() throws {
        let c = try Cluster(.init(wireProtocol: "A", size: 384 << 20, disk: "al-extents 67; c-max-rate 1G;"))
        defer { if let p = c.pid("beta") { kill(p, SIGCONT) }; c.shutdown() }
        try c.start()
        kill(try #require(c.pid("beta")), SIGSTOP)
        let w = try aioWrites(c, wait: 3)
        #expect(w.done == Array(Self.offsets.prefix(67)) && w.failed.isEmpty, "\(w.done.count) done, \(w.failed.count) failed")
        let s = try c.status("alpha")
        #expect(s["al-writes-waiting"] as? Int == 23, "\(s)")
        try crashBothAndCheck(c)
    }

    /// The link cut (its packets dropped by nftables) instead of a stalled peer: once the ping
    /// times out the writes complete marked out of sync, extents are evicted with their bits
    /// written first, and the crash of both loses nothing.
    @Test func cutLinkProtocolC() throws {
        let c = try Cluster(.init(wireProtocol: "C", size: 384 << 20, net: "ping-int 1; ping-timeout 5;",
                                  disk: "al-extents 67; c-max-rate 1G;"))
        defer { c.shutdown() }
        try c.start()
        try c.cutLink()
        let w = try aioWrites(c, wait: 20)
        #expect(w.done.count == 90 && w.failed.isEmpty, "\(w.done.count) done, \(w.failed.count) failed")
        try c.wait("alpha", timeout: 10, "the cut noticed") { $0["connection"] as? String != "Connected" }
        let s = try c.status("alpha")
        #expect((s["out-of-sync-kib"] as? Int ?? 0) >= 90 * 4, "\(s)")
        c.healLink()
        try crashBothAndCheck(c)
    }
}
