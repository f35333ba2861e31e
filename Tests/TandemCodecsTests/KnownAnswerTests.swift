import Testing
@testable import TandemCodecs

func hex(_ bytes: [UInt8]) -> String { bytes.map { Hex.lower($0, digits: 2) }.joined() }

@Suite struct CRC32CTests {
    @Test func standardCheckValue() {
        #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
    }

    @Test func rfc3720Vectors() {
        #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
        #expect(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
        #expect(CRC32C.checksum((0..<32).map { UInt8($0) }) == 0x46DD_794E)
    }

    @Test func hardwareAndSoftwareAgree() {
        var rng = SeededRandom.make(14)
        for length in [0, 1, 7, 8, 9, 31, 32, 33, 4095, 4096, 10_001] {
            let data = (0..<length).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let sw = data.withUnsafeBytes { CRC32C.software($0, seed: 0x1234_5678) }
            #expect(CRC32C.raw(data, seed: 0x1234_5678) == sw, "length \(length); \(SeededRandom.replay)")
        }
    }

    /// A freshly initialized DRBD activity-log block carries CRC 0x709CC651 (drbdmeta's own).
    @Test func activityLogInitializedBlockChecksum() {
        let block = ActivityLogTransaction.initialized().encode()
        #expect(ByteIO.readBE(block, 8, as: UInt32.self) == 0x709C_C651)
    }
}

@Suite struct LZ4Tests {
    @Test func roundTripCompressibleAndRandom() throws {
        let text = Array(String(repeating: "INSERT INTO accounts VALUES (42, 'tandem');\n", count: 400).utf8)
        let packed = try LZ4Block.compress(text)
        #expect(packed.count < text.count / 4)
        #expect(try LZ4Block.decompress(packed, originalSize: text.count) == text)
        var rng = SeededRandom.make(5)
        let noise = (0..<4096).map { _ in UInt8.random(in: 0...255, using: &rng) }
        #expect(try LZ4Block.decompress(try LZ4Block.compress(noise), originalSize: noise.count) == noise)
    }

    @Test func corruptInputIsRefused() throws {
        let packed = try LZ4Block.compress([UInt8](repeating: 7, count: 4096))
        #expect(throws: LZ4Block.Failure.self) { try LZ4Block.decompress(packed, originalSize: 100) }
        #expect(throws: LZ4Block.Failure.self) { try LZ4Block.decompress([0xFF, 0xFF, 0xFF, 0xFF], originalSize: 4096) }
    }
}

@Suite struct DigestTests {
    @Test func knownDigests() throws {
        #expect(hex(try DigestAlgorithm(named: "sha1").digest(Array("abc".utf8))) == "a9993e364706816aba3e25717850c26c9cd0d89d")
        #expect(hex(try DigestAlgorithm(named: "md5").digest([])) == "d41d8cd98f00b204e9800998ecf8427e")
        #expect(hex(try DigestAlgorithm(named: "sha256").digest(Array("abc".utf8)))
                == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        // Linux crypto API crc32c of "123456789": ~crc stored little-endian.
        #expect(hex(try DigestAlgorithm(named: "crc32c").digest(Array("123456789".utf8))) == "839206e3")
    }

    /// RFC 4231 test case 2 (HMAC-SHA256) and RFC 2202 case 2 (HMAC-SHA1).
    @Test func hmacKnownAnswers() throws {
        let key = Array("Jefe".utf8), data = Array("what do ya want for nothing?".utf8)
        #expect(hex(try DigestAlgorithm(named: "sha256").hmac(key: key, data: data))
                == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        #expect(hex(try DigestAlgorithm(named: "sha1").hmac(key: key, data: data))
                == "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79")
    }

    @Test func unknownAlgorithmIsAClearError() {
        #expect(throws: DigestAlgorithm.Failure.unknownAlgorithm("whirlpool-9000")) { try DigestAlgorithm(named: "whirlpool-9000") }
    }
}

