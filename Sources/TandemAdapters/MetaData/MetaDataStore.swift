import TandemCodecs
import TandemEngine

/// DRBD v08 internal meta-data on a backing device: creating, wiping, reading and applying the
/// activity log as drbdmeta does, and keeping it up to date while a node uses the disk.
///
/// While a node runs, the engine owns what the meta-data says and orders its writes
/// (ReplicationEngine+MetaData: an extent leaves the activity log only after its bitmap page is
/// durable, and a write reaches the disk only after its extent is durable in the log); the store
/// carries each write out durably (`write`). Its own crash safety is the order of the writes
/// it makes itself, each followed by a flush:
/// - create-md writes the activity log and a zero bitmap before the superblock, so a crash
///   leaves either no meta-data or complete meta-data;
/// - opening for use marks the superblock unclean before the first activity-log transaction;
/// - a clean close (after the engine wrote the bitmap back) re-initializes the log, then marks
///   the superblock clean; a crash between these steps only makes apply-al do redundant work.
/// v08 has no superblock checksum, but every field lies in its first 512-byte sector, so a
/// torn superblock write leaves the old or the new one.
/// Not thread-safe: the daemon uses it from its single disk thread only.
public final class MetaDataStore: @unchecked Sendable {
    public let device: BlockDevice
    public private(set) var layout: MetaDataLayout
    public private(set) var superblock: Superblock
    private var isOpen = true

    /// Default al-extents of DRBD 8.4.
    public static let defaultALExtents = 1237

    // MARK: - Static operations (drbdmeta's verbs)

    /// Reads and validates the superblock of `device`.
    public static func readSuperblock(from device: BlockDevice) throws(MetaDataError) -> (Superblock, MetaDataLayout) {
        let probe: MetaDataLayout
        do { probe = try MetaDataLayout(deviceBytes: device.size) } catch { throw .layout(device.path, error) }
        let bytes: [UInt8]
        do { bytes = try device.read(at: probe.superblockOffset, count: 4096) } catch { throw .device(error) }
        let sb: Superblock
        do { sb = try Superblock.decode(bytes) } catch { throw .superblock(device.path, error) }
        let layout: MetaDataLayout
        do { layout = try MetaDataLayout(deviceBytes: device.size, alStripes: sb.alStripes, alStripeSize4k: sb.alStripeSize4k) }
        catch { throw .layout(device.path, error) }
        do { try sb.validate(against: layout) } catch { throw .superblock(device.path, error) }
        return (sb, layout)
    }

    /// Whether `device` holds valid meta-data.
    public static func hasMetaData(_ device: BlockDevice) -> Bool {
        (try? readSuperblock(from: device)) != nil
    }

    /// Writes fresh meta-data (`create-md`). Refuses existing meta-data or a recognised
    /// filesystem unless `force`.
    @discardableResult
    public static func create(on device: BlockDevice, alStripes: UInt32 = 1, alStripeSize4k: UInt32 = 8,
                              force: Bool = false) throws(MetaDataError) -> Superblock {
        let layout: MetaDataLayout
        do { layout = try MetaDataLayout(deviceBytes: device.size, alStripes: alStripes, alStripeSize4k: alStripeSize4k) }
        catch { throw .layout(device.path, error) }
        if !force {
            if hasMetaData(device) { throw .existingMetaData(device.path) }
            if let fs = FilesystemProbe.detect(on: device) { throw .existingFilesystem(device.path, fs) }
        }
        let sb = Superblock(freshFor: layout)
        do {
            try initializeActivityLog(device, layout)
            let zero = [UInt8](repeating: 0, count: 1 << 20)
            var done: UInt64 = 0
            while done < layout.bitmapBytes {
                let n = Int(min(UInt64(zero.count), layout.bitmapBytes - done))
                try device.write(n == zero.count ? zero : Array(zero[0..<n]), at: layout.bitmapOffset + done)
                done += UInt64(n)
            }
            try device.flush()
            try device.write(sb.encode(), at: layout.superblockOffset)
            try device.flush()
        } catch { throw .device(error) }
        return sb
    }

    /// Destroys the meta-data (`wipe-md`): the superblock is overwritten first, in one write,
    /// so the disk is never left with a superblock pointing at a half-wiped area.
    public static func wipe(on device: BlockDevice) throws(MetaDataError) {
        let (_, layout) = try readSuperblock(from: device)
        do {
            try device.write([UInt8](repeating: 0, count: 4096), at: layout.superblockOffset)
            try device.flush()
            try device.write([UInt8](repeating: 0, count: layout.alBlocks * 4096), at: layout.alOffset)
            try device.flush()
        } catch { throw .device(error) }
    }

