import Glibc

/// Why a block-device operation failed, with enough context for a one-line message.
public enum BlockDeviceError: Error, Equatable, CustomStringConvertible {
    case notFound(path: String)
    case permissionDenied(path: String)
    /// Opened exclusively by someone else: mounted, in use by another Tandem or DRBD, ...
    case busy(path: String)
    case notADisk(path: String)
    case misaligned(path: String, offset: UInt64, length: UInt64, blockSize: Int)
    case outOfRange(path: String, offset: UInt64, length: UInt64, size: UInt64)
    case readOnly(path: String)
    case closed(path: String)
    case io(path: String, operation: String, errno: Int32)

    public var description: String {
        switch self {
        case .notFound(let p): return "\(p): no such file or device"
        case .permissionDenied(let p): return "\(p): permission denied"
        case .busy(let p): return "\(p): device is busy (mounted or opened exclusively by another program)"
        case .notADisk(let p): return "\(p): not a regular file or block device"
        case .misaligned(let p, let o, let l, let b):
            return "\(p): request at \(o) of \(l) bytes is not aligned to the \(b)-byte logical block size"
        case .outOfRange(let p, let o, let l, let s):
            return "\(p): request at \(o) of \(l) bytes lies beyond the end of the device (\(s) bytes)"
        case .readOnly(let p): return "\(p): opened read-only"
        case .closed(let p): return "\(p): device already closed"
        case .io(let p, let op, let e): return "\(p): \(op) failed: \(String(cString: strerror(e)))"
        }
    }

    /// Maps an errno from open() to the matching case.
    static func fromOpen(_ e: Int32, path: String) -> BlockDeviceError {
        switch e {
        case ENOENT, ENOTDIR: return .notFound(path: path)
        case EACCES, EPERM: return .permissionDenied(path: path)
        case EBUSY: return .busy(path: path)
        case EROFS: return .readOnly(path: path)
        default: return .io(path: path, operation: "open", errno: e)
        }
    }
}