@Suite struct LayoutTests {
    /// Figures measured with drbdmeta 9.22 (shared/reference/drbd-8.4-reference.md section 6.1).
    @Test func matchesDrbdmetaPlacement() throws {
        let a = try MetaDataLayout(deviceBytes: 268_435_456)
        #expect(a.bitmapBytes == 8192 && a.metaDataSizeSectors == 88)
        #expect(a.superblockOffset == 268_431_360 && a.alOffset == 268_398_592 && a.bitmapOffset == 268_390_400)
        #expect(a.alOffsetSectors == -64 && a.bitmapOffsetSectors == -80 && a.dataSectors == 524_200)
        let b = try MetaDataLayout(deviceBytes: 1_073_741_824)
        #expect(b.metaDataSizeSectors == 136 && b.bitmapOffset == 1_073_672_192 && b.dataSectors == 2_097_016)
        let c = try MetaDataLayout(deviceBytes: 1_073_741_824 + 1536)
        #expect(c.metaDataSizeSectors == 144 && c.bitmapOffset == 1_073_668_096)
    }

    @Test func tooSmallDeviceIsRefused() {
        #expect(throws: MetaDataLayout.Failure.self) { try MetaDataLayout(deviceBytes: 4096) }
        #expect(throws: MetaDataLayout.Failure.self) { try MetaDataLayout(deviceBytes: 40 * 1024) }
        #expect(throws: MetaDataLayout.Failure.self) { try MetaDataLayout(deviceBytes: 1 << 30, alStripes: 1, alStripeSize4k: 2) }
    }

    @Test func stripedActivityLogPlacement() throws {
        let l = try MetaDataLayout(deviceBytes: 1 << 30, alStripes: 2, alStripeSize4k: 8)
        #expect((0..<4).map { l.alBlockIndex(forTransaction: UInt32($0)) } == [0, 8, 1, 9])
        #expect(l.alBlockIndex(forTransaction: 16) == 0)
    }
}

@Suite struct SuperblockTests {
    /// The bytes drbdmeta writes for a fresh 256 MiB disk (reference hexdump).
    @Test func freshSuperblockBytes() throws {
        let sb = Superblock(freshFor: try MetaDataLayout(deviceBytes: 268_435_456))
        let b = sb.encode()
        #expect(hex(Array(b[0..<0x60])) ==
            "0000000000000000" + "0000000000000004" + String(repeating: "0", count: 64) + "0000000000000000"
            + "000000808374026b" + "00000058ffffffc000000101ffffffb0" + "00001000000000000000000100000008")
        #expect(try Superblock.decode(b) == sb)
    }

    @Test func badSuperblocksGiveClearErrors() throws {
        var b = Superblock(freshFor: try MetaDataLayout(deviceBytes: 268_435_456)).encode()
        #expect(throws: Superblock.Failure.truncated(100)) { try Superblock.decode(Array(b[0..<100])) }
        #expect(throws: Superblock.Failure.noMetaData) { try Superblock.decode([UInt8](repeating: 0, count: 4096)) }
        ByteIO.writeBE(Superblock.magic07, into: &b, at: 0x3C)
        #expect(throws: Superblock.Failure.unsupportedVersion("DRBD 0.7")) { try Superblock.decode(b) }
        ByteIO.writeBE(Superblock.magic08, into: &b, at: 0x3C)
        ByteIO.writeBE(UInt32(512), into: &b, at: 0x50)
        #expect(throws: Superblock.Failure.self) { try Superblock.decode(b) }
    }

    @Test func superblockFromAnotherSizeIsRefused() throws {
        let sb = Superblock(freshFor: try MetaDataLayout(deviceBytes: 268_435_456))
        #expect(throws: Superblock.Failure.self) { try sb.validate(against: try MetaDataLayout(deviceBytes: 1 << 30)) }
    }
}