    /// The on-disk bitmap bytes covering `superblock`'s last agreed size (what dump-md prints).
    public static func bitmapBytesForDump(_ device: BlockDevice, _ sb: Superblock, _ layout: MetaDataLayout) throws(MetaDataError) -> [UInt8] {
        let n = min(MetaDataLayout.bitmapBytes(forSectors: sb.lastAgreedSizeSectors), layout.bitmapBytes)
        do { return try device.read(at: layout.bitmapOffset, count: Int(n)) } catch { throw .device(error) }
    }

    /// The raw activity-log blocks, in on-disk order.
    public static func readActivityLogBlocks(_ device: BlockDevice, _ layout: MetaDataLayout) throws(MetaDataError) -> [[UInt8]] {
        let all: [UInt8]
        do { all = try device.read(at: layout.alOffset, count: layout.alBlocks * 4096) } catch { throw .device(error) }
        return (0..<layout.alBlocks).map { Array(all[($0 * 4096)..<(($0 + 1) * 4096)]) }
    }

    private static func initializeActivityLog(_ device: BlockDevice, _ layout: MetaDataLayout) throws(BlockDeviceError) {
        let block = ActivityLogTransaction.initialized().encode()
        var all: [UInt8] = []
        all.reserveCapacity(layout.alBlocks * 4096)
        for _ in 0..<layout.alBlocks { all += block }
        try device.write(all, at: layout.alOffset)
    }

    /// What apply-al did.
    public struct ApplyResult: Equatable, Sendable {
        public var hotExtents: [UInt32]
        /// Bits that were clear and are now set.
        public var bitsAdded: UInt64
        public var invalidBlocks: Int
        /// True when the meta-data was clean and nothing needed doing.
        public var wasClean: Bool
    }

    /// Replays the activity log into the on-disk bitmap and marks the meta-data clean
    /// (`apply-al`). Unlike drbdmeta, which replays only for a node that was Primary, Tandem
    /// replays whenever the log holds update transactions: a Secondary's log covers the peer's
    /// writes it was applying, and marking too much is safe while marking too little is not.
    @discardableResult
    public static func applyActivityLog(on device: BlockDevice) throws(MetaDataError) -> ApplyResult {
        var (sb, layout) = try readSuperblock(from: device)
        let blocks = try readActivityLogBlocks(device, layout)
        let replay = ActivityLogTransaction.replay(blocks: blocks)
        if sb.isClean && replay.validUpdates == 0 {
            return ApplyResult(hotExtents: [], bitsAdded: 0, invalidBlocks: replay.invalidBlocks, wasClean: true)
        }
        var added: UInt64 = 0
        do {
            if !replay.hotExtents.isEmpty {
                let bytes = try device.read(at: layout.bitmapOffset, count: Int(layout.bitmapBytes))
                var bm = OutOfSyncBitmap(bitCount: layout.dataBits, onDiskBytes: bytes)
                for e in replay.hotExtents {
                    let lo = UInt64(e) * OutOfSyncBitmap.bitsPerExtent
                    guard lo < bm.bitCount else { continue } // beyond the data area: ignore
                    added += bm.set(lo..<(lo + OutOfSyncBitmap.bitsPerExtent))
                }
                for p in bm.dirtyPages.sorted() {
                    try device.write(bm.pageBytes(p), at: layout.bitmapOffset + UInt64(p) * 4096)
                }
                try device.flush()
            }
            try initializeActivityLog(device, layout)
            try device.flush()
            sb.flags.insert(.activityLogClean)
            sb.magic = Superblock.magic08
            try device.write(sb.encode(), at: layout.superblockOffset)
            try device.flush()
        } catch { throw .device(error) }
        return ApplyResult(hotExtents: replay.hotExtents, bitsAdded: added, invalidBlocks: replay.invalidBlocks, wasClean: false)
    }

    // MARK: - Using the meta-data while a node runs

