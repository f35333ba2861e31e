import TandemCodecs

/// The primary's write path: application writes go to the local disk and, while connected,
/// to the peer as P_DATA in epochs separated by P_BARRIER; completion follows protocol A, B
/// or C; every write stays in the transfer log until its epoch's barrier is acknowledged.
extension ReplicationEngine {
    /// Whether application writes are replicated now (otherwise they are marked out of sync).
    /// As DRBD, also while an invalidate prepares its resync (StartingSyncS/T): the peer's disk
    /// is still UpToDate then, and protocol C's promise holds.
    var replicating: Bool {
        guard link != nil, peerDisk >= .inconsistent else { return false }
        return [.connected, .syncSource, .syncTarget, .pausedSyncS, .pausedSyncT, .verifyS, .verifyT, .startingSyncS,
                .startingSyncT].contains(conn)
    }

    /// A Primary whose disk is Inconsistent (being restored, or after a pass_on error) or
    /// detached goes on with an UpToDate peer that takes its writes: what its own disk lacks,
    /// the peer has.
    var servedThroughPeer: Bool {
        (disk == .inconsistent || disk <= .diskless) && peerDisk == .upToDate && replicating
    }

    func validate(offset: UInt64, length: UInt64) -> String? {
        if role != .primary { return "resource is Secondary: writes are refused" }
        if draining != nil { return "resource is going down" }
        if disk < .upToDate && !servedThroughPeer {
            return "local disk is \(disk) and no UpToDate peer is connected"
        }
        if offset % 512 != 0 || length % 512 != 0 { return "request is not aligned to 512 bytes" }
        if offset > sizeBytes || length > sizeBytes - offset { return "request is outside the device" }
        return nil
    }

    /// Bytes from `at` to the end of a piece: at most `limit`, and never past the end of the
    /// activity-log extent `at` lies in, so every request holds exactly one extent.
    static func pieceLength(at: UInt64, end: UInt64, limit: UInt64) -> UInt64 {
        let extentBytes = OutOfSyncBitmap.bitsPerExtent * OutOfSyncBitmap.bytesPerBit
        return min(limit, end - at, (at / extentBytes + 1) * extentBytes - at)
    }

    mutating func onAppWrite(id: UInt64, offset: UInt64, data: [UInt8], fua: Bool) {
        if let why = validate(offset: offset, length: UInt64(data.count)) { emit(.completeApp(id: id, error: why)); return }
        guard !data.isEmpty else { emit(.completeApp(id: id, error: nil)); return }
        // A P_DATA carries at most max-bio-size bytes and a request lies in one activity-log
        // extent: larger application writes become several requests; the application is
        // answered when all finish.
        let end = offset + UInt64(data.count)
        var at = offset
        while at < end {
            let n = Self.pieceLength(at: at, end: end, limit: UInt64(maxBioBytes))
            let piece = n == UInt64(data.count) ? data : Array(data[Int(at - offset)..<Int(at - offset + n)])
            startRequest(appID: id, offset: at, length: n, op: .write(data: piece, fua: fua))
            at += n
        }
    }

    mutating func onAppZero(id: UInt64, offset: UInt64, length: UInt64, discard: Bool, fua: Bool) {
        if let why = validate(offset: offset, length: length) { emit(.completeApp(id: id, error: why)); return }
        guard length > 0 else { emit(.completeApp(id: id, error: nil)); return }
        // One application request may cover more than one wire request; all must finish.
        var at = offset
        while at < offset + length {
            let n = Self.pieceLength(at: at, end: offset + length, limit: UInt64(WireLimits.maxTrimSize))
            startRequest(appID: id, offset: at, length: n, op: .zero(discard: discard, fua: fua))
            at += n
        }
    }

    mutating func onAppFlush(id: UInt64) {
        guard role == .primary else { emit(.completeApp(id: id, error: "resource is Secondary")); return }
        closeEpoch()
        // Without a disk the peer's is the only copy: the flush waits for its barrier ack
        // whatever the protocol.
        let hasDisk = disk > .diskless
        if !hasDisk && !replicating {
            emit(.completeApp(id: id, error: "no local disk and no UpToDate peer"))
            return
        }
        let needEpoch: UInt32? = ((settings.wireProtocol == 3 || !hasDisk) && replicating) ? unackedEpochs.last?.number : nil
        flushWaiters.append(FlushWaiter(id: id, epoch: needEpoch))
        if hasDisk {
            diskOp(.flush, .appFlush(id: id))
        } else {
            flushWaiters[flushWaiters.count - 1].localDone = true
            checkFlushWaiters()
        }
    }

