/// How a batch of writes of one epoch reaches the disk as few, large I/Os: sorted by offset,
/// touching or overlapping writes joined into extents of at most `maxIOBytes` (EBS counts an
/// I/O of up to 256 KiB as one), and where writes overlap the later one's bytes win, exactly as
/// applying them one by one in their order would. Pure: the daemon's EBS writer plans with it
/// and tests compare the plan against applying the writes in order.
public enum WriteMerge {
    /// EBS's largest I/O counted as one (SSD volumes: 256 KiB).
    public static let ebsIOBytes = 256 << 10

    /// One write as it arrived (`index`: its place in the batch).
    public struct Write: Sendable {
        public var offset: UInt64
        public var data: [UInt8]
        public init(offset: UInt64, data: [UInt8]) { self.offset = offset; self.data = data }
    }

    /// One I/O of the plan: its bytes, and the writes (by index) whose bytes it carries.
    public struct IO: Sendable, Equatable {
        public var offset: UInt64
        public var data: [UInt8]
        public var writes: [Int]
    }

    /// The plan for `writes` (applied in their order): disjoint I/Os sorted by offset, none
    /// longer than `maxIOBytes` unless a single write is longer (it is split at the limit).
    /// Every write's index appears in each I/O its range touches (a write whose bytes later
    /// ones overwrote completes with the I/Os that cover its range).
    public static func plan(_ writes: [Write], maxIOBytes: Int = ebsIOBytes) -> [IO] {
        precondition(maxIOBytes > 0)
        guard !writes.isEmpty else { return [] }
        precondition(writes.allSatisfy { !$0.data.isEmpty }, "an empty write")
        // Runs of overlapping or touching writes, in offset order (stable: equal offsets keep
        // arrival order, which the byte copy below relies on only through `order`).
        let order = writes.indices.sorted { (writes[$0].offset, $0) < (writes[$1].offset, $1) }
        var runs: [(start: UInt64, end: UInt64, members: [Int])] = []
        for i in order {
            let w = writes[i]
            let end = w.offset + UInt64(w.data.count)
            if var last = runs.last, w.offset <= last.end {
                last.end = max(last.end, end)
                last.members.append(i)
                runs[runs.count - 1] = last
            } else {
                runs.append((w.offset, end, [i]))
            }
        }
        var out: [IO] = []
        for run in runs {
            // The run's bytes, each member applied in arrival order: the later write wins.
            var bytes = [UInt8](repeating: 0, count: Int(run.end - run.start))
            for i in run.members.sorted() {
                let w = writes[i]
                let at = Int(w.offset - run.start)
                bytes.replaceSubrange(at..<at + w.data.count, with: w.data)
            }
            // Cut at the limit; each piece carries the members that touch it.
            var at = 0
            while at < bytes.count {
                let n = min(maxIOBytes, bytes.count - at)
                let lo = run.start + UInt64(at), hi = lo + UInt64(n)
                let members = run.members.filter { i in
                    let w = writes[i]
                    return w.offset < hi && w.offset + UInt64(w.data.count) > lo
                }.sorted()
                out.append(IO(offset: lo, data: Array(bytes[at..<at + n]), writes: members))
                at += n
            }
        }
        return out
    }
}
