import TandemCodecs
import TandemEngine

/// Why reading, creating or updating meta-data failed, as one line for the operator.
public enum MetaDataError: Error, CustomStringConvertible {
    case device(BlockDeviceError)
    case layout(String, MetaDataLayout.Failure)
    case superblock(String, Superblock.Failure)
    case activityLog(ActivityLog.Failure)
    case existingMetaData(String)
    case existingFilesystem(String, String)
    case closed
    case activityLogMismatch(Int, Int)
    case bitmapPageOutOfRange(Int)
    /// A resize found the device grown too little to move the meta-data past its old place.
    case grewTooLittle(path: String, grewBytes: UInt64, neededBytes: UInt64)

    public var description: String {
        switch self {
        case .device(let e): return e.description
        case .layout(let p, let e): return "\(p): \(e)"
        case .superblock(let p, let e): return "\(p): \(e)"
        case .activityLog(let e): return e.description
        case .existingMetaData(let p):
            return "\(p): valid DRBD meta-data already present; use --force to overwrite it"
        case .existingFilesystem(let p, let fs):
            return "\(p): looks like it holds a \(fs) filesystem or volume; use --force to overwrite it"
        case .closed: return "meta-data store already closed (an earlier meta-data write failed, or it was closed)"
        case .activityLogMismatch(let t, let mine):
            return "activity-log transaction for \(t) slots, but the log has \(mine) (al-extents)"
        case .bitmapPageOutOfRange(let p): return "bitmap page \(p) lies outside the bitmap area"
        case .grewTooLittle(let p, let grew, let needed):
            return "\(p) grew by \(grew / 1024) KiB; the meta-data at its end moves past its old place only if the device grows by at least \(needed / 1024) KiB"
        }
    }
}
