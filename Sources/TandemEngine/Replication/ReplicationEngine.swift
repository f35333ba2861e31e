import TandemCodecs

/// The replication state machine of one resource (one volume): DRBD 8.4's roles, connection and
/// disk states, the request lifecycle with epochs and barriers, acks per protocol A/B/C, the
/// sync handshake, bitmap exchange and resync. It is deterministic: `handle` takes one event and
/// returns the actions to carry out, in order; it never blocks, reads a clock or does I/O. The
/// daemon runs it on one thread; the simulation tests run two of them against each other.
public struct ReplicationEngine: Sendable {
    /// The resource file's settings; `adjust` may change those SettingsAdjustment allows.
    public private(set) var settings: EngineSettings
    /// The local data area in 512-byte sectors (DRBD's d_size): the most the device can be.
    public internal(set) var backingSectors: UInt64
    /// The device's size in 512-byte sectors as both nodes agree it (DRBD's capacity): the
    /// smaller data area of the two, or the `size` option, remembered in the meta-data as the
    /// last agreed size. Never more than `backingSectors`; no bitmap bit at or past it is set.
    public internal(set) var sizeSectors: UInt64
    /// The `size` option in force: this node's, or the smaller of both nodes' once connected.
    var userSizeSectors: UInt64
    /// EBS snapshots at epoch boundaries in progress.
    var snapshots = SnapshotState()
    /// A look at whether the backing device grew (resize), in flight.
    var backingCheck: BackingCheck?
    /// The size grew at the handshake: the grown part resyncs if the handshake starts no resync.
    var growResyncPending = false
    public internal(set) var persistent: PersistentState
    public internal(set) var bitmap: OutOfSyncBitmap

    var role: Role = .secondary
    var disk: DiskState
    var conn: ConnectionState = .standAlone
    var peerRole: Role = .unknown
    var peerDisk: DiskState = .dUnknown
    var lastError: String?
    /// Why the disk was detached.
    var diskError: String?

    var actions: [EngineAction] = []
    var nowMs: UInt64 = 0
    var nextToken: UInt64 = 1
    var diskPurpose: [UInt64: DiskPurpose] = [:]

    var link: LinkState?
    var linkGeneration: UInt64 = 0

    // Primary side: requests (the transfer log) and epochs.
    var requests: [UInt64: Request] = [:]
    /// Per application call: its requests not yet completed and the first local error, so a call
    /// completes in constant time when its last piece does.
    var appCalls: [UInt64: (left: Int, error: String?)] = [:]
    var nextRequestID: UInt64 = 1
    var currentEpoch: UInt32 = 1
    var epochWrites = 0
    var unackedEpochs: [(number: UInt32, count: UInt32)] = []
    /// Bytes of replicated writes not yet acknowledged by their barrier ack (DRBD's
    /// ap_in_flight), for congestion-fill.
    var apInFlightBytes: UInt64 = 0
    /// Data bytes sent to and received from the peer (writes, resync data, read replies), as
    /// on the wire: DRBD's ns and nr.
    var sentDataBytes: UInt64 = 0
    var receivedDataBytes: UInt64 = 0
    /// Since when (engine ms) blocks have been marked out of sync; nil while none are.
    var outOfSyncSinceMs: UInt64?
    /// Ahead: when the resync of what went unreplicated starts (the link caught up a second before).
    var aheadResyncAtMs: UInt64?
    var flushWaiters: [FlushWaiter] = []
    var draining: UInt64?

