import CTandemSys
import Glibc

/// What a daemon serving the kernel's own block device (`/dev/nbdN`) must do before it starts
/// any thread: writeback of that device's dirty pages waits on this process, so the process
/// must never wait on writeback or paging itself. Memory is locked (mlockall) and every thread
/// is an I/O flusher (PR_SET_IO_FLUSHER, inherited by threads created later).
public enum WritebackSafety {
    /// Locks memory and marks this thread an I/O flusher; call it before creating threads.
    public static func apply() throws {
        if tandem_lock_memory() != 0 {
            throw WritebackSafetyError(what: "mlockall(MCL_CURRENT|MCL_FUTURE)", errno: errno)
        }
        if tandem_set_io_flusher() != 0 {
            throw WritebackSafetyError(what: "prctl(PR_SET_IO_FLUSHER)", errno: errno)
        }
    }
}

/// Locking memory or becoming an I/O flusher failed (both need root: CAP_IPC_LOCK and
/// CAP_SYS_RESOURCE).
public struct WritebackSafetyError: Error, CustomStringConvertible {
    public var what: String
    public var errno: Int32
    public var description: String { "\(what) failed: \(String(cString: strerror(errno))) (the daemon must run as root to serve /dev/nbdN)" }
}
