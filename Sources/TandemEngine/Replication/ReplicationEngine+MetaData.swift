import TandemCodecs

/// The meta-data writes in flight and waiting: the engine issues them one at a time, in order,
/// so what it wrote last is what is on disk, whatever order the disk completes other I/O in.
struct MetaDataLane: Sendable {
    var queue: [(seq: UInt64, op: MetaDataOperation)] = []
    /// The write in flight, and the bitmap pages it carries (none for other writes).
    var inFlight: (token: UInt64, seq: UInt64, pages: Int)?
    var nextSeq: UInt64 = 1
    /// Every operation up to this one is durable.
    var doneSeq: UInt64 = 0
    var idle: Bool { inFlight == nil && queue.isEmpty }
    /// At most this many operations wait (a handful per request in flight; the requests are bounded).
    static let limit = 1 << 16
}

/// The activity log as the write path uses it: which requests wait for a slot or for the
/// transaction that makes their extent hot, and which extents are hot in memory but not yet
/// durable.
struct ActivityLogGate: Sendable {
    var log: ActivityLog
    /// Extents made hot whose transaction is not yet durable: the lane operation that makes them so.
    var durableAt: [UInt32: UInt64] = [:]
    /// Requests issued once the lane has completed the given operation, in arrival order.
    var waitingForTransaction: [(rid: UInt64, seq: UInt64)] = []
    /// Requests that found every slot held by writes in flight, in arrival order.
    var waitingForSlot: [UInt64] = []
    /// A request that held a slot ended while others wait for one.
    var slotsMayHaveFreed = false
    /// When the engine last said in the log that writes wait for a slot.
    var lastWaitLogMs: UInt64?
    /// When each hot extent was last taken by a write.
    var lastUsedMs: [UInt32: UInt64] = [:]
    /// An extent no write took for this long leaves the log (its bits and data made durable
    /// first), so a crash after a quiet spell resyncs only what was written recently.
    static let idleMs: UInt64 = 10_000
}

/// Meta-data as the engine owns it (DRBD's rules, reference §4): a request's activity-log
/// extent is hot and durable before its data reaches the disk or the peer, and held until the
/// write can no longer be lost; an extent leaves the log only after its bitmap page is durable;
/// changed bitmap pages are written back lazily; any failed meta-data write detaches the disk.
extension ReplicationEngine {
    // MARK: the lane

    @discardableResult
    mutating func enqueueMeta(_ op: MetaDataOperation) -> UInt64 {
        let seq = lane.nextSeq
        lane.nextSeq += 1
        if lane.queue.count >= MetaDataLane.limit {
            invariantViolated("more than \(MetaDataLane.limit) meta-data writes queued")
        }
        lane.queue.append((seq, op))
        pumpMeta()
        return seq
    }

    mutating func pumpMeta() {
        guard lane.inFlight == nil, !lane.queue.isEmpty, disk > .diskless || detachMarkQueued else { return }
        let (seq, op) = lane.queue.removeFirst()
        let token = nextToken
        nextToken += 1
        diskPurpose[token] = .metaData(seq: seq)
        let pages = if case .bitmapPages(let p, _) = op { p.count } else { 0 }
        lane.inFlight = (token, seq, pages)
        emit(.metaData(token: token, op))
    }

    mutating func onMetaDataDone(_ seq: UInt64, _ result: DiskResult) {
        guard lane.inFlight?.seq == seq else {
            invariantViolated("completion of meta-data write \(seq), which is not the one in flight")
            return
        }
        lane.inFlight = nil
        if case .failed(let why) = result {
            detach("meta-data write failed: \(why)")
            return
        }
        lane.doneSeq = seq
        releaseWritesAfterBits(upTo: seq)
        if !gate.durableAt.isEmpty { gate.durableAt = gate.durableAt.filter { $0.value > seq } }
        if !gate.waitingForTransaction.isEmpty {
            let ready = gate.waitingForTransaction.filter { $0.seq <= seq }
            gate.waitingForTransaction.removeAll { $0.seq <= seq }
            for w in ready { issue(w.rid) }
        }
        if let r = resync, let at = r.bitmapDurableAt, at <= seq {
            resync?.bitmapDurableAt = nil
            requestResyncBlocks()
        }
        pumpMeta()
    }