@Suite struct ActivityLogCodecTests {
    @Test func roundTripAndCorruption() throws {
        let t = ActivityLogTransaction(transactionNumber: 5, updates: [.init(slot: 0, extent: 2)],
                                       contextSize: 257, contextStartSlot: 0, context: [2, 7])
        var b = t.encode()
        let d = try ActivityLogTransaction.decode(b)
        #expect(d.updates == t.updates && d.context[0..<2] == [2, 7] && d.context[2] == ActivityLogTransaction.unused)
        b[1000] ^= 1
        #expect(throws: ActivityLogTransaction.Failure.self) { try ActivityLogTransaction.decode(b) }
    }

    @Test func replayUsesNewestAndSkipsTornBlocks() {
        let t1 = ActivityLogTransaction(transactionNumber: 1, updates: [.init(slot: 0, extent: 10)], contextSize: 4, contextStartSlot: 0, context: [10])
        let t2 = ActivityLogTransaction(transactionNumber: 2, updates: [.init(slot: 0, extent: 20)], contextSize: 4, contextStartSlot: 0, context: [20])
        var torn = ActivityLogTransaction(transactionNumber: 3, updates: [.init(slot: 1, extent: 30)], contextSize: 4, contextStartSlot: 0, context: [20, 30]).encode()
        torn[2000] ^= 0xFF
        let r = ActivityLogTransaction.replay(blocks: [t2.encode(), torn, t1.encode(), ActivityLogTransaction.initialized().encode()])
        #expect(r.hotExtents == [20])
        #expect(r.invalidBlocks == 1)
    }
}

@Suite struct BitmapTests {
    @Test func setClearCountAndPages() {
        var bm = OutOfSyncBitmap(bitCount: 100_000)
        #expect(bm.set(10..<20) == 10)
        #expect(bm.set(15..<25) == 5)
        #expect(bm.setCount == 15)
        #expect(bm.clear(0..<12) == 2)
        #expect(bm.dirtyPages == [0])
        bm.set(40_000..<40_001)
        #expect(bm.dirtyPages == [0, 1])
        #expect(bm.set(99_990..<200_000) == 10) // clamped at the end
        let reloaded = OutOfSyncBitmap(bitCount: 100_000, onDiskBytes: bm.onDiskBytes())
        #expect(reloaded.words == bm.words)
    }

    /// The run-length form drbdmeta 9.22 printed for these words (captured on this machine).
    @Test func dumpTextMatchesDrbdmeta() {
        var words: [UInt64] = [3, 0x8000_0000_0000_0000, 0xF0, 0, 0, ~0, ~0, ~0, ~0, 1]
        words += [UInt64](repeating: 0, count: 10) + [UInt64](repeating: ~0, count: 5)
        words += [UInt64](repeating: 0, count: 1024 - words.count)
        var bytes = [UInt8](repeating: 0, count: 8192)
        for (i, w) in words.enumerated() { ByteIO.writeLE(w, into: &bytes, at: i * 8) }
        let (text, bits) = MetaDataText.bitmapText(bytes)
        #expect(bits == 584)
        #expect(text == """
            {
               # at 0kB
                0x0000000000000003; 0x8000000000000000; 0x00000000000000F0; 0x0000000000000000;
                0x0000000000000000; 0xFFFFFFFFFFFFFFFF; 0xFFFFFFFFFFFFFFFF; 0xFFFFFFFFFFFFFFFF;
                0xFFFFFFFFFFFFFFFF; 0x0000000000000001; 0x0000000000000000; 0x0000000000000000;
                8 times 0x0000000000000000;
                0xFFFFFFFFFFFFFFFF; 0xFFFFFFFFFFFFFFFF; 0xFFFFFFFFFFFFFFFF; 0xFFFFFFFFFFFFFFFF;
                0xFFFFFFFFFFFFFFFF; 0x0000000000000000; 0x0000000000000000; 0x0000000000000000;
                996 times 0x0000000000000000;
            }

            """)
    }

    @Test func humanSizes() {
        #expect(MetaDataText.humanSize(kib: 262_100) == "256 MB")
        #expect(MetaDataText.humanSize(kib: 9999) == "9999 KB")
        #expect(MetaDataText.humanSize(kib: 8192) == "8192 KB")
    }
}
