import TandemCodecs

/// Where a bitmap transfer from the peer stands.
struct BitmapReceive: Sendable {
    var wordOffset = 0
    var bitOffset: UInt64 = 0
}

/// A running resync. The SyncTarget pulls: it requests runs of out-of-sync blocks, the
/// SyncSource reads and replies, the target writes and acks, both clear the bits.
struct ResyncState: Sendable {
    var isSource: Bool
    var totalBits: UInt64
    var cursor: UInt64 = 0
    /// In-flight requests by start sector: size and the 4 KiB blocks an application write
    /// overwrote meanwhile (the reply must not put older data over them).
    var inFlight: [UInt64: (size: UInt32, overwritten: Set<UInt64>, writesLeft: Int)] = [:]
    var inFlightBytes = 0
    /// The 4 KiB blocks of the requests in flight (a candidate is checked in constant time).
    var inFlightBlocks = Set<UInt64>()
    /// The target's resync extents (DRBD's BM_EXT, 16 MiB each) with requests in flight, and
    /// how many: a resync works in at most `extentLimit` of them at once and, unlike
    /// application writes, never takes activity-log slots (its bits stay set until the data is
    /// written, so a crash loses nothing without the log).
    var extents: [UInt64: Int] = [:]
    static let bitsPerExtent: UInt64 = 4096
    static let extentLimit = 61
    /// The target's controller, the 4 KiB blocks its last step allows still, the sectors that
    /// arrived since that step, and when it ran.
    var controller: ResyncController?
    var throttle: ResyncThrottle?
    var allowanceBlocks = 0
    var arrivedSectors = 0
    var lastStepMs: UInt64
    var startMs: UInt64 = 0

    /// DRBD's summary: "(total N sec; M K/sec)".
    func summary(nowMs: UInt64) -> String {
        let seconds = max(1, (nowMs &- startMs) / 1000)
        return "(total \(seconds) sec; \(totalBits * 4 / seconds) K/sec)"
    }
    var finalFlushIssued = false
    /// csums-alg: the target sends digests of its blocks (P_CSUM_RS_REQUEST) instead of asking
    /// for the data.
    var useCsums = false
    /// The target's bitmap write that must be durable before it requests blocks.
    var bitmapDurableAt: UInt64?
    /// The source has seen the peer as SyncTarget (or PausedSyncT) in a P_STATE.
    var peerSeenAsTarget = false
}

/// Bitmap exchange (plain P_BITMAP chunks out; plain and RLE in), sync UUIDs, resync requests
/// and replies, and the end of a resync with DRBD's UUID updates (reference §3.3, §3.7, §5.1).
extension ReplicationEngine {
    var wordsPerPacket: Int { ((WireLimits.socketBufferSize - (link.map { $0.agreedVersion >= 100 ? 16 : 8 } ?? 16)) / 8) }
    var bmWords: Int { Int((bmBits + 63) / 64) }

    /// Sends the whole bitmap as plain chunks, ended by a zero-length P_BITMAP.
    mutating func sendBitmap() {
        var w = 0
        let per = wordsPerPacket
        let words = bitmap.words
        while true {
            let n = min(per, bmWords - w)
            var bytes = [UInt8](repeating: 0, count: n * 8)
            for i in 0..<n { ByteIO.writeLE(words[w + i], into: &bytes, at: i * 8) }
            send(.bitmap(bytes))
            if n == 0 { break }
            w += n
        }
    }