    // Secondary side: the epoch being received.
    var inbound = InboundState()
    /// What the tracked sends in flight are for.
    var sendPurpose: [UInt64: SendPurpose] = [:]
    /// max-buffers: what the peer sent that this node has not finished with.
    var receiveBudget = ReceiveBudget()
    /// Writes in flight to the local disk (the application's and the peer's), per 4 KiB block,
    /// and the reads that wait for them: a resync or verify read must not overtake a write
    /// issued before it (reads run in parallel, and a write the peer never got as P_DATA, made
    /// while Ahead or disconnected, would be lost).
    var localWriteBlocks: [UInt64: Int] = [:]
    /// The peer has no disk: its writes wait here until their bits are durable (the meta-data
    /// write of that sequence number), in arrival order.
    var writesAfterBits: [(seq: UInt64, op: DiskOperation, purpose: DiskPurpose)] = []
    /// Reads of a restoring Primary served from the peer.
    var peerReads = PeerReads()
    /// Blocks that writes of a restoring Primary cover until they are retired (at the peer).
    var restoreWriteBlocks: [UInt64: Int] = [:]
    var readsWaitingForWrites: [WaitingRead] = []
    /// Blocks a verify read is reading, and the writes waiting for those reads: a verify read
    /// sees its block exactly as it stood at its point in the replication stream, so a write
    /// that comes after that point waits until the read is done. Application writes wait here
    /// (in order); the peer's stop the data stream (inbound.waitingForRead).
    var readLocks: [UInt64: Int] = [:]
    var writesWaitingForReads: [UInt64] = []
    /// Requests in the transfer log (started: waiting for their extent or issued, not yet
    /// retired), and those waiting because it is full.
    var loggedRequests = 0
    var transferLogWaiting: [UInt64] = []

    // Resync and bitmap exchange.
    var resync: ResyncState?
    /// Online verify, where the last one stopped (the next starts there, as DRBD's
    /// ov_start_sector), and what the last completed one found.
    var verify: VerifyState?
    var verifyResumeBit: UInt64?
    var lastVerify: (totalBits: UInt64, foundBits: UInt64)?
    /// invalidate / invalidate-remote: the all-set bitmap's write that must be durable before
    /// the resync starts, and a P_SYNC_UUID that arrived before it was.
    var startingSyncDurableAt: UInt64?
    var pendingSyncUUID: UInt64?
    /// csums-alg: resync data found identical by digest (not sent).
    var resyncSameBytes: UInt64 = 0
    /// Application writes replicated (data bytes) and what they took in packets.
    var replicatedDataBytes: UInt64 = 0
    var replicatedWireBytes: UInt64 = 0
    var bitmapReceive = BitmapReceive()
    var pendingAdmin: (token: UInt64, command: AdminCommand)?
    /// A role change held until the handshake settles.
    var deferredAdmin: (token: UInt64, command: AdminCommand)?
    /// `resync` waiting for the resync to run: its token, the link generation it started
    /// from, and when it gives up waiting for the peer.
    var resyncAdmin: (token: UInt64, generation: UInt64, deadlineMs: UInt64)?
    /// `restore` waiting to be SyncTarget: its token, when it gives up waiting for the peer,
    /// whether it may throw away data only this node has, and whether it asked the peer for a
    /// full resync (StartingSyncT) yet.
    var restoreAdmin: RestoreAdmin?
    /// Resync data moved (either direction) and its size after compression.
    var resyncDataBytes: UInt64 = 0
    var resyncWireBytes: UInt64 = 0
    /// compression auto: whether it compresses now, and the current second's resync bytes.
    var autoCompressing = true
    var compressionWindow: (startMs: UInt64, bytes: UInt64) = (0, 0)
    /// pause-sync on this node (user_isp), and the peer's pause (its aftr_isp | user_isp).
    var userPaused = false
    /// `connect --discard-my-data`, until the next handshake settles.
    var discardMyDataOnce = false
    /// This node's or the one-shot discard-my-data.
    var discardMyData: Bool { settings.discardMyData || discardMyDataOnce }
    /// The bitmap weight this node last sent in P_UUIDS (DRBD's comm_bm_set): its change count
    /// for the after-sb policies.
    var sentBitsSet: UInt64 = 0
    /// The last handshake ended in a split brain nothing resolved.
    var splitBrain = false
    /// fence-peer is running.
    var fencingPeer: FencePeerRun?
    var peerPaused = false

    // Meta-data: the one lane of meta-data writes, the activity log, bitmap writeback.
    var lane = MetaDataLane()
    /// A detach queued its superblock write (the disk marked Inconsistent): the lane runs
    /// for it although the disk is detached.
    var detachMarkQueued = false
    var gate: ActivityLogGate
    /// Bitmap pages with bits cleared since they were last written.
    var clearedPages: Set<Int> = []
    var lastBitmapWritebackMs: UInt64 = 0
    var lastIdleCheckMs: UInt64 = 0
    /// Broken invariants seen (release builds go on after dropping the connection).
    public internal(set) var violations = 0
    /// Flushes issued to complete a received epoch (for the simulation's write-ordering checks).
    public internal(set) var barrierFlushes = 0

