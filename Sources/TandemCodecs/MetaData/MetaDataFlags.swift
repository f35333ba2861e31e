/// The MDF_* flag bits of the v08 superblock: what a node remembers about its data and its
/// peer across restarts (consistency, primary role, an interrupted full sync, a clean AL, ...).
public struct MetaDataFlags: OptionSet, Sendable, Hashable {
    public let rawValue: UInt32
    public init(rawValue: UInt32) { self.rawValue = rawValue }

    public static let consistent = MetaDataFlags(rawValue: 0x001)
    public static let primaryIndicator = MetaDataFlags(rawValue: 0x002)
    public static let connectedIndicator = MetaDataFlags(rawValue: 0x004)
    public static let fullSync = MetaDataFlags(rawValue: 0x008)
    public static let wasUpToDate = MetaDataFlags(rawValue: 0x010)
    public static let peerOutdated = MetaDataFlags(rawValue: 0x020)
    public static let crashedPrimary = MetaDataFlags(rawValue: 0x040)
    public static let activityLogClean = MetaDataFlags(rawValue: 0x080)
    public static let activityLogDisabled = MetaDataFlags(rawValue: 0x100)

    /// The disk state DRBD derives from these flags when a disk is attached and no peer is known.
    public var diskStateName: String {
        if contains(.consistent) {
            if contains(.wasUpToDate) { return contains(.peerOutdated) ? "UpToDate" : "Consistent" }
            return "Outdated"
        }
        return "Inconsistent"
    }
}
