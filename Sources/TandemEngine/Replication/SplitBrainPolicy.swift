/// DRBD's after-split-brain policies (net after-sb-0pri, -1pri, -2pri): which node's changes a
/// connection keeps when both nodes wrote while apart. The values are DRBD's wire numbers
/// (P_PROTOCOL carries them, and the peer must configure the same, discard-local and
/// discard-remote swapped).
public enum AfterSplitBrain: UInt32, Sendable, CaseIterable {
    case disconnect = 0
    case discardYoungerPrimary = 1
    case discardOlderPrimary = 2
    case discardZeroChanges = 3
    case discardLeastChanges = 4
    case discardLocal = 5
    case discardRemote = 6
    case consensus = 7
    case discardSecondary = 8
    case callPriLostAfterSB = 9
    case violentlyAs0p = 10

    /// The names the resource file uses, in wire order.
    public static let names = ["disconnect", "discard-younger-primary", "discard-older-primary", "discard-zero-changes",
                               "discard-least-changes", "discard-local", "discard-remote", "consensus",
                               "discard-secondary", "call-pri-lost-after-sb", "violently-as0p"]
    public var name: String { Self.names[Int(rawValue)] }

    /// Which policies each of the three options takes (drbdsetup's lists).
    public static let zeroPrimaries: Set<AfterSplitBrain> = [.disconnect, .discardYoungerPrimary, .discardOlderPrimary,
                                                             .discardZeroChanges, .discardLeastChanges, .discardLocal, .discardRemote]
    public static let onePrimary: Set<AfterSplitBrain> = [.disconnect, .consensus, .discardSecondary, .callPriLostAfterSB, .violentlyAs0p]
    public static let twoPrimaries: Set<AfterSplitBrain> = [.disconnect, .callPriLostAfterSB, .violentlyAs0p]
}

/// The decision of DRBD's drbd_asb_recover_0p/1p/2p, as a pure function of what each node
/// knows at the handshake: both nodes run it on mirrored inputs and reach mirrored answers
/// (RESOLVE_CONFLICTS breaks ties), so one becomes the sync source and the other the target.
public enum SplitBrainPolicy {
    public struct Input: Sendable {
        public var after0p: AfterSplitBrain, after1p: AfterSplitBrain, after2p: AfterSplitBrain
        public var iAmPrimary: Bool, peerIsPrimary: Bool
        /// Bit 0 of each bitmap UUID: set when that node was Primary as the split began (its
        /// current UUID, which the split moved to the bitmap slot, was made while Primary).
        public var iWasPrimary: Bool, peerWasPrimary: Bool
        /// Blocks each side changed since the split (the bitmap weights of P_UUIDS).
        public var myChanges: UInt64, peerChanges: UInt64
        public var resolveConflicts: Bool
        public init(after0p: AfterSplitBrain, after1p: AfterSplitBrain, after2p: AfterSplitBrain, iAmPrimary: Bool,
                    peerIsPrimary: Bool, iWasPrimary: Bool, peerWasPrimary: Bool, myChanges: UInt64,
                    peerChanges: UInt64, resolveConflicts: Bool) {
            self.after0p = after0p; self.after1p = after1p; self.after2p = after2p
            self.iAmPrimary = iAmPrimary; self.peerIsPrimary = peerIsPrimary
            self.iWasPrimary = iWasPrimary; self.peerWasPrimary = peerWasPrimary
            self.myChanges = myChanges; self.peerChanges = peerChanges; self.resolveConflicts = resolveConflicts
        }
    }

    public struct Decision: Sendable, Equatable {
        /// +1: this node's data wins (sync source); -1: the peer's (sync target); -100: unresolved.
        public var result: Int
        /// call-pri-lost-after-sb: this Primary loses, so it must give up its role before it
        /// can become the target (if it cannot, the pri-lost-after-sb handler runs and the
        /// split brain stays unresolved).
        public var primaryMustYield: Bool
        /// What decided it, for the log.
        public var why: String
        public var primaries: Int
    }

