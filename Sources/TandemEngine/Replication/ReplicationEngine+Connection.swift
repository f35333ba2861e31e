import TandemCodecs

/// Connection life: the parameter exchange after the transport's handshake, the sync handshake,
/// state reports, pings and timeouts, losing the link, and the operator's verbs.
extension ReplicationEngine {
    mutating func onLinkEstablished(version: Int, features: UInt32, resolveConflicts: Bool) {
        guard conn != .standAlone else { emit(.dropLink(reason: "resource is StandAlone")); return }
        linkGeneration += 1
        link = LinkState(agreedVersion: version, featureFlags: features, resolveConflicts: resolveConflicts,
                         lastReceiveMs: nowMs)
        conn = .wfReportParams
        inbound = InboundState()
        receiveBudget = ReceiveBudget()
        sendPurpose.removeAll()
        bitmapReceive = BitmapReceive()
        lastError = nil
        send(.protocolSettings(ProtocolSettings(wireProtocol: settings.wireProtocol, afterSB0p: settings.afterSB0p,
                                                afterSB1p: settings.afterSB1p, afterSB2p: settings.afterSB2p,
                                                connFlags: discardMyData ? 1 : 0, twoPrimaries: 0,
                                                integrityAlg: settings.integrityAlg), update: false))
        send(.syncParam(SyncParameters(resyncRate: settings.resyncRateKiB, verifyAlg: settings.verifyAlg,
                                       csumsAlg: settings.csumsAlg,
                                       controller: .init(planAhead: settings.cPlanAhead, delayTarget: settings.cDelayTarget,
                                                         fillTarget: settings.cFillTarget, maxRate: settings.cMaxRateKiB)),
                        legacy: false))
        sendSizes()
        sendUUIDs()
        sendState()
        log("handshake: agreed protocol version \(version), features 0x\(String(features, radix: 16))")
    }

    /// The link is gone: every write the peer has not confirmed durable (barrier ack) is
    /// marked out of sync, and writes waiting for a peer ack complete on the local write alone.
    /// `peerOutdated`: the peer outdated its disk as it left (a fencing disconnect), so it
    /// needs no fencing and stays known as Outdated.
    mutating func onLinkLost(_ reason: String, peerOutdated: Bool = false) {
        let hadLink = link != nil
        let peerDiskWasUsable = peerDisk >= .inconsistent
        let peerMayBeUpToDate = peerDisk >= .consistent && !peerOutdated
        link = nil
        if conn != .standAlone { conn = .wfConnection }
        if hadLink { lastError = lastError ?? reason; log("connection lost: \(reason)", .warning) }
        peerRole = .unknown
        peerDisk = .dUnknown
        peerPaused = false
        resync = nil
        verifyLinkLost()
        startingSyncDurableAt = nil
        pendingSyncUUID = nil
        bitmapReceive = BitmapReceive()
        inbound = InboundState()
        receiveBudget = ReceiveBudget()
        sendPurpose.removeAll()
        dropWaitingReads()
        failPeerReads()
        snapshotLinkLost()
        // Requests still waiting for their activity-log extent are not issued yet: they mark
        // their blocks when they are.
        for (id, r) in requests where r.pending == nil {
            var r = r
            if r.epoch != nil && !r.barrierAcked { setBits(offset: r.offset, length: r.length) }
            if r.needsPeerDisk && !r.peerWrote && r.localError == nil {
                r.localError = "the link was lost before the peer wrote it, and this node's disk is not UpToDate"
            }
            r.peerPending = false
            r.barrierAcked = true
            requests[id] = r
            maybeComplete(id)
        }
        unackedEpochs.removeAll()
        epochWrites = 0
        apInFlightBytes = 0
        aheadResyncAtMs = nil
        for (id, r) in requests where r.countsInFlight { requests[id]?.countsInFlight = false }
        for i in flushWaiters.indices { flushWaiters[i].epoch = nil }
        checkFlushWaiters()
        // As DRBD, only a Primary whose own disk is UpToDate starts a new data generation: a
        // restoring one cannot write without its peer, so it changes nothing while apart.
        if role == .primary && disk == .upToDate && peerDiskWasUsable && hadLink && persistent.bitmap == 0 {
            newCurrentUUID()
        }
        if role == .primary && peerMayBeUpToDate && hadLink { fenceLostPeer() }
        if peerOutdated {
            peerDisk = .outdated
            if !persistent.peerOutdated { persistent.peerOutdated = true; persist() }
            log("the peer outdated its disk as it disconnected (fencing)")
        }
        if let (token, cmd) = pendingAdmin {
            pendingAdmin = nil
            if case .restore = cmd { restoreAdmin = nil }
            if cmd == .disconnect { conn = .standAlone; emit(.adminDone(token: token, error: nil)) }
            else { emit(.adminDone(token: token, error: "connection lost before the peer answered")) }
        }
    }