    mutating func receiveBitmap(_ p: Packet) {
        guard conn == .wfBitMapS || conn == .wfBitMapT else {
            fail("protocol error: \(p.command) while \(conn)")
            return
        }
        var done = false
        switch p {
        case .bitmap(let bytes):
            let want = min(wordsPerPacket, bmWords - bitmapReceive.wordOffset)
            guard bytes.count == want * 8 else {
                fail("protocol error: P_BITMAP of \(bytes.count) bytes, expected \(want * 8)")
                return
            }
            var words: [UInt64] = []
            words.reserveCapacity(want)
            for i in 0..<want { words.append(ByteIO.readLE(bytes, i * 8)) }
            noteBitsSet(bitmap.merge(words: words, at: bitmapReceive.wordOffset))
            bitmapReceive.wordOffset += want
            bitmapReceive.bitOffset = UInt64(bitmapReceive.wordOffset) * 64
            done = want == 0
        case .compressedBitmap(let enc, let code):
            let decoded: (firstSet: Bool, runs: [UInt64])
            do { decoded = try BitmapRLE.decode(encoding: enc, code: code) } catch {
                fail("protocol error: \(error)")
                return
            }
            var set = decoded.firstSet
            var at = bitmapReceive.bitOffset
            for run in decoded.runs {
                guard at + run <= bmBits else { fail("protocol error: compressed bitmap overruns the device"); return }
                if set { noteBitsSet(bitmap.set(at..<(at + run))) }
                at += run
                set.toggle()
            }
            bitmapReceive.bitOffset = at
            bitmapReceive.wordOffset = Int(at / 64)
            done = at == bmBits
        default: return
        }
        guard done else { return }
        log("received the peer's bitmap: \(bitmap.setCount) bits out of sync")
        if conn == .wfBitMapT {
            sendBitmap()
            conn = .wfSyncUUID
            sendState()
        } else {
            startResyncAsSource()
        }
    }

    mutating func startResyncAsSource() {
        let b = persistent.bitmap & ~1
        let syncUUID = (b != 0 && b != UUIDCompare.justCreated) ? b &+ UUIDCompare.newBitmapOffset : newUUID() & ~1
        if persistent.bitmap != 0 {
            persistent.history1 = persistent.history0
            persistent.history0 = persistent.bitmap
        }
        persistent.bitmap = syncUUID
        persist()
        send(.syncUUID(syncUUID))
        conn = .syncSource
        applyPause()
        peerDisk = .inconsistent
        resync = ResyncState(isSource: true, totalBits: bitmap.setCount, lastStepMs: nowMs, startMs: nowMs)
        logState("Began resync as SyncSource (will sync \(bitmap.setCount * 4) KB)")
        sendState()
    }

    mutating func onSyncUUID(_ u: UInt64) {
        if conn == .startingSyncT || (conn == .connected && awaitsReplyToStartSyncAsTarget) {
            // The peer started first; this node's all-set bitmap is not durable yet. Or the
            // peer granted this node's invalidate (or restore) and went on at once: its
            // P_SYNC_UUID (data socket) overtook its reply (meta socket). It waits for the
            // reply, as the kernel's receive_sync_uuid waits for WFSyncUUID.
            pendingSyncUUID = u
            return
        }
        guard conn == .wfSyncUUID || conn == .behind else { fail("protocol error: P_SYNC_UUID while \(conn)"); return }
        persistent.current = u
        persistent.bitmap = 0
        persistent.consistent = false
        persist()
        conn = .syncTarget
        applyPause()
        disk = .inconsistent
        peerDisk = .upToDate
        let parameters = link?.peerController ?? settings.controller
        resync = ResyncState(isSource: false, totalBits: bitmap.setCount, controller: ResyncController(parameters),
                             throttle: ResyncThrottle(minRateKiB: settings.cMinRateKiB), lastStepMs: nowMs, startMs: nowMs)
        // As DRBD: digests first when csums-alg is set (both sides set the same one, checked at
        // the handshake), or with csums-after-crash-only only after the source crashed as Primary.
        let peerCrashed = (link?.peerUUIDFlags ?? 0) & UUIDSet.flagCrashedPrimary != 0
        resync?.useCsums = !settings.csumsAlg.isEmpty && (link?.agreedVersion ?? 0) >= 89
            && (!settings.csumsAfterCrashOnly || peerCrashed)
        logState("Began resync as SyncTarget (will sync \(bitmap.setCount * 4) KB\(resync?.useCsums == true ? ", comparing \(settings.csumsAlg) digests first" : ""))")
        sendState()
        // The bits to resync (the peer's merged into ours) are durable before the first block
        // is requested: the source forgets a bit once this node acknowledges its block, and a
        // crash here before the block is flushed must still find the bit set (only a data flush
        // lets a cleared bit reach the disk).
        let durableAt = writeBackBitmap()
        resync?.bitmapDurableAt = durableAt
        resyncStep()
    }

    /// This node asked the peer to start a resync toward it (invalidate, restore) and has not
    /// had the answer yet.
    var awaitsReplyToStartSyncAsTarget: Bool {
        switch pendingAdmin?.command {
        case .invalidate?, .restore?: true
        default: false
        }
    }

    // MARK: target side

