import TandemCodecs

/// The generation identifiers of one node as the sync handshake compares them.
public struct UUIDs: Sendable, Equatable {
    public var current: UInt64, bitmap: UInt64, history0: UInt64, history1: UInt64
    public init(current: UInt64, bitmap: UInt64, history0: UInt64, history1: UInt64) {
        self.current = current; self.bitmap = bitmap; self.history0 = history0; self.history1 = history1
    }
}

/// DRBD's rules for deciding, from both nodes' UUIDs, who syncs from whom (reference §3.5).
/// Both nodes run it on mirrored inputs and must reach mirrored answers, so the rules and their
/// in-place fix-ups are followed exactly.
public enum UUIDCompare {
    public static let justCreated: UInt64 = 4
    public static let newBitmapOffset: UInt64 = 1 << 48

    public struct Input: Sendable {
        public var mine: UUIDs
        public var peer: UUIDs
        public var iAmCrashedPrimary: Bool
        public var peerCrashedPrimary: Bool
        public var iAmPrimary: Bool
        public var peerIsPrimary: Bool
        public var resolveConflicts: Bool
        public var agreedVersion: Int
        public var wsameAgreed: Bool
        public init(mine: UUIDs, peer: UUIDs, iAmCrashedPrimary: Bool = false, peerCrashedPrimary: Bool = false,
                    iAmPrimary: Bool = false, peerIsPrimary: Bool = false, resolveConflicts: Bool,
                    agreedVersion: Int = 101, wsameAgreed: Bool = true) {
            self.mine = mine; self.peer = peer; self.iAmCrashedPrimary = iAmCrashedPrimary
            self.peerCrashedPrimary = peerCrashedPrimary; self.iAmPrimary = iAmPrimary
            self.peerIsPrimary = peerIsPrimary; self.resolveConflicts = resolveConflicts
            self.agreedVersion = agreedVersion; self.wsameAgreed = wsameAgreed
        }
    }

    public struct Outcome: Sendable, Equatable {
        /// +2/+1 sync source (full/bitmap), 0 none, -1/-2 target, ±100 split brain, -1000 unrelated,
        /// below -1000 a protocol requirement.
        public var result: Int
        public var rule: Int
        /// My UUIDs after a fix-up (rules 34 and 71), to be persisted.
        public var mine: UUIDs
        /// The in-memory copy of the peer's UUIDs after a fix-up (rules 35 and 51).
        public var peer: UUIDs
    }

    public static func compare(_ input: Input) -> Outcome {
        var me = input.mine, pe = input.peer
        func out(_ r: Int, _ rule: Int) -> Outcome { Outcome(result: r, rule: rule, mine: me, peer: pe) }
        let mask: UInt64 = ~1
        var self_ = me.current & mask, peer = pe.current & mask

        if self_ == justCreated && peer == justCreated { return out(0, 10) }
        if (self_ == justCreated || self_ == 0) && peer != justCreated { return out(-2, 20) }
        if self_ != justCreated && (peer == justCreated || peer == 0) { return out(2, 30) }

        if self_ == peer {
            if (pe.bitmap & mask) == 0 && (me.bitmap & mask) != 0 {
                if input.agreedVersion < 91 { return out(-1091, 34) }
                if (me.bitmap & mask) == (pe.history0 & mask) && (me.history0 & mask) == (pe.history1 & mask) {
                    // I was SyncSource and missed the end of the resync: finish my UUIDs now.
                    me.history1 = me.history0; me.history0 = me.bitmap; me.bitmap = 0
                    return out(1, 34)
                }
                return out(1, 36)
            }
            if (me.bitmap & mask) == 0 && (pe.bitmap & mask) != 0 {
                if input.agreedVersion < 91 { return out(-1091, 35) }
                if (me.history0 & mask) == (pe.bitmap & mask) && (me.history1 & mask) == (pe.history0 & mask) {
                    pe.history1 = pe.history0; pe.history0 = pe.bitmap; pe.bitmap = 0
                    return out(-1, 35)
                }
                return out(-1, 37)
            }
            let rct = (input.iAmCrashedPrimary ? 1 : 0) + (input.peerCrashedPrimary ? 2 : 0)
            if rct == 0 { return out(0, 40) }
            if input.iAmPrimary || input.peerIsPrimary {
                if !input.wsameAgreed { return out(-(0x10000 | 101 | 0x400), 41) }
                if input.iAmPrimary && input.peerIsPrimary { return out(-100, 41) }
                return out(input.iAmPrimary ? 1 : -1, 41)
            }
            switch rct {
            case 1: return out(1, 40)
            case 2: return out(-1, 40)
            default: return out(input.resolveConflicts ? -1 : 1, 40)
            }
        }

        peer = pe.bitmap & mask
        if self_ == peer { return out(-1, 50) }

        peer = pe.history0 & mask
        if self_ == peer {
            let cond = input.agreedVersion < 96
                ? (me.history0 & mask) == (pe.history1 & mask)
                : peer &+ newBitmapOffset == (pe.bitmap & mask)
            if cond {
                if input.agreedVersion < 91 { return out(-1091, 51) }
                pe.bitmap = pe.history0; pe.history0 = pe.history1
                return out(-1, 51)
            }
        }
        if self_ == (pe.history0 & mask) || self_ == (pe.history1 & mask) { return out(-2, 60) }

        self_ = me.bitmap & mask
        peer = pe.current & mask
        if self_ == peer { return out(1, 70) }

        self_ = me.history0 & mask
        if self_ == peer {
            let cond = input.agreedVersion < 96
                ? (me.history1 & mask) == (pe.history0 & mask)
                : self_ &+ newBitmapOffset == (me.bitmap & mask)
            if cond {
                if input.agreedVersion < 91 { return out(-1091, 71) }
                me.bitmap = me.history0; me.history0 = me.history1
                return out(1, 71)
            }
        }
        if peer == (me.history0 & mask) || peer == (me.history1 & mask) { return out(2, 80) }

        self_ = me.bitmap & mask
        peer = pe.bitmap & mask
        if self_ == peer && self_ != 0 { return out(100, 90) }

        for a in [me.history0, me.history1] {
            for b in [pe.history0, pe.history1] where a & mask == b & mask { return out(-100, 100) }
        }
        return out(-1000, 0)
    }
}
