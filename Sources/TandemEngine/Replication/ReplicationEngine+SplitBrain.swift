import TandemCodecs

/// Split brain (#10): both nodes wrote while apart, so each holds changes the other lacks.
/// Detected as DRBD detects it (uuid_compare ±100), reported in the log and status, and settled
/// as drbd_sync_handshake settles it: the after-sb policies, then discard-my-data on one side;
/// what stays unresolved drops the connection (StandAlone) and loses nothing.
extension ReplicationEngine {
    /// hg is ±100. Returns the resolved direction (±1, or ±2 when the UUIDs were ambiguous),
    /// or -100 after dropping the connection.
    mutating func resolveSplitBrain(_ hg: Int, rule: Int) -> Int {
        guard let l = link else { return -100 }
        var hg = hg
        logState("Split-Brain detected: both nodes changed the data while apart (uuid_compare()=\(hg) by rule \(rule)); this node changed \(sentBitsSet) blocks, the peer \(l.peerBitsSet)")
        emit(.runHandler(.initialSplitBrain))
        if hg == 100 || (hg == -100 && settings.alwaysAsbp) {
            let forced = hg == -100
            let policy = { (v: UInt32) in AfterSplitBrain(rawValue: v) ?? .disconnect }
            let d = SplitBrainPolicy.decide(.init(
                after0p: policy(settings.afterSB0p), after1p: policy(settings.afterSB1p), after2p: policy(settings.afterSB2p),
                iAmPrimary: role == .primary, peerIsPrimary: peerRole == .primary,
                iWasPrimary: persistent.bitmap & 1 != 0, peerWasPrimary: (l.peerUUIDs?.bitmap ?? 0) & 1 != 0,
                myChanges: sentBitsSet, peerChanges: l.peerBitsSet, resolveConflicts: l.resolveConflicts))
            hg = d.result
            if abs(hg) < 100 && d.primaryMustYield {
                if requests.isEmpty && flushWaiters.isEmpty {
                    becomeSecondary()
                    logState("Successfully gave up primary role.")
                } else {
                    log("call-pri-lost-after-sb: this Primary lost but has writes in flight, so it cannot give up its role; calling pri-lost-after-sb")
                    emit(.runHandler(.priLostAfterSB))
                    hg = -100
                }
            }
            if abs(hg) < 100 {
                logState("Split-Brain detected, \(d.primaries) primaries, automatically solved. Sync from \(hg < 0 ? "peer" : "this") node (\(d.why))")
                if forced {
                    log("Doing a full sync, since UUIDs where ambiguous.")
                    hg *= 2
                }
            } else {
                logState("Split-Brain not solved by the policies: \(d.why)")
                hg = -100
            }
        }
        if hg == -100 {
            let peerDiscards = l.peerUUIDFlags & UUIDSet.flagDiscardMyData != 0
            if discardMyData && !peerDiscards { hg = -1 }
            if !discardMyData && peerDiscards { hg = 1 }
            if abs(hg) < 100 { logState("Split-Brain detected, manually solved. Sync from \(hg > 0 ? "this" : "peer") node") }
        }
        if hg == -100 {
            splitBrain = true
            emit(.runHandler(.splitBrain))
            fail("Split-Brain detected but unresolved, dropping connection! Resolve it with `connect --discard-my-data` on the node whose changes are to be dropped", standAlone: true)
        }
        return hg
    }
}