    /// Runs the resync controller every 100 ms of the engine's clock.
    mutating func resyncTick() {
        guard let r = resync, !r.isSource, conn == .syncTarget, nowMs &- r.lastStepMs >= ResyncController.stepMs else { return }
        resyncStep()
    }

    /// One controller step: what arrived since the last one in, the allowance for this one out.
    mutating func resyncStep() {
        guard resync?.isSource == false, resync?.controller != nil else { return }
        let now = nowMs
        let windowed = (link?.featureFlags ?? 0) & ConnectionFeatures.tandemPeer != 0
        changeResync { r in
            // A late tick (a stalled loop) counts as one step, not many: the controller plans in steps.
            r.lastStepMs = now
            if windowed {
                // Between Tandem nodes the step does not ration the resync: c-max-rate's share of
                // the step, refilled as requests complete, with max-buffers in flight.
                r.allowanceBlocks = Int(r.controller!.parameters.maxRateKiB) * 1024 * Int(ResyncController.stepMs) / 1000 / 4096
            } else {
                r.allowanceBlocks = r.controller!.step(arrived: r.arrivedSectors) / 8
            }
            if r.throttle?.shouldSlowDown(arrived: r.arrivedSectors) == true { r.allowanceBlocks = 0 }
            r.arrivedSectors = 0
        }
        requestResyncBlocks()
    }

    /// Requests dirty blocks within the step's allowance and the max-buffers cap.
    mutating func requestResyncBlocks() {
        guard var r = resync, !r.isSource, conn == .syncTarget, link != nil,
              r.bitmapDurableAt.map({ lane.doneSeq >= $0 }) ?? true else { return }
        resync = nil  // r is the only copy while it changes (no copy of its tables)
        let maxBits = UInt64(maxBioBytes / 4096)
        // As DRBD: at most half of max-buffers in flight, so the source (whose reads and replies
        // count against its own max-buffers) is never pushed to its limit by one resync.
        let cap = settings.maxBuffers * 4096 / 2
        var requestedBlocks = 0
        var wrapped = false
        while r.inFlightBytes < cap && r.allowanceBlocks > 0 {
            // One pass over the bitmap at a time: bits behind the cursor (set again meanwhile)
            // are taken once the requests of this pass are all answered, so a call never
            // rescans blocks in flight.
            guard let start = bitmap.nextSet(from: r.cursor) else {
                if wrapped || r.cursor == 0 || !r.inFlight.isEmpty { break }
                r.cursor = 0; wrapped = true; continue
            }
            // Blocks in flight, and blocks a write of this (restoring Primary) node has not yet
            // delivered to the peer, are taken in a later pass.
            if r.inFlightBlocks.contains(start) || restoreWriteBlocks[start] != nil {
                r.cursor = start + 1
                continue
            }
            let region = start / ResyncState.bitsPerExtent
            if r.extents[region] == nil && r.extents.count >= ResyncState.extentLimit { break }
            var end = start + 1
            let extentEnd = (region + 1) * ResyncState.bitsPerExtent
            while end < bitmap.bitCount && end - start < maxBits && end < extentEnd && bitmap.isSet(end)
                    && !r.inFlightBlocks.contains(end) && restoreWriteBlocks[end] == nil { end += 1 }
            let sector = start * 8
            let size = UInt32(min((end - start) * 4096, sizeBytes - start * 4096))
            r.inFlight[sector] = (size, [], 0)
            r.inFlightBytes += Int(size)
            for b in start..<end { r.inFlightBlocks.insert(b) }
            r.extents[region, default: 0] += 1
            let blocks = Int(end - start)
            r.allowanceBlocks -= blocks
            requestedBlocks += blocks
            r.cursor = end
            if r.useCsums {
                // csums-alg: this node's digest of the block goes first; the data only if it differs.
                diskOp(.read(offset: sector * 512, length: Int(size)), .csumRead(generation: linkGeneration, sector: sector, size: size))
            } else {
                send(.blockRequest(.rsDataRequest, BlockRequest(sector: sector, blockID: BlockRequest.syncerID, size: size), digest: []))
            }
        }
        r.controller?.requested(requestedBlocks * 8)
        resync = r
        maybeFinishResyncAsTarget()
    }