    /// Starts one request of an application call (all pieces of a call share its app id; the
    /// call is answered when the last piece completes): it waits for its activity-log extent,
    /// then is issued.
    mutating func startRequest(appID: UInt64, offset: UInt64, length: UInt64, op: PendingOp) {
        let rid = nextRequestID
        nextRequestID += 1
        let extent = OutOfSyncBitmap.extent(ofBit: offset / 4096)
        assert(OutOfSyncBitmap.extent(ofBit: (offset + length - 1) / 4096) == extent, "a request crosses an extent")
        requests[rid] = Request(appID: appID, offset: offset, length: length, extent: extent, pending: op, sentAtMs: nowMs)
        appCalls[appID, default: (0, nil)].left += 1
        if loggedRequests >= settings.transferLogLimit || !transferLogWaiting.isEmpty {
            transferLogWaiting.append(rid)
            return
        }
        enterTransferLog(rid)
    }

    mutating func enterTransferLog(_ rid: UInt64) {
        loggedRequests += 1
        requests[rid]?.logged = true
        admit(rid)
    }

    /// Room in the transfer log: the waiting requests start, in arrival order.
    mutating func wakeTransferLogWaiters() {
        while let rid = transferLogWaiting.first, loggedRequests < settings.transferLogLimit {
            transferLogWaiting.removeFirst()
            if requests[rid] != nil { enterTransferLog(rid) }
        }
    }

    /// The request's extent is durable in the activity log: to the disk and, when replicating,
    /// to the peer in the same order; otherwise its blocks are marked out of sync first.
    mutating func issue(_ rid: UInt64) {
        guard var r = requests[rid], let op = r.pending else {
            invariantViolated("issuing request \(rid), which is unknown or already issued")
            return
        }
        if (!readLocks.isEmpty || !writesWaitingForReads.isEmpty) && writeMustWaitForReads(offset: r.offset, length: r.length) {
            // A verify read stands before this write in the stream: the write waits for it.
            writesWaitingForReads.append(rid)
            return
        }
        r.pending = nil
        r.sentAtMs = nowMs
        // Detached: the write goes to the peer alone, and fails unless the peer takes it.
        let hasDisk = disk > .diskless
        if !hasDisk {
            r.localDone = true
            r.localError = "the local disk is detached"
        }
        requests[rid] = r
        defer { if !hasDisk { maybeComplete(rid) } }
        let (offset, length) = (r.offset, r.length)
        if replicating && conn == .connected { checkCongestion() }
        if !replicating {
            setBits(offset: offset, length: length)
            // During the bitmap exchange the peer learns of the write as out of sync.
            if link != nil && peerDisk >= .inconsistent && [.wfBitMapS, .wfBitMapT, .wfSyncUUID, .ahead].contains(conn) {
                send(.blockDescriptor(.outOfSync, BlockDescriptor(sector: offset / 512, size: UInt32(length))))
            }
        }
        if hasDisk { for b in offset / 4096..<(offset + length + 4095) / 4096 { localWriteBlocks[b, default: 0] += 1 } }
        if restoringPrimary && replicating { noteRestoreWrite(rid) }
        switch op {
        case .write(let data, let fua):
            if hasDisk { diskOp(.write(offset: offset, data: data, fua: fua), .appWrite(request: rid)) }
            // compression lz4 (or auto on a slow link): the data goes as one LZ4 block to a
            // peer that decodes it, if that saves an eighth.
            let packed = replicating ? compressedForReplication(data) : nil
            if replicating {
                replicatedDataBytes += UInt64(data.count)
                replicatedWireBytes += UInt64(packed?.count ?? data.count)
                compressionWindow.bytes += UInt64(data.count)
            }
            replicate(rid, fua: fua, carriesData: true) { h in
                if let packed { return .compressedData(h, originalSize: UInt32(data.count), compressed: packed) }
                return .data(.data, h, digest: [], payload: data)
            }
        case .zero(let discard, let fua):
            if hasDisk { diskOp(.zero(offset: offset, length: length, discard: discard), .appWrite(request: rid)) }
            let feature = discard ? ConnectionFeatures.trim : ConnectionFeatures.writeZeroes
            if let l = link, l.featureFlags & feature != 0 {
                replicate(rid, fua: fua, carriesData: false) { h in .trim(discard ? .trim : .zeroes, h, size: UInt32(length)) }
            } else {
                setBits(offset: offset, length: length)  // the peer cannot take it: resync later
            }
        }
    }

