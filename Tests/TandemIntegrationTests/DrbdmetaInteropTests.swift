import Foundation
import Testing
import TandemAdapters
import TandemCodecs
import TandemEngine

/// Meta-data written by Tandem is read by drbd-utils' drbdmeta, and the other way round, on a
/// sparse file and on a loop device (serialized: loop devices are a machine-wide resource).
@Suite(.serialized) struct DrbdmetaInteropTests {
    static let size = 256 << 20

    func withDisk(loop: Bool, _ body: (String) throws -> Void) throws {
        if loop {
            let l = try Tools.loopDevice(Self.size)
            defer { Tools.detach(l) }
            try body(l.device)
        } else {
            let f = Tools.sparseFile(Self.size)
            defer { unlink(f) }
            try body(f)
        }
    }

    @Test(arguments: [false, true]) func drbdmetaReadsWhatTandemCreates(loop: Bool) throws {
        try withDisk(loop: loop) { disk in
            let conf = Tools.config(disk: disk)
            defer { unlink(conf) }
            let created = try Tools.tandem("-c", conf, "--node", "alpha", "create-md", "r0")
            #expect(created.status == 0, "\(created.err)")
            let theirs = try Tools.drbdmeta(disk, "dump-md")
            let ours = try Tools.tandem("-c", conf, "--node", "alpha", "dump-md", "r0")
            #expect(theirs.status == 0 && ours.status == 0, "\(theirs.err) \(ours.err)")
            #expect(Tools.comparable(ours.out) == Tools.comparable(theirs.out))
            #expect(try Tools.tandem("-c", conf, "--node", "alpha", "get-gi", "r0").out == Tools.drbdmeta(disk, "get-gi").out)
            #expect(try Tools.tandem("-c", conf, "--node", "alpha", "show-gi", "r0").out == Tools.drbdmeta(disk, "show-gi").out)
            // Refuses to overwrite without --force, with a one-line reason.
            let again = try Tools.tandem("-c", conf, "--node", "alpha", "create-md", "r0")
            #expect(again.status != 0 && again.err.contains("already present") && again.err.split(separator: "\n").count == 1)
        }
    }

    @Test(arguments: [false, true]) func tandemReadsWhatDrbdmetaRestores(loop: Bool) throws {
        try withDisk(loop: loop) { disk in
            let conf = Tools.config(disk: disk)
            defer { unlink(conf) }
            #expect(try Tools.drbdmeta(disk, "create-md").status == 0)
            // A dump that sets chosen UUIDs, flags and bitmap words.
            var words: [UInt64] = [0x3, 0x8000_0000_0000_0000, 0xF0, 0, 0, ~0, ~0, ~0, ~0, 0x1234_5678_9ABC_DEF0]
            words += [UInt64](repeating: 0, count: 200) + [UInt64](repeating: ~0, count: 37)
            let expectedBits = words.reduce(0) { $0 + $1.nonzeroBitCount }
            var bm = "bm {\n"
            for w in words { bm += "   0x" + Hex.upper(w, digits: 16) + ";\n" }
            bm += "   \(1024 - words.count) times 0x0000000000000000;\n}\n"
            let dump = """
                version "v08";
                uuid {
                    0x1122334455667788; 0x99AABBCCDDEEFF00; 0x0123456789ABCDEF; 0xFEDCBA9876543210;
                    flags 0x00000091;
                }
                la-size-sect 524200;
                bm-byte-per-bit 4096;
                device-uuid 0x0BADC0FFEE000001;
                la-peer-max-bio-size 1048576;
                al-stripes 1;
                al-stripe-size-4k 8;
                \(bm)
                """
            let path = NSTemporaryDirectory() + "tandem-restore-\(UUID().uuidString).txt"
            FileManager.default.createFile(atPath: path, contents: Data(dump.utf8))
            defer { unlink(path) }
            let restored = try Tools.drbdmeta(disk, "restore-md", path)
            #expect(restored.status == 0, "\(restored.err)")
            let theirs = try Tools.drbdmeta(disk, "dump-md")
            let ours = try Tools.tandem("-c", conf, "--node", "alpha", "dump-md", "r0")
            #expect(Tools.comparable(ours.out) == Tools.comparable(theirs.out))
            #expect(ours.out.contains("# bits-set \(expectedBits);"))
            #expect(ours.out.contains("    flags 0x00000091;"))
            let gi = try Tools.tandem("-c", conf, "--node", "alpha", "get-gi", "r0").out
            #expect(gi == "1122334455667788:99AABBCCDDEEFF00:0123456789ABCDEF:FEDCBA9876543210:1:1:0:0:0:0:0\n")
            #expect(gi == (try Tools.drbdmeta(disk, "get-gi").out))
            // And the words themselves, read through the store.
            let device = try FileBlockDevice(path: disk, options: .init(readOnly: true, exclusive: false))
            let (sb, layout) = try MetaDataStore.readSuperblock(from: device)
            let bitmap = OutOfSyncBitmap(bitCount: layout.dataBits, onDiskBytes: try device.read(at: layout.bitmapOffset, count: Int(layout.bitmapBytes)))
            #expect(Array(bitmap.words.prefix(words.count)) == words)
            #expect(sb.deviceUUID == 0x0BAD_C0FF_EE00_0001 && sb.lastPeerMaxBioSize == 1_048_576)
        }
    }