    /// An application write reached the target while a resync request for the same blocks
    /// may be in flight: those blocks must keep the newer data.
    mutating func resyncNoteOverwrite(offset: UInt64, length: UInt64) {
        guard var r = resync, !r.isSource else { return }
        resync = nil
        let lo = offset / 4096, hi = (offset + length + 4095) / 4096
        // Most writes touch no block in flight.
        guard (lo..<hi).contains(where: { r.inFlightBlocks.contains($0) }) else { resync = r; return }
        let hit = r.inFlight.compactMap { (s, v) -> (UInt64, UInt64)? in
            let b = s / 8, e = b + (UInt64(v.size) + 4095) / 4096
            return lo < e && b < hi ? (s, b) : nil
        }
        for (s, b) in hit {
            let e = b + (UInt64(r.inFlight[s]!.size) + 4095) / 4096
            for blk in max(lo, b)..<min(hi, e) { r.inFlight[s]!.overwritten.insert(blk) }
        }
        resync = r
    }

    /// Changes the running resync in place: a copy of its tables would cost as much as the
    /// requests in flight, on every request.
    @discardableResult
    mutating func changeResync<T>(_ body: (inout ResyncState) -> T) -> T? {
        guard resync != nil else { return nil }
        return body(&resync!)
    }

    mutating func onResyncData(_ h: DataHeader, _ data: [UInt8]) {
        guard let r = resync, !r.isSource, let v = r.inFlight[h.sector], Int(v.size) == data.count else {
            fail("protocol error: unexpected P_RS_DATA_REPLY for sector \(h.sector)")
            return
        }
        // Write the blocks no newer application write covered, as contiguous runs.
        let first = h.sector / 8, count = (UInt64(data.count) + 4095) / 4096
        var runs: [(UInt64, UInt64)] = []
        var b = first
        while b < first + count {
            if v.overwritten.contains(b) { b += 1; continue }
            var e = b + 1
            while e < first + count && !v.overwritten.contains(e) { e += 1 }
            runs.append((b, e)); b = e
        }
        changeResync { r in
            r.inFlight[h.sector]!.writesLeft = runs.count
            r.arrivedSectors += data.count / 512
        }
        for (s, e) in runs {
            let lo = Int((s - first) * 4096), hi = min(Int((e - first) * 4096), data.count)
            diskOp(.write(offset: s * 4096, data: Array(data[lo..<hi]), fua: false),
                   .resyncWrite(generation: linkGeneration, sector: h.sector))
        }
        if runs.isEmpty { finishResyncRequest(h.sector) }
    }

    mutating func onResyncWriteDone(_ gen: UInt64, _ result: DiskResult, _ sector: UInt64) {
        guard gen == linkGeneration, let v = resync?.inFlight[sector] else { return }
        if case .failed(let why) = result {
            // pass_on keeps the disk: the link goes and the resync starts again on reconnect.
            localIOError(.write(offset: sector * 512, length: UInt64(v.size)), why)
            if link != nil { fail("local disk write failed during resync: \(why)") }
            return
        }
        let left = changeResync { r -> Int in
            r.inFlight[sector]!.writesLeft -= 1
            return r.inFlight[sector]!.writesLeft
        }
        if left == 0 { finishResyncRequest(sector) }
    }

    mutating func finishResyncRequest(_ sector: UInt64, ack: Bool = true) {
        let removed = changeResync { r -> (size: UInt32, overwritten: Set<UInt64>, writesLeft: Int)? in
            guard let v = r.inFlight.removeValue(forKey: sector) else { return nil }
            r.inFlightBytes -= Int(v.size)
            for b in (sector / 8)..<(sector / 8 + (UInt64(v.size) + 4095) / 4096) { r.inFlightBlocks.remove(b) }
            let region = sector / 8 / ResyncState.bitsPerExtent
            if let n = r.extents[region] { r.extents[region] = n > 1 ? n - 1 : nil }
            return v
        }
        guard let v = removed ?? nil else { return }
        let first = sector / 8, count = (UInt64(v.size) + 4095) / 4096
        for b in first..<(first + count) where !v.overwritten.contains(b) && b < bitmap.bitCount {
            clearBitRange(b..<(b + 1))
        }
        if ack {
            send(.blockAck(.rsWriteAck, BlockAck(sector: sector, blockID: BlockRequest.syncerID, size: v.size, seqNum: nextSeq())), .meta)
        }
        requestResyncBlocks()
    }