    /// `carriesData`: a P_DATA (its bytes count toward congestion-fill), not a trim or zeroes.
    mutating func replicate(_ rid: UInt64, fua: Bool, carriesData: Bool, packet: (DataHeader) -> Packet) {
        guard replicating, var r = requests[rid] else { return }
        if epochWrites >= settings.maxEpochSize { closeEpoch() }
        var flags: UInt32 = 0
        if fua { flags |= DataFlags.fua }
        switch settings.wireProtocol {
        case 2: flags |= DataFlags.sendReceiveAck; r.peerPending = true
        case 3: flags |= DataFlags.sendWriteAck; r.peerPending = true
        default: r.peerPending = true  // A: until the packet is in the socket buffer
        }
        if conn.isSyncing { flags |= DataFlags.maySetInSync | DataFlags.sendWriteAck }
        if disk < .upToDate {
            flags |= DataFlags.sendWriteAck
            r.needsPeerDisk = true
            r.peerPending = true
        }
        r.epoch = currentEpoch
        r.sentAtMs = nowMs
        if carriesData {
            r.countsInFlight = true
            apInFlightBytes += r.length
        }
        requests[rid] = r
        epochWrites += 1
        let p = packet(DataHeader(sector: r.offset / 512, blockID: rid, seqNum: nextSeq(), flags: flags))
        if settings.wireProtocol == 1 { sendTracked(p, .replicated(request: rid)) } else { send(p) }
        // Before protocol 100 the peer acks writes by the protocol, not by the flag: the
        // barrier ack confirms this one, so its epoch ends with it.
        if r.needsPeerDisk && (link?.agreedVersion ?? 101) < 100 && settings.wireProtocol != 3 { closeEpoch() }
    }

    mutating func sendTracked(_ p: Packet, _ purpose: SendPurpose) {
        let token = nextToken
        nextToken += 1
        sendPurpose[token] = purpose
        sentDataBytes &+= Self.dataBytes(p)
        emit(.sendTracked(p, token: token))
    }

    /// A tracked packet left. Reports of a link already lost find nothing.
    mutating func onSent(_ token: UInt64) {
        switch sendPurpose.removeValue(forKey: token) {
        case .replicated(let rid): onReplicatedSent(rid)
        case .resyncReply(let bytes, let gen):
            if gen == linkGeneration { receiveBudget.resyncReplyBytes -= bytes }
            compressionWindow.bytes += UInt64(bytes)
        case nil: break
        }
    }

    /// Protocol A: the write's packet left for the peer; with the local write done, it completes.
    mutating func onReplicatedSent(_ rid: UInt64) {
        guard settings.wireProtocol == 1, link != nil, var r = requests[rid], r.peerPending, !r.needsPeerDisk else { return }
        r.peerPending = false
        r.peerWrote = true
        requests[rid] = r
        maybeComplete(rid)
    }

    /// Ends the current epoch with a P_BARRIER if it holds writes.
    mutating func closeEpoch() {
        guard epochWrites > 0, link != nil else { return }
        send(.barrier(number: currentEpoch, pad: 0))
        unackedEpochs.append((currentEpoch, UInt32(epochWrites)))
        currentEpoch &+= 1
        epochWrites = 0
    }