    /// The superblock gets the current UUIDs and flags. A superblock write not yet issued takes
    /// the newer state instead of queueing a second one.
    mutating func persist() {
        guard disk > .diskless else { return }
        if let i = lane.queue.firstIndex(where: { if case .superblock = $0.op { true } else { false } }) {
            lane.queue[i].op = .superblock(persistent)
        } else {
            enqueueMeta(.superblock(persistent))
        }
    }

    // MARK: the bitmap

    /// Pages whose change is not durable yet: changed since captured, or in a write not done.
    var bitmapPagesUnwritten: Int {
        let queued = lane.queue.reduce(0) { n, e in
            if case .bitmapPages(let pages, _) = e.op { n + pages.count } else { n }
        }
        return bitmap.dirtyPages.count + queued + (lane.inFlight?.pages ?? 0)
    }

    /// Sets the bits of a byte range (partial blocks included).
    mutating func setBits(offset: UInt64, length: UInt64) {
        let r = OutOfSyncBitmap.bits(coveringBytes: offset, length: length).clamped(to: 0..<bitmap.bitCount)
        guard !r.isEmpty else { return }
        noteBitsSet(bitmap.set(r))
    }

    /// Clears bits of whole 4 KiB blocks inside the byte range.
    mutating func clearBits(offset: UInt64, length: UInt64) {
        let lo = (offset + 4095) / 4096, hi = min((offset + length) / 4096, bitmap.bitCount)
        guard lo < hi else { return }
        clearBitRange(lo..<hi)
    }

    /// Clears bits; their pages are written back only after a data flush.
    mutating func clearBitRange(_ r: Range<UInt64>) {
        guard bitmap.clear(r) > 0 else { return }
        let first = Int(r.lowerBound / OutOfSyncBitmap.bitsPerPage), last = Int((r.upperBound - 1) / OutOfSyncBitmap.bitsPerPage)
        for p in first...last { clearedPages.insert(p) }
    }

    /// Many bits set at once outside the activity log (a full sync, the peer's bitmap) are
    /// written back at once rather than at the next writeback.
    mutating func noteBitsSet(_ added: UInt64) {
        if added > 1024 { writeBackBitmap() }
    }

    /// Writes changed bitmap pages (all, or those of `pages` that changed), as they are now.
    /// `flushData`: the data area is flushed first even if no page changed.
    @discardableResult
    mutating func writeBackBitmap(pages: Set<Int>? = nil, flushData: Bool = false) -> UInt64? {
        guard disk > .diskless else { return nil }
        let chosen = pages.map { $0.intersection(bitmap.dirtyPages) } ?? bitmap.dirtyPages
        guard !chosen.isEmpty || flushData else { return nil }
        let sorted = chosen.sorted()
        let flushFirst = flushData || !clearedPages.isDisjoint(with: chosen)
        clearedPages.subtract(chosen)
        let captured = sorted.map { BitmapPage(index: $0, bytes: bitmap.pageBytes($0)) }
        bitmap.markPagesWritten(sorted)
        lastBitmapWritebackMs = nowMs
        return enqueueMeta(.bitmapPages(captured, dataFlushFirst: flushFirst))
    }

    /// The periodic writeback, from the tick.
    mutating func bitmapWritebackTick() {
        let interval = resync != nil ? min(settings.resyncBitmapWritebackMs, settings.bitmapWritebackMs) : settings.bitmapWritebackMs
        guard !bitmap.dirtyPages.isEmpty, nowMs &- lastBitmapWritebackMs >= interval else { return }
        let queued = lane.queue.contains { if case .bitmapPages = $0.op { true } else { false } }
        if !queued { writeBackBitmap() }
    }

    // MARK: the activity log

