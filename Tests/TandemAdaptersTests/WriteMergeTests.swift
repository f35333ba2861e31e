import Testing
import TandemCodecs
@testable import TandemAdapters

/// The EBS writer's plan against the truth: applying the batch's writes one by one in order.
@Suite struct WriteMergeTests {
    @Test func sequentialWritesBecomeFullSizeIOs() {
        // 128 4 KiB writes back to back, arriving out of order: two 256 KiB I/Os.
        var writes: [WriteMerge.Write] = []
        for i in (0..<128).reversed() { writes.append(.init(offset: UInt64(i) * 4096, data: [UInt8](repeating: UInt8(i), count: 4096))) }
        let plan = WriteMerge.plan(writes)
        #expect(plan.count == 2 && plan.allSatisfy { $0.data.count == 256 << 10 } && plan[0].offset == 0 && plan[1].offset == 256 << 10)
        #expect(plan[0].data[4096 * 5] == 5 && plan[1].data[0] == 64)
        #expect(Set(plan.flatMap(\.writes)) == Set(0..<128))
    }

    @Test(arguments: 0..<20)
    func thePlanEqualsApplyingTheWritesInOrder(seed: Int) {
        var rng = SplitMix64(seed: UInt64(seed) &* 0x9E37_79B9 &+ 1)
        let span = 1 << 20
        let count = Int(rng.next() % 64) + 1
        var writes: [WriteMerge.Write] = []
        for n in 0..<count {
            // Sector-aligned writes of 512 B to 300 KiB, many overlapping.
            let length = (Int(rng.next() % 600) + 1) * 512 % (span / 2) + 512
            let offset = UInt64(Int(rng.next() % UInt64(span - length)) / 512 * 512)
            writes.append(.init(offset: offset, data: [UInt8](repeating: UInt8(truncatingIfNeeded: n + 1), count: length)))
        }
        var truth = [UInt8](repeating: 0, count: span), touched = [Bool](repeating: false, count: span)
        for w in writes {
            truth.replaceSubrange(Int(w.offset)..<Int(w.offset) + w.data.count, with: w.data)
            for i in Int(w.offset)..<Int(w.offset) + w.data.count { touched[i] = true }
        }
        let plan = WriteMerge.plan(writes)
        var disk = [UInt8](repeating: 0, count: span), written = [Bool](repeating: false, count: span)
        var last: UInt64 = 0
        for io in plan {
            #expect(io.offset >= last, "I/Os overlap or are out of order")
            #expect(io.data.count <= WriteMerge.ebsIOBytes)
            last = io.offset + UInt64(io.data.count)
            disk.replaceSubrange(Int(io.offset)..<Int(last), with: io.data)
            for i in Int(io.offset)..<Int(last) { written[i] = true }
        }
        let sameBytes = disk == truth, sameRange = written == touched
        #expect(sameBytes, "seed \(seed): the plan's bytes differ from applying the writes in order")
        #expect(sameRange, "seed \(seed): the plan writes bytes no write asked for, or misses some")
        // Every write completes with an I/O that covers some of its range.
        for (i, w) in writes.enumerated() {
            let ios = plan.filter { $0.writes.contains(i) }
            #expect(!ios.isEmpty && ios.allSatisfy { $0.offset < w.offset + UInt64(w.data.count) && $0.offset + UInt64($0.data.count) > w.offset })
        }
    }
}