    mutating func onAppWriteDone(_ rid: UInt64, _ result: DiskResult) {
        guard var r = requests[rid] else { return }
        for b in r.offset / 4096..<(r.offset + r.length + 4095) / 4096 {
            if let n = localWriteBlocks[b] { localWriteBlocks[b] = n > 1 ? n - 1 : nil }
        }
        if !readsWaitingForWrites.isEmpty { startWaitingReads() }
        r.localDone = true
        if case .failed(let why) = result { r.localError = why }
        requests[rid] = r
        _ = noteLocalResult(result, .write(offset: r.offset, length: r.length))
        maybeComplete(rid)
    }

    /// Completes the application request when the local write is done and the peer's ack (if
    /// the protocol asks for one) has arrived; retires it once its epoch is acknowledged.
    mutating func maybeComplete(_ rid: UInt64) {
        guard var r = requests[rid] else { return }
        if !r.completed && r.localDone && !r.peerPending {
            r.completed = true
            r.completedAtMs = nowMs
            requests[rid] = r
            guard var call = appCalls[r.appID] else {
                invariantViolated("request \(rid) completed without its application call \(r.appID)")
                return
            }
            call.left -= 1
            // A local error fails the application's write only if the peer did not take it.
            call.error = call.error ?? (r.peerWrote ? nil : r.localError)
            if call.left == 0 {
                appCalls[r.appID] = nil
                emit(.completeApp(id: r.appID, error: call.error.map { "local disk: \($0)" }))
            } else {
                appCalls[r.appID] = call
            }
            if r.epoch == currentEpoch { closeEpoch() }
        }
        if r.completed && (r.barrierAcked || r.epoch == nil) {
            retire(rid)
        }
    }

    mutating func onBlockAck(_ cmd: PacketCommand, _ a: BlockAck) {
        if cmd == .ovResult {
            onVerifyResult(a)
            return
        }
        // Kernel DRBD 8.4 sends P_RS_IS_IN_SYNC with a block id that is not ID_SYNCER (the
        // field shares a union with the digest's pointer there), and reads only the sector and
        // size of it; so does Tandem.
        if a.blockID == BlockRequest.syncerID || cmd == .rsIsInSync {
            onResyncAck(cmd, a)
            return
        }
        if cmd == .negDReply {
            onNegativeDataReply(a)
            return
        }
        guard var r = requests[a.blockID] else {
            fail("protocol error: \(cmd) for an unknown request (block_id \(a.blockID))")
            return
        }
        switch cmd {
        case .recvAck: if settings.wireProtocol == 2 && !r.needsPeerDisk { r.peerPending = false; r.peerWrote = true }
        case .writeAck:
            if settings.wireProtocol == 3 || r.needsPeerDisk { r.peerPending = false }
            r.peerWrote = true
        case .rsWriteAck:
            if settings.wireProtocol == 3 || r.needsPeerDisk { r.peerPending = false }
            r.peerWrote = true
            clearBits(offset: r.offset, length: r.length)
        case .negAck:
            setBits(offset: r.offset, length: r.length)
            r.peerPending = false
            r.peerWrote = false
        default:
            fail("unsupported \(cmd) from peer")
            return
        }
        requests[a.blockID] = r
        maybeComplete(a.blockID)
    }

    mutating func onBarrierAck(_ number: UInt32, _ count: UInt32) {
        guard let first = unackedEpochs.first, first.number == number, first.count == count else {
            fail("protocol error: BAD! BarrierAck #\(number) (\(count) writes) does not match the transfer log")
            return
        }
        unackedEpochs.removeFirst()
        for (id, r) in requests where r.epoch == number {
            var r = r
            if r.countsInFlight { apInFlightBytes -= r.length; r.countsInFlight = false }
            r.barrierAcked = true
            if r.needsPeerDisk && r.peerPending { r.peerPending = false; r.peerWrote = true }
            requests[id] = r
            maybeComplete(id)
        }
        checkFlushWaiters()
        // Ahead: everything sent before is acknowledged; the resync starts a second later.
        if conn == .ahead && apInFlightBytes == 0 && aheadResyncAtMs == nil { aheadResyncAtMs = nowMs + 1000 }
    }

