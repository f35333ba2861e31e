import TandemCodecs

/// The secondary's apply path: P_DATA/P_TRIM/P_ZEROES of an epoch are written in any order;
/// P_BARRIER waits for all of them, flushes the disk, sends P_BARRIER_ACK and only then lets
/// the next epoch's writes reach the disk. So the disk only ever holds whole epochs plus part
/// of the one in flight: a state the primary passed through.
extension ReplicationEngine {
    mutating func receiveReplicated(_ p: Packet) {
        switch p {
        case .barrier(let n, _):
            inbound.closing = (n, inbound.count, false)
            inbound.count = 0
            maybeFlushInbound()
        case .data(.rsDataReply, let h, _, let payload):
            resyncDataBytes += UInt64(payload.count)
            resyncWireBytes += UInt64(payload.count)
            onResyncData(h, payload)
        case .compressedResyncReply(let h, let size, let compressed):
            onCompressedResyncData(h, size, compressed)
        case .compressedData(let h, let size, let compressed):
            // LZ4_DATA (a Tandem extension): only if this node offered it; the stated size is
            // within max-bio-size (the codec checked), and the data must decompress to it.
            guard let l = link, l.featureFlags & ConnectionFeatures.lz4Data != 0 else {
                fail("protocol error: LZ4 write data from a peer that did not negotiate it")
                return
            }
            if waitForReadLocks(p, offset: h.sector * 512, length: UInt64(size)) { return }
            let data: [UInt8]
            do { data = try LZ4Block.decompress(compressed, originalSize: Int(size)) } catch {
                fail("protocol error: LZ4 write data for sector \(h.sector) does not decompress to \(size) bytes (\(error))")
                return
            }
            applyPeerWrite(h, size: size, op: .write(offset: h.sector * 512, data: data, fua: h.flags & DataFlags.fua != 0))
        case .data(.dataReply, let h, _, let payload):
            onDataReply(h, payload)
        case .data(_, let h, _, let payload):
            if waitForReadLocks(p, offset: h.sector * 512, length: UInt64(payload.count)) { return }
            applyPeerWrite(h, size: UInt32(payload.count), op: .write(offset: h.sector * 512, data: payload,
                                                                     fua: h.flags & DataFlags.fua != 0))
        case .trim(let cmd, let h, let size):
            if waitForReadLocks(p, offset: h.sector * 512, length: UInt64(size)) { return }
            let discard = cmd == .trim || h.flags & DataFlags.discard != 0
            applyPeerWrite(h, size: size, op: .zero(offset: h.sector * 512, length: UInt64(size), discard: discard && cmd == .trim))
        case .writeSame(let h, let size, _, let block):
            if waitForReadLocks(p, offset: h.sector * 512, length: UInt64(size)) { return }
            var data: [UInt8] = []
            data.reserveCapacity(Int(size))
            while data.count < Int(size) { data += block }
            applyPeerWrite(h, size: size, op: .write(offset: h.sector * 512, data: data, fua: h.flags & DataFlags.fua != 0))
        default: break
        }
    }

    /// A peer write on blocks a verify read holds waits for it, and the data stream with it
    /// (its order is the write order): the packet goes back to the head of the queue.
    mutating func waitForReadLocks(_ p: Packet, offset: UInt64, length: UInt64) -> Bool {
        guard readLocked(offset: offset, length: length) else { return false }
        inbound.waitingForRead = true
        inbound.queued.insert(p, at: 0)
        receiveBudget.queuedBytes += ReceiveBudget.cost(p)
        return true
    }

    /// Runs the packets held behind a barrier or a verify read, until one holds them again.
    mutating func drainInbound() {
        while inbound.closing == nil && !inbound.waitingForRead && !inbound.waitingForBacking && !inbound.waitingForSnapshot
                && !inbound.queued.isEmpty && link != nil {
            let p = inbound.queued.removeFirst()
            receiveBudget.queuedBytes -= ReceiveBudget.cost(p)
            dispatch(p, .data)
        }
    }

    /// LZ4 resync data (a Tandem extension): only if this node offered it, only for a request in
    /// flight of exactly the stated size (checked before decompressing, so a peer cannot make
    /// it allocate or write more than it asked for), and it must decompress to that size.
    mutating func onCompressedResyncData(_ h: DataHeader, _ size: UInt32, _ compressed: [UInt8]) {
        guard let l = link, l.featureFlags & ConnectionFeatures.lz4Resync != 0 else {
            fail("protocol error: LZ4 resync data from a peer that did not negotiate it")
            return
        }
        guard let r = resync, !r.isSource, let v = r.inFlight[h.sector], v.size == size else {
            fail("protocol error: LZ4 resync data of \(size) bytes for sector \(h.sector), which was not requested")
            return
        }
        let data: [UInt8]
        do { data = try LZ4Block.decompress(compressed, originalSize: Int(size)) } catch {
            fail("protocol error: LZ4 resync data for sector \(h.sector) does not decompress to \(size) bytes (\(error))")
            return
        }
        resyncDataBytes += UInt64(size)
        resyncWireBytes += UInt64(compressed.count)
        onResyncData(h, data)
    }