    /// When nothing is left, the resynced data is flushed before the disk is called UpToDate.
    mutating func maybeFinishResyncAsTarget() {
        guard var r = resync, !r.isSource, conn == .syncTarget, r.inFlight.isEmpty, !r.finalFlushIssued,
              bitmap.setCount == 0 else { return }
        r.finalFlushIssued = true
        resync = r
        diskOp(.flush, .resyncFlush(generation: linkGeneration))
    }

    mutating func onResyncFlushDone(_ gen: UInt64, _ result: DiskResult) {
        guard gen == linkGeneration, let r = resync, !r.isSource, r.finalFlushIssued, conn == .syncTarget else { return }
        if case .failed(let why) = result {
            localIOError(.flush, why)
            if link != nil { fail("local disk flush failed at the end of the resync: \(why)") }
            return
        }
        guard r.inFlight.isEmpty, bitmap.setCount == 0 else {
            resync?.finalFlushIssued = false
            requestResyncBlocks()
            return
        }
        // drbd_resync_finished on the target: take the source's UUIDs.
        if let p = link?.peerUUIDs {
            let mine = persistent.current
            persistent.bitmap = p.bitmap; persistent.history0 = p.history0; persistent.history1 = p.history1
            if persistent.bitmap != 0 { persistent.history1 = persistent.history0; persistent.history0 = persistent.bitmap }
            persistent.bitmap = mine & ~1
            persistent.current = (p.current & ~1) | (role == .primary ? 1 : 0)
            persistent.history1 = persistent.history0; persistent.history0 = persistent.bitmap; persistent.bitmap = 0
        }
        let summary = resync?.summary(nowMs: nowMs) ?? ""
        resync = nil
        conn = .connected
        disk = .upToDate
        persistent.consistent = true
        persistent.wasUpToDate = true
        persist()
        logState("Resync done \(summary) (target): disk UpToDate")
        sendUUIDs()
        sendState()
    }

    // MARK: source side

    mutating func onBlockRequest(_ cmd: PacketCommand, _ r: BlockRequest, digest: [UInt8] = []) {
        let offset = r.sector * 512
        guard offset <= sizeBytes, UInt64(r.size) <= sizeBytes - offset else {
            fail("protocol error: \(cmd) beyond the end of the device")
            return
        }
        guard r.size > 0, r.size % 512 == 0, r.size <= linkBioLimit else {
            fail("protocol error: \(cmd) of \(r.size) bytes (this link carries at most \(linkBioLimit) per packet)")
            return
        }
        switch cmd {
        case .rsDataRequest where disk == .upToDate:
            receiveBudget.resyncReplyBytes += Int(r.size)
            readAfterWrites(sector: r.sector, size: r.size,
                            purpose: .resyncRead(generation: linkGeneration, sector: r.sector, size: r.size, blockID: r.blockID))
        case .csumRSRequest where disk == .upToDate:
            guard let size = csumsDigestSize, !settings.csumsAlg.isEmpty else {
                fail("protocol error: P_CSUM_RS_REQUEST but csums-alg is not set here")
                return
            }
            guard digest.count == size else {
                fail("protocol error: P_CSUM_RS_REQUEST with a digest of \(digest.count) bytes; csums-alg \(settings.csumsAlg) gives \(size)")
                return
            }
            receiveBudget.resyncReplyBytes += Int(r.size)
            readAfterWrites(sector: r.sector, size: r.size,
                            purpose: .csumSourceRead(generation: linkGeneration, sector: r.sector, size: r.size, blockID: r.blockID, digest: digest))
        case .ovRequest where disk == .upToDate:
            onVerifyRequest(r)
        case .ovReply:
            onVerifyReply(r, digest: digest)
        case .rsDataRequest, .rsThinRequest, .csumRSRequest, .ovRequest:
            send(.blockAck(.negRSDReply, BlockAck(sector: r.sector, blockID: r.blockID, size: r.size, seqNum: nextSeq())), .meta)
        case .dataRequest:
            onPeerDataRequest(r)
        default:
            fail("unsupported \(cmd) from peer")
        }
    }

    func localWritesCover(sector: UInt64, size: UInt32) -> Bool {
        guard !localWriteBlocks.isEmpty else { return false }
        return (sector / 8..<(sector / 8 + (UInt64(size) + 4095) / 4096)).contains { localWriteBlocks[$0] != nil }
    }

