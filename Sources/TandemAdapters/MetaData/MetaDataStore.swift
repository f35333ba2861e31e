import TandemCodecs
import TandemEngine

/// DRBD v08 internal meta-data on a backing device: creating, wiping, reading and applying the
/// activity log as drbdmeta does, and keeping it up to date while a node uses the disk.
///
/// Crash safety comes from the order of writes, each followed by a flush:
/// - create-md writes the activity log and a zero bitmap before the superblock, so a crash
///   leaves either no meta-data or complete meta-data;
/// - opening for use marks the superblock unclean before the first activity-log transaction;
/// - an extent leaves the activity log only after its bitmap page is durable, and a block is
///   reported dirty only after an extent covering it is durable in the log, so a crash at any
///   point followed by apply-al finds every dirty block dirty;
/// - a clean close writes the bitmap, then re-initializes the log, then marks the superblock
///   clean; a crash between these steps only makes apply-al do redundant work.
/// v08 has no superblock checksum, but every field lies in its first 512-byte sector, so a
/// torn superblock write leaves the old or the new one.
/// Not thread-safe: the daemon uses it from its single disk thread only.
public final class MetaDataStore: @unchecked Sendable {
    public let device: BlockDevice
    public let layout: MetaDataLayout
    public private(set) var superblock: Superblock
    public private(set) var bitmap: OutOfSyncBitmap
    public private(set) var activityLog: ActivityLog
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

    /// Opens the meta-data for use: applies the activity log if the last user crashed, loads the
    /// bitmap, and marks the superblock unclean until `close()`.
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
        let bytes: [UInt8]
        do { bytes = try device.read(at: layout.bitmapOffset, count: Int(layout.bitmapBytes)) } catch { throw .device(error) }
        self.device = device
        self.layout = layout
        self.bitmap = OutOfSyncBitmap(bitCount: layout.dataBits, onDiskBytes: bytes)
        self.activityLog = ActivityLog(slotCount: max(1, min(alExtents, ActivityLog.maximumSlots)), nextTransactionNumber: next)
        sb.alExtents = UInt32(activityLog.slotCount)
        sb.magic = Superblock.magic84Unclean
        sb.flags.remove(.activityLogClean)
        self.superblock = sb
        do {
            try device.write(sb.encode(), at: layout.superblockOffset)
            try device.flush()
        } catch { throw .device(error) }
    }

    private func ensureOpen() throws(MetaDataError) { if !isOpen { throw .closed } }

    /// Marks a byte range of data out of sync. When this returns, the mark survives a crash:
    /// the extents are durable in the activity log, and the bits reach the bitmap later.
    /// Returns the number of bits newly set.
    @discardableResult
    public func markOutOfSync(offset: UInt64, length: UInt64) throws(MetaDataError) -> UInt64 {
        try ensureOpen()
        let bits = OutOfSyncBitmap.bits(coveringBytes: offset, length: length).clamped(to: 0..<bitmap.bitCount)
        guard !bits.isEmpty else { return 0 }
        let first = OutOfSyncBitmap.extent(ofBit: bits.lowerBound)
        let last = OutOfSyncBitmap.extent(ofBit: bits.upperBound - 1)
        try makeHot(Array(first...last))
        return bitmap.set(bits)
    }

    /// Makes extents hot in the activity log, writing what that requires, durably.
    public func makeHot(_ extents: [UInt32]) throws(MetaDataError) {
        try ensureOpen()
        let plan: ActivityLog.Plan
        do { plan = try activityLog.plan(extents) } catch { throw .activityLog(error) }
        guard !plan.isEmpty else { return }
        do {
            if !plan.evicted.isEmpty {
                let pages = Set(plan.evicted.map { OutOfSyncBitmap.page(ofExtent: $0) }).intersection(bitmap.dirtyPages)
                if !pages.isEmpty {
                    // Durable before the transaction that drops the extents from the log.
                    for p in pages.sorted() { try device.writeDurably(bitmap.pageBytes(p), at: layout.bitmapOffset + UInt64(p) * 4096) }
                    bitmap.markPagesWritten(pages)
                }
            }
            // Each transaction is durable before the data writes it covers are issued: a FUA
            // write each, so the data already written is not forced out with them.
            for t in activityLog.commit(plan) {
                try device.writeDurably(t.encode(), at: layout.alBlockOffset(forTransaction: t.transactionNumber))
            }
        } catch {
            isOpen = false
            throw .device(error)
        }
    }

    /// Marks a byte range in sync (bits cleared in memory; written by `flushBitmap`).
    /// Only whole 4 KiB blocks inside the range are cleared.
    @discardableResult
    public func markInSync(offset: UInt64, length: UInt64) -> UInt64 {
        let lo = (offset + OutOfSyncBitmap.bytesPerBit - 1) / OutOfSyncBitmap.bytesPerBit
        let hi = (offset + length) / OutOfSyncBitmap.bytesPerBit
        guard lo < hi else { return 0 }
        return bitmap.clear(lo..<hi)
    }

    /// Sets bits in memory without touching the activity log (bits a peer reported, or a
    /// full sync); `flushBitmap` writes them.
    public func setBits(_ range: Range<UInt64>) { bitmap.set(range) }

    /// Clears bits in memory; `flushBitmap` writes them once the data is durable.
    public func clearBits(_ range: Range<UInt64>) { bitmap.clear(range) }

    /// Writes changed bitmap pages and flushes. The data area is flushed first, so a cleared
    /// bit never reaches the disk before the data it vouches for.
    public func flushBitmap() throws(MetaDataError) {
        try ensureOpen()
        let pages = bitmap.dirtyPages.sorted()
        guard !pages.isEmpty else { return }
        do {
            try device.flush()
            for p in pages { try device.write(bitmap.pageBytes(p), at: layout.bitmapOffset + UInt64(p) * 4096) }
            try device.flush()
        } catch { isOpen = false; throw .device(error) }
        bitmap.markPagesWritten(pages)
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

    /// Writes everything out and marks the meta-data clean.
    public func close() throws(MetaDataError) {
        try ensureOpen()
        try flushBitmap()
        var sb = superblock
        sb.magic = Superblock.magic08
        sb.flags.insert(.activityLogClean)
        do {
            try MetaDataStore.initializeActivityLog(device, layout)
            try device.flush()
            try device.write(sb.encode(), at: layout.superblockOffset)
            try device.flush()
        } catch { isOpen = false; throw .device(error) }
        superblock = sb
        activityLog.reset()
        isOpen = false
    }
}
