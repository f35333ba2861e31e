/// The 4 KiB DRBD v08 superblock (`struct meta_data_on_disk`), all fields big-endian.
/// It names the generation UUIDs that decide sync direction, the flags, the last agreed size
/// and where the activity log and bitmap are. v08 has no checksum; every field that matters
/// lies in the first 512-byte sector, so a torn 4 KiB write leaves either the old or the new
/// superblock, never a mix (see MetaDataStore for the write ordering built on that).
public struct Superblock: Equatable, Sendable {
    public static let magic08: UInt32 = 0x8374_026B
    public static let magic84Unclean: UInt32 = 0x8374_026C
    public static let magic07: UInt32 = 0x8374_026A
    public static let magic09: UInt32 = 0x8374_026D
    /// Current UUID of freshly created meta-data (drbdmeta's UUID_JUST_CREATED).
    public static let uuidJustCreated: UInt64 = 4
    /// al-extents drbdmeta writes at create-md (the kernel writes its configured value later).
    public static let defaultALExtentsAtCreate: UInt32 = 257

    /// Last agreed (exported) size in sectors.
    public var lastAgreedSizeSectors: UInt64 = 0
    public var currentUUID: UInt64 = uuidJustCreated
    public var bitmapUUID: UInt64 = 0
    public var historyUUIDs: (UInt64, UInt64) = (0, 0)
    public var deviceUUID: UInt64 = 0
    public var reserved: UInt64 = 0
    public var flags: MetaDataFlags = [.activityLogClean]
    public var magic: UInt32 = magic08
    public var metaDataSizeSectors: UInt32 = 0
    public var alOffsetSectors: Int32 = 0
    public var alExtents: UInt32 = defaultALExtentsAtCreate
    public var bitmapOffsetSectors: Int32 = 0
    public var bitmapBytesPerBit: UInt32 = 4096
    public var lastPeerMaxBioSize: UInt32 = 0
    public var alStripes: UInt32 = 1
    public var alStripeSize4k: UInt32 = 8

    public init() {}

    /// A fresh superblock for `layout`, as `create-md` writes it.
    public init(freshFor layout: MetaDataLayout) {
        self.init()
        metaDataSizeSectors = layout.metaDataSizeSectors
        alOffsetSectors = layout.alOffsetSectors
        bitmapOffsetSectors = layout.bitmapOffsetSectors
        alStripes = layout.alStripes
        alStripeSize4k = layout.alStripeSize4k
    }

    public static func == (a: Superblock, b: Superblock) -> Bool { a.encode() == b.encode() }

    /// The four generation UUIDs in DRBD order: current, bitmap, history start, history end.
    public var uuids: [UInt64] { [currentUUID, bitmapUUID, historyUUIDs.0, historyUUIDs.1] }

    /// True unless a node had the disk attached and did not shut down cleanly: the activity
    /// log must then be applied to the bitmap before the bitmap can be trusted.
    public var isClean: Bool { magic != Superblock.magic84Unclean && flags.contains(.activityLogClean) }

    /// Encodes to 4096 bytes.
    public func encode() -> [UInt8] {
        var b = [UInt8](repeating: 0, count: 4096)
        ByteIO.writeBE(lastAgreedSizeSectors, into: &b, at: 0x00)
        ByteIO.writeBE(currentUUID, into: &b, at: 0x08)
        ByteIO.writeBE(bitmapUUID, into: &b, at: 0x10)
        ByteIO.writeBE(historyUUIDs.0, into: &b, at: 0x18)
        ByteIO.writeBE(historyUUIDs.1, into: &b, at: 0x20)
        ByteIO.writeBE(deviceUUID, into: &b, at: 0x28)
        ByteIO.writeBE(reserved, into: &b, at: 0x30)
        ByteIO.writeBE(flags.rawValue, into: &b, at: 0x38)
        ByteIO.writeBE(magic, into: &b, at: 0x3C)
        ByteIO.writeBE(metaDataSizeSectors, into: &b, at: 0x40)
        ByteIO.writeBE(alOffsetSectors, into: &b, at: 0x44)
        ByteIO.writeBE(alExtents, into: &b, at: 0x48)
        ByteIO.writeBE(bitmapOffsetSectors, into: &b, at: 0x4C)
        ByteIO.writeBE(bitmapBytesPerBit, into: &b, at: 0x50)
        ByteIO.writeBE(lastPeerMaxBioSize, into: &b, at: 0x54)
        ByteIO.writeBE(alStripes, into: &b, at: 0x58)
        ByteIO.writeBE(alStripeSize4k, into: &b, at: 0x5C)
        return b
    }