    /// drbdmeta's apply-al is the oracle for Tandem's transaction format: transactions Tandem
    /// writes for chosen extents are replayed into exactly those extents' bitmap bits, and
    /// Tandem's own apply-al gives the same bitmap.
    @Test(arguments: [false, true]) func drbdmetaReplaysTandemActivityLog(loop: Bool) throws {
        try withDisk(loop: loop) { disk in
            let conf = Tools.config(disk: disk)
            defer { unlink(conf) }
            #expect(try Tools.tandem("-c", conf, "--node", "alpha", "create-md", "r0").status == 0)
            let extents: [UInt32] = [0, 5, 17, 40, 63]
            do {
                let device = try FileBlockDevice(path: disk)
                let store = try MetaDataStore(device: device, alExtents: 67)
                try store.updateSuperblock {
                    $0.flags.insert(.primaryIndicator)
                    $0.lastAgreedSizeSectors = store.layout.dataSectors
                }
                // What the engine writes when writes reach these extents.
                var log = ActivityLog(slotCount: 67, nextTransactionNumber: store.activityLogNextTransaction)
                for e in extents {
                    for t in log.commit(try log.plan([e])) { try store.write(.activityLog(t)) }
                }
                device.close() // a crash: no close(), bitmap never written
            }
            let copy = Tools.sparseFile(Self.size)
            defer { unlink(copy) }
            try copyDisk(from: disk, to: copy)

            let applied = try Tools.drbdmeta(disk, "apply-al")
            #expect(applied.status == 0, "\(applied.err)")
            #expect(applied.err.contains("Marked additional 20 MB as out-of-sync based on AL."))
            let conf2 = Tools.config(disk: copy)
            defer { unlink(conf2) }
            let ours = try Tools.tandem("-c", conf2, "--node", "alpha", "apply-al", "r0")
            #expect(ours.status == 0, "\(ours.err)")

            func bitmap(_ path: String) throws -> OutOfSyncBitmap {
                let d = try FileBlockDevice(path: path, options: .init(readOnly: true, exclusive: false))
                let (_, layout) = try MetaDataStore.readSuperblock(from: d)
                return OutOfSyncBitmap(bitCount: layout.dataBits, onDiskBytes: try d.read(at: layout.bitmapOffset, count: Int(layout.bitmapBytes)))
            }
            let theirs = try bitmap(disk)
            var expected = OutOfSyncBitmap(bitCount: theirs.bitCount)
            for e in extents { expected.set(UInt64(e) * 1024..<UInt64(e + 1) * 1024) }
            #expect(theirs.words == expected.words)
            #expect(try bitmap(copy).words == expected.words)
            let gi = try Tools.drbdmeta(disk, "show-gi").out
            #expect(gi.contains("meta-data: clean"))
        }
    }

    func copyDisk(from: String, to: String) throws {
        let src = try FileBlockDevice(path: from, options: .init(readOnly: true, exclusive: false))
        let dst = try FileBlockDevice(path: to)
        let (_, layout) = try MetaDataStore.readSuperblock(from: src)
        let start = layout.bitmapOffset
        try dst.write(try src.read(at: start, count: Int(src.size - start)), at: start)
        try dst.flush()
    }
}
