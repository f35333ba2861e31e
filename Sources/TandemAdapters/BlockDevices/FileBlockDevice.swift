import CTandemSys
import Glibc

/// A regular file or a Linux block device (loop device, NVMe, EBS volume) used as a disk.
///
/// Block devices are opened with O_EXCL, which the kernel refuses with EBUSY while the device
/// is mounted or held by another exclusive opener; their size comes from BLKGETSIZE64 and
/// their logical block size from BLKSSZGET. Regular files are locked with flock so two Tandem
/// processes cannot use one file. With `direct`, I/O bypasses the page cache (O_DIRECT) and
/// requests must be aligned to the logical block size; unaligned caller buffers are bounced
/// through an aligned one.
public final class FileBlockDevice: BlockDevice, @unchecked Sendable {
    /// How to open a disk.
    public struct Options: Sendable {
        public var readOnly: Bool
        public var direct: Bool
        /// Exclusive open (O_EXCL for block devices, an flock for files).
        public var exclusive: Bool
        public init(readOnly: Bool = false, direct: Bool = false, exclusive: Bool = true) {
            self.readOnly = readOnly
            self.direct = direct
            self.exclusive = exclusive
        }
    }

    public let path: String
    public private(set) var size: UInt64
    public let logicalBlockSize: Int
    /// True for a block device, false for a regular file.
    public let isBlockDevice: Bool
    public let options: Options
    private var fd: Int32

    public init(path: String, options: Options = Options()) throws(BlockDeviceError) {
        self.path = path
        self.options = options
        var st = stat()
        guard stat(path, &st) == 0 else { throw BlockDeviceError.fromOpen(errno, path: path) }
        let kind = st.st_mode & S_IFMT
        guard kind == S_IFREG || kind == S_IFBLK else { throw BlockDeviceError.notADisk(path: path) }
        isBlockDevice = kind == S_IFBLK
        var flags: Int32 = options.readOnly ? O_RDONLY : O_RDWR
        flags |= O_CLOEXEC
        if options.direct { flags |= tandem_o_direct() }
        if options.exclusive && isBlockDevice { flags |= O_EXCL }
        let fd = tandem_open(path, flags, 0)
        guard fd >= 0 else { throw BlockDeviceError.fromOpen(errno, path: path) }
        if options.exclusive && !isBlockDevice {
            if flock(fd, (options.readOnly ? LOCK_SH : LOCK_EX) | LOCK_NB) != 0 {
                let e = errno
                Glibc.close(fd)
                throw e == EWOULDBLOCK ? BlockDeviceError.busy(path: path) : .io(path: path, operation: "flock", errno: e)
            }
        }
        if isBlockDevice {
            var bytes: UInt64 = 0
            var ssz: Int32 = 512
            guard tandem_blk_getsize64(fd, &bytes) == 0 else {
                let e = errno; Glibc.close(fd)
                throw BlockDeviceError.io(path: path, operation: "ioctl(BLKGETSIZE64)", errno: e)
            }
            guard tandem_blk_sszget(fd, &ssz) == 0 else {
                let e = errno; Glibc.close(fd)
                throw BlockDeviceError.io(path: path, operation: "ioctl(BLKSSZGET)", errno: e)
            }
            size = bytes
            logicalBlockSize = Int(ssz)
        } else {
            size = UInt64(st.st_size)
            logicalBlockSize = options.direct ? 4096 : 512
        }
        self.fd = fd
    }

    deinit { close() }

    public func refreshSize() throws(BlockDeviceError) -> UInt64 {
        guard fd >= 0 else { throw .io(path: path, operation: "size", errno: EBADF) }
        if isBlockDevice {
            var bytes: UInt64 = 0
            guard tandem_blk_getsize64(fd, &bytes) == 0 else { throw .io(path: path, operation: "ioctl(BLKGETSIZE64)", errno: errno) }
            size = bytes
        } else {
            var st = stat()
            guard fstat(fd, &st) == 0 else { throw .io(path: path, operation: "fstat", errno: errno) }
            size = UInt64(st.st_size)
        }
        return size
    }

    public func close() {
        if fd >= 0 { Glibc.close(fd); fd = -1 }
    }

    private func liveFD() throws(BlockDeviceError) -> Int32 {
        guard fd >= 0 else { throw .closed(path: path) }
        return fd
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: UInt64) throws(BlockDeviceError) {
        let fd = try liveFD()
        try checkRange(offset: offset, length: UInt64(buffer.count), aligned: options.direct)
        if options.direct && !isAligned(UnsafeRawPointer(buffer.baseAddress)) {
            let bounce = UnsafeMutableRawBufferPointer.allocate(byteCount: buffer.count, alignment: 4096)
            defer { bounce.deallocate() }
            try readFully(fd, bounce, offset)
            buffer.copyMemory(from: UnsafeRawBufferPointer(bounce))
            return
        }
        try readFully(fd, buffer, offset)
    }

    public func write(from buffer: UnsafeRawBufferPointer, at offset: UInt64) throws(BlockDeviceError) {
        let fd = try checkedWrite(buffer, at: offset, with: writeFully)
        // A large buffered write starts its own writeback at once (sync_file_range, without
        // waiting): dirty data streams out as writes come instead of piling up until the next
        // flush. Measured: 1400 -> 2036 MiB/s for a primary without peer, 1162 -> 1225 with one.
        if !options.direct && buffer.count >= 64 << 10 { _ = tandem_start_writeback(fd, offset, UInt64(buffer.count)) }
    }