    mutating func onTick() {
        bitmapWritebackTick()
        compressionAutoTick()
        if nowMs &- lastIdleCheckMs >= 1000 {
            lastIdleCheckMs = nowMs
            retireIdleExtents()
        }
        snapshotPreparingTick()
        guard var l = link else { return }
        if conn == .ahead, let at = aheadResyncAtMs, nowMs >= at {
            aheadResyncAtMs = nil
            if disk < .upToDate {
                // The disk failed while Ahead (pass_on): the writes only it holds cannot be
                // read back to resync; the handshake refuses to make it the source.
                fail("cannot resync what went unreplicated while Ahead: the local disk is \(disk)")
                return
            }
            logState("the link caught up: resyncing what went unreplicated while Ahead")
            startResyncAsSource()
            l = link ?? l
        }
        if let sent = l.pingSentMs {
            if nowMs - sent > settings.pingTimeoutMs && l.lastReceiveMs < sent {
                fail("PingAck did not arrive in time")
                return
            }
        } else if nowMs - l.lastReceiveMs >= settings.pingIntervalMs {
            l.pingSentMs = nowMs
            link = l
            send(.ping, .meta)
        }
        if let oldest = requests.values.filter({ $0.epoch != nil && !$0.barrierAcked }).map(\.sentAtMs).min(),
           nowMs - oldest > settings.requestTimeoutMs {
            fail("Remote failed to finish a request within \(settings.requestTimeoutMs) ms")
            return
        }
        resyncTick()
        verifyTick()
        snapshotTick()
    }

    mutating func onPacket(_ p: Packet, _ socket: Socket) {
        guard link != nil else { return }
        link?.lastReceiveMs = nowMs
        receivedDataBytes &+= Self.dataBytes(p)
        if socket == .data && (inbound.closing != nil || inbound.waitingForRead || inbound.waitingForBacking || inbound.waitingForSnapshot
            || !inbound.queued.isEmpty) {
            guard inbound.queued.count < QueueLimits.packetsBehindBarrier else {
                fail("protocol error: the peer sent more than \(QueueLimits.packetsBehindBarrier) packets behind a barrier")
                return
            }
            inbound.queued.append(p)
            receiveBudget.queuedBytes += ReceiveBudget.cost(p)
            return
        }
        dispatch(p, socket)
    }