    /// `activityLogNextTransaction`: the number the next activity-log transaction gets (one
    /// past the newest in the on-disk ring).
    /// `backingSectors`: the local data area. The device starts at the `size` option, or else
    /// at the last agreed size (`persistent.agreedSectors`, within the data area), or else the
    /// whole data area, as DRBD attaches.
    public init(settings: EngineSettings, backingSectors: UInt64, persistent: PersistentState, bitmap: OutOfSyncBitmap,
                activityLogNextTransaction: UInt32 = 0) {
        precondition(settings.userSizeSectors <= backingSectors, "the size option is larger than the data area (checked at up)")
        precondition(bitmap.bitCount >= (backingSectors + 7) / 8, "the bitmap does not cover the data area")
        self.settings = settings
        self.backingSectors = backingSectors
        userSizeSectors = settings.userSizeSectors
        let la = persistent.agreedSectors
        sizeSectors = settings.userSizeSectors != 0 ? settings.userSizeSectors
            : la != 0 ? min(la, backingSectors) : backingSectors
        var persistent = persistent
        persistent.agreedSectors = sizeSectors
        self.persistent = persistent
        self.bitmap = bitmap
        // Bits past the device (left from a larger size before) are nothing to sync.
        let bits = (sizeSectors + 7) / 8
        if bits < bitmap.bitCount { _ = self.bitmap.clear(bits..<bitmap.bitCount) }
        let slots = min(max(settings.alExtents, 1), ActivityLog.maximumSlots)
        gate = ActivityLogGate(log: ActivityLog(slotCount: slots, nextTransactionNumber: activityLogNextTransaction))
        if persistent.consistent {
            // As DRBD attaches: with fencing a disk that was UpToDate comes back Consistent
            // (the peer may have written since) unless the peer is known to be outdated.
            if !persistent.wasUpToDate { disk = .outdated }
            else if settings.fencing != .dontCare && !persistent.peerOutdated { disk = .consistent }
            else { disk = .upToDate }
        } else {
            disk = .inconsistent
        }
    }

    public var status: EngineStatus {
        var s = EngineStatus(role: role, peerRole: peerRole, connection: conn, disk: disk, peerDisk: peerDisk,
                     outOfSyncBits: bitmap.setCount, resyncTotalBits: resync?.totalBits ?? 0,
                     wireProtocol: settings.wireProtocol, uuids: persistent, lastError: lastError,
                     writesInFlight: requests.count, writesWaitingForActivityLog: gate.waitingForSlot.count,
                     activityLogHot: gate.log.hotCount, activityLogHeld: gate.log.pinnedCount, diskError: diskError,
                     resyncDataBytes: resyncDataBytes, resyncWireBytes: resyncWireBytes, resyncSameBytes: resyncSameBytes,
                     replicatedDataBytes: replicatedDataBytes, replicatedWireBytes: replicatedWireBytes,
                     verifyTotalBits: verify?.totalBits ?? lastVerify?.totalBits ?? 0,
                     verifyDoneBits: verify?.doneBits ?? lastVerify?.totalBits ?? 0,
                     verifyFoundBits: verify?.foundBits ?? lastVerify?.foundBits ?? 0,
                     verifyResumeSector: verifyResumeBit.map { $0 * 8 },
                     bitmapPagesUnwritten: bitmapPagesUnwritten, splitBrain: splitBrain,
                     backingSectors: backingSectors, sizeSectors: sizeSectors)
        s.apInFlightBytes = apInFlightBytes
        s.sentDataBytes = sentDataBytes
        s.receivedDataBytes = receivedDataBytes
        return s
    }

    var sizeBytes: UInt64 { sizeSectors * 512 }

