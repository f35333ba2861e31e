import Testing
import TandemCodecs
import TandemEngine
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
        let node = try StandaloneNode(device: d, alExtents: 67, seed: 1)
        #expect(!node.store.superblock.isClean)
        node.write(blocks: 10..<12)
        node.write(blocks: (40 << 20) / 4096..<(40 << 20) / 4096 + 1)
        node.runAll()
        #expect(node.acknowledged.count == 3 && node.errors.isEmpty)
        try node.down()
        let (sb, _) = try MetaDataStore.readSuperblock(from: d)
        #expect(sb.isClean && sb.currentUUID == node.engine.status.uuids.current)
        let again = try MetaDataStore(device: d)
        let bm = try again.loadBitmap()
        #expect(bm.setCount == 3)
        #expect(bm.isSet(10) && bm.isSet(11) && bm.isSet((40 << 20) / 4096))
    }

    /// One seeded workload of a primary without a peer (every write is marked out of sync) over
    /// more extents than the activity log has slots, with flushes and bitmap writebacks, its
    /// disk and meta-data operations run in an order the generator picks. `down` at the end.
    func workload(_ node: StandaloneNode) {
        var rng = SplitMix(seed: 42)
        let blocks = node.store.layout.dataBits
        for step in 0..<120 {
            if node.device.crashed { return }
            if step % 9 == 4 { node.flush() }
            else if step % 13 == 6 { node.tick(addingMs: 1000) }
            else {
                let first = rng.next() % (blocks - 8)
                node.write(blocks: first..<(first + 1 + rng.next() % 8))
            }
            for _ in 0..<(rng.next() % 4) { node.runOne() }
        }
        node.runAll()
        if node.device.crashed { return }
        do { try node.down() } catch { #expect(node.device.crashed, "down failed: \(error)") }
    }

    /// Crashes the workload at every write boundary (activity-log transactions, bitmap pages,
    /// superblocks and data alike), keeps or loses each unflushed write and tears the
    /// interrupted one at a sector boundary; reopening must always succeed, and every block
    /// whose data reached the disk, and every block whose write was acknowledged, must be
    /// marked out of sync: a peer never saw them.
    @Test func crashAtEveryWriteBoundaryLosesNoDirtyBlock() throws {
        // 12 MiB = 3 activity-log extents, more than the 2 slots: extents are evicted.
        let fresh = MemoryBlockDevice(size: 12 << 20, writeThrough: true)
        try MetaDataStore.create(on: fresh)
        let base = fresh.durable

        let dry = try StandaloneNode(device: MemoryBlockDevice(image: base), alExtents: 2, seed: 7)
        workload(dry)
        let totalWrites = dry.device.writeCount
        #expect(dry.alTransactions > 15 && dry.evictions > 5, "\(dry.alTransactions) transactions, \(dry.evictions) evictions")
        #expect(totalWrites > 100, "\(totalWrites) writes")

        var scenarios = 0
        for crashPoint in 0...totalWrites {
            for variant in 0..<3 {
                let d = MemoryBlockDevice(image: base)
                d.crash(after: crashPoint)
                // Opening writes the superblock: a crash there leaves nothing written.
                let node = try? StandaloneNode(device: d, alExtents: 2, seed: 7)
                if let node { workload(node) }
                var rng = SplitMix(seed: UInt64(crashPoint * 3 + variant))
                let image = d.durableImage(keep: { _ in variant == 0 ? false : (variant == 1 ? true : rng.next() % 2 == 0) },
                                           tornSectors: Int(rng.next() % 9))
                let reopened = MemoryBlockDevice(image: image)
                let store = try MetaDataStore(device: reopened)
                let bm = try store.loadBitmap()
                for b in node?.acknowledged ?? [] where !bm.isSet(b) {
                    Issue.record("crash after \(crashPoint) writes, variant \(variant): acknowledged block \(b) not marked")
                }
                // Only blocks the workload wrote can hold anything but zeros.
                for b in node?.written ?? [] where !bm.isSet(b) {
                    let bytes = image[Int(b * 4096)..<Int(b * 4096 + 4096)]
                    if bytes.contains(where: { $0 != 0 }) {
                        Issue.record("crash after \(crashPoint) writes, variant \(variant): block \(b) holds written data but is not marked")
                        break
                    }
                }
                scenarios += 1
            }
        }
        #expect(scenarios == (totalWrites + 1) * 3)
    }

    /// resize: the meta-data moves to the end of a grown device. A crash at every write of the
    /// move, each unflushed write kept or lost: either the grown device has the new meta-data
    /// with every bit, or the device cut back to its old size has the old meta-data whole. A
    /// device grown less than the meta-data area is refused with nothing written.
    @Test func movingToAGrownDeviceIsCrashSafe() throws {
        let old: UInt64 = 12 << 20, grown: UInt64 = 20 << 20
        let d = MemoryBlockDevice(size: old, writeThrough: true)
        try MetaDataStore.create(on: d)
        let store = try MetaDataStore(device: d)
        var bm = try store.loadBitmap()
        _ = bm.set(5..<9)
        _ = bm.set(2000..<2040)
        try store.write(.bitmapPages(bm.dirtyPages.sorted().map { BitmapPage(index: $0, bytes: bm.pageBytes($0)) }, dataFlushFirst: false))
        let oldLayout = store.layout
        let base = d.durable

        // Grown by 4 KiB only: refused, nothing written.
        let little = MemoryBlockDevice(image: base)
        let s1 = try MetaDataStore(device: little)
        little.grow(to: old + 4096)
        let writes = little.writeCount
        #expect(throws: MetaDataError.self) { _ = try s1.moveToGrownDevice(bitmap: bm) }
        #expect(little.writeCount == writes && s1.layout == oldLayout)

        var moved = 0, kept = 0
        for crashPoint in 0...3 {
            for variant in 0..<3 {
                let dev = MemoryBlockDevice(image: base)
                let s = try MetaDataStore(device: dev)
                dev.grow(to: grown)
                dev.crash(after: crashPoint)
                let layout = try? s.moveToGrownDevice(bitmap: bm)
                var rng = SplitMix(seed: UInt64(crashPoint * 3 + variant))
                let image = dev.durableImage(keep: { _ in variant == 0 ? false : (variant == 1 ? true : rng.next() % 2 == 0) },
                                             tornSectors: Int(rng.next() % 9))
                if let (_, l) = try? MetaDataStore.readSuperblock(from: MemoryBlockDevice(image: image)) {
                    #expect(l.deviceBytes == grown && l.dataSectors > oldLayout.dataSectors)
                    let reopened = try MetaDataStore(device: MemoryBlockDevice(image: image)).loadBitmap()
                    #expect(reopened.setCount == 44 && reopened.isSet(5) && reopened.isSet(2039), "crash \(crashPoint)/\(variant)")
                    moved += 1
                } else {
                    #expect(layout == nil, "the move reported done but the grown device has no meta-data")
                    let cut = MemoryBlockDevice(image: Array(image[0..<Int(old)]))
                    let reopened = try MetaDataStore(device: cut).loadBitmap()
                    #expect(reopened.setCount == 44 && reopened.isSet(5) && reopened.isSet(2039), "crash \(crashPoint)/\(variant)")
                    kept += 1
                }
            }
        }
        #expect(moved > 0 && kept > 0, "moved \(moved), kept \(kept)")
    }

    /// A meta-data write that fails detaches the disk: the write waiting for that activity-log
    /// transaction is answered with an error and never reaches the disk; later writes are
    /// refused; the reason is in the status.
    @Test func failedMetaDataWriteDetachesAndFailsTheWriteItCovers() throws {
        let d = MemoryBlockDevice(size: 32 << 20, writeThrough: true)
        try MetaDataStore.create(on: d)
        let node = try StandaloneNode(device: d, alExtents: 7, seed: 3)
        node.runAll()
        node.write(blocks: 0..<1)
        node.runAll()
        #expect(node.acknowledged == [0])
        d.crash(after: 0)  // the next write fails: the transaction for extent 2
        node.write(blocks: 2048..<2049)
        node.runAll()
        #expect(node.errors.count == 1 && node.acknowledged == [0])
        #expect(node.engine.status.disk == .diskless)
        #expect(node.engine.status.diskError?.contains("meta-data write failed") == true)
        #expect(node.dataWrites == 1, "the write whose transaction failed reached the disk")
        node.write(blocks: 1..<2)
        node.runAll()
        #expect(node.errors.count == 2 && node.errors.last?.contains("Diskless") == true)
    }

    /// attach-snapshot's meta-data step: a snapshot of a running Secondary's disk (unclean,
    /// with a bitmap UUID and stale marks) becomes a new generation after the snapshot's, clean,
    /// Consistent and UpToDate, with nothing that says Primary or peer outdated.
    @Test func aSnapshotsMetaDataStartsANewGeneration() throws {
        let d = MemoryBlockDevice(size: 64 << 20, writeThrough: true)
        _ = try MetaDataStore.create(on: d)
        let running = try MetaDataStore(device: d)
        try running.updateSuperblock { sb in
            sb.currentUUID = 0xAAAA_0000_0000_0000
            sb.bitmapUUID = 0xBBBB_0000_0000_0000
            sb.historyUUIDs = (0xCCCC_0000_0000_0000, 0xDDDD_0000_0000_0000)
            sb.flags.formUnion([.consistent, .peerOutdated, .crashedPrimary, .primaryIndicator])
        }
        // The snapshot is taken while it runs: unclean.
        #expect(!(try MetaDataStore.readSuperblock(from: d).0.isClean))
        let sb = try MetaDataStore.startGenerationFromSnapshot(on: d, uuid: 0x1234_5678_9ABC_DEF1)
        let onDisk = try MetaDataStore.readSuperblock(from: d).0
        #expect(onDisk == sb && onDisk.isClean)
        #expect(onDisk.currentUUID == 0x1234_5678_9ABC_DEF0 && onDisk.bitmapUUID == 0
                && onDisk.historyUUIDs == (0xAAAA_0000_0000_0000, 0xCCCC_0000_0000_0000), "\(onDisk.uuids)")
        #expect(onDisk.flags.isSuperset(of: [.consistent, .wasUpToDate]))
        #expect(onDisk.flags.isDisjoint(with: [.peerOutdated, .crashedPrimary, .primaryIndicator]))
    }
}