    mutating func dispatch(_ p: Packet, _ socket: Socket) {
        switch p {
        case .ping: send(.pingAck, .meta)
        case .pingAck: link?.pingSentMs = nil
        case .protocolSettings(let s, let update): if !update { checkProtocol(s) }
        case .syncParam(let s, _):
            if let c = s.controller {
                link?.peerController = .init(resyncRateKiB: s.resyncRate, planAhead: c.planAhead, delayTarget: c.delayTarget,
                                             fillTarget: c.fillTarget, maxRateKiB: c.maxRate)
            } else {
                // Before protocol 95 there is only a rate: DRBD's fixed-rate resync.
                link?.peerController = .init(resyncRateKiB: s.resyncRate, planAhead: 0, delayTarget: 0, fillTarget: 0, maxRateKiB: s.resyncRate)
            }
            if conn == .wfReportParams && (s.verifyAlg != settings.verifyAlg || s.csumsAlg != settings.csumsAlg) {
                fail("Different verify-alg or csums-alg settings (peer: \"\(s.verifyAlg)\"/\"\(s.csumsAlg)\")", standAlone: true)
            }
        case .sizes(let s): onPeerSizes(s)
        case .uuids(let u):
            link?.peerUUIDs = UUIDs(current: u.current, bitmap: u.bitmap, history0: u.history0, history1: u.history1)
            link?.peerBitsSet = u.bitsSet
            link?.peerUUIDFlags = u.flags
        case .state(let s): onPeerState(s)
        case .stateChangeRequest(let mask, let value, let connectionWide): onStateChangeRequest(mask, value, connectionWide)
        case .stateChangeReply(let rc, _): onStateChangeReply(rc)
        case .data, .trim, .writeSame, .barrier, .compressedResyncReply, .compressedData: receiveReplicated(p)
        case .blockAck(let cmd, let a): onBlockAck(cmd, a)
        case .barrierAck(let n, let count): onBarrierAck(n, count)
        case .bitmap, .compressedBitmap: receiveBitmap(p)
        case .syncUUID(let u): onSyncUUID(u)
        case .blockRequest(let cmd, let r, let digest): onBlockRequest(cmd, r, digest: digest)
        case .blockDescriptor(let cmd, let d):
            if cmd == .outOfSync { setBits(offset: d.sector * 512, length: UInt64(d.size)) }
            else { fail("unsupported \(cmd) from peer") }
        case .snapshotMark(let id, let epoch, let flags): onSnapshotMark(id: id, epoch: epoch, flags: flags)
        case .snapshotResult(let id, let status, let text): onSnapshotResult(id: id, status: status, text: text)
        case .unplugRemote, .delayProbe: break
        case .initialData, .initialMeta, .features, .authChallenge, .authResponse:
            fail("protocol error: unexpected \(p.command) after the handshake")
        }
    }

    mutating func checkProtocol(_ s: ProtocolSettings) {
        func swapLocalRemote(_ v: UInt32) -> UInt32 { v == 5 ? 6 : v == 6 ? 5 : v }
        var why: String?
        if s.wireProtocol != settings.wireProtocol {
            let names = ["?", "A", "B", "C"]
            why = "incompatible communication protocols (peer \(names[Int(s.wireProtocol)]), mine \(names[Int(settings.wireProtocol)]))"
        } else if swapLocalRemote(s.afterSB0p) != settings.afterSB0p || swapLocalRemote(s.afterSB1p) != settings.afterSB1p
                    || swapLocalRemote(s.afterSB2p) != settings.afterSB2p {
            why = "incompatible after-sb-*pri settings"
        } else if s.twoPrimaries != 0 {
            why = "incompatible setting of the allow-two-primaries option"
        } else if s.integrityAlg != settings.integrityAlg {
            why = "incompatible data-integrity-alg (peer \"\(s.integrityAlg)\", mine \"\(settings.integrityAlg)\")"
        } else if s.connFlags & 1 != 0 && discardMyData {
            why = "incompatible discard-my-data settings (both sides)"
        }
        if let why { fail(why, standAlone: true) }
    }