    public static func decide(_ i: Input) -> Decision {
        let primaries = (i.iAmPrimary ? 1 : 0) + (i.peerIsPrimary ? 1 : 0)
        func d(_ r: Int, _ why: String, yield: Bool = false) -> Decision {
            Decision(result: r, primaryMustYield: yield, why: why, primaries: primaries)
        }
        switch primaries {
        case 0:
            let (r, why) = zeroPrimaries(i)
            return d(r, why)
        case 1:
            switch i.after1p {
            case .disconnect: return d(-100, "after-sb-1pri disconnect")
            case .consensus:
                let (r, why) = zeroPrimaries(i)
                // Only when the after-sb-0pri outcome discards the Secondary's data.
                if r == -1 && !i.iAmPrimary || r == 1 && i.iAmPrimary { return d(r, "after-sb-1pri consensus: \(why)") }
                return d(-100, "after-sb-1pri consensus: after-sb-0pri (\(why)) would discard the Primary's data")
            case .violentlyAs0p:
                let (r, why) = zeroPrimaries(i)
                return d(r, "after-sb-1pri violently-as0p: \(why)")
            case .discardSecondary:
                return d(i.iAmPrimary ? 1 : -1, "after-sb-1pri discard-secondary")
            case .callPriLostAfterSB:
                let (r, why) = zeroPrimaries(i)
                return d(r, "after-sb-1pri call-pri-lost-after-sb: \(why)", yield: r == -1 && i.iAmPrimary)
            default: return d(-100, "after-sb-1pri \(i.after1p.name) is not a policy for one primary")
            }
        default:
            switch i.after2p {
            case .disconnect: return d(-100, "after-sb-2pri disconnect")
            case .violentlyAs0p:
                let (r, why) = zeroPrimaries(i)
                return d(r, "after-sb-2pri violently-as0p: \(why)")
            case .callPriLostAfterSB:
                let (r, why) = zeroPrimaries(i)
                return d(r, "after-sb-2pri call-pri-lost-after-sb: \(why)", yield: r == -1)
            default: return d(-100, "after-sb-2pri \(i.after2p.name) is not a policy for two primaries")
            }
        }
    }

    /// drbd_asb_recover_0p: the younger/older primary by the bitmap UUIDs' bit 0 (falling
    /// through to the change counts when they do not decide), then zero changes, least changes.
    static func zeroPrimaries(_ i: Input) -> (Int, String) {
        let tie = i.resolveConflicts ? -1 : 1
        let policy = i.after0p
        var fellThrough = false
        switch policy {
        case .disconnect: return (-100, "after-sb-0pri disconnect")
        case .discardLocal: return (-1, "after-sb-0pri discards this node's data")
        case .discardRemote: return (1, "after-sb-0pri discards the peer's data")
        case .discardYoungerPrimary, .discardOlderPrimary:
            if i.iWasPrimary != i.peerWasPrimary {
                // The younger primary is the one that was not Primary when the split began.
                let iAmYounger = !i.iWasPrimary
                let discardMine = policy == .discardYoungerPrimary ? iAmYounger : !iAmYounger
                return (discardMine ? -1 : 1, "\(policy.name): this node was \(i.iWasPrimary ? "" : "not ")Primary at the split")
            }
            fellThrough = true
        case .discardZeroChanges, .discardLeastChanges: break
        default: return (-100, "after-sb-0pri \(policy.name) is not a policy for no primaries")
        }
        let prefix = fellThrough ? "\(policy.name) did not decide (neither or both were Primary at the split); " : ""
        let counts = "\(i.myChanges) blocks changed here, \(i.peerChanges) on the peer"
        if policy == .discardZeroChanges || fellThrough {
            if i.myChanges == 0 && i.peerChanges == 0 { return (tie, prefix + "no changes on either side") }
            if i.peerChanges == 0 { return (1, prefix + "discard-zero-changes: " + counts) }
            if i.myChanges == 0 { return (-1, prefix + "discard-zero-changes: " + counts) }
            if policy == .discardZeroChanges { return (-100, "discard-zero-changes: both sides changed (\(counts))") }
        }
        if i.myChanges < i.peerChanges { return (-1, prefix + "discard-least-changes: " + counts) }
        if i.myChanges > i.peerChanges { return (1, prefix + "discard-least-changes: " + counts) }
        return (tie, prefix + "discard-least-changes: a tie (\(counts))")
    }
}
