import Foundation
import Testing

/// LZ4-compressed resync between two Tandem nodes (the LZ4_RESYNC feature bit), counted with
/// the kernel's own counters of the connections.
@Suite(.serialized) struct CompressionTests {
    /// Bytes the kernel delivered to beta on its replication connections (ss's bytes_received).
    func bytesReceived(_ c: Cluster) throws -> Int {
        let r = try Tools.run("/usr/bin/ss", ["-tinH", "state", "established", "( sport = :\(c.ports.1) or dport = :\(c.ports.0) )"])
        var total = 0
        for m in r.out.matches(of: /bytes_received:(\d+)/) { total += Int(m.1) ?? 0 }
        return total
    }

    /// 8 MiB of text-like data written while disconnected. With `compression lz4` the resync
    /// moves less than 0.3x the dirty bytes over the wire; with `compression off` about all of
    /// them. status reports the data before and after compression.
    @Test(arguments: ["lz4", "off"]) func resyncDataGoesCompressed(mode: String) throws {
        let c = try Cluster(.init(size: 64 << 20, net: "compression \(mode);"))
        defer { c.shutdown() }
        try c.start()
        #expect(try c.tandem("alpha", "disconnect", "r0").status == 0)
        let src = c.dir + "/rows.txt"
        var text = ""
        var i = 0
        while text.utf8.count < 8 << 20 {
            text += "INSERT INTO orders VALUES (\(i), 'customer-\(i % 977)', 'shipped', \(i * 37 % 10000).\(i % 100), '2026-11-\(10 + i % 20)');\n"
            i += 1
        }
        FileManager.default.createFile(atPath: src, contents: Data(text.utf8.prefix(8 << 20)))
        try #require(try Tools.run("/usr/bin/nbdcopy", ["--destination-is-zero", src, c.uri("alpha")]).status == 0 ||
                     Tools.run("/usr/bin/qemu-io", ["-f", "raw", "-c", "write -s \(src) 0 8M", c.uri("alpha")]).status == 0)
        let dirty = (try c.status("alpha")["out-of-sync-kib"] as? Int ?? 0) * 1024
        try #require(dirty >= 8 << 20, "only \(dirty) bytes marked")
        #expect(try c.tandem("alpha", "resync", "--wait", "r0").status == 0)
        let wire = try bytesReceived(c)
        let ratio = Double(wire) / Double(dirty)
        print("compression \(mode): \(wire) bytes on the wire for \(dirty) dirty bytes, ratio \(String(format: "%.3f", ratio))")
        let s = try c.status("alpha")
        let data = s["resync-data-kib"] as? Int ?? 0, packed = s["resync-wire-kib"] as? Int ?? 0
        if mode == "lz4" {
            #expect(ratio < 0.3, "the resync moved \(wire) bytes for \(dirty) dirty bytes (\(ratio))")
            #expect(packed * 3 < data, "status: \(data) KiB of data took \(packed) KiB")
        } else {
            #expect(ratio > 0.95 && ratio < 1.1, "the resync moved \(wire) bytes for \(dirty) dirty bytes (\(ratio))")
            #expect(packed == data, "status: \(data) KiB of data took \(packed) KiB")
        }
        let size = try c.exportSize
        #expect(try c.dataHash("alpha", bytes: size) == c.dataHash("beta", bytes: size))
    }
}