/// A primary without a peer, as the daemon runs one: the engine's disk and meta-data
/// operations carried out on a device through the meta-data store, one at a time in an order a
/// seeded generator picks (the engine must not rely on the disk's order), completions fed back.
final class StandaloneNode {
    enum Op { case data(DiskOperation), meta(MetaDataOperation) }
    let device: MemoryBlockDevice
    let store: MetaDataStore
    var engine: ReplicationEngine
    var pending: [(token: UInt64, op: Op)] = []
    var rng: SplitMix
    var nextID: UInt64 = 100
    var nowMs: UInt64 = 0
    /// Blocks of writes answered without error, and the errors of the others.
    var acknowledged: Set<UInt64> = []
    var errors: [String] = []
    var writesByID: [UInt64: Range<UInt64>] = [:]
    /// Every block a write was started for.
    var written: Set<UInt64> = []
    var adminDone: Set<UInt64> = []
    var alTransactions = 0, evictions = 0, slotWaits = 0, dataWrites = 0
    var slotExtent: [UInt16: UInt32] = [:]

    init(device: MemoryBlockDevice, alExtents: Int, seed: UInt64) throws {
        self.device = device
        store = try MetaDataStore(device: device, alExtents: alExtents)
        var settings = EngineSettings()
        settings.alExtents = alExtents
        engine = ReplicationEngine(settings: settings, backingSectors: store.layout.dataSectors, persistent: PersistentState(),
                                   bitmap: try store.loadBitmap(), activityLogNextTransaction: store.activityLogNextTransaction)
        rng = SplitMix(seed: seed)
        feed(.admin(token: 1, .primary(force: true)))
    }

