import TandemCodecs

/// The in-memory activity log: which 4 MiB extents are "hot" (may have writes in flight or
/// dirty bits not yet on disk), in a fixed table of slots (al-extents), with least-recently-used
/// eviction. Pure logic: it decides what must change and builds the transactions; the caller
/// writes them (and, before that, the bitmap pages of evicted extents).
///
/// Invariants the caller relies on:
/// - an extent stays in a slot until it is explicitly replaced, so the on-disk log never
///   forgets an extent whose bitmap pages were not yet written;
/// - pinned extents (writes in flight) are never evicted.
public struct ActivityLog: Sendable {
    /// Number of slots (al-extents).
    public let slotCount: Int
    /// Extent held by each slot; nil = free.
    public private(set) var slots: [UInt32?]
    private var slotOfExtent: [UInt32: Int] = [:]
    private var lastUse: [Int]
    private var useClock = 0
    private var pins: [UInt32: Int] = [:]
    /// Number the next transaction gets.
    public private(set) var nextTransactionNumber: UInt32
    private var contextStart = 0

    /// Largest al-extents this log supports: the ring must still rebuild every slot with its
    /// newest block torn (seven blocks of 919 context entries for the default 8-block ring).
    public static let maximumSlots = 6433

    public init(slotCount: Int, nextTransactionNumber: UInt32 = 0) {
        precondition(slotCount >= 1 && slotCount <= ActivityLog.maximumSlots)
        self.slotCount = slotCount
        self.slots = Array(repeating: nil, count: slotCount)
        self.lastUse = Array(repeating: 0, count: slotCount)
        self.nextTransactionNumber = nextTransactionNumber
    }

    /// Whether an extent is in the log.
    public func contains(_ extent: UInt32) -> Bool { slotOfExtent[extent] != nil }

    /// Extents currently in the log.
    public var hotExtents: [UInt32] { slots.compactMap { $0 }.sorted() }

    /// What making a set of extents hot requires.
    public struct Plan: Equatable, Sendable {
        /// Slot changes, in the order they will be logged.
        public var updates: [ActivityLogTransaction.Update]
        /// Extents that leave the log: their bitmap pages must be durable before the
        /// transaction that drops them is written.
        public var evicted: [UInt32]
        public var isEmpty: Bool { updates.isEmpty }
    }

    /// Why extents cannot be made hot now.
    public enum Failure: Error, Equatable, CustomStringConvertible {
        case allSlotsPinned(needed: Int, available: Int)
        public var description: String {
            switch self {
            case .allSlotsPinned(let n, let a):
                return "activity log full: \(n) extents needed, \(a) slots can be freed (raise al-extents)"
            }
        }
    }

    /// Plans making `extents` hot. Extents already hot only count as used.
    public mutating func plan(_ extents: [UInt32]) throws(Failure) -> Plan {
        var missing: [UInt32] = []
        var seen = Set<UInt32>()
        for e in extents where seen.insert(e).inserted {
            if let s = slotOfExtent[e] { useClock += 1; lastUse[s] = useClock } else { missing.append(e) }
        }
        if missing.isEmpty { return Plan(updates: [], evicted: []) }
        var free = (0..<slotCount).filter { slots[$0] == nil }
        var updates: [ActivityLogTransaction.Update] = []
        var evicted: [UInt32] = []
        if free.count < missing.count {
            let candidates = (0..<slotCount)
                .filter { s in slots[s].map { pins[$0, default: 0] == 0 && !seen.contains($0) } ?? false }
                .sorted { lastUse[$0] < lastUse[$1] }
            let need = missing.count - free.count
            guard candidates.count >= need else {
                throw .allSlotsPinned(needed: missing.count, available: free.count + candidates.count)
            }
            for s in candidates.prefix(need) { evicted.append(slots[s]!); free.append(s) }
            free.sort()
        }
        for (i, e) in missing.enumerated() { updates.append(.init(slot: UInt16(free[i]), extent: e)) }
        return Plan(updates: updates, evicted: evicted)
    }

    /// Applies a plan and returns the transactions that record it (64 updates at most each),
    /// each carrying the next window of the slot table as context.
    public mutating func commit(_ plan: Plan) -> [ActivityLogTransaction] {
        for e in plan.evicted { if let s = slotOfExtent.removeValue(forKey: e) { slots[s] = nil } }
        for u in plan.updates {
            let s = Int(u.slot)
            if let old = slots[s] { slotOfExtent.removeValue(forKey: old) }
            // An update to `unused` frees the slot (an extent leaving the log without a successor).
            guard u.extent != ActivityLogTransaction.unused else { slots[s] = nil; continue }
            slots[s] = u.extent
            slotOfExtent[u.extent] = s
            useClock += 1
            lastUse[s] = useClock
        }
        var out: [ActivityLogTransaction] = []
        var remaining = plan.updates[...]
        repeat {
            let chunk = Array(remaining.prefix(ActivityLogTransaction.updatesPerTransaction))
            remaining = remaining.dropFirst(chunk.count)
            let end = min(slotCount, contextStart + ActivityLogTransaction.contextPerTransaction)
            let context = (contextStart..<end).map { slots[$0] ?? ActivityLogTransaction.unused }
            out.append(ActivityLogTransaction(
                transactionNumber: nextTransactionNumber, updates: chunk,
                contextSize: UInt16(slotCount), contextStartSlot: UInt16(contextStart), context: context))
            nextTransactionNumber &+= 1
            contextStart = end >= slotCount ? 0 : end
        } while !remaining.isEmpty
        return out
    }

    /// Plans taking extents out of the log (their slots become unused): the extents must not be
    /// pinned; as with eviction, their bitmap pages must be durable first.
    public func planRemoval(_ extents: [UInt32]) -> Plan {
        var updates: [ActivityLogTransaction.Update] = []
        for e in extents {
            guard let s = slotOfExtent[e], pins[e] == nil else { continue }
            updates.append(.init(slot: UInt16(s), extent: ActivityLogTransaction.unused))
        }
        return Plan(updates: updates, evicted: updates.map { slots[Int($0.slot)]! })
    }

    /// Marks an extent as having a write in flight (it cannot be evicted). Only a hot extent
    /// can be pinned.
    public mutating func pin(_ extent: UInt32) {
        assert(contains(extent), "pinning extent \(extent), which is not in the activity log")
        pins[extent, default: 0] += 1
    }

    /// Ends one write in flight on an extent. Returns false (and changes nothing) when the
    /// extent held no pin: the caller's accounting is wrong.
    @discardableResult
    public mutating func unpin(_ extent: UInt32) -> Bool {
        guard let n = pins[extent] else { return false }
        if n <= 1 { pins.removeValue(forKey: extent) } else { pins[extent] = n - 1 }
        return true
    }

    /// Whether a write in flight holds the extent.
    public func isPinned(_ extent: UInt32) -> Bool { pins[extent] != nil }

    /// Number of extents writes in flight hold.
    public var pinnedCount: Int { pins.count }

    /// Number of hot extents.
    public var hotCount: Int { slotOfExtent.count }

    /// Forgets every hot extent (after the log was cleanly re-initialized).
    public mutating func reset() {
        slots = Array(repeating: nil, count: slotCount)
        slotOfExtent.removeAll()
        pins.removeAll()
        contextStart = 0
    }
}
