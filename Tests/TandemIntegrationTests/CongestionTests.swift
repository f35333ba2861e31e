import Foundation
import Testing

/// on-congestion between two hosts (network namespaces joined by veth) over a link limited to
/// 10 Mbit/s with tc's token bucket filter.
@Suite(.serialized) struct CongestionTests {
    /// pull-ahead: a 24 MiB burst (about 20 s of this link) makes the primary go Ahead past
    /// congestion-fill (1 MiB) instead of holding the writer back: the burst completes in a few
    /// seconds, the peer is Behind, and afterwards the resync brings it back to UpToDate with
    /// identical data.
    @Test func pullAheadKeepsTheWriterGoingOverASlowLink() throws {
        let c = try Cluster(.init(wireProtocol: "A", size: 64 << 20, net: "on-congestion pull-ahead; congestion-fill 1M;",
                                  disk: "c-max-rate 1G;", namespaces: true))
        defer { c.shutdown() }
        try c.start()
        try c.limitLink(mbit: 10)
        let src = c.dir + "/burst.bin"
        try Tools.run("/bin/sh", ["-c", "head -c \(24 << 20) /dev/urandom > \(src)"])
        let t0 = Date()
        let copy = try Tools.run("/usr/bin/nbdcopy", ["--requests=4", "--request-size=262144", src, c.uri("alpha")])
        let elapsed = Date().timeIntervalSince(t0)
        #expect(copy.status == 0, "\(copy.err)")
        #expect(elapsed < 8, "the 24 MiB burst took \(elapsed) s: the writer waited for the 10 Mbit/s link")
        #expect(c.log("alpha").contains("Congestion-fill threshold reached"))
        #expect(c.log("alpha").contains("Ahead"), "alpha never reported Ahead")
        try c.waitInSync(timeout: 120)
        // The P_STATE saying Ahead travels behind the data already queued on the slow link.
        #expect(c.log("beta").contains("Behind"), "beta never reported Behind")
        #expect(c.log("alpha").contains("resyncing what went unreplicated while Ahead"))
        let size = try c.exportSize
        #expect(try c.dataHash("alpha", bytes: size) == c.dataHash("beta", bytes: size))
    }
}