    /// Opens the meta-data for use: applies the activity log if the last user crashed, and
    /// marks the superblock unclean until `close()`. The bitmap is loaded once (`loadBitmap`)
    /// for the engine, which owns it from then on.
    public init(device: BlockDevice, alExtents: Int = MetaDataStore.defaultALExtents) throws(MetaDataError) {
        var (sb, layout) = try MetaDataStore.readSuperblock(from: device)
        let blocks = try MetaDataStore.readActivityLogBlocks(device, layout)
        if !sb.isClean || ActivityLogTransaction.replay(blocks: blocks).validUpdates > 0 {
            try MetaDataStore.applyActivityLog(on: device)
            (sb, layout) = try MetaDataStore.readSuperblock(from: device)
        }
        var next: UInt32 = 0
        for b in blocks {
            if let t = try? ActivityLogTransaction.decode(b), t.type == ActivityLogTransaction.typeUpdate {
                if Int32(bitPattern: t.transactionNumber &- next) >= 0 { next = t.transactionNumber &+ 1 }
            }
        }
        self.device = device
        self.layout = layout
        self.activityLogNextTransaction = next
        self.alExtents = max(1, min(alExtents, ActivityLog.maximumSlots))
        sb.alExtents = UInt32(self.alExtents)
        sb.magic = Superblock.magic84Unclean
        sb.flags.remove(.activityLogClean)
        self.superblock = sb
        do {
            try device.write(sb.encode(), at: layout.superblockOffset)
            try device.flush()
        } catch { throw .device(error) }
    }

    /// The number the next activity-log transaction gets (one past the newest in the ring).
    public let activityLogNextTransaction: UInt32
    /// Slots of the activity log (al-extents) this store was opened with.
    public let alExtents: Int

    private func ensureOpen() throws(MetaDataError) { if !isOpen { throw .closed } }

    /// The on-disk bitmap, read once when the node starts.
    public func loadBitmap() throws(MetaDataError) -> OutOfSyncBitmap {
        let bytes: [UInt8]
        do { bytes = try device.read(at: layout.bitmapOffset, count: Int(layout.bitmapBytes)) } catch { throw .device(error) }
        return OutOfSyncBitmap(bitCount: layout.dataBits, onDiskBytes: bytes)
    }

    /// Carries out one meta-data write of the engine; durable when this returns. After a
    /// failure the store refuses every further write (the engine detaches the disk).
    public func write(_ op: MetaDataOperation) throws(MetaDataError) {
        try ensureOpen()
        do {
            switch op {
            case .activityLog(let t):
                guard t.contextSize == UInt16(alExtents) else { throw MetaDataError.activityLogMismatch(Int(t.contextSize), alExtents) }
                try device.writeDurably(t.encode(), at: layout.alBlockOffset(forTransaction: t.transactionNumber))
            case .bitmapPages(let pages, let dataFlushFirst):
                if dataFlushFirst { try device.flush() }
                for p in pages {
                    let offset = UInt64(p.index) * 4096
                    guard p.bytes.count == 4096, offset + 4096 <= layout.bitmapBytes else {
                        throw MetaDataError.bitmapPageOutOfRange(p.index)
                    }
                    if pages.count == 1 { try device.writeDurably(p.bytes, at: layout.bitmapOffset + offset) }
                    else { try device.write(p.bytes, at: layout.bitmapOffset + offset) }
                }
                if pages.count > 1 { try device.flush() }
            case .superblock(let p):
                try updateSuperblock { sb in
                    sb.currentUUID = p.current; sb.bitmapUUID = p.bitmap; sb.historyUUIDs = (p.history0, p.history1)
                    func flag(_ f: MetaDataFlags, _ on: Bool) { if on { sb.flags.insert(f) } else { sb.flags.remove(f) } }
                    flag(.consistent, p.consistent); flag(.wasUpToDate, p.wasUpToDate); flag(.primaryIndicator, p.primary)
                    flag(.crashedPrimary, p.crashedPrimary); flag(.peerOutdated, p.peerOutdated)
                    sb.lastAgreedSizeSectors = p.agreedSectors != 0 ? min(p.agreedSectors, layout.dataSectors) : layout.dataSectors
                }
            }
        } catch let e as MetaDataError {
            isOpen = false
            throw e
        } catch let e as BlockDeviceError {
            isOpen = false
            throw .device(e)
        } catch {
            isOpen = false
            throw .closed
        }
    }