    /// Why bytes are not a usable v08 superblock.
    public enum Failure: Error, Equatable, CustomStringConvertible {
        case truncated(Int)
        case noMetaData
        case unsupportedVersion(String)
        case invalid(String)

        public var description: String {
            switch self {
            case .truncated(let n): return "meta-data superblock truncated: \(n) of 4096 bytes"
            case .noMetaData: return "no DRBD meta-data found (wrong magic); run create-md first"
            case .unsupportedVersion(let v): return "found \(v) meta-data; only DRBD v08 meta-data is supported"
            case .invalid(let why): return "corrupt meta-data superblock: \(why)"
            }
        }
    }

    /// Decodes and checks the fields that must hold for any v08 superblock. Checks against a
    /// particular device size are `validate(against:)`.
    public static func decode(_ b: [UInt8]) throws(Failure) -> Superblock {
        guard b.count >= 4096 else { throw Failure.truncated(b.count) }
        var s = Superblock()
        s.magic = ByteIO.readBE(b, 0x3C)
        switch s.magic {
        case magic08, magic84Unclean: break
        case magic07: throw Failure.unsupportedVersion("DRBD 0.7")
        case magic09: throw Failure.unsupportedVersion("DRBD 9 (v09)")
        default: throw Failure.noMetaData
        }
        s.lastAgreedSizeSectors = ByteIO.readBE(b, 0x00)
        s.currentUUID = ByteIO.readBE(b, 0x08)
        s.bitmapUUID = ByteIO.readBE(b, 0x10)
        s.historyUUIDs = (ByteIO.readBE(b, 0x18), ByteIO.readBE(b, 0x20))
        s.deviceUUID = ByteIO.readBE(b, 0x28)
        s.reserved = ByteIO.readBE(b, 0x30)
        s.flags = MetaDataFlags(rawValue: ByteIO.readBE(b, 0x38))
        s.metaDataSizeSectors = ByteIO.readBE(b, 0x40)
        s.alOffsetSectors = ByteIO.readBE(b, 0x44)
        s.alExtents = ByteIO.readBE(b, 0x48)
        s.bitmapOffsetSectors = ByteIO.readBE(b, 0x4C)
        s.bitmapBytesPerBit = ByteIO.readBE(b, 0x50)
        s.lastPeerMaxBioSize = ByteIO.readBE(b, 0x54)
        s.alStripes = ByteIO.readBE(b, 0x58)
        s.alStripeSize4k = ByteIO.readBE(b, 0x5C)
        if s.alStripes == 0 && s.alStripeSize4k == 0 { // written before AL striping existed
            s.alStripes = 1
            s.alStripeSize4k = 8
        }
        guard s.bitmapBytesPerBit == 4096 else {
            throw Failure.invalid("bm-byte-per-bit is \(s.bitmapBytesPerBit), expected 4096")
        }
        guard s.alStripes >= 1, s.alStripeSize4k >= 1,
              UInt64(s.alStripes) * UInt64(s.alStripeSize4k) >= 8,
              UInt64(s.alStripes) * UInt64(s.alStripeSize4k) <= 1 << 22 else {
            throw Failure.invalid("activity-log geometry \(s.alStripes) x \(s.alStripeSize4k) is impossible")
        }
        return s
    }

    /// Checks that this superblock describes meta-data placed for `layout` (the device it was
    /// read from): the offsets must be what the formula gives for this device size.
    public func validate(against layout: MetaDataLayout) throws(Failure) {
        if alOffsetSectors != layout.alOffsetSectors {
            throw Failure.invalid("al-offset \(alOffsetSectors) does not match this device (expected \(layout.alOffsetSectors))")
        }
        if bitmapOffsetSectors != layout.bitmapOffsetSectors || metaDataSizeSectors != layout.metaDataSizeSectors {
            throw Failure.invalid("bm-offset \(bitmapOffsetSectors) / md-size \(metaDataSizeSectors) do not match a device of \(layout.deviceBytes) bytes (expected \(layout.bitmapOffsetSectors) / \(layout.metaDataSizeSectors)); was the device resized?")
        }
        if lastAgreedSizeSectors > layout.dataSectors {
            throw Failure.invalid("last agreed size \(lastAgreedSizeSectors) sectors is larger than the data area (\(layout.dataSectors) sectors)")
        }
    }
}