    mutating func applyPeerWrite(_ h: DataHeader, size: UInt32, op: DiskOperation) {
        let offset = h.sector * 512
        guard offset <= sizeBytes, UInt64(size) <= sizeBytes - offset else {
            fail("protocol error: peer wrote beyond the end of the device (sector \(h.sector), \(size) bytes)")
            return
        }
        let ackCmd: PacketCommand?
        let clears = h.flags & DataFlags.maySetInSync != 0 && conn.isSyncing
        if h.flags & DataFlags.sendWriteAck != 0 || (link?.agreedVersion ?? 101) < 100 && settings.wireProtocol == 3 {
            ackCmd = clears ? .rsWriteAck : .writeAck
        } else {
            ackCmd = nil
        }
        if h.flags & DataFlags.sendReceiveAck != 0 || (link?.agreedVersion ?? 101) < 100 && settings.wireProtocol == 2 {
            send(.blockAck(.recvAck, BlockAck(sector: h.sector, blockID: h.blockID, size: size, seqNum: nextSeq())), .meta)
        }
        inbound.count += 1
        if role == .primary || disk <= .failed {
            send(.blockAck(.negAck, BlockAck(sector: h.sector, blockID: h.blockID, size: size, seqNum: nextSeq())), .meta)
            return
        }
        if resync != nil {
            resyncNoteOverwrite(offset: offset, length: UInt64(size))
            resync?.throttle?.noteOtherIO(sectors: Int(size / 512))
        }
        inbound.pending += 1
        for b in offset / 4096..<(offset + UInt64(size) + 4095) / 4096 { localWriteBlocks[b, default: 0] += 1 }
        receiveBudget.peerWriteBytes += Int(size) + QueueLimits.packetOverhead
        let purpose = DiskPurpose.peerWrite(generation: linkGeneration, ack: ackCmd, sector: h.sector, blockID: h.blockID,
                                            size: size, clearsBits: clears)
        // The peer has no disk: this is the only copy, and the write is marked for the peer's
        // disk durably before it is issued.
        if peerDisk <= .failed, let seq = markForAbsentPeerDisk(offset: offset, length: UInt64(size)) {
            writesAfterBits.append((seq, op, purpose))
            return
        }
        diskOp(op, purpose)
    }

    mutating func onPeerWriteDone(_ gen: UInt64, _ result: DiskResult, _ ack: PacketCommand?, _ sector: UInt64,
                                  _ blockID: UInt64, _ size: UInt32, _ clears: Bool) {
        let offset = sector * 512
        for b in offset / 4096..<(offset + UInt64(size) + 4095) / 4096 {
            if let n = localWriteBlocks[b] { localWriteBlocks[b] = n > 1 ? n - 1 : nil }
        }
        if !readsWaitingForWrites.isEmpty { startWaitingReads() }
        guard gen == linkGeneration, link != nil else { return }
        inbound.pending -= 1
        receiveBudget.peerWriteBytes -= Int(size) + QueueLimits.packetOverhead
        if case .failed(let why) = result {
            send(.blockAck(.negAck, BlockAck(sector: sector, blockID: blockID, size: size, seqNum: nextSeq())), .meta)
            localIOError(.write(offset: sector * 512, length: UInt64(size)), why)
            guard link != nil else { return }
        } else {
            if clears { clearBits(offset: sector * 512, length: UInt64(size)) }
            if let ack { send(.blockAck(ack, BlockAck(sector: sector, blockID: blockID, size: size, seqNum: nextSeq())), .meta) }
        }
        maybeFlushInbound()
    }

    /// max-buffers: the data socket is not read while what the peer sent and this node has not
    /// finished with is over the limit, and is read again once half of it is done.
    mutating func updateReading() {
        guard link != nil else { receiveBudget.paused = false; return }
        let limit = settings.maxBuffers * 4096
        let total = receiveBudget.total
        if !receiveBudget.paused && total >= limit {
            receiveBudget.paused = true
            emit(.readData(false))
        } else if receiveBudget.paused && total <= limit / 2 {
            receiveBudget.paused = false
            emit(.readData(true))
        }
    }

    mutating func maybeFlushInbound() {
        guard let c = inbound.closing, !c.flushIssued, inbound.pending == 0 else { return }
        inbound.closing?.flushIssued = true
        if settings.diskFlushes && disk > .diskless {
            barrierFlushes += 1
            diskOp(.flush, .inboundFlush(generation: linkGeneration))
        } else {
            onInboundFlushDone(linkGeneration, .ok)  // drain: the completed writes are enough
        }
    }

    mutating func onInboundFlushDone(_ gen: UInt64, _ result: DiskResult) {
        guard gen == linkGeneration, link != nil, let c = inbound.closing else { return }
        if case .failed(let why) = result {
            // The epoch's writes may not be durable: the link goes, so the primary marks them.
            localIOError(.flush, why)
            fail("local disk flush failed: \(why)")
            return
        }
        send(.barrierAck(number: c.number, setSize: c.count), .meta)
        inbound.closing = nil
        inbound.lastBarrier = c.number
        // An epoch boundary: a local snapshot waiting for one is taken here, before the next
        // epoch's packets run.
        startLocalSnapshotIfAtBoundary()
        // Packets that arrived behind the barrier run now, until the next barrier closes.
        drainInbound()
    }
}
