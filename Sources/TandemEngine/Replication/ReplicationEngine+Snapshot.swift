import TandemCodecs

/// EBS snapshots at epoch boundaries (a Tandem extension, feature SNAPSHOT_MARK). `snapshot`
/// on the Primary closes the current epoch with its P_BARRIER and sends a
/// P_TANDEM_SNAPSHOT_MARK behind it; the EC2 node reaches the mark only after that epoch is on
/// its disk (the barrier holds what follows), flushes, holds the data stream (later writes
/// wait in memory within max-buffers and the packet limit, never dropped) while the daemon
/// calls CreateSnapshot, whose point in time is the call, and answers with
/// P_TANDEM_SNAPSHOT_RESULT. `snapshot` on the EC2 node itself waits for its own next epoch
/// boundary (at once when no epoch is open). A disk that is not UpToDate (a resync running)
/// is snapshotted only with --force, tagged inconsistent.
extension ReplicationEngine {
    mutating func snapshotCommand(token: UInt64, force: Bool) {
        guard snapshots.requested.count + snapshots.local.count < SnapshotState.limit else {
            emit(.adminDone(token: token, error: "\(SnapshotState.limit) snapshots are already in progress"))
            return
        }
        if role == .primary {
            guard let l = link, conn.isConnected, conn != .wfReportParams else {
                emit(.adminDone(token: token, error: "the peer is not connected: a snapshot is taken on it at a point of the replication stream"))
                return
            }
            guard l.featureFlags & ConnectionFeatures.snapshotMark != 0 else {
                emit(.adminDone(token: token, error: "the peer is not Tandem (no SNAPSHOT_MARK): run snapshot on the node that holds the EBS volume"))
                return
            }
            closeEpoch()
            let id = newUUID()
            let epoch = currentEpoch &- 1
            send(.snapshotMark(id: id, epoch: epoch, flags: force ? 1 : 0))
            snapshots.requested[id] = token
            log("snapshot: mark \(Hex.upper(id, digits: 16)) after epoch \(epoch) sent to the peer")
        } else {
            snapshots.local.append(SnapshotMark(id: newUUID(), epoch: inbound.lastBarrier, force: force, admin: token))
            startLocalSnapshotIfAtBoundary()
        }
    }

    /// The Primary's mark arrived: every write before it is on this disk (its barrier was
    /// processed before it).
    mutating func onSnapshotMark(id: UInt64, epoch: UInt32, flags: UInt32) {
        guard link.map({ $0.featureFlags & ConnectionFeatures.snapshotMark != 0 }) == true else {
            fail("protocol error: P_TANDEM_SNAPSHOT_MARK from a peer that did not negotiate it")
            return
        }
        guard inbound.pending == 0, inbound.count == 0, snapshots.active == nil else {
            fail("protocol error: P_TANDEM_SNAPSHOT_MARK inside an open epoch (its barrier must come first)")
            return
        }
        beginSnapshot(SnapshotMark(id: id, epoch: epoch, force: flags & 1 != 0, admin: nil))
    }

    /// A local `snapshot` waits for an epoch boundary: no peer write in flight, no epoch open.
    mutating func startLocalSnapshotIfAtBoundary() {
        guard snapshots.active == nil, !snapshots.local.isEmpty, inbound.pending == 0, inbound.count == 0,
              inbound.closing == nil else { return }
        var m = snapshots.local.removeFirst()
        m.epoch = inbound.lastBarrier
        beginSnapshot(m)
    }

    mutating func beginSnapshot(_ m: SnapshotMark) {
        let consistent = disk == .upToDate
        guard consistent || m.force else {
            finishSnapshot(m, snapshotID: nil, error: "this node's disk is \(disk)\(conn.isSyncing ? " (a resync is running)" : ""): a snapshot of it would not be usable; --force takes it anyway, tagged inconsistent")
            return
        }
        guard disk > .diskless else {
            finishSnapshot(m, snapshotID: nil, error: "no local disk")
            return
        }
        snapshots.active = ActiveSnapshot(mark: m, consistency: consistent ? "crash-consistent" : "inconsistent",
                                          deadlineMs: nowMs + settings.snapshotHoldMs + 5000)
        inbound.waitingForSnapshot = true
        log("snapshot: at the end of epoch \(m.epoch): writes held while the snapshot is taken")
        diskOp(.flush, .snapshotFlush(id: m.id))
    }

