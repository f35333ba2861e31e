/// A disk in memory, for tests and simulations, that can be told to crash.
///
/// The model of a crash: writes go to a volatile cache and become durable at `flush()` (or at
/// once with `writeThrough`). `crash(after:)` arms a fault: after that many more successful
/// writes the next write fails, and from then on every call fails. `durableImage(...)` then
/// gives what a disk could hold after power returns: every flushed write, each unflushed write
/// kept or lost (chosen by a seeded generator), and the interrupted write torn at a sector
/// boundary.
public final class MemoryBlockDevice: BlockDevice, @unchecked Sendable {
    public let path: String
    public private(set) var size: UInt64
    public let logicalBlockSize: Int
    /// Durable contents (what survives a crash).
    public private(set) var durable: [UInt8]
    /// Completed writes not yet flushed, oldest first.
    private var pending: [(offset: UInt64, bytes: [UInt8])] = []
    /// The write that was interrupted by the crash, if any.
    private var interrupted: (offset: UInt64, bytes: [UInt8])?
    /// When true, every write is durable as soon as it completes.
    public var writeThrough: Bool
    private var writesUntilCrash: Int?
    public private(set) var crashed = false
    /// Counters, for tests that enumerate crash points.
    public private(set) var writeCount = 0
    public private(set) var flushCount = 0

    public init(size: UInt64, logicalBlockSize: Int = 512, path: String = "memory", writeThrough: Bool = false) {
        self.path = path
        self.size = size
        self.logicalBlockSize = logicalBlockSize
        self.durable = [UInt8](repeating: 0, count: Int(size))
        self.writeThrough = writeThrough
    }

    /// A device whose durable contents are `image`.
    public convenience init(image: [UInt8], logicalBlockSize: Int = 512, path: String = "memory") {
        self.init(size: UInt64(image.count), logicalBlockSize: logicalBlockSize, path: path)
        durable = image
    }

    /// Grows the device (zeros at the end), as a grown volume; `refreshSize` reports it.
    public func grow(to bytes: UInt64) {
        precondition(bytes >= size, "a memory device only grows")
        durable += [UInt8](repeating: 0, count: Int(bytes - size))
        size = bytes
    }

    public func refreshSize() throws(BlockDeviceError) -> UInt64 { size }

    /// Arms a crash: `writes` more writes succeed, then the next fails and the device is dead.
    public func crash(after writes: Int) { writesUntilCrash = writes }

    private func ensureAlive() throws(BlockDeviceError) {
        if crashed { throw .io(path: path, operation: "I/O after crash", errno: 5) }
    }

    /// The current view: durable data with pending writes applied in order.
    private func currentImageRange(_ offset: Int, _ count: Int) -> [UInt8] {
        var out = Array(durable[offset..<(offset + count)])
        for w in pending {
            let lo = max(offset, Int(w.offset)), hi = min(offset + count, Int(w.offset) + w.bytes.count)
            if lo < hi {
                for i in lo..<hi { out[i - offset] = w.bytes[i - Int(w.offset)] }
            }
        }
        return out
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(BlockDeviceError) {
        try ensureAlive()
        try checkRange(offset: offset, length: UInt64(buffer.count), aligned: false)
        let data = currentImageRange(Int(offset), buffer.count)
        data.withUnsafeBytes { buffer.copyMemory(from: $0) }
    }

    public func write(from buffer: UnsafeRawBufferPointer, at offset: UInt64) throws(BlockDeviceError) {
        try ensureAlive()
        try checkRange(offset: offset, length: UInt64(buffer.count), aligned: false)
        let bytes = Array(buffer)
        if let left = writesUntilCrash {
            if left == 0 {
                crashed = true
                interrupted = (offset, bytes)
                throw .io(path: path, operation: "write (simulated crash)", errno: 5)
            }
            writesUntilCrash = left - 1
        }
        writeCount += 1
        if writeThrough { apply(offset, bytes) } else { pending.append((offset, bytes)) }
    }

    private func apply(_ offset: UInt64, _ bytes: [UInt8]) {
        durable.replaceSubrange(Int(offset)..<(Int(offset) + bytes.count), with: bytes)
    }

    public func flush() throws(BlockDeviceError) {
        try ensureAlive()
        flushCount += 1
        for w in pending { apply(w.offset, w.bytes) }
        pending.removeAll()
    }

    public func discard(at offset: UInt64, length: UInt64) throws(BlockDeviceError) {
        try ensureAlive()
        try checkRange(offset: offset, length: length, aligned: false)
    }

    public func writeZeroes(at offset: UInt64, length: UInt64) throws(BlockDeviceError) {
        try write([UInt8](repeating: 0, count: Int(length)), at: offset)
    }

    public func close() {}

    /// What the disk may hold after a crash now. `keep` decides for each unflushed write
    /// (in order) whether it reached the disk; `tornSectors` is how many leading 512-byte
    /// sectors of the interrupted write landed.
    public func durableImage(keep: (Int) -> Bool, tornSectors: Int) -> [UInt8] {
        var image = durable
        for (i, w) in pending.enumerated() where keep(i) {
            image.replaceSubrange(Int(w.offset)..<(Int(w.offset) + w.bytes.count), with: w.bytes)
        }
        if let w = interrupted {
            let n = min(w.bytes.count, max(0, tornSectors) * 512)
            image.replaceSubrange(Int(w.offset)..<(Int(w.offset) + n), with: w.bytes[0..<n])
        }
        return image
    }

    /// Number of writes that completed but were not flushed.
    public var unflushedWrites: Int { pending.count }
}
