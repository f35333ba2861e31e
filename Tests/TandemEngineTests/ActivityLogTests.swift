import Testing
import TandemCodecs
@testable import TandemEngine

@Suite struct ActivityLogTests {
    @Test func fillsThenEvictsLeastRecentlyUsed() throws {
        var al = ActivityLog(slotCount: 3)
        _ = al.commit(try al.plan([1, 2, 3]))
        _ = try al.plan([1]) // touch 1
        let p = try al.plan([4])
        #expect(p.evicted == [2])
        let ts = al.commit(p)
        #expect(ts.count == 1 && ts[0].updates == [.init(slot: 1, extent: 4)])
        #expect(al.hotExtents == [1, 3, 4])
    }

    @Test func pinnedExtentsStay() throws {
        var al = ActivityLog(slotCount: 2)
        _ = al.commit(try al.plan([1, 2]))
        al.pin(1); al.pin(2)
        #expect(throws: ActivityLog.Failure.self) { _ = try al.plan([3]) }
        al.unpin(2)
        #expect(try al.plan([3]).evicted == [2])
    }

    @Test func largeChangesSplitAndContextRotates() throws {
        var al = ActivityLog(slotCount: 1237)
        let ts = al.commit(try al.plan((0..<200).map { UInt32($0) }))
        #expect(ts.map(\.updates.count) == [64, 64, 64, 8])
        #expect(ts.map(\.contextStartSlot) == [0, 919, 0, 919])
        #expect(ts.map(\.transactionNumber) == [0, 1, 2, 3])
        // The last two transactions alone rebuild the whole table.
        let r = ActivityLogTransaction.replay(blocks: ts.suffix(2).map { $0.encode() })
        #expect(r.hotExtents == (0..<200).map { UInt32($0) })
    }
}