    /// The largest data payload one packet carries on this link: what an h80 header can frame
    /// before protocol 95 (32 KiB, as DRBD), and at most what the peer's P_SIZES allows.
    var linkBioLimit: UInt32 {
        guard let l = link else { return UInt32(WireLimits.maxBioSize) }
        var m = UInt32(l.agreedVersion < 95 ? 32 << 10 : WireLimits.maxBioSize)
        if let p = l.peerSizes, p.maxBioSize >= 4096 { m = min(m, p.maxBioSize) }
        return m
    }

    /// The largest write or resync request this node issues: max-bio-size within the link's limit.
    var maxBioBytes: UInt32 { max(4096, min(settings.maxBioSize, linkBioLimit) / 4096 * 4096) }
    var bmBits: UInt64 { (sizeSectors + 7) / 8 }

    /// Feeds one event; returns what to do, in order.
    public mutating func handle(_ event: EngineEvent) -> [EngineAction] {
        actions.removeAll(keepingCapacity: true)
        switch event {
        case .tick(let now):
            if now < nowMs { invariantViolated("time went backwards: \(now) ms after \(nowMs) ms") } else { nowMs = now }
            onTick()
        case .linkEstablished(let v, let f, let rc): onLinkEstablished(version: v, features: f, resolveConflicts: rc)
        case .linkLost(let reason): onLinkLost(reason)
        case .packet(let p, let socket): onPacket(p, socket)
        case .appWrite(let id, let offset, let data, let fua): onAppWrite(id: id, offset: offset, data: data, fua: fua)
        case .appZero(let id, let offset, let length, let discard, let fua):
            onAppZero(id: id, offset: offset, length: length, discard: discard, fua: fua)
        case .appFlush(let id): onAppFlush(id: id)
        case .appRead(let id, let offset, let length): onAppRead(id: id, offset: offset, length: length)
        case .appReadFailed(let id, let offset, let length, let error):
            onAppReadFailed(id: id, offset: offset, length: length, error: error)
        case .diskDone(let token, let result): onDiskDone(token, result)
        case .sent(let token): onSent(token)
        case .admin(let token, let cmd): onAdmin(token, cmd)
        case .handlerDone(let h, let code): onHandlerDone(h, code)
        case .backingChecked(let token, let sectors, let error): onBackingChecked(token: token, dataSectors: sectors, error: error)
        case .snapshotTaken(let id, let snapshotID, let error): onSnapshotTaken(id: id, snapshotID: snapshotID, error: error)
        case .adjust(let token, let new): onAdjust(token, new)
        }
        if let (token, cmd) = deferredAdmin, !inTransientState {
            deferredAdmin = nil
            onAdmin(token, cmd)
        }
        if resyncAdmin != nil { checkResyncAdmin() }
        if startingSyncDurableAt != nil { checkStartingSync() }
        if restoreAdmin != nil { checkRestoreAdmin() }
        if gate.slotsMayHaveFreed { wakeSlotWaiters() }
        if !transferLogWaiting.isEmpty && loggedRequests < settings.transferLogLimit { wakeTransferLogWaiters() }
        updateReading()
        checkDrained()
        // Since when blocks have been marked (the age of the oldest write the peer may lack).
        if bitmap.setCount == 0 { outOfSyncSinceMs = nil } else if outOfSyncSinceMs == nil { outOfSyncSinceMs = nowMs }
        return actions
    }

    /// `adjust`: the new settings replace the old when every difference is one a running engine
    /// takes; otherwise nothing changes and the answer names what needs down and up.
    mutating func onAdjust(_ token: UInt64, _ new: EngineSettings) {
        let d = SettingsAdjustment.differences(settings, new)
        guard d.needsRestart.isEmpty else {
            emit(.adminDone(token: token, error: AdminRefusal("nothing changed: \(d.needsRestart.joined(separator: ", ")) cannot change on a running node; `tandem down` and `tandem up` apply it")))
            return
        }
        settings = new
        if !d.live.isEmpty { logState("adjust: \(d.live.joined(separator: ", ")) now in force") }
        emit(.adminDone(token: token, error: nil))
    }

    /// DRBD's pending and unacked counts: this node's requests sent to the peer and waiting
    /// for its ack, and the peer's writes this node has not acknowledged yet. For status
    /// (walks the transfer log).
    public func peerRequestCounts() -> (pending: Int, unacked: Int) {
        (requests.values.filter { $0.peerPending }.count, inbound.pending)
    }