    mutating func onPeerState(_ s: StateWord) {
        guard let l = link, let r = s.role, let c = s.conn, var d = s.disk else {
            fail("protocol error: peer sent an invalid state word 0x\(String(s.raw, radix: 16))")
            return
        }
        peerRole = r
        peerPaused = s.syncPaused
        defer { applyPause() }
        // Negotiating: the peer attached a disk (at the handshake, or while Connected).
        let peerAttached = d == .negotiating
        if d == .negotiating { d = l.peerUUIDFlags & UUIDSet.flagInconsistent != 0 ? .inconsistent : .consistent }
        let oldPeerDisk = peerDisk
        peerDisk = d
        if conn != .wfReportParams && d <= .failed && oldPeerDisk > .failed {
            peerDiskLost()
            if link == nil { return }
        }
        switch conn {
        case .wfReportParams:
            if d <= .failed || disk <= .failed {
                conn = .connected
                sendState()
                if d <= .failed { peerDiskLost() }
                // What this detached node knows its disk missed reaches the peer again.
                if disk <= .diskless && link != nil { sendOutOfSyncRuns() }
            } else if l.peerUUIDs == nil {
                fail("protocol error: peer sent P_STATE before P_UUIDS")
            } else {
                syncHandshake()
            }
        case .connected where peerAttached && l.peerUUIDs != nil:
            // The peer attached its disk while Connected (drbdadm attach after a detach): the
            // UUIDs it just sent decide the resync, as at a handshake (DRBD's receive_state).
            sendUUIDs()
            syncHandshake()
        case .connected where c == .ahead:
            // The peer pulled ahead: its writes now arrive as P_OUT_OF_SYNC until it resyncs them.
            conn = .behind
            if disk == .upToDate { disk = .consistent }
            logState("the peer went Ahead (congestion): Behind until it resyncs")
        case .connected:
            let peerStartsSync = [.startingSyncS, .startingSyncT, .wfBitMapS, .wfBitMapT].contains(c)
            let considerResync = (disk == .inconsistent && d == .upToDate && oldPeerDisk != .upToDate)
                || (disk == .upToDate && d == .inconsistent && c == .connected && oldPeerDisk != .inconsistent && role == .primary)
            // Our own invalidate's request is out: its reply, not this state, starts the sync.
            let invalidating = pendingAdmin.map { $0.command == .invalidate || $0.command == .invalidateRemote } ?? false
            if (peerStartsSync || considerResync) && !invalidating { syncHandshake() }
        case .syncSource, .pausedSyncS:
            // The target's Connected/UpToDate ends the resync when nothing is left here (as
            // DRBD's receive_state) or after the target was seen as such (a Tandem target says
            // so; the kernel does not): a state sent before the resync began, still in flight
            // when this node became the source, says nothing about it.
            if c == .syncTarget || c == .pausedSyncT { resync?.peerSeenAsTarget = true }
            if c == .connected && d == .upToDate && (bitmap.setCount == 0 || resync?.peerSeenAsTarget == true) { finishResyncAsSource() }
        case .verifyT:
            // The VerifyS node ended the verify (or stopped it early).
            if c == .connected { finishVerify() }
        default: break
        }
    }