    /// Re-reads the device's size; if it grew, moves the meta-data to the new end (as DRBD
    /// moves internal meta-data on resize) and returns the new layout, else nil. `bitmap`: the
    /// engine's bitmap as it stands now (it covers the old data area; the rest is written clear).
    ///
    /// Write order, each step durable before the next: the data (so the bitmap's cleared bits
    /// stand for data on disk), the bitmap and a copy of the activity-log ring at their new
    /// places, and last the superblock at the new end, in one write. The old meta-data lies
    /// wholly inside the new data area and is not touched, so until that last write the
    /// device's old meta-data is intact where it was (a crash in between finds no superblock at
    /// the new end; the device shrunk back to its old size is whole again). A device that grew
    /// less than the new meta-data area is refused (the new area would overwrite the old).
    public func moveToGrownDevice(bitmap: OutOfSyncBitmap) throws(MetaDataError) -> MetaDataLayout? {
        try ensureOpen()
        let bytes: UInt64
        do { bytes = try device.refreshSize() } catch { throw .device(error) }
        guard bytes > layout.deviceBytes else { return nil }
        let grown: MetaDataLayout
        do { grown = try MetaDataLayout(deviceBytes: bytes, alStripes: layout.alStripes, alStripeSize4k: layout.alStripeSize4k) }
        catch { throw .layout(device.path, error) }
        guard grown.dataBytes >= layout.deviceBytes else {
            throw .grewTooLittle(path: device.path, grewBytes: bytes - layout.deviceBytes,
                                 neededBytes: layout.deviceBytes - layout.dataBytes + (grown.deviceBytes - grown.dataBytes))
        }
        precondition(bitmap.bitCount <= grown.dataBits, "the bitmap is larger than the grown data area")
        var sb = superblock
        sb.metaDataSizeSectors = grown.metaDataSizeSectors
        sb.alOffsetSectors = grown.alOffsetSectors
        sb.bitmapOffsetSectors = grown.bitmapOffsetSectors
        sb.magic = Superblock.magic84Unclean
        sb.flags.remove(.activityLogClean)
        do {
            try device.flush()
            var onDisk = bitmap.onDiskBytes()
            onDisk += [UInt8](repeating: 0, count: Int(grown.bitmapBytes) - onDisk.count)
            try device.write(onDisk, at: grown.bitmapOffset)
            let ring = try device.read(at: layout.alOffset, count: layout.alBlocks * 4096)
            try device.write(ring, at: grown.alOffset)
            try device.flush()
            try device.write(sb.encode(), at: grown.superblockOffset)
            try device.flush()
        } catch { isOpen = false; throw .device(error) }
        layout = grown
        superblock = sb
        return grown
    }

    /// Changes superblock fields (UUIDs, flags, sizes) and writes it durably. The clean/unclean
    /// marking is kept by the store.
    public func updateSuperblock(_ change: (inout Superblock) -> Void) throws(MetaDataError) {
        try ensureOpen()
        var sb = superblock
        change(&sb)
        sb.magic = Superblock.magic84Unclean
        sb.flags.remove(.activityLogClean)
        do {
            try device.write(sb.encode(), at: layout.superblockOffset)
            try device.flush()
        } catch { isOpen = false; throw .device(error) }
        superblock = sb
    }

    /// Marks the meta-data clean: the activity log is re-initialized, then the superblock says
    /// clean. The engine has written the bitmap back before (`down` drains it), so a crash
    /// between these steps only makes apply-al do redundant work.
    public func close() throws(MetaDataError) {
        try ensureOpen()
        var sb = superblock
        sb.magic = Superblock.magic08
        sb.flags.insert(.activityLogClean)
        do {
            try device.flush()
            try MetaDataStore.initializeActivityLog(device, layout)
            try device.flush()
            try device.write(sb.encode(), at: layout.superblockOffset)
            try device.flush()
        } catch { isOpen = false; throw .device(error) }
        superblock = sb
        isOpen = false
    }
}

extension MetaDataStore {
    /// The meta-data of a disk restored from a snapshot of a Tandem disk (attach-snapshot)
    /// becomes a new data generation that descends from the snapshot's: current UUID `uuid`,
    /// the snapshot's current and first history UUIDs as history, no bitmap UUID, Consistent
    /// and UpToDate at its last use, no Primary or peer-outdated marks. A peer whose data is
    /// the snapshot's generation or a later one then never counts as in sync with it: by
    /// DRBD's rules a peer at the snapshot's generation syncs in full from it, and a peer that
    /// moved on is a split brain that its `restore --discard-my-data` resolves. The activity
    /// log the snapshot holds (its node was running) is applied first. The new superblock.
    public static func startGenerationFromSnapshot(on device: BlockDevice, uuid: UInt64) throws(MetaDataError) -> Superblock {
        precondition(uuid & ~1 != 0 && uuid & ~1 != Superblock.uuidJustCreated, "a new generation needs a real UUID")
        let store = try MetaDataStore(device: device)
        try store.updateSuperblock { sb in
            sb.historyUUIDs = (sb.currentUUID & ~1, sb.historyUUIDs.0)
            sb.currentUUID = uuid & ~1
            sb.bitmapUUID = 0
            sb.flags.formUnion([.consistent, .wasUpToDate])
            sb.flags.subtract([.primaryIndicator, .crashedPrimary, .peerOutdated, .connectedIndicator])
        }
        try store.close()
        return store.superblock
    }
}