    /// The recovery point right now: application writes this Primary acknowledged that the peer
    /// does not hold yet, in bytes, and the age of the oldest in ms. Counted: writes completed
    /// to the application before their epoch's barrier ack (protocol A and B; in C a write
    /// completes only once the peer wrote it), and blocks marked out of sync while this node
    /// has the good data (link down, Ahead, or resyncing to the peer). Zero on a Secondary.
    /// Walks the transfer log: for status and scrapes, not for every event.
    public func replicationLag() -> (bytes: UInt64, ageMs: UInt64) {
        guard role == .primary else { return (0, 0) }
        var bytes: UInt64 = 0
        var oldest: UInt64?
        for r in requests.values where r.completed && r.epoch != nil && !r.barrierAcked && !(settings.wireProtocol == 3 && r.peerWrote) {
            bytes += r.length
            oldest = min(oldest ?? r.completedAtMs, r.completedAtMs)
        }
        if disk == .upToDate, bitmap.setCount > 0 {
            bytes += bitmap.setCount * 4096
            if let since = outOfSyncSinceMs { oldest = min(oldest ?? since, since) }
        }
        return (bytes, oldest.map { nowMs &- min($0, nowMs) } ?? 0)
    }

    // MARK: helpers shared by the parts of the engine

    mutating func emit(_ a: EngineAction) { actions.append(a) }
    mutating func send(_ p: Packet, _ s: Socket = .data) {
        sentDataBytes &+= Self.dataBytes(p)
        emit(.send(p, on: s))
    }

    /// The data a packet carries as sent (compressed where it is), for DRBD's ns/nr counters.
    static func dataBytes(_ p: Packet) -> UInt64 {
        switch p {
        case .data(_, _, _, let payload): UInt64(payload.count)
        case .compressedData(_, _, let c), .compressedResyncReply(_, _, let c): UInt64(c.count)
        default: 0
        }
    }
    mutating func log(_ s: String, _ weight: LogWeight = .note) { emit(.log(s, weight)) }
    /// A state change for the log: never rate-limited.
    mutating func logState(_ s: String) { emit(.log(s, .stateChange)) }

    /// Disk operations in flight never exceed what the other limits allow: one per issued
    /// request (the transfer log), the received writes, resync reads and writes max-buffers
    /// allows (a packet counts at least QueueLimits.packetOverhead), a flush per NBD flush.
    var diskOperationLimit: Int {
        settings.transferLogLimit + (4096 / QueueLimits.packetOverhead + 2) * settings.maxBuffers + QueueLimits.nbdRequestsTotal + 8
    }

    mutating func diskOp(_ op: DiskOperation, _ purpose: DiskPurpose) {
        if diskPurpose.count >= diskOperationLimit {
            invariantViolated("more than \(diskOperationLimit) disk operations in flight")
        }
        let t = nextToken
        nextToken += 1
        diskPurpose[t] = purpose
        emit(.disk(token: t, op))
    }

    mutating func nextSeq() -> UInt32 {
        link?.packetSeq &+= 1
        return link?.packetSeq ?? 0
    }

    var myStateWord: StateWord {
        var w = StateWord(role: role, peer: peerRole, conn: conn, disk: disk, pdsk: peerDisk)
        if userPaused { w.raw |= 1 << 20 }  // user_isp
        if peerPaused { w.raw |= 1 << 19 }  // peer_isp
        return w
    }

    mutating func sendState() { if link != nil { send(.state(myStateWord)) } }

    mutating func sendUUIDs() {
        var flags: UInt64 = 0
        if discardMyData { flags |= UUIDSet.flagDiscardMyData }
        sentBitsSet = bitmap.setCount
        if persistent.crashedPrimary { flags |= UUIDSet.flagCrashedPrimary }
        if disk == .inconsistent { flags |= UUIDSet.flagInconsistent }
        send(.uuids(UUIDSet(current: persistent.current, bitmap: persistent.bitmap, history0: persistent.history0,
                            history1: persistent.history1, bitsSet: bitmap.setCount, flags: flags)))
    }

