/// A disk Tandem stores data and meta-data on: a regular file, a real block device (loop, NVMe,
/// an EBS volume) or memory. Offsets and lengths are bytes; callers keep them aligned to
/// `logicalBlockSize` when the device demands it (O_DIRECT), and the device checks.
public protocol BlockDevice: AnyObject {
    /// What the device was opened from, for messages.
    var path: String { get }
    /// Size in bytes.
    var size: UInt64 { get }
    /// Smallest unit of I/O the device accepts (512 or 4096).
    var logicalBlockSize: Int { get }

    /// Reads exactly `buffer.count` bytes at `offset`.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(BlockDeviceError)
    /// Writes all of `buffer` at `offset`.
    func write(from buffer: UnsafeRawBufferPointer, at offset: UInt64) throws(BlockDeviceError)
    /// Makes every completed write durable (fdatasync).
    func flush() throws(BlockDeviceError)
    /// Writes all of `buffer` at `offset`, durable on return (a FUA write); other writes are
    /// not made durable by it. Meta-data (activity log, bitmap pages) is written this way.
    func writeDurably(from buffer: UnsafeRawBufferPointer, at offset: UInt64) throws(BlockDeviceError)
    /// Tells the device a range no longer holds data; it may read back as anything until written.
    func discard(at offset: UInt64, length: UInt64) throws(BlockDeviceError)
    /// Makes a range read back as zeros.
    func writeZeroes(at offset: UInt64, length: UInt64) throws(BlockDeviceError)
    /// Releases the device. Further calls fail.
    func close()
    /// Reads the size again (a loop device after `losetup -c`, a grown file, an EBS volume after
    /// ModifyVolume) and returns it; `size` says it from then on.
    func refreshSize() throws(BlockDeviceError) -> UInt64
}

extension BlockDevice {
    /// Without a FUA write: write, then flush everything (stronger than asked, never weaker).
    public func writeDurably(from buffer: UnsafeRawBufferPointer, at offset: UInt64) throws(BlockDeviceError) {
        try write(from: buffer, at: offset)
        try flush()
    }

    /// Writes `bytes` at `offset`, durable on return.
    public func writeDurably(_ bytes: [UInt8], at offset: UInt64) throws(BlockDeviceError) {
        var failure: BlockDeviceError?
        bytes.withUnsafeBytes { buf in
            do throws(BlockDeviceError) { try writeDurably(from: buf, at: offset) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    /// Reads `count` bytes at `offset` into a new array.
    public func read(at offset: UInt64, count: Int) throws(BlockDeviceError) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        var failure: BlockDeviceError?
        out.withUnsafeMutableBytes { buf in
            do throws(BlockDeviceError) { try read(into: buf, at: offset) } catch { failure = error }
        }
        if let failure { throw failure }
        return out
    }

    /// Writes `bytes` at `offset`.
    public func write(_ bytes: [UInt8], at offset: UInt64) throws(BlockDeviceError) {
        var failure: BlockDeviceError?
        bytes.withUnsafeBytes { buf in
            do throws(BlockDeviceError) { try write(from: buf, at: offset) } catch { failure = error }
        }
        if let failure { throw failure }
    }

    /// Checks that a request lies inside the device and, if `aligned`, on block boundaries.
    public func checkRange(offset: UInt64, length: UInt64, aligned: Bool) throws(BlockDeviceError) {
        let (end, overflow) = offset.addingReportingOverflow(length)
        guard !overflow, end <= size else {
            throw .outOfRange(path: path, offset: offset, length: length, size: size)
        }
        if aligned {
            let bs = UInt64(logicalBlockSize)
            guard offset % bs == 0, length % bs == 0 else {
                throw .misaligned(path: path, offset: offset, length: length, blockSize: logicalBlockSize)
            }
        }
    }
}