    /// drbd_sync_handshake: decide the sync direction from the UUIDs and enter WFBitMapS,
    /// WFBitMapT or Connected (reference §3.6).
    mutating func syncHandshake() {
        guard let l = link, let peerU = l.peerUUIDs else { return }
        let input = UUIDCompare.Input(
            mine: UUIDs(current: persistent.current, bitmap: persistent.bitmap, history0: persistent.history0,
                        history1: persistent.history1),
            peer: peerU, iAmCrashedPrimary: persistent.crashedPrimary,
            peerCrashedPrimary: l.peerUUIDFlags & UUIDSet.flagCrashedPrimary != 0,
            iAmPrimary: role == .primary, peerIsPrimary: peerRole == .primary,
            resolveConflicts: l.resolveConflicts, agreedVersion: l.agreedVersion,
            wsameAgreed: l.featureFlags & ConnectionFeatures.writeSame != 0)
        let out = UUIDCompare.compare(input)
        if out.mine != input.mine {
            persistent.bitmap = out.mine.bitmap; persistent.history0 = out.mine.history0
            persistent.history1 = out.mine.history1
            persist()
        }
        link?.peerUUIDs = out.peer
        var hg = out.result
        log("uuid_compare()=\(hg) by rule \(out.rule)")
        if hg == -1000 { fail("Unrelated data, aborting!", standAlone: true); return }
        if hg < -1000 { fail("To resolve this both sides have to support at least protocol \(-hg - 1000)", standAlone: true); return }
        if (disk == .inconsistent) != (peerDisk == .inconsistent) && disk != .diskless && peerDisk != .diskless {
            let f = (hg == -100 || abs(hg) == 2) ? 2 : 1
            hg = (disk > .inconsistent ? 1 : -1) * f
        }
        if abs(hg) == 100 {
            hg = resolveSplitBrain(hg, rule: out.rule)
            if hg == -100 { return }
        }
        if hg > 0 && disk <= .inconsistent { fail("I shall become SyncSource, but I am inconsistent!", standAlone: true); return }
        if hg > 0, restoreAdmin != nil {
            // `restore` on a node whose data the peer lacks: nothing moves until the operator
            // says to throw it away.
            fail("restore refused: this node holds data the peer does not have (it would be the sync source); `restore --discard-my-data` throws it away", standAlone: true)
            finishRestore(lastError)
            return
        }
        if hg < 0 && role == .primary && disk >= .consistent {
            fail("I shall become SyncTarget, but I am primary!", standAlone: true); return
        }
        if abs(hg) >= 2 {
            log("Writing the whole bitmap, full sync required after drbd_sync_handshake.")
            noteBitsSet(bitmap.set(0..<bmBits))
        }
        // A resync follows unless the data is the same: it covers a part grown at this handshake.
        if hg != 0 { growResyncPending = false }
        discardMyDataOnce = false
        splitBrain = false
        if persistent.peerOutdated { persistent.peerOutdated = false; persist() }
        bitmapReceive = BitmapReceive()
        if hg > 0 {
            // A Consistent or Outdated disk the UUIDs make the source is the newest there is
            // (DRBD's sanitize_state: a sync source is UpToDate).
            if disk < .upToDate { disk = .upToDate; markUpToDate() }
            conn = .wfBitMapS
            sendState()
            sendBitmap()
        } else if hg < 0 {
            conn = .wfBitMapT
            sendState()
        } else {
            conn = .connected
            // The same data generation on both: a Consistent or Outdated disk holds what the
            // peer's Consistent or UpToDate one holds.
            if disk >= .outdated && disk < .upToDate && peerDisk >= .consistent { disk = .upToDate; markUpToDate() }
            sendState()
            if growResyncPending { resyncAfterGrow() }
        }
    }

    mutating func markUpToDate() {
        if !persistent.consistent || !persistent.wasUpToDate {
            persistent.consistent = true
            persistent.wasUpToDate = true
            persist()
        }
    }

    // MARK: state change requests

