import TandemCodecs

/// What a `restore` in progress waits for.
struct RestoreAdmin: Sendable {
    var token: UInt64
    var deadlineMs: UInt64
    var discardMyData: Bool
    var askedPeer = false
}

/// `restore` (#10): on the node whose data is lost or stale, become the sync target of the
/// peer. If a resync from the peer runs, it joins it; when connected with the same data
/// generation (a wiped or replaced disk under unchanged meta-data), it pulls every block, as
/// `invalidate`; when disconnected it connects and lets DRBD's UUID rules pick what moves, and
/// refuses (StandAlone, nothing moved) if they would make this node the source, unless told
/// `--discard-my-data` (then every block is marked and the disk Inconsistent first). It waits
/// for the peer at most restoreWaitMs (startup wfc-timeout).
extension ReplicationEngine {
    mutating func restoreVerb(_ token: UInt64, discardMyData: Bool) {
        func refuse(_ why: String) { emit(.adminDone(token: token, error: AdminRefusal(why))) }
        if role == .primary {
            refuse("this node is Primary: make it Secondary first, run restore, then promote it again once it is SyncTarget (blocks not yet restored are then read from the peer)")
            return
        }
        if disk <= .diskless { refuse("no local disk"); return }
        if conn == .syncSource || conn == .pausedSyncS {
            refuse("this node is the sync source: the peer is being resynced from it, so its data is the newer")
            return
        }
        if verify != nil || conn == .startingSyncS { refuse("a verify or invalidate-remote is running (\(conn))"); return }
        restoreAdmin = RestoreAdmin(token: token, deadlineMs: nowMs &+ settings.restoreWaitMs, discardMyData: discardMyData)
        if link == nil {
            if discardMyData { invalidateLocally("restore --discard-my-data") }
            if conn == .standAlone { conn = .wfConnection; lastError = nil }
        }
        checkRestoreAdmin()
    }

    mutating func finishRestore(_ error: String?) {
        guard let r = restoreAdmin else { return }
        restoreAdmin = nil
        emit(.adminDone(token: r.token, error: error.map { AdminRefusal($0) }))
    }

    /// Called after every event while a restore waits.
    mutating func checkRestoreAdmin() {
        guard let r = restoreAdmin else { return }
        if conn == .syncTarget || conn == .pausedSyncT {
            finishRestore(nil)
        } else if conn == .standAlone {
            finishRestore("the connection was refused: \(lastError ?? "StandAlone")")
        } else if link == nil {
            if nowMs >= r.deadlineMs {
                finishRestore("the peer did not connect within \(settings.restoreWaitMs / 1000) s (startup wfc-timeout); nothing was restored")
            }
        } else if conn == .connected && !r.askedPeer && pendingAdmin == nil {
            // Connected and nothing to resync by the UUIDs: the data here is not to be trusted,
            // so every block comes from the peer.
            if peerDisk != .upToDate {
                finishRestore("the peer's disk is \(peerDisk), not UpToDate: there is nothing to restore from")
                return
            }
            restoreAdmin?.askedPeer = true
            pendingAdmin = (r.token, .restore(discardMyData: r.discardMyData))
            log("restore: the peer holds the same data generation; every block comes from it")
            send(.stateChangeRequest(mask: StateWord.connMask, value: ConnectionState.startingSyncT.rawValue << 4, connectionWide: false))
        }
    }
}
