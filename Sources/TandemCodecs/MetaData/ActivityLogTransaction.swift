/// One 4 KiB activity-log transaction block (`struct al_transaction_on_disk` of DRBD 8.4).
///
/// The activity log records which 4 MiB extents may have writes in flight, so that after a
/// crash only those extents need resync. Each transaction carries up to 64 slot updates and a
/// window of 919 slots of the full slot table ("context"); the window rotates, so the last
/// few transactions rebuild the whole table. Big-endian; CRC-32C (seed 0, no inversion) over the
/// whole block with the crc field zeroed.
public struct ActivityLogTransaction: Equatable, Sendable {
    public static let magic: UInt32 = 0x69CB_65A2
    public static let updatesPerTransaction = 64
    public static let contextPerTransaction = 919
    public static let typeUpdate: UInt16 = 0
    public static let typeInitialized: UInt16 = 0xFFFF
    /// Extent (and unused slot) marker.
    public static let unused: UInt32 = 0xFFFF_FFFF

    /// One slot update: slot `slot` now holds extent `extent`.
    public struct Update: Equatable, Sendable {
        public var slot: UInt16
        public var extent: UInt32
        public init(slot: UInt16, extent: UInt32) { self.slot = slot; self.extent = extent }
    }

    public var transactionNumber: UInt32
    public var type: UInt16
    public var updates: [Update]
    /// Number of AL slots (al-extents) of the writer.
    public var contextSize: UInt16
    public var contextStartSlot: UInt16
    /// Extents of slots contextStartSlot ..< contextStartSlot + context.count (at most 919).
    public var context: [UInt32]

    public init(transactionNumber: UInt32, type: UInt16 = typeUpdate, updates: [Update],
                contextSize: UInt16, contextStartSlot: UInt16, context: [UInt32]) {
        self.transactionNumber = transactionNumber
        self.type = type
        self.updates = updates
        self.contextSize = contextSize
        self.contextStartSlot = contextStartSlot
        self.context = context
    }

    /// The "initialized" (empty) block that create-md and apply-al write to every ring slot.
    public static func initialized(transactionNumber: UInt32 = 0) -> ActivityLogTransaction {
        ActivityLogTransaction(transactionNumber: transactionNumber, type: typeInitialized, updates: [],
                               contextSize: 0, contextStartSlot: 0, context: [])
    }

    /// Why a block is not a valid transaction.
    public enum Failure: Error, Equatable, CustomStringConvertible {
        case truncated(Int)
        case badMagic(UInt32)
        case badChecksum(stored: UInt32, computed: UInt32)
        case tooManyUpdates(Int)
        case unknownType(UInt16)

        public var description: String {
            switch self {
            case .truncated(let n): return "activity-log block truncated: \(n) of 4096 bytes"
            case .badMagic(let m): return "activity-log block has wrong magic 0x" + Hex.lower(m, digits: 8)
            case .badChecksum(let s, let c): return "activity-log block checksum 0x" + Hex.lower(s, digits: 8) + ", computed 0x" + Hex.lower(c, digits: 8)
            case .tooManyUpdates(let n): return "activity-log block claims \(n) updates (at most 64)"
            case .unknownType(let t): return "activity-log block has unknown transaction type \(t)"
            }
        }
    }

    /// Encodes to 4096 bytes with the checksum filled in. Initialized blocks keep every field
    /// after the header zero, as drbdmeta writes them; update blocks mark unused entries all-ones.
    public func encode() -> [UInt8] {
        precondition(updates.count <= Self.updatesPerTransaction && context.count <= Self.contextPerTransaction)
        var b = [UInt8](repeating: 0, count: 4096)
        b.withUnsafeMutableBytes { raw in
            func put<T: FixedWidthInteger>(_ v: T, _ at: Int) { raw.storeBytes(of: v.bigEndian, toByteOffset: at, as: T.self) }
            put(Self.magic, 0)
            put(transactionNumber, 4)
            put(type, 12)
            guard type != Self.typeInitialized else { return }
            put(UInt16(updates.count), 14)
            put(contextSize, 16)
            put(contextStartSlot, 18)
            for i in 0..<Self.updatesPerTransaction {
                let u = i < updates.count ? updates[i] : Update(slot: 0xFFFF, extent: Self.unused)
                put(u.slot, 36 + 2 * i)
                put(u.extent, 164 + 4 * i)
            }
            for i in 0..<Self.contextPerTransaction {
                put(i < context.count ? context[i] : Self.unused, 420 + 4 * i)
            }
        }
        ByteIO.writeBE(CRC32C.raw(b, seed: 0), into: &b, at: 8)
        return b
    }