    /// A read that must not overtake a local write issued before it: it waits for the writes
    /// in flight on its blocks.
    mutating func readAfterWrites(sector: UInt64, size: UInt32, purpose: DiskPurpose) {
        if localWritesCover(sector: sector, size: size) {
            readsWaitingForWrites.append(WaitingRead(sector: sector, size: size, purpose: purpose, locked: false))
        } else {
            diskOp(.read(offset: sector * 512, length: Int(size)), purpose)
        }
    }

    /// Reads whose blocks no local write is writing any more go to the disk, in order.
    mutating func startWaitingReads() {
        guard link != nil else { dropWaitingReads(); return }
        var still: [WaitingRead] = []
        for w in readsWaitingForWrites {
            if localWritesCover(sector: w.sector, size: w.size) { still.append(w); continue }
            diskOp(.read(offset: w.sector * 512, length: Int(w.size)), w.purpose)
        }
        readsWaitingForWrites = still
    }

    /// The link is gone: waiting reads are dropped (their answers would go nowhere) and give
    /// back their read locks.
    mutating func dropWaitingReads() {
        let dropped = readsWaitingForWrites
        readsWaitingForWrites = []
        for w in dropped where w.locked { releaseReadLocks(sector: w.sector, size: w.size) }
    }

    mutating func onResyncReadDone(_ gen: UInt64, _ result: DiskResult, _ sector: UInt64, _ size: UInt32, _ blockID: UInt64) {
        guard gen == linkGeneration, link != nil else { return }
        if readFailureEndsLink(result, sector: sector, size: size) { return }
        sendResyncReply(result, sector, size, blockID)
    }

    /// csums-alg on the SyncSource: a block whose digest matches the target's is in sync
    /// (P_RS_IS_IN_SYNC, both sides clear its bits); another goes as resync data.
    mutating func onCsumSourceReadDone(_ gen: UInt64, _ result: DiskResult, _ sector: UInt64, _ size: UInt32,
                                       _ blockID: UInt64, _ peerDigest: [UInt8]) {
        guard gen == linkGeneration, link != nil else { return }
        if readFailureEndsLink(result, sector: sector, size: size) { return }
        if case .data(let d) = result, d.count == Int(size), csumsDigest(d) == peerDigest {
            receiveBudget.resyncReplyBytes -= Int(size)
            resyncSameBytes += UInt64(size)
            clearBits(offset: sector * 512, length: UInt64(size))
            send(.blockAck(.rsIsInSync, BlockAck(sector: sector, blockID: blockID, size: size, seqNum: nextSeq())), .meta)
            return
        }
        sendResyncReply(result, sector, size, blockID)
    }

    /// csums-alg on the SyncTarget: its own block read, its digest goes in P_CSUM_RS_REQUEST
    /// (if the read failed, the block is asked for plainly).
    mutating func onCsumReadDone(_ gen: UInt64, _ result: DiskResult, _ sector: UInt64, _ size: UInt32) {
        guard gen == linkGeneration, link != nil, resync?.inFlight[sector] != nil else { return }
        if readFailureEndsLink(result, sector: sector, size: size) { return }
        let req = BlockRequest(sector: sector, blockID: BlockRequest.syncerID, size: size)
        if case .data(let d) = result, d.count == Int(size) {
            send(.blockRequest(.csumRSRequest, req, digest: csumsDigest(d)))
        } else {
            send(.blockRequest(.rsDataRequest, req, digest: []))
        }
    }

    var csumsDigestSize: Int? { (try? DigestAlgorithm(named: settings.csumsAlg))?.size }

    mutating func csumsDigest(_ data: [UInt8]) -> [UInt8] {
        do { return try DigestAlgorithm(named: settings.csumsAlg).digest(data) } catch {
            invariantViolated("csums-alg \(settings.csumsAlg): \(error)")
            return []
        }
    }