    mutating func onStateChangeRequest(_ mask: UInt32, _ value: UInt32, _ connectionWide: Bool) {
        // The request is in the sender's view: its role is my peer's role.
        var rc: Int32 = 1
        if mask & StateWord.connMask != 0 && (value & StateWord.connMask) >> 4 == ConnectionState.disconnecting.rawValue {
            // The Primary, with fencing, leaves this node Outdated (its pdsk is my disk).
            if mask & StateWord.pdskMask != 0, DiskState(rawValue: (value & StateWord.pdskMask) >> 13) == .outdated,
               role == .secondary, disk >= .outdated {
                log("the Primary disconnects and outdates this node's disk (fencing)")
                outdateMyself()
            }
            send(.stateChangeReply(retcode: 1, connectionWide: connectionWide), .meta)
            fail("peer requested disconnect")
            return
        }
        if mask & StateWord.roleMask != 0 {
            let wanted = Role(rawValue: value & 3)
            if wanted == .primary && role == .primary { rc = -1 }  // SS_TWO_PRIMARIES
            else if let wanted { peerRole = wanted }
        }
        // The peer's conn value in its own view: StartingSyncS there is StartingSyncT here.
        var enter: ConnectionState?
        if mask & StateWord.connMask != 0 && rc == 1 && pendingAdmin != nil && link?.resolveConflicts == true {
            // Both asked at once: as DRBD, the node that resolves conflicts refuses the peer's
            // (SS_CONCURRENT_ST_CHG), the other grants this one's and learns its own failed.
            rc = -19
        } else if mask & StateWord.connMask != 0 && rc == 1 {
            let c = ConnectionState(rawValue: (value & StateWord.connMask) >> 4)
            switch c {
            case .verifyS:
                // SS_NO_VERIFY_ALG -14, SS_NEED_CONNECTION -15 (DRBD's codes), SS_NO_UP_TO_DATE_DISK -2.
                if settings.verifyAlg.isEmpty { rc = -14 }
                else if conn != .connected || link == nil { rc = -15 }
                else if disk != .upToDate || peerDisk != .upToDate { rc = -2 }
                else { enter = .verifyT }
            case .startingSyncT:
                // invalidate on the peer: this node becomes the source of a full resync.
                if conn != .connected { rc = -15 }
                else if disk != .upToDate { rc = -2 }
                else { enter = .startingSyncS }
            case .startingSyncS:
                // invalidate-remote on the peer: this node's data is resynced whole from it.
                if conn != .connected { rc = -15 }
                else if role == .primary {
                    // A Primary whose disk turns Inconsistent would have to read from the
                    // peer, which Tandem does not do yet.
                    log("refused the peer's invalidate-remote: this node is Primary")
                    rc = -17
                } else { enter = .startingSyncT }
            default: break
            }
        }
        send(.stateChangeReply(retcode: rc, connectionWide: connectionWide), .meta)
        switch enter {
        case .verifyT?: startVerifyAsTarget()
        case .startingSyncS?: enterStartingSync(target: false, byPeer: true)
        case .startingSyncT?: enterStartingSync(target: true, byPeer: true)
        default: break
        }
    }

    mutating func onStateChangeReply(_ rc: Int32) {
        guard let (token, cmd) = pendingAdmin else { return }
        pendingAdmin = nil
        if rc < 1 {
            let why = switch rc {
            case -1: "the peer is Primary (two primaries are not allowed)"
            case -2: "the peer's disk is not UpToDate"
            case -14: "the peer has no verify-alg"
            case -15: "the peer is not Connected"
            case -17: "the peer does not support it (a Primary peer cannot be invalidated)"
            case -19: "the peer was changing its state at the same time; try again"
            default: "the peer refused the state change (\(rc))"
            }
            if case .restore = cmd { restoreAdmin = nil }
            emit(.adminDone(token: token, error: AdminRefusal(why)))
            return
        }
        switch cmd {
        case .primary(let force): becomePrimary(force: force, token: token)
        case .verify(let start):
            guard conn == .connected, link != nil else { emit(.adminDone(token: token, error: "the connection changed to \(conn)")); return }
            startVerifyAsSource(startSector: start)
            emit(.adminDone(token: token, error: nil))
        case .invalidate, .invalidateRemote:
            guard conn == .connected, link != nil else { emit(.adminDone(token: token, error: "the connection changed to \(conn)")); return }
            enterStartingSync(target: cmd == .invalidate)
            emit(.adminDone(token: token, error: nil))
        case .restore:
            // Done once SyncTarget (checkRestoreAdmin).
            guard conn == .connected, link != nil else { finishRestore("the connection changed to \(conn)"); return }
            enterStartingSync(target: true)
        case .disconnect:
            let outdatedPeer = disconnectOutdatesPeer
            emit(.dropLink(reason: "disconnect requested"))
            onLinkLost("disconnect requested", peerOutdated: outdatedPeer)
            conn = .standAlone
            emit(.adminDone(token: token, error: nil))
        default: emit(.adminDone(token: token, error: nil))
        }
    }

    // MARK: operator verbs

    /// The handshake is between its steps: DRBD refuses role changes then (SS_IN_TRANSIENT_STATE);
    /// Tandem holds them until the handshake has settled.
    var inTransientState: Bool { link != nil && [.wfReportParams, .wfBitMapS, .wfBitMapT, .wfSyncUUID].contains(conn) }