    /// A request goes to the disk and the peer only once its extent is hot and durable in the
    /// activity log; it holds the extent from now until it is retired.
    mutating func admit(_ rid: UInt64) {
        guard let r = requests[rid] else { return }
        // No disk, no activity log: the write goes to the peer at once.
        if disk <= .diskless { issue(rid); return }
        // Writes that need a new slot queue behind those already waiting (no overtaking for
        // slots); writes to a hot extent go on at once.
        if !gate.waitingForSlot.isEmpty && !gate.log.contains(r.extent) { waitForSlot(rid); return }
        if !activate(rid) { waitForSlot(rid) }
    }

    mutating func waitForSlot(_ rid: UInt64) {
        gate.waitingForSlot.append(rid)
        if gate.waitingForSlot.count == 1, gate.lastWaitLogMs.map({ nowMs &- $0 >= 10_000 }) ?? true {
            gate.lastWaitLogMs = nowMs
            log("activity log: all \(gate.log.slotCount) slots are held by writes in flight; writes wait for one (al-extents)")
        }
    }

    /// Makes the request's extent hot (evicting an extent no write holds), holds it, and issues
    /// the request now or when the transaction that makes the extent hot is durable. False when
    /// every slot is held.
    mutating func activate(_ rid: UInt64) -> Bool {
        guard let e = requests[rid]?.extent else { return true }
        let plan: ActivityLog.Plan
        do { plan = try gate.log.plan([e]) } catch { return false }
        if !plan.isEmpty {
            for ev in plan.evicted where gate.log.isPinned(ev) || gate.durableAt[ev] != nil {
                invariantViolated("the activity log would evict extent \(ev), which a write in flight holds")
                return false
            }
            // Before the transaction that drops extents from the log, their bits are durable,
            // and so is every data write that completed in them (DRBD's md-flushes: the
            // transaction is written with a preflush): writes the peer acknowledged may be in
            // the local disk's cache only, and after a crash nothing would mark them.
            if !plan.evicted.isEmpty {
                writeBackBitmap(pages: Set(plan.evicted.map { OutOfSyncBitmap.page(ofExtent: $0) }), flushData: true)
            }
            var last: UInt64 = 0
            for t in gate.log.commit(plan) { last = enqueueMeta(.activityLog(t)) }
            for u in plan.updates { gate.durableAt[u.extent] = last }
            for ev in plan.evicted { gate.lastUsedMs[ev] = nil }
        }
        gate.log.pin(e)
        gate.lastUsedMs[e] = nowMs
        requests[rid]?.holdsExtent = true
        if let seq = gate.durableAt[e] { gate.waitingForTransaction.append((rid, seq)) } else { issue(rid) }
        return true
    }

    /// Once a second: extents no write took for `idleMs` leave the log, in one transaction after
    /// their bitmap pages and the data are durable (as an eviction). Not while writes wait for
    /// slots (they take them) or other meta-data writes are queued.
    mutating func retireIdleExtents() {
        guard disk > .diskless, lane.idle, gate.waitingForSlot.isEmpty else { return }
        let idle = gate.log.hotExtents.filter { e in
            !gate.log.isPinned(e) && gate.durableAt[e] == nil && nowMs &- (gate.lastUsedMs[e] ?? 0) >= ActivityLogGate.idleMs
        }.prefix(ActivityLogTransaction.updatesPerTransaction)
        guard !idle.isEmpty else { return }
        let plan = gate.log.planRemoval(Array(idle))
        guard !plan.isEmpty else { return }
        writeBackBitmap(pages: Set(plan.evicted.map { OutOfSyncBitmap.page(ofExtent: $0) }), flushData: true)
        for t in gate.log.commit(plan) { enqueueMeta(.activityLog(t)) }
        for e in plan.evicted { gate.lastUsedMs[e] = nil }
    }

