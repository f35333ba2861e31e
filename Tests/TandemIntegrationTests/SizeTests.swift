import Foundation
import Testing

/// The device's size as DRBD 8.4 agrees it: nodes with data areas of different sizes use the
/// smaller (an EBS volume comes in whole GiB, seldom the on-prem disk's size), remember it in
/// the meta-data (la-size), refuse a peer smaller than the size in use, honour `size`, and grow
/// online with `resize` after both backing devices grew.
@Suite(.serialized) struct SizeTests {
    static let alphaBytes = 768 << 20
    static let betaBytes = 1 << 30

    /// Grows each loop device's file to its first size plus `extra` and tells the loop driver.
    static func grow(_ loops: [((device: String, file: String), Int)], by extra: Int) throws {
        for (loop, bytes) in loops {
            guard truncate(loop.file, off_t(bytes + extra)) == 0 else { throw TestFailure("truncate \(loop.file) failed") }
            try Tools.run("/usr/sbin/losetup", ["-c", loop.device]).checked()
        }
    }

    /// A node's data area in KiB, as its status says.
    static func dataKiB(_ c: Cluster, _ node: String) throws -> Int {
        try c.status(node)["data-area-kib"] as? Int ?? -1
    }

    /// A secondary larger than the primary (1 GiB loop device under a 768 MiB one) replicates
    /// the primary's size and ends identical over that range; the agreed size is in both
    /// meta-data; `resize` after growing both backing devices grows the device online, and the
    /// grown part resyncs.
    @Test func largerSecondaryTakesThePrimarysSizeAndResizeGrowsBoth() throws {
        let a = try Tools.loopDevice(Self.alphaBytes), b = try Tools.loopDevice(Self.betaBytes)
        defer { Tools.detach(a); Tools.detach(b) }
        let c = try Cluster(.init(size: Self.alphaBytes, disk: "c-max-rate 600M; resync-rate 600M; c-plan-ahead 0;",
                                  alphaDevice: a.device, betaDevice: b.device))
        defer { c.shutdown() }
        try c.start()
        let alphaData = try Self.dataKiB(c, "alpha"), betaData = try Self.dataKiB(c, "beta")
        #expect(betaData > alphaData, "beta's data area \(betaData) KiB, alpha's \(alphaData) KiB")
        for n in c.nodes {
            let s = try c.status(n)
            #expect(s["size-kib"] as? Int == alphaData, "\(n): \(s)")
        }
        #expect(try c.exportSize == alphaData * 1024)
        // Data to the last block of the agreed size; a write past it is refused.
        try #require(try Tools.run("/usr/bin/qemu-io", ["-f", "raw", "-c", "write -P 0x3c 0 4M", "-c",
                                                        "write -P 0xc3 \(alphaData * 1024 - (4 << 20)) 4M", c.uri("alpha")]).status == 0)
        let past = try Tools.run("/usr/bin/python3", [Tools.helpers + "/nbd-write-at.py", c.uri("alpha"), "\(alphaData * 1024)", "4096"])
        #expect(past.status != 0, "a write past the agreed size was taken: \(past.out) \(past.err)")
        try c.waitInSync()
        #expect(try c.dataHash("alpha", bytes: alphaData * 1024) == c.dataHash("beta", bytes: alphaData * 1024))
        // Both meta-data remember the agreed size (DRBD's la-size).
        try c.tandem("alpha", "down", "r0").checked()
        try c.tandem("beta", "down", "r0").checked()
        for n in c.nodes {
            try c.waitForDeviceFree(n)
            let md = try c.tandem(n, "dump-md", "r0")
            #expect(md.out.contains("la-size-sect \(alphaData * 2);"), "\(n): \(md.out.prefix(600))")
        }
        for n in c.nodes { try c.up(n) }
        try c.waitInSync()
        #expect(try c.status("beta")["size-kib"] as? Int == alphaData)
        try c.tandem("alpha", "primary", "r0").checked()

        // Grow both backing devices by 256 MiB; resize on the Primary.
        try Self.grow([(a, Self.alphaBytes), (b, Self.betaBytes)], by: 256 << 20)
        let before = try c.dataHash("alpha", bytes: alphaData * 1024)
        try c.tandem("alpha", "resize", "r0").checked()
        // alpha's data area is now the smaller (1 GiB less its meta-data, which grew with it).
        let grownAlpha = try Self.dataKiB(c, "alpha")
        #expect(grownAlpha > alphaData + (255 << 10) && grownAlpha <= alphaData + (256 << 10), "alpha's data area \(grownAlpha) KiB")
        for n in c.nodes {
            try c.wait(n, timeout: 60, "grown and in sync") { s in
                s["size-kib"] as? Int == grownAlpha && s["connection"] as? String == "Connected"
                    && s["disk"] as? String == "UpToDate" && s["peer-disk"] as? String == "UpToDate"
            }
        }
        #expect(try Self.dataKiB(c, "beta") > betaData + (255 << 10), "\(c.log("beta").suffix(3000))")
        #expect(try c.exportSize == grownAlpha * 1024, "a new NBD client sees the grown device")
        #expect(try c.dataHash("alpha", bytes: alphaData * 1024) == before, "the data before the old end changed")
        #expect(c.log("alpha").contains("resync of the grown part"), "\(c.log("alpha").suffix(2000))")
        let moved = try c.status("alpha")["resync-data-kib"] as? Int ?? -1
        #expect(moved > 0 && moved <= grownAlpha - alphaData + 4, "the resync after the resize moved \(moved) KiB, not only the grown part")
        // The grown part is written and replicated like the rest.
        try #require(try Tools.run("/usr/bin/qemu-io", ["-f", "raw", "-c", "write -P 0x5a \(grownAlpha * 1024 - (1 << 20)) 1M",
                                                        c.uri("alpha")]).status == 0)
        try c.waitInSync()
        #expect(try c.dataHash("alpha", bytes: grownAlpha * 1024) == c.dataHash("beta", bytes: grownAlpha * 1024))
        // The moved meta-data is what a restart finds.
        for n in c.nodes { try c.tandem(n, "down", "r0").checked() }
        for n in c.nodes {
            let md = try c.tandem(n, "dump-md", "r0")
            #expect(md.status == 0 && md.out.contains("la-size-sect \(grownAlpha * 2);"), "\(n): \(md.err) \(md.out.prefix(600))")
        }
        for n in c.nodes { try c.up(n) }
        try c.waitInSync()
        #expect(try c.status("alpha")["size-kib"] as? Int == grownAlpha)

        // Once more, 64 MiB, with `resize` run on the Secondary: the Primary is still the source.
        try c.tandem("alpha", "primary", "r0").checked()
        try Self.grow([(a, Self.alphaBytes), (b, Self.betaBytes)], by: 320 << 20)
        try c.tandem("beta", "resize", "r0").checked()
        let third = grownAlpha + (64 << 10)
        for n in c.nodes {
            try c.wait(n, timeout: 60, "grown again and in sync") { s in
                (s["size-kib"] as? Int ?? 0) > grownAlpha + (63 << 10) && s["connection"] as? String == "Connected"
                    && s["disk"] as? String == "UpToDate" && s["peer-disk"] as? String == "UpToDate"
            }
        }
        let size3 = try c.status("alpha")["size-kib"] as? Int ?? 0
        let betaSize3 = try c.status("beta")["size-kib"] as? Int
        #expect(size3 <= third && size3 == betaSize3, "sizes \(size3) and \(betaSize3 ?? -1)")
        #expect(c.log("alpha").contains("resync of the grown part"))
        #expect(try c.dataHash("alpha", bytes: size3 * 1024) == c.dataHash("beta", bytes: size3 * 1024))
    }

    /// A peer smaller than the size in use is refused with the reason, and nothing moves; a
    /// new, empty node with a smaller disk than an empty one agrees on the smaller.
    @Test func peerSmallerThanTheSizeInUseIsRefused() throws {
        let c = try Cluster(.init(size: 64 << 20, startup: "wfc-timeout 10;"))
        defer { c.shutdown() }
        try c.start()
        try #require(try Tools.run("/usr/bin/qemu-io", ["-f", "raw", "-c", "write -P 0x5e 0 8M", c.uri("alpha")]).status == 0)
        try c.waitInSync()
        let size = try c.status("alpha")["size-kib"] as? Int ?? 0
        // beta's disk is replaced by a smaller one.
        try c.tandem("beta", "down", "r0").checked()
        #expect(truncate(c.disk("beta"), off_t(48 << 20)) == 0)
        try c.tandem("beta", "create-md", "--force", "r0").checked()
        let before = try c.dataHash("alpha", bytes: 64 << 20)
        try c.up("beta")
        try c.wait("alpha", timeout: 20, "refused") { s in
            s["connection"] as? String == "StandAlone" && (s["last-error"] as? String ?? "").contains("the peer's disk is too small")
        }
        #expect(c.log("alpha").contains("its data area is \(try Self.dataKiB(c, "beta") * 2) sectors, this node's device is \(size * 2) sectors"),
                "\(c.log("alpha").suffix(1500))")
        let s = try c.status("alpha")
        #expect(s["size-kib"] as? Int == size && s["disk"] as? String == "UpToDate", "\(s)")
        #expect(try c.status("beta")["resync-data-kib"] as? Int == 0)
        #expect(try c.dataHash("alpha", bytes: 64 << 20) == before)
    }

    /// `size` makes the device smaller than the data area; the smaller of both nodes' wins.
    @Test func sizeOptionLimitsTheDevice() throws {
        let c = try Cluster(.init(size: 64 << 20, disk: "size 40M;"))
        defer { c.shutdown() }
        try c.start()
        for n in c.nodes {
            let s = try c.status(n)
            #expect(s["size-kib"] as? Int == 40 << 10, "\(n): \(s)")
        }
        #expect(try c.exportSize == 40 << 20)
        #expect(try c.status("alpha")["resync-data-kib"] as? Int ?? 0 <= 40 << 10, "the initial sync moved more than the device")
    }
}
