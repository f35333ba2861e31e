import TandemCodecs

/// drbdadm's `invalidate` (this node's data is bad: every block resyncs from the peer) and
/// `invalidate-remote` (the peer's is: every block resyncs to it). Connected, the node asks
/// the peer for StartingSyncT / StartingSyncS (P_STATE_CHG_REQ); both sides set every bit and
/// make the bitmap durable, then the source sends P_SYNC_UUID and the resync runs as after a
/// handshake. Disconnected, `invalidate` marks every block and the disk Inconsistent, so the
/// next connection resyncs it whole; `invalidate-remote` does that for the peer on a Primary.
extension ReplicationEngine {
    mutating func invalidateVerb(_ token: UInt64) {
        if let why = invalidateRefusal() { emit(.adminDone(token: token, error: AdminRefusal(why))); return }
        if role == .primary {
            emit(.adminDone(token: token, error: "this node is Primary: its disk cannot become Inconsistent under the application (make it Secondary first)"))
            return
        }
        if askPeerToStartSync(token, .invalidate) { return }
        invalidateLocally("invalidate")
        emit(.adminDone(token: token, error: nil))
    }

    /// Disconnected: every block marked, the disk Inconsistent (on disk too), so the next
    /// connection resyncs it whole from the peer.
    mutating func invalidateLocally(_ verb: String) {
        markAllOutOfSync()
        disk = .inconsistent
        persistent.consistent = false
        persistent.wasUpToDate = false
        persist()
        log("\(verb): every block is out of sync and the disk Inconsistent until a resync from the peer")
    }

    mutating func invalidateRemoteVerb(_ token: UInt64) {
        if let why = invalidateRefusal() { emit(.adminDone(token: token, error: AdminRefusal(why))); return }
        if disk != .upToDate {
            emit(.adminDone(token: token, error: "the local disk is \(disk), not UpToDate: it cannot be the source"))
            return
        }
        if askPeerToStartSync(token, .invalidateRemote) { return }
        // As DRBD: without a connection only a Primary can do it (the peer gets a resync when it
        // connects anyway; this makes it a full one).
        guard role == .primary else {
            emit(.adminDone(token: token, error: "not connected: invalidate-remote needs the connection (or this node Primary)"))
            return
        }
        markAllOutOfSync()
        if persistent.bitmap == 0 { newCurrentUUID() }
        logState("invalidate-remote: every block is out of sync; the peer is resynced whole when it connects")
        emit(.adminDone(token: token, error: nil))
    }

    /// Connected: asks the peer for StartingSyncT (invalidate) or StartingSyncS
    /// (invalidate-remote) in its view, or refuses. Returns false when there is no link, so the
    /// verb acts on this node alone.
    mutating func askPeerToStartSync(_ token: UInt64, _ cmd: AdminCommand) -> Bool {
        guard link != nil else { return false }
        let target = cmd == .invalidate
        var why: String?
        if conn != .connected {
            why = "the connection is \(conn): try again once it is Connected or disconnected"
        } else if target && peerDisk != .upToDate {
            why = "the peer's disk is \(peerDisk), not UpToDate: there is nothing to resync from"
        } else if !target && peerRole == .primary {
            why = "the peer is Primary: its disk cannot become Inconsistent under its application"
        }
        if let why {
            emit(.adminDone(token: token, error: AdminRefusal(why)))
            return true
        }
        pendingAdmin = (token, cmd)
        let wanted: ConnectionState = target ? .startingSyncT : .startingSyncS
        send(.stateChangeRequest(mask: StateWord.connMask, value: wanted.rawValue << 4, connectionWide: false))
        return true
    }

    func invalidateRefusal() -> String? {
        if disk <= .diskless { return "no local disk" }
        if conn.isSyncing || verify != nil || [.startingSyncS, .startingSyncT, .wfBitMapS, .wfBitMapT, .wfSyncUUID].contains(conn) {
            return "a resync or verify is running (\(conn))"
        }
        return nil
    }

    mutating func markAllOutOfSync() {
        _ = bitmap.set(0..<bmBits)
        writeBackBitmap()
    }

    /// StartingSyncS/T: every bit set and written; the resync starts once that is durable.
    /// `byPeer`: the peer asked (its invalidate or invalidate-remote), not this node's operator.
    mutating func enterStartingSync(target: Bool, byPeer: Bool = false) {
        conn = target ? .startingSyncT : .startingSyncS
        _ = bitmap.set(0..<bmBits)
        if target {
            // A crash from here on finds the disk Inconsistent and every bit set.
            persistent.consistent = false
            persist()
        }
        switch (target, byPeer) {
        case (true, false): logState("invalidate: every block out of sync, full resync from the peer")
        case (false, false): logState("invalidate-remote: every block out of sync, full resync to the peer")
        case (false, true): logState("the peer invalidated its data: every block out of sync, full resync to it")
        case (true, true): logState("the peer invalidated this node's data: every block out of sync, full resync from it")
        }
        startingSyncDurableAt = writeBackBitmap() ?? lane.doneSeq
        sendState()
        checkStartingSync()
    }

    mutating func checkStartingSync() {
        guard let at = startingSyncDurableAt else { return }
        guard conn == .startingSyncS || conn == .startingSyncT, link != nil else { startingSyncDurableAt = nil; return }
        guard lane.doneSeq >= at else { return }
        startingSyncDurableAt = nil
        if conn == .startingSyncS {
            startResyncAsSource()
        } else {
            conn = .wfSyncUUID
            sendState()
            if let u = pendingSyncUUID {
                pendingSyncUUID = nil
                onSyncUUID(u)
            }
        }
    }
}
