import CTandemSys

/// Process-wide allocator settings for the daemon. Requests and packets are up to 1 MiB; by
/// default glibc maps and zeroes fresh pages for each such buffer and returns them on free,
/// which costs more than the copies themselves.
public enum MemoryTuning {
    public static func keepLargeBuffersOnHeap() { tandem_keep_large_buffers_on_heap() }
}