    /// Everything before the mark is durable: the snapshot's point in time is now.
    mutating func onSnapshotFlushDone(id: UInt64, _ result: DiskResult) {
        guard let a = snapshots.active, a.mark.id == id else { return }
        if case .failed(let why) = result {
            endHold()
            finishSnapshot(a.mark, snapshotID: nil, error: "flush before the snapshot failed: \(why)")
            return
        }
        emit(.takeSnapshot(id: id, SnapshotPoint(generation: persistent.current & ~1, epoch: a.mark.epoch, consistency: a.consistency)))
    }

    /// The daemon's answer: the snapshot's id, or why none was taken (the daemon's own time
    /// limit included).
    mutating func onSnapshotTaken(id: UInt64, snapshotID: String?, error: String?) {
        guard let a = snapshots.active, a.mark.id == id else {
            log("snapshot: an answer for snapshot \(Hex.upper(id, digits: 16)) after its hold ended (\(snapshotID ?? error ?? "?"))")
            return
        }
        endHold()
        if let s = snapshotID { log("snapshot: \(s) taken at the end of epoch \(a.mark.epoch) (\(a.consistency)); writes released") }
        finishSnapshot(a.mark, snapshotID: snapshotID, error: snapshotID == nil ? (error ?? "no snapshot taken") : nil)
    }

    mutating func endHold() {
        snapshots.active = nil
        if inbound.waitingForSnapshot {
            inbound.waitingForSnapshot = false
            drainInbound()
        }
        startLocalSnapshotIfAtBoundary()
    }

    /// Tells whoever asked: the Primary (P_TANDEM_SNAPSHOT_RESULT) or this node's operator.
    mutating func finishSnapshot(_ m: SnapshotMark, snapshotID: String?, error: String?) {
        if let e = error { log("snapshot: not taken: \(e)") }
        if let t = m.admin {
            if let s = snapshotID { emit(.adminResult(token: t, text: s)) }
            emit(.adminDone(token: t, error: error))
        } else if link != nil {
            send(.snapshotResult(id: m.id, status: snapshotID == nil ? 1 : 0, text: snapshotID ?? error ?? ""))
        }
    }

    /// The EC2 node's answer to this Primary's mark.
    mutating func onSnapshotResult(id: UInt64, status: UInt32, text: String) {
        guard let token = snapshots.requested.removeValue(forKey: id) else {
            fail("protocol error: P_TANDEM_SNAPSHOT_RESULT for a snapshot never asked for")
            return
        }
        if status == 0 {
            log("snapshot: the peer took \(text)")
            emit(.adminResult(token: token, text: text))
            emit(.adminDone(token: token, error: nil))
        } else {
            emit(.adminDone(token: token, error: "the peer took no snapshot: \(text)"))
        }
    }

    /// A hold is bounded even if the daemon never answers (it has its own, shorter limit).
    mutating func snapshotTick() {
        guard let a = snapshots.active, nowMs >= a.deadlineMs else { return }
        invariantViolated("no answer to snapshot \(Hex.upper(a.mark.id, digits: 16)) within the hold limit: writes released")
        endHold()
        finishSnapshot(a.mark, snapshotID: nil, error: "no answer within the hold limit; writes released")
    }

    /// The link is gone: marks the Primary sent get no answer.
    mutating func snapshotLinkLost() {
        for (_, token) in snapshots.requested {
            emit(.adminDone(token: token, error: "the connection was lost before the peer answered; `tandem snapshots` on the EC2 node lists what it took"))
        }
        snapshots.requested.removeAll()
    }
}

/// Snapshots in progress on this node.
struct SnapshotState: Sendable {
    /// Marks this Primary sent, by id, with the admin token waiting for the answer.
    var requested: [UInt64: UInt64] = [:]
    /// Local `snapshot` commands waiting for an epoch boundary.
    var local: [SnapshotMark] = []
    /// The snapshot being taken (writes held).
    var active: ActiveSnapshot?
    static let limit = 8
}

struct SnapshotMark: Sendable {
    var id: UInt64
    var epoch: UInt32
    var force: Bool
    /// The local command's token; nil for the Primary's mark.
    var admin: UInt64?
}

struct ActiveSnapshot: Sendable {
    var mark: SnapshotMark
    var consistency: String
    var deadlineMs: UInt64
}