    mutating func onAdmin(_ token: UInt64, _ cmd: AdminCommand) {
        guard pendingAdmin == nil, deferredAdmin == nil else {
            emit(.adminDone(token: token, error: "another state change is in progress"))
            return
        }
        if inTransientState, cmd == .secondary || { if case .primary = cmd { true } else { false } }() {
            deferredAdmin = (token, cmd)
            return
        }
        switch cmd {
        case .primary(let force):
            if role == .primary { emit(.adminDone(token: token, error: nil)); return }
            if peerRole == .primary { emit(.adminDone(token: token, error: "the peer is Primary (two primaries are not allowed)")); return }
            if disk == .diskless { emit(.adminDone(token: token, error: .cannotPromote("no local disk"))); return }
            if fencingPeer != nil { emit(.adminDone(token: token, error: "fence-peer is running; try again when it has returned")); return }
            if mayPromoteDuringRestore {
                // Instant access: the role changes, the restore goes on (force or not).
                pendingAdmin = (token, cmd)
                send(.stateChangeRequest(mask: StateWord.roleMask, value: Role.primary.rawValue, connectionWide: false))
                return
            }
            if disk == .consistent && link == nil && settings.fencing != .dontCare && !force {
                fenceBeforePromotion(token: token, force: force)
                return
            }
            if disk == .outdated && !force {
                emit(.adminDone(token: token, error: .cannotPromote("local disk is Outdated: the peer has newer data (it was outdated when the Primary lost it); use --force only if the peer's data is lost")))
                return
            }
            if disk < .upToDate && !force {
                emit(.adminDone(token: token, error: .cannotPromote("local disk is \(disk), not UpToDate: use --force to make it the sync source")))
                return
            }
            if resync != nil && disk < .upToDate {
                emit(.adminDone(token: token, error: "local disk is SyncTarget; wait for the sync to finish"))
                return
            }
            if link != nil && conn.isConnected {
                pendingAdmin = (token, cmd)
                send(.stateChangeRequest(mask: StateWord.roleMask, value: Role.primary.rawValue, connectionWide: false))
            } else {
                becomePrimary(force: force, token: token)
            }
        case .secondary:
            if role == .secondary { emit(.adminDone(token: token, error: nil)); return }
            if !requests.isEmpty { emit(.adminDone(token: token, error: "writes are still in flight")); return }
            becomeSecondary()
            if link != nil { sendUUIDs(); sendState() }
            emit(.adminDone(token: token, error: nil))
        case .disconnect:
            if link != nil {
                pendingAdmin = (token, cmd)
                // With fencing a Primary leaves its peer only Outdated (DRBD retries its
                // disconnect with pdsk Outdated, as a Primary with an unknown peer is refused).
                let outdatePeer = disconnectOutdatesPeer
                send(.stateChangeRequest(mask: StateWord.connMask | (outdatePeer ? StateWord.pdskMask : 0),
                                         value: ConnectionState.disconnecting.rawValue << 4 | (outdatePeer ? DiskState.outdated.rawValue << 13 : 0),
                                         connectionWide: true))
            } else {
                conn = .standAlone
                emit(.adminDone(token: token, error: nil))
            }
        case .connect, .connectDiscardingMyData:
            if cmd == .connectDiscardingMyData {
                if link != nil {
                    emit(.adminDone(token: token, error: "already connected (\(conn)): disconnect first, then connect --discard-my-data"))
                    return
                }
                discardMyDataOnce = true
            }
            if conn == .standAlone { conn = .wfConnection; lastError = nil }
            emit(.adminDone(token: token, error: nil))
        case .drain:
            draining = token
        case .resync:
            startResyncVerb(token)
        case .pauseSync, .resumeSync:
            userPaused = cmd == .pauseSync
            applyPause()
            sendState()
            emit(.adminDone(token: token, error: nil))
        case .verify(let start):
            startVerifyVerb(token, startSector: start)
        case .invalidate:
            invalidateVerb(token)
        case .outdate:
            outdateVerb(token)
        case .invalidateRemote:
            invalidateRemoteVerb(token)
        case .restore(let discard):
            restoreVerb(token, discardMyData: discard)
        case .resize:
            resizeCommand(token: token)
        case .snapshot(let force):
            snapshotCommand(token: token, force: force)
        }
    }

