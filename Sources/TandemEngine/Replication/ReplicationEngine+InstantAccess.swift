import TandemCodecs

/// One application read the engine serves (a Primary whose disk is being restored).
struct AppRead: Sendable {
    var offset: UInt64
    var length: UInt64
    var data: [UInt8]
    /// Parts asked of the peer and not answered yet.
    var partsLeft = 0
    var error: String?
}

/// What the engine tracks of reads served from the peer.
struct PeerReads: Sendable {
    var reads: [UInt64: AppRead] = [:]
    /// P_DATA_REQUEST in flight by block id: the read and where its part starts.
    var parts: [UInt64: (appID: UInt64, sector: UInt64, size: UInt32)] = [:]
    /// Reads that wait for the writes on their blocks to reach the peer first.
    var waiting: [UInt64] = []
    var nextBlockID: UInt64 = PeerReads.firstBlockID
    /// Block ids of reads lie above those of write requests.
    static let firstBlockID: UInt64 = 1 << 62
    /// Reads the engine holds at most (the NBD server bounds them well below).
    static let limit = 4096
}

/// Instant access (#10 item 2): a SyncTarget whose connected peer is UpToDate may be Primary
/// before the restore ends, as DRBD 8.4 allows. A read of blocks all in sync here is served
/// from the local disk; a read touching a block not yet restored goes to the peer
/// (P_DATA_REQUEST / P_DATA_REPLY), after any write of this node to those blocks has reached
/// the peer. Writes go to both (DP_MAY_SET_IN_SYNC: the peer's P_RS_WRITE_ACK clears the
/// blocks on both sides); the resync requests no block a write of this node has not yet
/// delivered to the peer, and skips blocks a write overwrote while their request was in
/// flight. With the peer gone there is no good copy of the blocks not restored: those reads
/// and every write fail (DRBD's on-no-data-accessible io-error).
extension ReplicationEngine {
    /// This node is Primary on a disk still being restored from the peer.
    var restoringPrimary: Bool { role == .primary && disk < .upToDate }

    /// `primary` on a SyncTarget whose connected peer is UpToDate: the role changes, the disk
    /// stays Inconsistent (--force changes nothing here: a half-restored disk never becomes a
    /// sync source).
    var mayPromoteDuringRestore: Bool {
        link != nil && (conn == .syncTarget || conn == .pausedSyncT) && disk == .inconsistent && peerDisk == .upToDate
    }

    mutating func becomePrimaryDuringRestore(token: UInt64) {
        guard mayPromoteDuringRestore else {
            emit(.adminDone(token: token, error: "the restore is no longer running with an UpToDate peer (\(conn), peer \(peerDisk))"))
            return
        }
        role = .primary
        persistent.primary = true
        persistent.current |= 1
        persist()
        logState("role: Primary while the disk is restored (\(bitmap.setCount * 4) KiB left): blocks not yet restored are read from the peer")
        sendUUIDs()
        sendState()
        emit(.adminDone(token: token, error: nil))
    }

    mutating func onAppRead(id: UInt64, offset: UInt64, length: UInt64) {
        guard offset % 512 == 0, length % 512 == 0, length > 0, offset <= sizeBytes, length <= sizeBytes - offset else {
            emit(.completeRead(id: id, data: nil, error: "read outside the device or not aligned to 512 bytes"))
            return
        }
        guard peerReads.reads.count < PeerReads.limit else {
            invariantViolated("more than \(PeerReads.limit) application reads held")
            emit(.completeRead(id: id, data: nil, error: "too many reads in flight"))
            return
        }
        let lo = offset / 4096, hi = (offset + length + 4095) / 4096
        if disk == .upToDate || (disk == .inconsistent && !(bitmap.nextSet(from: lo).map { $0 < hi } ?? false)) {
            diskOp(.read(offset: offset, length: Int(length)), .appRead(id: id, offset: offset, length: length))
            return
        }
        guard link != nil, peerDisk == .upToDate, replicating else {
            emit(.completeRead(id: id, data: nil, error: "no good copy of these blocks: they are not restored yet and the peer is \(peerDisk)"))
            return
        }
        peerReads.reads[id] = AppRead(offset: offset, length: length, data: [UInt8](repeating: 0, count: Int(length)))
        if writesNotAtPeer(lo..<hi) { peerReads.waiting.append(id) } else { askPeer(id) }
    }

    /// Blocks a write of this node covers that the peer may not have yet (not retired).
    func writesNotAtPeer(_ blocks: Range<UInt64>) -> Bool {
        !restoreWriteBlocks.isEmpty && blocks.contains { restoreWriteBlocks[$0] != nil }
    }

    /// Sends the read's parts (at most max-bio-size each) as P_DATA_REQUEST.
    mutating func askPeer(_ id: UInt64) {
        guard var r = peerReads.reads[id] else { return }
        var at = r.offset
        let end = r.offset + r.length
        while at < end {
            let n = min(UInt64(linkBioLimit), end - at)
            let blockID = peerReads.nextBlockID
            peerReads.nextBlockID += 1
            peerReads.parts[blockID] = (id, at / 512, UInt32(n))
            send(.blockRequest(.dataRequest, BlockRequest(sector: at / 512, blockID: blockID, size: UInt32(n)), digest: []))
            r.partsLeft += 1
            at += n
        }
        peerReads.reads[id] = r
    }

