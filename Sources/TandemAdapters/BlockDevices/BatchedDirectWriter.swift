import Dispatch
import Foundation

/// The EBS volume's writer: a batch of writes (those queued together, never across a flush)
/// goes to the volume as WriteMerge plans it, each I/O up to 256 KiB, with direct I/O
/// (O_DIRECT, aligned to the device's logical block) so nothing waits in the page cache, and at
/// most `queueDepth` I/Os in flight (EBS latency is per I/O: parallel I/Os hide it). A range
/// that is not aligned goes through the buffered device instead. Every write of the batch gets
/// the result of the I/Os that carry its bytes. Used from the daemon's disk thread only.
public final class BatchedDirectWriter: @unchecked Sendable {
    let direct: FileBlockDevice
    let buffered: FileBlockDevice
    let queue: DispatchQueue
    let slots: DispatchSemaphore
    public let queueDepth: Int
    private let lock = NSLock()
    private var counted: (writes: UInt64, ios: UInt64) = (0, 0)

    /// Writes applied and I/Os issued so far (status: disk-writes, disk-write-ios).
    public var stats: (writes: UInt64, ios: UInt64) { lock.withLock { counted } }

    /// A batch holds at most this many writes and bytes (the queue's limit).
    public static let batchWrites = 512
    public static let batchBytes = 32 << 20

    public init(path: String, buffered: FileBlockDevice, queueDepth: Int = 16) throws(BlockDeviceError) {
        precondition(queueDepth >= 1 && queueDepth <= 256)
        direct = try FileBlockDevice(path: path, options: .init(direct: true, exclusive: false))
        guard direct.size == buffered.size else {
            direct.close()
            throw BlockDeviceError.io(path: path, operation: "open(O_DIRECT): size \(direct.size) differs from \(buffered.size)", errno: EINVAL)
        }
        self.buffered = buffered
        self.queueDepth = queueDepth
        queue = DispatchQueue(label: "tandem.ebs-writes", attributes: .concurrent)
        slots = DispatchSemaphore(value: queueDepth)
    }

    public func close() { direct.close() }

    /// Applies `writes` (in their order: where they overlap the later wins) and returns each
    /// one's error, nil when it is on the volume (not yet durable: a flush makes it so).
    public func apply(_ writes: [WriteMerge.Write]) -> [String?] {
        precondition(writes.count <= Self.batchWrites, "a batch over its limit")
        let plan = WriteMerge.plan(writes)
        let failures = Failures()
        let group = DispatchGroup()
        let block = UInt64(direct.logicalBlockSize)
        for io in plan {
            slots.wait()
            group.enter()
            queue.async { [direct, buffered, slots] in
                defer { slots.signal(); group.leave() }
                let aligned = io.offset % block == 0 && UInt64(io.data.count) % block == 0
                let error: String? = io.data.withUnsafeBytes { b in
                    do {
                        if aligned { try direct.write(from: b, at: io.offset) } else { try buffered.write(from: b, at: io.offset) }
                        return nil
                    } catch { return "\(error)" }
                }
                if let error { failures.record(io.writes, error) }
            }
        }
        group.wait()
        lock.withLock { counted.writes += UInt64(writes.count); counted.ios += UInt64(plan.count) }
        return writes.indices.map { failures.error($0) }
    }

    /// The errors of a batch's I/Os, by write, from the threads that issue them.
    final class Failures: @unchecked Sendable {
        private let lock = NSLock()
        private var byWrite: [Int: String] = [:]
        func record(_ writes: [Int], _ error: String) { lock.withLock { for i in writes { byWrite[i] = error } } }
        func error(_ write: Int) -> String? { lock.withLock { byWrite[write] } }
    }
}
