/// Where DRBD v08 internal meta-data lives on a backing device of a given size, computed the
/// way kernel DRBD 8.4 and drbdmeta compute it (superblock in the last 4 KiB-aligned block,
/// activity log below it, bitmap below that, data from sector 0 up to the bitmap).
///
/// All offsets kept here are absolute byte offsets; the superblock stores the activity-log and
/// bitmap offsets as signed 512-byte sectors relative to itself.
public struct MetaDataLayout: Equatable, Sendable {
    /// Size of the whole backing device in bytes.
    public let deviceBytes: UInt64
    /// Activity-log stripes and stripe size (in 4 KiB blocks); 1 x 8 (32 KiB) by default.
    public let alStripes: UInt32
    public let alStripeSize4k: UInt32

    /// Byte offset of the 4 KiB superblock.
    public let superblockOffset: UInt64
    /// Activity log: signed sectors from the superblock, and the absolute byte offset.
    public let alOffsetSectors: Int32
    public let alOffset: UInt64
    /// Bitmap: signed sectors from the superblock, the absolute byte offset, its size in bytes.
    public let bitmapOffsetSectors: Int32
    public let bitmapOffset: UInt64
    public let bitmapBytes: UInt64
    /// The whole meta-data area in sectors (bitmap + activity log + superblock).
    public let metaDataSizeSectors: UInt32
    /// Usable data: sectors [0, dataSectors).
    public let dataSectors: UInt64

    /// The smallest device drbdmeta accepts (it reads 68 KiB when probing for existing data).
    public static let minimumDeviceBytes: UInt64 = 68 * 1024

    /// Why a layout cannot exist.
    public enum Failure: Error, Equatable, CustomStringConvertible {
        case deviceTooSmall(bytes: UInt64, needed: UInt64)
        case invalidActivityLogGeometry(stripes: UInt32, stripeSize4k: UInt32)

        public var description: String {
            switch self {
            case .deviceTooSmall(let b, let n):
                return "device of \(b) bytes is too small for DRBD meta-data (needs more than \(n) bytes)"
            case .invalidActivityLogGeometry(let s, let z):
                return "invalid activity-log geometry: \(s) stripes of \(z) 4 KiB blocks (need at least 32 KiB, at most 16 GiB... in total)"
            }
        }
    }

    /// Number of bitmap bytes for a device of `sectors` 512-byte sectors: one bit per 4 KiB,
    /// rounded up to 64-bit words, then to whole 4 KiB pages (drbdmeta's `bm_bytes`).
    public static func bitmapBytes(forSectors sectors: UInt64) -> UInt64 {
        var bits = (sectors + 7) / 8
        bits = (bits + 63) / 64 * 64
        let bytes = bits / 8
        return (bytes + 4095) / 4096 * 4096
    }

    public init(deviceBytes: UInt64, alStripes: UInt32 = 1, alStripeSize4k: UInt32 = 8) throws(Failure) {
        let alBlocks = UInt64(alStripes) * UInt64(alStripeSize4k)
        guard alStripes >= 1, alStripeSize4k >= 1, alBlocks >= 8, alBlocks <= 1 << 22 else {
            throw Failure.invalidActivityLogGeometry(stripes: alStripes, stripeSize4k: alStripeSize4k)
        }
        guard deviceBytes >= MetaDataLayout.minimumDeviceBytes else {
            throw Failure.deviceTooSmall(bytes: deviceBytes, needed: MetaDataLayout.minimumDeviceBytes)
        }
        let sectors = deviceBytes / 512
        let superblock = (deviceBytes / 4096) * 4096 - 4096
        let alSectors = alBlocks * 8
        let bmBytes = MetaDataLayout.bitmapBytes(forSectors: sectors)
        let mdSize = bmBytes / 512 + 8 + alSectors
        let below = alSectors + bmBytes / 512 // sectors below the superblock
        guard superblock / 512 > below else {
            throw Failure.deviceTooSmall(bytes: deviceBytes, needed: (below + 8) * 512 + 4096)
        }
        self.deviceBytes = deviceBytes
        self.alStripes = alStripes
        self.alStripeSize4k = alStripeSize4k
        self.superblockOffset = superblock
        self.alOffsetSectors = -Int32(alSectors)
        self.alOffset = superblock - alSectors * 512
        self.bitmapOffsetSectors = -Int32(below)
        self.bitmapOffset = superblock - below * 512
        self.bitmapBytes = bmBytes
        self.metaDataSizeSectors = UInt32(mdSize)
        self.dataSectors = superblock / 512 - below
    }

    /// Number of 4 KiB activity-log blocks.
    public var alBlocks: Int { Int(alStripes) * Int(alStripeSize4k) }

    /// Bytes of usable data.
    public var dataBytes: UInt64 { dataSectors * 512 }

    /// Bits in the bitmap that stand for real data (one per 4 KiB block of the data area).
    public var dataBits: UInt64 { (dataSectors + 7) / 8 }

    /// Byte offset of the activity-log block that holds transaction number `t`
    /// (the ring is striped: consecutive transactions go to consecutive stripes).
    public func alBlockOffset(forTransaction t: UInt32) -> UInt64 {
        UInt64(alBlockIndex(forTransaction: t)) * 4096 + alOffset
    }

    /// Index (0 ..< alBlocks) of the on-disk block that holds transaction number `t`.
    public func alBlockIndex(forTransaction t: UInt32) -> Int {
        let total = UInt32(alBlocks)
        let r = t % total
        return Int((r % alStripes) * alStripeSize4k + r / alStripes)
    }
}
