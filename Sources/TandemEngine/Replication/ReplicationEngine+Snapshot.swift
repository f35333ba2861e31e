import TandemCodecs

/// EBS snapshots at epoch boundaries (a Tandem extension, feature SNAPSHOT_MARK). `snapshot`
/// on the Primary closes the current epoch with its P_BARRIER and sends a
/// P_TANDEM_SNAPSHOT_MARK behind it; the EC2 node reaches the mark only after that epoch is on
/// its disk (the barrier holds what follows), flushes, holds the data stream (later writes
/// wait in memory within max-buffers and the packet limit, never dropped) while the daemon
/// calls CreateSnapshot, whose point in time is the call, and answers with
/// P_TANDEM_SNAPSHOT_RESULT. `snapshot` on the EC2 node itself waits for its own next epoch
/// boundary (at once when no epoch is open). A disk that is not UpToDate (a resync running)
/// is snapshotted only with --force, tagged inconsistent. With a before-snapshot handler the
/// Primary runs it first and sends the mark only once it exits 0 (then after-snapshot), so the
/// snapshot is application-consistent.
extension ReplicationEngine {
    mutating func snapshotCommand(token: UInt64, force: Bool) {
        guard snapshots.requested.count + snapshots.local.count < SnapshotState.limit else {
            emit(.adminDone(token: token, error: "\(SnapshotState.limit) snapshots are already in progress"))
            return
        }
        if role == .primary {
            if let why = markRefusal() {
                emit(.adminDone(token: token, error: AdminRefusal(why)))
                return
            }
            if settings.beforeSnapshotHandler {
                guard snapshots.preparing == nil else {
                    emit(.adminDone(token: token, error: "a before-snapshot handler is still running for another snapshot"))
                    return
                }
                snapshots.preparing = PreparingSnapshot(token: token, force: force, deadlineMs: nowMs + settings.beforeSnapshotLimitMs)
                log("snapshot: running before-snapshot")
                emit(.runHandler(.beforeSnapshot))
                return
            }
            sendMark(token: token, force: force, applicationConsistent: false)
        } else {
            snapshots.local.append(SnapshotMark(id: newUUID(), epoch: inbound.lastBarrier, force: force, applicationConsistent: false, admin: token))
            startLocalSnapshotIfAtBoundary()
        }
    }

    /// Why the Primary cannot put a mark into the stream now, if it cannot.
    func markRefusal() -> String? {
        guard let l = link, conn.isConnected, conn != .wfReportParams else {
            return "the peer is not connected: a snapshot is taken on it at a point of the replication stream"
        }
        guard l.featureFlags & ConnectionFeatures.snapshotMark != 0 else {
            return "the peer is not Tandem (no SNAPSHOT_MARK): run snapshot on the node that holds the EBS volume"
        }
        return nil
    }

    /// Closes the current epoch and sends the mark behind its barrier.
    mutating func sendMark(token: UInt64, force: Bool, applicationConsistent: Bool) {
        closeEpoch()
        let id = newUUID()
        let epoch = currentEpoch &- 1
        send(.snapshotMark(id: id, epoch: epoch, flags: (force ? SnapshotMark.forceFlag : 0) | (applicationConsistent ? SnapshotMark.applicationFlag : 0)))
        snapshots.requested[id] = token
        log("snapshot: mark \(Hex.upper(id, digits: 16)) after epoch \(epoch) sent to the peer")
    }

    /// before-snapshot exited: the mark goes out on 0 (then after-snapshot runs); anything
    /// else takes no snapshot (and after-snapshot undoes what it may have done).
    mutating func onBeforeSnapshotDone(_ code: Int32) {
        guard let p = snapshots.preparing else {
            log("snapshot: before-snapshot exited with \(code) after its snapshot was given up")
            return
        }
        snapshots.preparing = nil
        if code == 0, role == .primary, markRefusal() == nil {
            sendMark(token: p.token, force: p.force, applicationConsistent: true)
            emit(.runHandler(.afterSnapshot))
            return
        }
        emit(.runHandler(.afterSnapshot))
        let why = code != 0 ? "before-snapshot exited with \(code)\(code == -1 ? " (it could not run)" : "")"
            : role != .primary ? "this node is no longer Primary" : markRefusal() ?? ""
        emit(.adminDone(token: p.token, error: "\(why): no snapshot taken"))
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
        beginSnapshot(SnapshotMark(id: id, epoch: epoch, force: flags & SnapshotMark.forceFlag != 0,
                                   applicationConsistent: flags & SnapshotMark.applicationFlag != 0, admin: nil))
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
        snapshots.active = ActiveSnapshot(mark: m, consistency: !consistent ? "inconsistent"
                                            : m.applicationConsistent ? "application-consistent" : "crash-consistent",
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
            emit(.adminDone(token: t, error: error.map { AdminRefusal.failed($0) }))
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

    /// before-snapshot is bounded too (with or without a link): past its limit the snapshot is
    /// given up and after-snapshot runs (the handler may still be running).
    mutating func snapshotPreparingTick() {
        guard let p = snapshots.preparing, nowMs >= p.deadlineMs else { return }
        snapshots.preparing = nil
        emit(.runHandler(.afterSnapshot))
        emit(.adminDone(token: p.token, error: "before-snapshot did not exit within \(settings.beforeSnapshotLimitMs / 1000) s: no snapshot taken, after-snapshot called"))
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
    /// A Primary's snapshot waiting for its before-snapshot handler.
    var preparing: PreparingSnapshot?
    static let limit = 8
}

struct SnapshotMark: Sendable {
    var id: UInt64
    var epoch: UInt32
    var force: Bool
    /// The Primary's before-snapshot handler ran and exited 0.
    var applicationConsistent: Bool
    /// The local command's token; nil for the Primary's mark.
    var admin: UInt64?
}

extension SnapshotMark {
    /// P_TANDEM_SNAPSHOT_MARK flags: take it even of a disk that is not UpToDate; the
    /// Primary's before-snapshot handler made it application-consistent.
    static let forceFlag: UInt32 = 1
    static let applicationFlag: UInt32 = 2
}

struct PreparingSnapshot: Sendable {
    var token: UInt64
    var force: Bool
    var deadlineMs: UInt64
}

struct ActiveSnapshot: Sendable {
    var mark: SnapshotMark
    var consistency: String
    var deadlineMs: UInt64
}