    /// A write of this node retired (the peer has it): reads waiting for it go on.
    mutating func wakePeerReads() {
        guard !peerReads.waiting.isEmpty else { return }
        let waiting = peerReads.waiting
        peerReads.waiting = []
        for id in waiting {
            guard let r = peerReads.reads[id] else { continue }
            if writesNotAtPeer(r.offset / 4096..<(r.offset + r.length + 4095) / 4096) { peerReads.waiting.append(id) } else { askPeer(id) }
        }
    }

    /// P_DATA_REPLY: one part of a read, exactly as asked.
    mutating func onDataReply(_ h: DataHeader, _ payload: [UInt8]) {
        guard let part = peerReads.parts.removeValue(forKey: h.blockID), part.sector == h.sector, Int(part.size) == payload.count else {
            fail("protocol error: P_DATA_REPLY for sector \(h.sector) (\(payload.count) bytes) that was not requested")
            return
        }
        guard var r = peerReads.reads[part.appID] else { return }
        let at = Int(part.sector * 512 - r.offset)
        r.data.replaceSubrange(at..<(at + payload.count), with: payload)
        r.partsLeft -= 1
        peerReads.reads[part.appID] = r
        if r.partsLeft == 0 { finishRead(part.appID) }
    }

    /// P_NEG_DREPLY: the peer could not read the part.
    mutating func onNegativeDataReply(_ a: BlockAck) {
        guard let part = peerReads.parts.removeValue(forKey: a.blockID) else {
            fail("protocol error: P_NEG_DREPLY for a read that was not requested (block_id \(a.blockID))")
            return
        }
        guard var r = peerReads.reads[part.appID] else { return }
        r.error = r.error ?? "the peer could not read sector \(part.sector)"
        r.partsLeft -= 1
        peerReads.reads[part.appID] = r
        if r.partsLeft == 0 { finishRead(part.appID) }
    }

    mutating func finishRead(_ id: UInt64) {
        guard let r = peerReads.reads.removeValue(forKey: id) else { return }
        emit(.completeRead(id: id, data: r.error == nil ? r.data : nil, error: r.error))
    }

    mutating func onAppReadDone(_ id: UInt64, _ offset: UInt64, _ length: UInt64, _ result: DiskResult) {
        switch result {
        case .data(let d): emit(.completeRead(id: id, data: d, error: nil))
        case .failed(let why): onAppReadFailed(id: id, offset: offset, length: length, error: why)
        case .ok: emit(.completeRead(id: id, data: nil, error: "local disk returned no data"))
        }
    }

    /// The link is gone: reads waiting for the peer fail (there is no other good copy).
    mutating func failPeerReads() {
        let ids = Array(peerReads.reads.keys)
        peerReads = PeerReads()
        for id in ids { emit(.completeRead(id: id, data: nil, error: "the peer was lost before it answered the read")) }
    }

    // MARK: this node's writes while restoring

    /// Issued: the blocks stay out of the resync's requests until the write is retired.
    mutating func noteRestoreWrite(_ rid: UInt64) {
        guard let r = requests[rid] else { return }
        requests[rid]?.holdsRestoreBlocks = true
        for b in r.offset / 4096..<(r.offset + r.length + 4095) / 4096 { restoreWriteBlocks[b, default: 0] += 1 }
        resyncNoteOverwrite(offset: r.offset, length: r.length)
    }

    mutating func releaseRestoreWrite(_ r: Request) {
        for b in r.offset / 4096..<(r.offset + r.length + 4095) / 4096 {
            guard let n = restoreWriteBlocks[b] else { invariantViolated("restore write blocks of \(b) released twice"); continue }
            restoreWriteBlocks[b] = n > 1 ? n - 1 : nil
        }
        wakePeerReads()
        if restoreWriteBlocks.isEmpty, resync != nil { requestResyncBlocks() }
    }

    // MARK: the peer's side

    /// P_DATA_REQUEST from a restoring Primary: read after the writes received before it.
    mutating func onPeerDataRequest(_ r: BlockRequest) {
        guard disk == .upToDate else {
            send(.blockAck(.negDReply, BlockAck(sector: r.sector, blockID: r.blockID, size: r.size, seqNum: nextSeq())), .meta)
            return
        }
        readAfterWrites(sector: r.sector, size: r.size, purpose: .peerDataRead(generation: linkGeneration, sector: r.sector, size: r.size, blockID: r.blockID))
    }

    mutating func onPeerDataReadDone(_ gen: UInt64, _ result: DiskResult, _ sector: UInt64, _ size: UInt32, _ blockID: UInt64) {
        guard gen == linkGeneration, link != nil else { return }
        if readFailureEndsLink(result, sector: sector, size: size) { return }
        if case .data(let d) = result, d.count == Int(size) {
            send(.data(.dataReply, DataHeader(sector: sector, blockID: blockID, seqNum: 0, flags: 0), digest: [], payload: d))
        } else {
            send(.blockAck(.negDReply, BlockAck(sector: sector, blockID: blockID, size: size, seqNum: nextSeq())), .meta)
        }
    }
}
