import Testing
import TandemCodecs
@testable import TandemAdapters

@Suite struct MetaDataStoreTests {
    let size: UInt64 = 64 << 20

    @Test func createRefusesExistingDataWithoutForce() throws {
        let d = MemoryBlockDevice(size: size, writeThrough: true)
        try MetaDataStore.create(on: d)
        #expect(throws: MetaDataError.self) { try MetaDataStore.create(on: d) }
        try MetaDataStore.create(on: d, force: true)
        let fs = MemoryBlockDevice(size: size, writeThrough: true)
        try fs.write([0x53, 0xEF], at: 1080) // ext4 superblock magic
        #expect(FilesystemProbe.detect(on: fs) == "ext2/ext3/ext4")
        #expect(throws: MetaDataError.self) { try MetaDataStore.create(on: fs) }
    }

    @Test func badMetaDataGivesOneLineErrors() throws {
        let d = MemoryBlockDevice(size: size, writeThrough: true)
        do { _ = try MetaDataStore.readSuperblock(from: d); Issue.record("zeroed disk accepted") }
        catch { #expect("\(error)".contains("no DRBD meta-data found")) }
        let tiny = MemoryBlockDevice(size: 8192, writeThrough: true)
        do { try MetaDataStore.create(on: tiny); Issue.record("tiny disk accepted") }
        catch { #expect("\(error)".contains("too small")) }
    }

    @Test func marksSurviveCloseAndReopen() throws {
        let d = MemoryBlockDevice(size: size)
        try MetaDataStore.create(on: d)
        let s = try MetaDataStore(device: d, alExtents: 67)
        #expect(!s.superblock.isClean)
        try s.markOutOfSync(offset: 4096 * 10, length: 8192)
        try s.markOutOfSync(offset: 40 << 20, length: 1)
        try s.updateSuperblock { $0.currentUUID = 0xABCD }
        try s.close()
        let (sb, _) = try MetaDataStore.readSuperblock(from: d)
        #expect(sb.isClean && sb.currentUUID == 0xABCD)
        let again = try MetaDataStore(device: d)
        #expect(again.bitmap.setCount == 3)
        #expect(again.bitmap.isSet(10) && again.bitmap.isSet(11) && again.bitmap.isSet((40 << 20) / 4096))
    }

    /// One scripted sequence of meta-data updates. `acknowledged` collects the blocks whose
    /// marking returned (and that were not marked in sync after).
    func workload(_ s: MetaDataStore, acknowledged: inout Set<UInt64>) throws {
        var rng = SplitMix(seed: 42)
        for step in 0..<100 {
            let block = rng.next() % (s.bitmap.bitCount - 8)
            let count = 1 + rng.next() % 8
            try s.markOutOfSync(offset: block * 4096, length: count * 4096)
            for b in block..<(block + count) { acknowledged.insert(b) }
            if step % 7 == 3 { try s.flushBitmap() }
            if step % 11 == 5 {
                let lo = rng.next() % (s.bitmap.bitCount - 8)
                s.markInSync(offset: lo * 4096, length: 4 * 4096)
                for b in lo..<(lo + 4) { acknowledged.remove(b) }
            }
            if step % 13 == 6 { try s.updateSuperblock { $0.currentUUID = UInt64(step) } }
        }
        try s.close()
    }

    /// Interrupts the workload at every write boundary, keeps or loses each unflushed write and
    /// tears the interrupted one at a sector boundary; reopening must always succeed and every
    /// acknowledged dirty block must still be dirty.
    @Test func crashAtEveryWriteBoundaryLosesNoDirtyBlock() throws {
        // 32 MiB = 8 activity-log extents, more than the 7 slots used: evictions happen.
        let fresh = MemoryBlockDevice(size: 32 << 20, writeThrough: true)
        try MetaDataStore.create(on: fresh)
        let base = fresh.durable

        let dry = MemoryBlockDevice(image: base)
        var all = Set<UInt64>()
        try workload(try MetaDataStore(device: dry, alExtents: 7), acknowledged: &all)
        let totalWrites = dry.writeCount
        #expect(totalWrites > 40) // the workload must reach enough crash points to mean something

        var scenarios = 0
        for crashPoint in 0...totalWrites {
            for variant in 0..<3 {
                let d = MemoryBlockDevice(image: base)
                d.crash(after: crashPoint)
                var acked = Set<UInt64>()
                do { try workload(try MetaDataStore(device: d, alExtents: 7), acknowledged: &acked) } catch {}
                var rng = SplitMix(seed: UInt64(crashPoint * 3 + variant))
                let image = d.durableImage(keep: { _ in variant == 0 ? false : (variant == 1 ? true : rng.next() % 2 == 0) },
                                           tornSectors: Int(rng.next() % 9))
                let reopened = MemoryBlockDevice(image: image)
                let store = try MetaDataStore(device: reopened)
                for b in acked { #expect(store.bitmap.isSet(b), "crash after \(crashPoint) writes, variant \(variant): block \(b) lost") }
                scenarios += 1
            }
        }
        #expect(scenarios == (totalWrites + 1) * 3)
    }
}

/// A small deterministic generator for reproducible tests.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
