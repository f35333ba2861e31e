import Foundation
import Testing

/// LZ4 on pages of real databases (#9): PostgreSQL after pgbench and a SQLite table of orders
/// with text columns and an index, made by Helpers/database-pages.sh.
@Suite(.serialized) struct DatabaseCompressionTests {
    /// The pages, made once per test run, and what the script said if it failed.
    static let made: (dir: String, error: String) = {
        let dir = NSTemporaryDirectory() + "tandem-database-pages"
        var error = ""
        if !FileManager.default.fileExists(atPath: dir + "/sqlite.pages") {
            let r = try? Tools.run("/bin/sh", [Tools.helpers + "/database-pages.sh", dir])
            if r?.status != 0 { error = "database-pages.sh failed: \(r?.err ?? "did not run")" }
        }
        return (dir, error)
    }()
    static var pages: String { made.dir }

    /// 1 GiB disks, 1% of the 4 KiB blocks (at random) written with database pages while
    /// disconnected; with `compression lz4` the resync moves at most 0.3x the dirty bytes for
    /// PostgreSQL and 0.6x for SQLite (kernel counters of beta's connections).
    @Test(arguments: [("postgres", 0.3), ("sqlite", 0.6)]) func resyncOfDatabasePages(database: String, limit: Double) throws {
        let file = Self.pages + "/\(database).pages"
        try #require(FileManager.default.fileExists(atPath: file), "no \(file): \(Self.made.error)")
        let c = try Cluster(.init(size: 1 << 30, net: "compression lz4;"))
        defer { c.shutdown() }
        try c.start()
        #expect(try c.tandem("alpha", "disconnect", "r0").status == 0)
        let w = try Tools.run("/usr/bin/python3", [Tools.helpers + "/scatter-pages.py", c.uri("alpha"), file, "0.01", "9"])
        try #require(w.status == 0, "\(w.err)")
        let dirty = (try c.status("alpha")["out-of-sync-kib"] as? Int ?? 0) * 1024
        #expect(dirty >= 10_000_000, "only \(dirty) bytes marked")
        #expect(try c.tandem("alpha", "resync", "--wait", "r0").status == 0)
        let wire = try CompressionTests().bytesReceived(c)
        let ratio = Double(wire) / Double(dirty)
        print("\(database) pages: the resync moved \(wire) bytes for \(dirty) dirty bytes, ratio \(String(format: "%.3f", ratio))")
        #expect(ratio <= limit, "\(database): \(ratio) of the dirty bytes on the wire")
        let size = try c.exportSize
        #expect(try c.dataHash("alpha", bytes: size) == c.dataHash("beta", bytes: size))
    }

    /// Protocol A writes of PostgreSQL pages between two hosts over a 100 Mbit/s link (tc tbf
    /// on the veth pair): with `compression lz4` they reach the peer at least 1.8x faster than
    /// with `off`. Timed from the first write until every write is acknowledged by the peer's
    /// barrier ack (writes-in-flight 0 on alpha).
    @Test func protocolAOverA100MbitLinkIsFasterCompressed() throws {
        let file = Self.pages + "/postgres.pages"
        try #require(FileManager.default.fileExists(atPath: file), "no \(file): \(Self.made.error)")
        let src = NSTemporaryDirectory() + "tandem-pg-48M.bin"
        try Tools.run("/bin/sh", ["-c", "head -c \(48 << 20) \(file) > \(src)"])
        var seconds: [String: Double] = [:]
        for mode in ["off", "lz4"] {
            let c = try Cluster(.init(wireProtocol: "A", size: 64 << 20, net: "compression \(mode);", namespaces: true))
            defer { c.shutdown() }
            try c.start()
            try c.limitLink(mbit: 100)
            let t0 = Date()
            let copy = try Tools.run("/usr/bin/nbdcopy", ["--requests=8", "--request-size=262144", src, c.uri("alpha")])
            try #require(copy.status == 0, "\(copy.err)")
            try c.wait("alpha", timeout: 60, "every write acknowledged") { ($0["writes-in-flight"] as? Int) == 0 }
            seconds[mode] = Date().timeIntervalSince(t0)
            let s = try c.status("alpha")
            print("compression \(mode): 48 MiB of PostgreSQL pages in \(String(format: "%.2f", seconds[mode]!)) s, \(s["replicated-data-kib"] ?? "?") KiB of data as \(s["replicated-wire-kib"] ?? "?") KiB")
            try c.waitInSync()
            let size = try c.exportSize
            #expect(try c.dataHash("alpha", bytes: size) == c.dataHash("beta", bytes: size))
        }
        let speedup = seconds["off"]! / seconds["lz4"]!
        print("protocol A over 100 Mbit/s: lz4 \(String(format: "%.2f", speedup))x faster")
        #expect(speedup >= 1.8, "lz4 only \(speedup)x faster (off \(seconds["off"]!) s, lz4 \(seconds["lz4"]!) s)")
    }
}