    /// Decodes a block, refusing wrong magic, a bad checksum or impossible counts.
    public static func decode(_ b: [UInt8]) throws(Failure) -> ActivityLogTransaction {
        guard b.count >= 4096 else { throw Failure.truncated(b.count) }
        let block = b.count == 4096 ? b : Array(b[0..<4096])
        let m: UInt32 = ByteIO.readBE(block, 0)
        guard m == magic else { throw Failure.badMagic(m) }
        let stored: UInt32 = ByteIO.readBE(block, 8)
        var zeroed = block
        zeroed[8] = 0; zeroed[9] = 0; zeroed[10] = 0; zeroed[11] = 0
        let computed = CRC32C.raw(zeroed, seed: 0)
        guard stored == computed else { throw Failure.badChecksum(stored: stored, computed: computed) }
        let type: UInt16 = ByteIO.readBE(block, 12)
        let tr: UInt32 = ByteIO.readBE(block, 4)
        if type == typeInitialized { return .initialized(transactionNumber: tr) }
        guard type == typeUpdate else { throw Failure.unknownType(type) }
        let n = Int(ByteIO.readBE(block, 14, as: UInt16.self))
        guard n <= updatesPerTransaction else { throw Failure.tooManyUpdates(n) }
        var updates: [Update] = []
        for i in 0..<n {
            updates.append(Update(slot: ByteIO.readBE(block, 36 + 2 * i), extent: ByteIO.readBE(block, 164 + 4 * i)))
        }
        var context: [UInt32] = []
        context.reserveCapacity(contextPerTransaction)
        for i in 0..<contextPerTransaction { context.append(ByteIO.readBE(block, 420 + 4 * i)) }
        return ActivityLogTransaction(transactionNumber: tr, type: type, updates: updates,
                                      contextSize: ByteIO.readBE(block, 16), contextStartSlot: ByteIO.readBE(block, 18),
                                      context: context)
    }

    /// Rebuilds the set of hot extents from the blocks of an activity-log ring, as DRBD's
    /// apply-al does: valid update transactions are replayed oldest to newest (by serial-number
    /// order of their transaction numbers), context first, then updates. Invalid or torn blocks
    /// are skipped. Returns the hot extents (sorted, unique) and how many blocks were unusable.
    public static func replay(blocks: [[UInt8]]) -> (hotExtents: [UInt32], invalidBlocks: Int, validUpdates: Int) {
        var valid: [ActivityLogTransaction] = []
        var invalid = 0
        for block in blocks {
            guard let t = try? decode(block) else { invalid += 1; continue }
            if t.type == typeUpdate { valid.append(t) }
        }
        guard let first = valid.first else { return ([], invalid, 0) }
        // Serial-number order relative to any member is a total order for a ring of <2^31 span.
        let base = first.transactionNumber
        valid.sort { Int32(bitPattern: $0.transactionNumber &- base) < Int32(bitPattern: $1.transactionNumber &- base) }
        var slots: [Int: UInt32] = [:]
        for t in valid {
            for (i, extent) in t.context.enumerated() {
                let slot = Int(t.contextStartSlot) + i
                if extent == unused && slot >= Int(t.contextSize) { continue }
                slots[slot] = extent
            }
            for u in t.updates { slots[Int(u.slot)] = u.extent }
        }
        let hot = Set(slots.values.filter { $0 != unused }).sorted()
        return (hot, invalid, valid.count)
    }
}
