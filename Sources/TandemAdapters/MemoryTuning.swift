import CTandemSys

/// Process-wide allocator settings for the daemon. Requests and packets are up to 1 MiB; by
/// default glibc maps and zeroes fresh pages for each such buffer and returns them on free,
/// which costs more than the copies themselves.
public enum MemoryTuning {
    public static func keepLargeBuffersOnHeap() { tandem_keep_large_buffers_on_heap() }
    /// Bytes the process holds on the heap now (glibc's own count; its cached free memory, which
    /// resident memory includes, is not counted): a leak shows here, a cache does not.
    public static var heapInUseBytes: UInt64 { UInt64(tandem_heap_in_use()) }
}