    /// A fresh random-looking UUID derived deterministically from the engine's inputs, so a
    /// simulation run replays exactly; the daemon mixes real randomness in through `entropy`.
    mutating func newUUID() -> UInt64 {
        var x = persistent.current &+ 0x9E37_79B9_7F4A_7C15 &+ nowMs &* 0xBF58_476D_1CE4_E5B9 &+ entropy
        x ^= x >> 31; x &*= 0x94D0_49BB_1331_11EB; x ^= x >> 29
        entropy = x
        return (x & ~1) | (role == .primary ? 1 : 0)
    }

    /// Extra randomness for UUIDs (set by the daemon from the system's generator).
    public var entropy: UInt64 = 0

    /// drbd_uuid_new_current: the old current UUID moves to the bitmap slot.
    mutating func newCurrentUUID() {
        if persistent.bitmap != 0 { log("bm UUID was already set") }
        // Bit 0 comes along: it says this node was Primary when the generation ended (the
        // after-sb policies tell the older primary from the younger by it).
        persistent.bitmap = persistent.current
        persistent.current = newUUID()
        persist()
    }

    mutating func fail(_ reason: String, standAlone: Bool = false) {
        lastError = reason
        log(reason)
        if link != nil { emit(.dropLink(reason: reason)) }
        onLinkLost(reason)
        if standAlone { conn = .standAlone }
    }

    /// `down` waits for the writes in flight, then for the bitmap to be written back.
    mutating func checkDrained() {
        guard let token = draining, requests.isEmpty, flushWaiters.isEmpty, inbound.idle else { return }
        if !bitmap.dirtyPages.isEmpty { writeBackBitmap() }
        guard lane.idle || disk <= .diskless else { return }
        draining = nil
        emit(.adminDone(token: token, error: nil))
    }
}

/// What a pending disk operation was for.
enum DiskPurpose: Sendable {
    case metaData(seq: UInt64)
    case appWrite(request: UInt64)
    case appFlush(id: UInt64)
    case peerWrite(generation: UInt64, ack: PacketCommand?, sector: UInt64, blockID: UInt64, size: UInt32, clearsBits: Bool)
    case inboundFlush(generation: UInt64)
    case appRead(id: UInt64, offset: UInt64, length: UInt64)
    case peerDataRead(generation: UInt64, sector: UInt64, size: UInt32, blockID: UInt64)
    case resyncRead(generation: UInt64, sector: UInt64, size: UInt32, blockID: UInt64)
    case resyncWrite(generation: UInt64, sector: UInt64)
    case resyncFlush(generation: UInt64)
    /// Verify: this node's block for a comparison (VerifyS), or for the peer's digest (VerifyT).
    case verifyRead(generation: UInt64, sector: UInt64, size: UInt32, kind: VerifyReadKind)
    /// csums-alg: the SyncTarget reads its block to send its digest; the SyncSource reads its
    /// block to compare with the target's digest.
    case csumRead(generation: UInt64, sector: UInt64, size: UInt32)
    case csumSourceRead(generation: UInt64, sector: UInt64, size: UInt32, blockID: UInt64, digest: [UInt8])
    /// The flush before an EBS snapshot (everything before the mark durable).
    case snapshotFlush(id: UInt64)
}

/// A read waiting for local writes in flight on its blocks; `locked`: it holds read locks.
struct WaitingRead: Sendable {
    var sector: UInt64
    var size: UInt32
    var purpose: DiskPurpose
    var locked: Bool
}

