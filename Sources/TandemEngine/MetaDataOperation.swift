import TandemCodecs

/// A write to the meta-data area the engine asks for. The engine owns what the meta-data says
/// (the activity log's slots, the out-of-sync bitmap, the UUIDs and flags); the meta-data store
/// only puts these bytes where DRBD's layout says and reports when they are durable.
public enum MetaDataOperation: Sendable, Equatable {
    /// One activity-log transaction, durable (FUA) in its block of the ring.
    case activityLog(ActivityLogTransaction)
    /// Whole 4 KiB bitmap pages, durable on completion. With `dataFlushFirst` the data area is
    /// flushed before they are written: they clear bits whose blocks were written since the
    /// last flush, and a cleared bit must never reach the disk before the data it vouches for,
    /// or they come before an activity-log transaction that evicts extents. With no pages it
    /// is only that flush.
    case bitmapPages([BitmapPage], dataFlushFirst: Bool)
    /// The superblock's UUIDs and flags, durable on completion.
    case superblock(PersistentState)
}

/// One 4 KiB page of the on-disk bitmap, as it is to be written.
public struct BitmapPage: Sendable, Equatable {
    /// Page number from the start of the bitmap area.
    public var index: Int
    /// 4096 bytes: the bitmap words of this page, little-endian.
    public var bytes: [UInt8]
    public init(index: Int, bytes: [UInt8]) { self.index = index; self.bytes = bytes }
}
