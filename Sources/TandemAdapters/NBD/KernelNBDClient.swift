import CTandemSys
import Foundation
import Glibc

/// The kernel's NBD client on `/dev/nbdN`, connected to this process's export through a socket
/// pair: the kernel end is handed over with NBD_SET_SOCK, the other end is served by
/// `NBDServer.serve(connectedSocket:)` in the transmission phase (the ioctl interface has no
/// handshake). NBD_DO_IT blocks, so it runs on a thread of its own until `disconnect()`.
public final class KernelNBDClient: @unchecked Sendable {
    public let devicePath: String
    /// The process's end of the socket pair, to be served as an NBD connection.
    public let serverSocket: Int32
    private let fd: Int32
    private let lock = NSLock()
    private var finished = false
    private var waiters: [@Sendable () -> Void] = []

    /// Opens the device and configures the kernel client; it starts with `start`.
    public init(devicePath: String, sizeBytes: UInt64, flags: UInt16) throws {
        self.devicePath = devicePath
        let fd = tandem_open(devicePath, O_RDWR | O_CLOEXEC, 0)
        guard fd >= 0 else {
            let e = errno
            if e == ENOENT || e == ENXIO || e == ENODEV {
                throw KernelNBDError(devicePath, "no such device; is the nbd module loaded (modprobe nbd)?", e)
            }
            throw KernelNBDError(devicePath, "cannot open", e)
        }
        var pair: [Int32] = [-1, -1]
        guard tandem_socketpair(&pair) == 0 else {
            let e = errno; Glibc.close(fd)
            throw KernelNBDError(devicePath, "socketpair", e)
        }
        // 512-byte logical blocks, as the disks a filesystem on it may come from (a 1 KiB-block
        // ext4 does not mount on a 4 KiB-sector device).
        guard tandem_nbd_configure(fd, pair[0], sizeBytes, 512, UInt32(flags)) == 0 else {
            let e = errno
            Glibc.close(pair[0]); Glibc.close(pair[1]); Glibc.close(fd)
            if e == EBUSY { throw KernelNBDError(devicePath, "in use by another NBD client", e) }
            if e == ENOTTY || e == EINVAL { throw KernelNBDError(devicePath, "not an NBD device", e) }
            throw KernelNBDError(devicePath, "configuring the kernel NBD client", e)
        }
        // The kernel holds its own reference to the socket now.
        Glibc.close(pair[0])
        self.fd = fd
        self.serverSocket = pair[1]
    }

    /// Runs NBD_DO_IT on a new thread; `detached` is called once it returns (after
    /// `disconnect()`, or when the socket breaks).
    public func start(detached: @escaping @Sendable (String?) -> Void) {
        let fd = self.fd
        let thread = Thread { [self] in
            let rc = tandem_nbd_do_it(fd)
            let e = errno
            lock.lock()
            _ = tandem_nbd_clear_sock(fd)
            Glibc.close(fd)
            finished = true
            let w = waiters
            waiters = []
            lock.unlock()
            detached(rc == 0 ? nil : String(cString: strerror(e)))
            for f in w { f() }
        }
        thread.name = "nbd-do-it"
        thread.start()
    }

    /// Calls `body` once the kernel client has stopped (at once if it already has).
    public func whenDetached(_ body: @escaping @Sendable () -> Void) {
        lock.lock()
        if finished { lock.unlock(); body(); return }
        waiters.append(body)
        lock.unlock()
    }

    /// Marks the device read-only (a secondary) or writable (the primary). Writes to a
    /// read-only device fail in the kernel (EPERM, EROFS on mount) before they reach us.
    public func setReadOnly(_ readOnly: Bool) throws {
        lock.lock(); defer { lock.unlock() }
        guard !finished else { return }
        if tandem_blk_set_ro(fd, readOnly ? 1 : 0) != 0 { throw KernelNBDError(devicePath, "BLKROSET", errno) }
    }

    /// Whether the device is mounted or held by another block device (device mapper, md): then
    /// it must not be detached. Found without opening the device: an open of /dev/nbdN can
    /// make the kernel read it (a partition scan), and those reads are served by this very
    /// daemon, perhaps by the thread that asks.
    public var isHeldOpen: Bool {
        var st = stat()
        guard stat(devicePath, &st) == 0 else { return false }
        let major = (UInt64(st.st_rdev) >> 8) & 0xfff, minor = (UInt64(st.st_rdev) & 0xff) | ((UInt64(st.st_rdev) >> 12) & 0xfff00)
        // /proc/self/mountinfo: the third field is the mounted device's MAJOR:MINOR.
        if let info = try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8),
           info.split(separator: "\n").contains(where: { $0.split(separator: " ").dropFirst(2).first == "\(major):\(minor)" }) {
            return true
        }
        let name = (devicePath as NSString).lastPathComponent
        let holders = (try? FileManager.default.contentsOfDirectory(atPath: "/sys/class/block/\(name)/holders")) ?? []
        return !holders.isEmpty
    }

    /// Other processes with the device open (from /proc/PID/fd), this one not counted: a
    /// database on the raw device, dd, mkfs (`isHeldOpen` sees mounts and holders).
    public func openers() -> [(pid: Int32, command: String)] {
        let target = (try? FileManager.default.destinationOfSymbolicLink(atPath: devicePath)).map {
            $0.hasPrefix("/") ? $0 : (devicePath as NSString).deletingLastPathComponent + "/" + $0
        } ?? devicePath
        let me = getpid()
        var found: [(Int32, String)] = []
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(entry), pid != me else { continue }
            let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(entry)/fd")) ?? []
            let holds = fds.contains { fd in
                let link = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(entry)/fd/\(fd)")
                return link == target || link == devicePath
            }
            guard holds else { continue }
            let comm = (try? String(contentsOfFile: "/proc/\(entry)/comm", encoding: .utf8))?
                .trimmingCharacters(in: .whitespacesAndNewlines) ?? "?"
            found.append((pid, comm))
        }
        return found
    }

    /// Asks the kernel client to finish: it sends NBD_CMD_DISC and NBD_DO_IT returns.
    public func disconnect() {
        lock.lock(); defer { lock.unlock() }
        guard !finished else { return }
        _ = tandem_nbd_disconnect(fd)
    }
}

/// Attaching or driving the kernel NBD client failed.
public struct KernelNBDError: Error, CustomStringConvertible {
    public var device: String, what: String, errno: Int32
    init(_ device: String, _ what: String, _ errno: Int32) { self.device = device; self.what = what; self.errno = errno }
    public var description: String { "\(device): \(what) (\(String(cString: strerror(errno))))" }
}