/// An application write in the transfer log.
struct Request: Sendable {
    var appID: UInt64
    var offset: UInt64
    var length: UInt64
    /// The activity-log extent the request lies in (requests never cross an extent).
    var extent: UInt32
    /// What to write, until the request is issued (once its extent is durable in the log).
    var pending: PendingOp?
    /// The request holds its extent in the activity log.
    var holdsExtent = false
    /// The request is in the transfer log (it may wait for its extent).
    var logged = false
    /// Its bytes count in apInFlightBytes until its epoch is acknowledged.
    var countsInFlight = false
    var localDone = false
    var localError: String?
    /// The peer took the write as the protocol confirms it (sent for A, received for B,
    /// written for C): a local error alone does not fail the application's write then.
    var peerWrote = false
    /// Issued while this node's disk was not UpToDate (restoring, after a pass_on error, or
    /// detached): its local copy may be overwritten by the resync or is not there, so only the
    /// peer's disk counts. It completes on the peer's write ack (or its epoch's barrier ack),
    /// whatever the protocol, and fails if the link goes before either.
    var needsPeerDisk = false
    /// Waiting for P_RECV_ACK (protocol B) or P_WRITE_ACK (protocol C).
    var peerPending = false
    var completed = false
    /// Sent to the peer in this epoch; nil if not replicated.
    var epoch: UInt32?
    var barrierAcked = false
    var sentAtMs: UInt64 = 0
    /// When the application was told the write was done (for the replication lag's age).
    var completedAtMs: UInt64 = 0
    /// Written by a restoring Primary: its blocks are in restoreWriteBlocks until retired.
    var holdsRestoreBlocks = false
}

/// What a tracked send was for.
enum SendPurpose: Sendable {
    /// Protocol A: the request completes once its packet left.
    case replicated(request: UInt64)
    /// A resync reply: its bytes count against max-buffers until it left.
    case resyncReply(bytes: Int, generation: UInt64)
}

/// max-buffers on the receiving side: bytes of what the peer sent and this node has not
/// finished with (peer writes on their way to the disk, packets held behind a barrier, resync
/// reads and their replies until they left). Over the limit, the data socket is not read.
struct ReceiveBudget: Sendable {
    var peerWriteBytes = 0
    var queuedBytes = 0
    var resyncReplyBytes = 0
    var paused = false
    var total: Int { peerWriteBytes + queuedBytes + resyncReplyBytes }

    /// What a received packet counts: its payload and a fixed overhead.
    static func cost(_ p: Packet) -> Int {
        if case .data(_, _, _, let payload) = p { return payload.count + QueueLimits.packetOverhead }
        if case .compressedResyncReply(_, let size, _) = p { return Int(size) + QueueLimits.packetOverhead }
        if case .compressedData(_, let size, _) = p { return Int(size) + QueueLimits.packetOverhead }
        return QueueLimits.packetOverhead
    }
}

/// An application request's operation before it is issued.
enum PendingOp: Sendable {
    case write(data: [UInt8], fua: Bool)
    case zero(discard: Bool, fua: Bool)
}

struct FlushWaiter: Sendable {
    var id: UInt64
    var localDone = false
    /// The last epoch that must be barrier-acked by the peer (protocol C).
    var epoch: UInt32?
}

/// The peer connection as the engine sees it after the transport's handshake.
struct LinkState: Sendable {
    var agreedVersion: Int
    var featureFlags: UInt32
    var resolveConflicts: Bool
    var packetSeq: UInt32 = 0
    var lastReceiveMs: UInt64
    var pingSentMs: UInt64?
    var peerUUIDs: UUIDs?
    var peerBitsSet: UInt64 = 0
    var peerUUIDFlags: UInt64 = 0
    var peerSizes: Sizes?
    /// The peer's resync controller values (P_SYNC_PARAM): as in DRBD, the receiver adopts
    /// them, so they drive this node's resync when it is the SyncTarget.
    var peerController: ResyncController.Parameters?
}

/// The secondary's receiving side: the current epoch and the barrier being completed.
struct InboundState: Sendable {
    var pending = 0
    var count: UInt32 = 0
    /// A P_BARRIER whose epoch is being completed and flushed; packets after it wait.
    var closing: (number: UInt32, count: UInt32, flushIssued: Bool)?
    /// A peer write met a verify read in flight on its blocks: it and what follows wait.
    var waitingForRead = false
    /// P_SIZES of a resizing peer: what follows waits until this node looked at its own device.
    var waitingForBacking = false
    /// A snapshot is being taken at an epoch boundary: what follows waits.
    var waitingForSnapshot = false
    /// The number of the last barrier whose epoch is on the disk.
    var lastBarrier: UInt32 = 0
    var queued: [Packet] = []
    var idle: Bool { pending == 0 && closing == nil && queued.isEmpty && !waitingForRead && !waitingForBacking && !waitingForSnapshot }
}