    /// Gives the waiting requests the slots that freed up, in arrival order.
    mutating func wakeSlotWaiters() {
        gate.slotsMayHaveFreed = false
        while let rid = gate.waitingForSlot.first {
            guard requests[rid] != nil else { gate.waitingForSlot.removeFirst(); continue }
            guard activate(rid) else { break }
            gate.waitingForSlot.removeFirst()
        }
    }

    /// The request can no longer be lost (its epoch is acknowledged, its blocks are marked out
    /// of sync, or it failed before reaching the disk): it lets go of its extent.
    mutating func retire(_ rid: UInt64) {
        guard let r = requests.removeValue(forKey: rid) else { return }
        if r.logged { loggedRequests -= 1 }
        if r.holdsRestoreBlocks { releaseRestoreWrite(r) }
        if r.holdsExtent {
            if !gate.log.unpin(r.extent) { invariantViolated("request \(rid) ended holding extent \(r.extent), which had no hold") }
            if !gate.waitingForSlot.isEmpty { gate.slotsMayHaveFreed = true }
        }
    }

    // MARK: detaching

    /// DRBD detaches the disk on any meta-data I/O error, whatever on-io-error says, and on
    /// data I/O errors under on-io-error detach: the node can no longer vouch for what its disk
    /// holds. Writes already issued finish; nothing more reaches the disk. A Primary with an
    /// UpToDate peer goes on through it: writes waiting for the activity log go to the peer
    /// alone. Otherwise they fail (they were never issued). A resync or verify cannot go on.
    mutating func detach(_ why: String) {
        guard disk > .diskless else { return }
        let reason = "\(why); disk detached"
        lastError = reason
        diskError = reason
        disk = .diskless
        lane.queue.removeAll()
        gate.durableAt.removeAll()
        // The last meta-data write, if the meta-data can still be written: the disk is
        // Inconsistent, so when it comes back (`up`) it is never promoted or made a sync
        // source before it resynced from the peer (its data is older than the peer's).
        if persistent.consistent {
            var p = persistent
            p.consistent = false
            detachMarkQueued = true
            enqueueMeta(.superblock(p))
        }
        failWritesAfterBits(reason)
        let throughPeer = role == .primary && servedThroughPeer && resync == nil && verify == nil
        logState(throughPeer ? "\(reason): I/O goes on through the peer, whose disk is UpToDate" : reason)
        let waitingForLog = gate.waitingForSlot + gate.waitingForTransaction.map(\.rid)
        gate.waitingForSlot.removeAll()
        gate.waitingForTransaction.removeAll()
        if throughPeer {
            // The peer learns first that this disk is gone, so it marks these writes too.
            sendState()
            for rid in waitingForLog { issue(rid) }
            return
        }
        let unissued = transferLogWaiting + waitingForLog
        transferLogWaiting.removeAll()
        for rid in unissued { failUnissued(rid, reason) }
        if resync != nil || verify != nil {
            fail("resync or verify aborted: \(reason)")
            return
        }
        if role != .primary && link != nil {
            // Writes this node acknowledged but has not flushed (their epoch's barrier ack is
            // not sent) may be lost from the detached disk's cache: the link goes, so the
            // Primary marks every write whose epoch is not acknowledged, as when a Secondary
            // crashes; it reconnects to find this node Diskless.
            fail("the disk was detached: reconnecting so the peer marks what this node had not flushed")
            return
        }
        sendState()
    }

    /// A request that never reached the disk completes with an error.
    mutating func failUnissued(_ rid: UInt64, _ why: String) {
        guard var r = requests[rid], r.pending != nil else { return }
        r.pending = nil
        r.localDone = true
        r.localError = why
        r.peerPending = false
        requests[rid] = r
        maybeComplete(rid)
    }

    // MARK: invariants

    /// A rule the engine relies on is broken: a bug, never the peer's doing (what a peer gets
    /// wrong is a protocol error). Debug builds stop here; release builds drop the connection
    /// with the reason rather than go on from a state the engine cannot vouch for.
    mutating func invariantViolated(_ rule: String) {
        assertionFailure("invariant: \(rule)")
        violations += 1
        fail("internal error: \(rule)")
    }
}