    public func flush() throws(BlockDeviceError) {
        let fd = try liveFD()
        guard fdatasync(fd) == 0 else { throw .io(path: path, operation: "fdatasync", errno: errno) }
    }

    /// pwritev2 with RWF_DSYNC: only this range is written back and the device cache flushed,
    /// instead of fdatasync writing back every dirty page of the file. Falls back to write and
    /// fdatasync where the kernel or filesystem does not take the flag.
    public func writeDurably(from buffer: UnsafeRawBufferPointer, at offset: UInt64) throws(BlockDeviceError) {
        _ = try checkedWrite(buffer, at: offset, with: writeDurablyFully)
    }

    /// The checks every write makes (open, writable, in range, aligned under O_DIRECT), then
    /// `body` on the buffer, bounced through an aligned copy if O_DIRECT needs one. Returns the fd.
    private func checkedWrite(_ buffer: UnsafeRawBufferPointer, at offset: UInt64,
                              with body: (Int32, UnsafeRawBufferPointer, UInt64) throws(BlockDeviceError) -> Void) throws(BlockDeviceError) -> Int32 {
        let fd = try liveFD()
        guard !options.readOnly else { throw .readOnly(path: path) }
        try checkRange(offset: offset, length: UInt64(buffer.count), aligned: options.direct)
        if options.direct && !isAligned(buffer.baseAddress) {
            let bounce = UnsafeMutableRawBufferPointer.allocate(byteCount: buffer.count, alignment: 4096)
            defer { bounce.deallocate() }
            bounce.copyMemory(from: buffer)
            try body(fd, UnsafeRawBufferPointer(bounce), offset)
        } else {
            try body(fd, buffer, offset)
        }
        return fd
    }

    private func writeDurablyFully(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, _ offset: UInt64) throws(BlockDeviceError) {
        var done = 0
        while done < buffer.count {
            let n = tandem_pwrite_dsync(fd, buffer.baseAddress! + done, UInt(buffer.count - done), offset + UInt64(done))
            if n < 0 {
                let e = errno
                if e == EINTR { continue }
                if e == EOPNOTSUPP || e == EINVAL || e == ENOSYS {
                    try writeFully(fd, UnsafeRawBufferPointer(rebasing: buffer[done...]), offset + UInt64(done))
                    try flush()
                    return
                }
                throw .io(path: path, operation: "durable write at \(offset + UInt64(done))", errno: e)
            }
            done += n
        }
    }

    public func discard(at offset: UInt64, length: UInt64) throws(BlockDeviceError) {
        let fd = try liveFD()
        guard !options.readOnly else { throw .readOnly(path: path) }
        try checkRange(offset: offset, length: length, aligned: false)
        guard length > 0 else { return }
        let rc = isBlockDevice ? tandem_blk_discard(fd, offset, length) : tandem_punch_hole(fd, offset, length)
        if rc != 0 {
            let e = errno
            // A device without discard support simply keeps the data: discard is advisory.
            if e == EOPNOTSUPP || e == ENOTTY || e == EINVAL { return }
            throw .io(path: path, operation: "discard", errno: e)
        }
    }

    public func writeZeroes(at offset: UInt64, length: UInt64) throws(BlockDeviceError) {
        let fd = try liveFD()
        guard !options.readOnly else { throw .readOnly(path: path) }
        try checkRange(offset: offset, length: length, aligned: options.direct)
        guard length > 0 else { return }
        let rc = isBlockDevice ? tandem_blk_zeroout(fd, offset, length) : tandem_punch_hole(fd, offset, length)
        if rc == 0 { return }
        // Fall back to writing zeros.
        let chunk = 1 << 20
        let zeros = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 4096)
        defer { zeros.deallocate() }
        zeros.initializeMemory(as: UInt8.self, repeating: 0)
        var done: UInt64 = 0
        while done < length {
            let n = Int(min(UInt64(chunk), length - done))
            try writeFully(fd, UnsafeRawBufferPointer(rebasing: zeros[0..<n]), offset + done)
            done += UInt64(n)
        }
    }

    private func isAligned(_ p: UnsafeRawPointer?) -> Bool {
        guard let p else { return true }
        return UInt(bitPattern: p) % UInt(logicalBlockSize) == 0
    }

    private func readFully(_ fd: Int32, _ buffer: UnsafeMutableRawBufferPointer, _ offset: UInt64) throws(BlockDeviceError) {
        var done = 0
        while done < buffer.count {
            let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw .io(path: path, operation: "read at \(offset + UInt64(done))", errno: errno)
            }
            if n == 0 { throw .outOfRange(path: path, offset: offset, length: UInt64(buffer.count), size: size) }
            done += n
        }
    }

    private func writeFully(_ fd: Int32, _ buffer: UnsafeRawBufferPointer, _ offset: UInt64) throws(BlockDeviceError) {
        var done = 0
        while done < buffer.count {
            let n = pwrite(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw .io(path: path, operation: "write at \(offset + UInt64(done))", errno: errno)
            }
            done += n
        }
    }
}