    /// DRBD's maybe_pull_ahead: a protocol A primary whose link cannot keep up (more than
    /// congestion-fill bytes unacknowledged, or congestion-extents extents hot) goes Ahead or
    /// disconnects, as on-congestion says, instead of holding the writers back.
    mutating func checkCongestion() {
        // A Primary whose disk is not UpToDate needs its peer's: it never leaves it behind.
        guard settings.onCongestion != .block, settings.wireProtocol == 1, let l = link, l.agreedVersion >= 96,
              disk == .upToDate else { return }
        var why: String?
        if settings.congestionFillBytes > 0 && apInFlightBytes >= settings.congestionFillBytes {
            why = "Congestion-fill threshold reached (\(apInFlightBytes / 1024) KiB unacknowledged)"
        } else if gate.log.hotCount >= settings.congestionExtents {
            why = "Congestion-extents threshold reached (\(gate.log.hotCount) extents)"
        }
        guard let why else { return }
        log(why)
        switch settings.onCongestion {
        case .pullAhead:
            closeEpoch()  // the last epoch sent; from here on writes are only marked
            conn = .ahead
            peerDisk = min(peerDisk, .consistent)
            aheadResyncAtMs = apInFlightBytes == 0 ? nowMs + 1000 : nil
            sendState()
        case .disconnect:
            fail("on-congestion disconnect: \(why)")
        case .block:
            break
        }
    }

    mutating func checkFlushWaiters() {
        let oldestUnacked = unackedEpochs.first?.number
        var keep: [FlushWaiter] = []
        for w in flushWaiters {
            var peerDone = true
            if let e = w.epoch, let o = oldestUnacked, Int32(bitPattern: e &- o) >= 0 { peerDone = false }
            if w.localDone && peerDone { emit(.completeApp(id: w.id, error: nil)) } else { keep.append(w) }
        }
        flushWaiters = keep
    }

    mutating func onDiskDone(_ token: UInt64, _ result: DiskResult) {
        guard let purpose = diskPurpose.removeValue(forKey: token) else {
            invariantViolated("completion of disk operation \(token), which was never issued or already completed")
            return
        }
        switch purpose {
        case .metaData(let seq): onMetaDataDone(seq, result)
        case .appWrite(let rid): onAppWriteDone(rid, result)
        case .appFlush(let id):
            if let i = flushWaiters.firstIndex(where: { $0.id == id }) {
                if case .failed(let why) = result {
                    localIOError(.flush, why)
                    guard let j = flushWaiters.firstIndex(where: { $0.id == id }) else { break }
                    if disk <= .diskless && replicating {
                        // Detached: the peer's barrier ack makes the flush good.
                        flushWaiters[j].epoch = flushWaiters[j].epoch ?? unackedEpochs.last?.number
                        flushWaiters[j].localDone = true
                        checkFlushWaiters()
                    } else {
                        flushWaiters.remove(at: j)
                        emit(.completeApp(id: id, error: "local flush failed: \(why)"))
                    }
                } else {
                    flushWaiters[i].localDone = true
                    checkFlushWaiters()
                }
            }
        case .peerWrite(let gen, let ack, let sector, let blockID, let size, let clears):
            onPeerWriteDone(gen, result, ack, sector, blockID, size, clears)
        case .inboundFlush(let gen): onInboundFlushDone(gen, result)
        case .snapshotFlush(let id): onSnapshotFlushDone(id: id, result)
        case .appRead(let id, let offset, let length): onAppReadDone(id, offset, length, result)
        case .peerDataRead(let gen, let sector, let size, let blockID): onPeerDataReadDone(gen, result, sector, size, blockID)
        case .resyncRead(let gen, let sector, let size, let blockID): onResyncReadDone(gen, result, sector, size, blockID)
        case .resyncWrite(let gen, let sector): onResyncWriteDone(gen, result, sector)
        case .resyncFlush(let gen): onResyncFlushDone(gen, result)
        case .verifyRead(let gen, let sector, let size, let kind): onVerifyReadDone(gen, result, sector, size, kind)
        case .csumRead(let gen, let sector, let size): onCsumReadDone(gen, result, sector, size)
        case .csumSourceRead(let gen, let sector, let size, let blockID, let digest):
            onCsumSourceReadDone(gen, result, sector, size, blockID, digest)
        }
    }
}