    func feed(_ e: EngineEvent) {
        for a in engine.handle(e) {
            switch a {
            case .disk(let t, let op): pending.append((t, .data(op)))
            case .metaData(let t, let op):
                pending.append((t, .meta(op)))
                if case .activityLog(let tr) = op {
                    alTransactions += 1
                    for u in tr.updates {
                        if let old = slotExtent[u.slot], old != u.extent { evictions += 1 }
                        slotExtent[u.slot] = u.extent
                    }
                }
            case .completeApp(let id, let error):
                if let error { errors.append(error) } else if let r = writesByID[id] { acknowledged.formUnion(r) }
            case .adminDone(let t, _): adminDone.insert(t)
            default: break
            }
        }
        slotWaits += engine.status.writesWaitingForActivityLog > 0 ? 1 : 0
    }

    func write(blocks: Range<UInt64>) {
        let id = nextID
        nextID += 1
        writesByID[id] = blocks
        written.formUnion(blocks)
        var data = [UInt8](repeating: 0, count: blocks.count * 4096)
        for i in stride(from: 0, to: data.count, by: 512) { data[i] = UInt8(1 + (id + UInt64(i)) % 255); data[i + 1] = UInt8(id % 256) }
        feed(.appWrite(id: id, offset: blocks.lowerBound * 4096, data: data, fua: false))
    }

    func flush() { let id = nextID; nextID += 1; feed(.appFlush(id: id)) }

    func tick(addingMs ms: UInt64) { nowMs += ms; feed(.tick(nowMs: nowMs)) }

    /// Carries out one pending operation (picked at random).
    @discardableResult
    func runOne() -> Bool {
        guard !pending.isEmpty else { return false }
        let (token, op) = pending.remove(at: Int(rng.next() % UInt64(pending.count)))
        var result = DiskResult.ok
        do {
            switch op {
            case .data(.write(let o, let d, let fua)):
                dataWrites += 1
                try device.write(d, at: o)
                if fua { try device.flush() }
            case .data(.zero(let o, let l, _)): try device.writeZeroes(at: o, length: l)
            case .data(.read(let o, let l)): result = .data(try device.read(at: o, count: l))
            case .data(.flush): try device.flush()
            case .meta(let m): try store.write(m)
            }
        } catch { result = .failed("\(error)") }
        feed(.diskDone(token: token, result: result))
        return true
    }

    func runAll() { while runOne() {} }

    /// `down`: drain (the engine writes the bitmap back), then the store marks itself clean.
    func down() throws {
        feed(.admin(token: 2, .drain))
        runAll()
        guard adminDone.contains(2) else { throw MetaDataError.closed }
        try store.close()
    }
}

/// The crash tests draw from TandemCodecs' seeded generator.
typealias SplitMix = SplitMix64