    /// `resync`: the blocks marked out of sync on either side move now, from this node (or the
    /// Primary) to the other. This node takes a new current UUID (its old one becomes the bitmap
    /// UUID, as a Primary does when it loses its peer), so the handshake that follows makes it
    /// the SyncSource by DRBD's own rules (the peer's current UUID is this node's bitmap UUID)
    /// and the bitmap exchange gathers every bit of both sides; a kernel peer needs nothing new.
    mutating func startResyncVerb(_ token: UInt64) {
        if conn.isSyncing { emit(.adminDone(token: token, error: nil)); return }
        if peerRole == .primary && role != .primary {
            emit(.adminDone(token: token, error: "the peer is Primary and so the sync source: run resync there"))
            return
        }
        if disk == .upToDate && persistent.bitmap == 0 { newCurrentUUID() }
        resyncAdmin = (token, linkGeneration, nowMs + 30_000)
        if link != nil {
            emit(.dropLink(reason: "resync requested"))
            onLinkLost("resync requested")
        } else if conn == .standAlone {
            conn = .wfConnection
            lastError = nil
        }
    }

    /// `resync` is done once the resync runs, or a new handshake found nothing to resync.
    mutating func checkResyncAdmin() {
        guard let (token, generation, deadline) = resyncAdmin else { return }
        var error: String?
        if conn.isSyncing || (conn == .connected && linkGeneration > generation) {
            error = nil
        } else if conn == .standAlone {
            error = "the connection was refused: \(lastError ?? "StandAlone")"
        } else if nowMs >= deadline {
            error = "the peer did not connect within 30 s; the resync starts when it does"
        } else {
            return
        }
        resyncAdmin = nil
        emit(.adminDone(token: token, error: error.map { AdminRefusal($0) }))
    }

    /// A resync pauses while this node (pause-sync) or the peer asks for it, and goes on after.
    mutating func applyPause() {
        let paused = userPaused || peerPaused
        switch conn {
        case .syncSource where paused: conn = .pausedSyncS
        case .syncTarget where paused: conn = .pausedSyncT
        case .pausedSyncS where !paused: conn = .syncSource
        case .pausedSyncT where !paused:
            conn = .syncTarget
            resyncStep()
        default: break
        }
    }

    /// The role change of the `secondary` verb and of call-pri-lost-after-sb.
    mutating func becomeSecondary() {
        role = .secondary
        persistent.current &= ~1
        persistent.primary = false
        persist()
    }

    mutating func becomePrimary(force: Bool, token: UInt64) {
        if disk == .inconsistent && (conn == .syncTarget || conn == .pausedSyncT) {
            becomePrimaryDuringRestore(token: token)
            return
        }
        let wasBelowUpToDate = disk < .upToDate
        role = .primary
        persistent.primary = true
        if wasBelowUpToDate {
            disk = .upToDate
            persistent.consistent = true
            persistent.wasUpToDate = true
        }
        let peerUsable = link != nil && peerDisk >= .inconsistent
        if (force && wasBelowUpToDate) || (!peerUsable && persistent.bitmap == 0) {
            newCurrentUUID()
        } else {
            persistent.current |= 1
            persist()
        }
        logState("role: Primary\(force ? " (forced)" : "")")
        if link != nil {
            sendUUIDs()
            sendState()
            if conn == .connected && peerDisk == .inconsistent { syncHandshake() }
        }
        emit(.adminDone(token: token, error: nil))
    }
}