    mutating func sendResyncReply(_ result: DiskResult, _ sector: UInt64, _ size: UInt32, _ blockID: UInt64) {
        if case .data(let d) = result, d.count == Int(size) {
            let h = DataHeader(sector: sector, blockID: blockID, seqNum: 0, flags: 0)
            resyncDataBytes += UInt64(d.count)
            // Counts against max-buffers until it is in the socket buffer.
            if let c = compressedForResync(d) {
                resyncWireBytes += UInt64(c.count)
                sendTracked(.compressedResyncReply(h, originalSize: size, compressed: c), .resyncReply(bytes: Int(size), generation: linkGeneration))
            } else {
                resyncWireBytes += UInt64(d.count)
                sendTracked(.data(.rsDataReply, h, digest: [], payload: d), .resyncReply(bytes: Int(size), generation: linkGeneration))
            }
        } else {
            receiveBudget.resyncReplyBytes -= Int(size)
            send(.blockAck(.negRSDReply, BlockAck(sector: sector, blockID: blockID, size: size, seqNum: nextSeq())), .meta)
        }
    }

    /// The block as LZ4, when the peer decodes it, compression is on (or `auto` and the link is
    /// the slower part), and it shrinks by at least an eighth; nil to send it as it is.
    mutating func compressedForResync(_ d: [UInt8]) -> [UInt8]? {
        compressed(d, feature: ConnectionFeatures.lz4Resync)
    }

    /// The same for an application write's data (the LZ4_DATA extension).
    mutating func compressedForReplication(_ d: [UInt8]) -> [UInt8]? {
        compressed(d, feature: ConnectionFeatures.lz4Data)
    }

    mutating func compressed(_ d: [UInt8], feature: UInt32) -> [UInt8]? {
        guard let l = link, l.featureFlags & feature != 0 else { return nil }
        switch settings.compression {
        case .off: return nil
        case .lz4: break
        case .auto: guard autoCompressing else { return nil }
        }
        guard let c = try? LZ4Block.compress(d), c.count <= d.count - d.count / 8 else { return nil }
        return c
    }

    /// compression auto, once a second: compress while data for the peer (resync replies and
    /// replicated writes, counted before compression) leaves slower than the threshold; the link
    /// is then the bottleneck, or there is so little that compressing costs nothing.
    mutating func compressionAutoTick() {
        guard settings.compression == .auto, nowMs &- compressionWindow.startMs >= 1000 else { return }
        let elapsed = nowMs &- compressionWindow.startMs
        if compressionWindow.bytes > 0 {
            let rate = compressionWindow.bytes * 1000 / max(elapsed, 1)
            let compress = rate < settings.autoCompressBelowBytesPerSecond
            if compress != autoCompressing {
                autoCompressing = compress
                log("compression auto: data for the peer leaves at \(rate / 1_000_000) MB/s: \(compress ? "compressing" : "not compressing")")
            }
        }
        compressionWindow = (nowMs, 0)
    }

    mutating func onResyncAck(_ cmd: PacketCommand, _ a: BlockAck) {
        switch cmd {
        case .rsWriteAck, .writeAck: clearBits(offset: a.sector * 512, length: UInt64(a.size))
        case .negRSDReply where verify?.isSource == true:
            log("the peer could not read sector \(a.sector) for the verify; the verify stops")
            verifyLinkLost()
            conn = .connected
            sendState()
        case .negAck, .negRSDReply:
            if resync?.isSource == false {
                fail("the peer could not read resync data (sector \(a.sector)); the local disk stays \(disk)")
            } else {
                log("peer failed to write resync block at sector \(a.sector)")
            }
        case .rsIsInSync:
            // csums-alg: the source found the target's digest equal: nothing to write.
            guard let r = resync, !r.isSource, let v = r.inFlight[a.sector], v.size == a.size else {
                fail("protocol error: P_RS_IS_IN_SYNC for sector \(a.sector), which was not requested")
                return
            }
            resyncSameBytes += UInt64(a.size)
            changeResync { $0.arrivedSectors += Int(a.size / 512) }
            finishResyncRequest(a.sector, ack: false)
        case .rsCancel: break
        default: fail("unexpected \(cmd) with the resync block id")
        }
    }

    mutating func finishResyncAsSource() {
        guard let r = resync, r.isSource else { return }
        resync = nil
        persistent.history1 = persistent.history0
        persistent.history0 = persistent.bitmap
        persistent.bitmap = 0
        persist()
        conn = .connected
        peerDisk = .upToDate
        if bitmap.setCount > 0 { logState("resync finished with \(bitmap.setCount) bits still set") }
        logState("Resync done \(r.summary(nowMs: nowMs)) (source)")
        sendState()
    }
}
