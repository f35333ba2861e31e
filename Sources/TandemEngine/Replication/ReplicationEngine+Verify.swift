import TandemCodecs

/// A running online verify (DRBD 8.4's VerifyS / VerifyT). The VerifyS node asks for the
/// digest of each 4 KiB block (P_OV_REQUEST), the VerifyT node reads its block and answers
/// with the digest (P_OV_REPLY), the VerifyS node compares it with its own and says the result
/// (P_OV_RESULT); both mark the blocks that differ out of sync. Verify never resyncs.
struct VerifyState: Sendable {
    var isSource: Bool
    /// The first block verified, and the blocks from it to the end of the device.
    var startBit: UInt64
    var totalBits: UInt64
    /// VerifyS: the next block to request.
    var cursor: UInt64
    /// Results given (VerifyS) or received (VerifyT), and how many said "out of sync".
    var doneBits: UInt64 = 0
    var foundBits: UInt64 = 0
    /// VerifyS: the comparisons in flight, by sector.
    var inFlight: [UInt64: VerifyCheck] = [:]
    /// VerifyS paces its requests as a SyncTarget paces a resync.
    var controller: ResyncController?
    var allowanceBlocks = 0
    var arrivedSectors = 0
    var lastStepMs: UInt64
    var startMs: UInt64
    /// The run of out-of-sync blocks found last (start sector, sectors), logged as one range.
    var run: (sector: UInt64, sectors: UInt64)?
    /// Results come in any order; they are counted and logged in sector order from here.
    var reportSector: UInt64 = 0
    var unreported: [UInt64: (size: UInt32, inSync: Bool)] = [:]
    /// VerifyT learns where the verify starts from the first request (protocol 90 and later).
    var targetStarted = false
}

/// What the VerifyS node knows of one block: its own digest when the request left, its digest
/// when the peer's reply came (read only if the first does not match), and the peer's. One of
/// the two points is the one the peer's read stands at in the replication stream (the first
/// while this node writes, the second while the peer writes), so the block is in sync exactly
/// when the peer's digest matches either.
struct VerifyCheck: Sendable {
    var size: UInt32
    var atRequest: [UInt8]?
    var atReply: [UInt8]?
    var peer: [UInt8]?
    var replyReadIssued = false
}

/// Which of a verify's reads a disk read is.
enum VerifyReadKind: Sendable, Equatable {
    case atRequest
    case atReply
    /// VerifyT: the digest goes to the peer with its block id.
    case forPeer(blockID: UInt64)
}

extension ReplicationEngine {
    var verifyDigestSize: Int? { (try? DigestAlgorithm(named: settings.verifyAlg))?.size }

    mutating func verifyDigest(_ data: [UInt8]) -> [UInt8] {
        do { return try DigestAlgorithm(named: settings.verifyAlg).digest(data) } catch {
            invariantViolated("verify-alg \(settings.verifyAlg): \(error)")
            return []
        }
    }

    // MARK: starting

    /// `verify`: asks the peer to become VerifyT (P_STATE_CHG_REQ), as drbdadm verify does.
    mutating func startVerifyVerb(_ token: UInt64, startSector: UInt64?) {
        if let why = verifyRefusal() { emit(.adminDone(token: token, error: AdminRefusal(why))); return }
        if let s = startSector, s >= sizeSectors {
            emit(.adminDone(token: token, error: "start sector \(s) is beyond the end of the device (\(sizeSectors) sectors)"))
            return
        }
        pendingAdmin = (token, .verify(startSector: startSector))
        send(.stateChangeRequest(mask: StateWord.connMask, value: ConnectionState.verifyS.rawValue << 4, connectionWide: false))
    }

    /// Why a verify cannot start now (on either side), or nil.
    func verifyRefusal() -> String? {
        if settings.verifyAlg.isEmpty { return "verify-alg is not set in the net section" }
        if link == nil || conn != .connected { return "the connection is \(conn), not Connected" }
        if disk != .upToDate || peerDisk != .upToDate { return "both disks must be UpToDate (here \(disk), peer \(peerDisk))" }
        return nil
    }

    mutating func startVerifyAsSource(startSector: UInt64?) {
        let start = min(startSector.map { $0 / 8 } ?? verifyResumeBit ?? 0, bmBits)
        let windowed = (link?.featureFlags ?? 0) & ConnectionFeatures.tandemPeer != 0
        verify = VerifyState(isSource: true, startBit: start, totalBits: bmBits - start, cursor: start,
                             controller: windowed ? nil : ResyncController(settings.controller), lastStepMs: nowMs, startMs: nowMs,
                             reportSector: start * 8)
        verifyResumeBit = nil
        conn = .verifyS
        log("Online verify started at sector \(start * 8) (\((bmBits - start) * 4) KB to verify)")
        sendState()
        verifyStep()
    }

    mutating func startVerifyAsTarget() {
        verify = VerifyState(isSource: false, startBit: 0, totalBits: bmBits, cursor: 0, lastStepMs: nowMs, startMs: nowMs)
        verifyResumeBit = nil
        conn = .verifyT
        sendState()
    }

    @discardableResult
    mutating func changeVerify<T>(_ body: (inout VerifyState) -> T) -> T? {
        guard verify != nil else { return nil }
        return body(&verify!)
    }

    // MARK: VerifyS

    mutating func verifyTick() {
        guard let v = verify, v.isSource, conn == .verifyS, nowMs &- v.lastStepMs >= ResyncController.stepMs else { return }
        verifyStep()
    }

    /// One controller step: toward a kernel peer DRBD's controller; toward a Tandem peer
    /// c-max-rate's share of the step, refilled as results come.
    mutating func verifyStep() {
        let now = nowMs
        let maxRate = Int(settings.cMaxRateKiB)
        changeVerify { v in
            v.lastStepMs = now
            if let c = v.controller {
                var c = c
                v.allowanceBlocks = c.step(arrived: v.arrivedSectors) / 8
                v.controller = c
            } else {
                v.allowanceBlocks = maxRate * 1024 * Int(ResyncController.stepMs) / 1000 / 4096
            }
            v.arrivedSectors = 0
        }
        requestVerifyBlocks()
    }

    /// Sends P_OV_REQUEST for the next blocks within the allowance, at most max-buffers/2 in
    /// flight; each request's own read is taken at the moment it leaves.
    mutating func requestVerifyBlocks() {
        guard var v = verify, v.isSource, conn == .verifyS, link != nil else { return }
        verify = nil
        let cap = max(1, settings.maxBuffers / 2)
        var requested = 0
        while v.inFlight.count < cap && v.allowanceBlocks > 0 && v.cursor < bmBits {
            let bit = v.cursor
            v.cursor += 1
            let sector = bit * 8
            let size = UInt32(min(4096, sizeBytes - bit * 4096))
            v.inFlight[sector] = VerifyCheck(size: size)
            v.allowanceBlocks -= 1
            requested += 1
            pointRead(sector: sector, size: size, purpose: .verifyRead(generation: linkGeneration, sector: sector, size: size, kind: .atRequest))
            send(.blockRequest(.ovRequest, BlockRequest(sector: sector, blockID: BlockRequest.syncerID, size: size), digest: []))
        }
        v.controller?.requested(requested * 8)
        verify = v
        if v.cursor >= bmBits && v.inFlight.isEmpty { finishVerify() }
    }

    /// P_OV_REPLY: the peer's digest of a block this node asked for.
    mutating func onVerifyReply(_ r: BlockRequest, digest: [UInt8]) {
        guard let v = verify, v.isSource, let c = v.inFlight[r.sector], c.size == r.size, c.peer == nil else {
            fail("protocol error: P_OV_REPLY for sector \(r.sector) (\(r.size) bytes), which was not requested")
            return
        }
        guard digest.count == verifyDigestSize else {
            fail("protocol error: P_OV_REPLY with a digest of \(digest.count) bytes; verify-alg \(settings.verifyAlg) gives \(verifyDigestSize ?? 0)")
            return
        }
        changeVerify { $0.inFlight[r.sector]!.peer = digest }
        if let a = c.atRequest, a == digest {
            decideVerify(r.sector)
            return
        }
        // This node's block now, after every write the peer made before it read.
        changeVerify { $0.inFlight[r.sector]!.replyReadIssued = true }
        pointRead(sector: r.sector, size: r.size, purpose: .verifyRead(generation: linkGeneration, sector: r.sector, size: r.size, kind: .atReply))
    }

    mutating func onVerifyReadDone(_ gen: UInt64, _ result: DiskResult, _ sector: UInt64, _ size: UInt32, _ kind: VerifyReadKind) {
        releaseReadLocks(sector: sector, size: size)
        guard gen == linkGeneration, link != nil else { return }
        if readFailureEndsLink(result, sector: sector, size: size) { return }
        let digest: [UInt8]
        if case .data(let d) = result, d.count == Int(size) {
            digest = verifyDigest(d)
        } else {
            log("verify: local read of sector \(sector) failed: \(result)")
            // As DRBD, the peer gets a zeroed digest; a comparison here gets one of the wrong
            // length, which matches nothing: a block that cannot be read is out of sync.
            digest = kind == .atRequest || kind == .atReply ? [] : [UInt8](repeating: 0, count: verifyDigestSize ?? 0)
        }
        switch kind {
        case .forPeer(let blockID):
            receiveBudget.resyncReplyBytes -= Int(size)
            send(.blockRequest(.ovReply, BlockRequest(sector: sector, blockID: blockID, size: size), digest: digest))
        case .atRequest:
            guard verify?.inFlight[sector] != nil else { return }
            changeVerify { $0.inFlight[sector]!.atRequest = digest }
            decideVerify(sector)
        case .atReply:
            guard verify?.inFlight[sector] != nil else { return }
            changeVerify { $0.inFlight[sector]!.atReply = digest }
            decideVerify(sector)
        }
    }

    /// Gives the result once what it needs is known.
    mutating func decideVerify(_ sector: UInt64) {
        guard let c = verify?.inFlight[sector], let peer = c.peer, let a = c.atRequest else { return }
        var inSync = peer == a
        if !inSync {
            guard c.replyReadIssued else {
                invariantViolated("verify of sector \(sector): no read at the reply")
                return
            }
            guard let b = c.atReply else { return }
            inSync = peer == b
        }
        changeVerify { v in
            v.inFlight[sector] = nil
            v.doneBits += 1
            v.arrivedSectors += Int(c.size / 512)
        }
        reportVerifyResult(sector: sector, size: c.size, inSync: inSync)
        send(.blockAck(.ovResult, BlockAck(sector: sector, blockID: inSync ? BlockRequest.inSyncID : BlockRequest.outOfSyncID,
                                           size: c.size, seqNum: nextSeq())), .meta)
        requestVerifyBlocks()
    }

    /// Takes a result (the block is marked at once) and reports those now in sector order.
    mutating func reportVerifyResult(sector: UInt64, size: UInt32, inSync: Bool) {
        if !inSync { setBits(offset: sector * 512, length: UInt64(size)) }
        changeVerify { $0.unreported[sector] = (size, inSync) }
        while let v = verify, let r = v.unreported[v.reportSector] {
            changeVerify { v in
                v.unreported[v.reportSector] = nil
                v.reportSector += UInt64(r.size / 512)
            }
            noteVerifyResult(sector: v.reportSector, size: r.size, inSync: r.inSync)
        }
    }

    /// Counts a block found out of sync and logs runs of them as DRBD does ("Out of sync:
    /// start=S, size=N (sectors)").
    mutating func noteVerifyResult(sector: UInt64, size: UInt32, inSync: Bool) {
        if inSync {
            flushVerifyRun()
            return
        }
        let sectors = UInt64(size / 512)
        let extended = changeVerify { v -> Bool in
            v.foundBits += 1
            if let r = v.run, r.sector + r.sectors == sector {
                v.run = (r.sector, r.sectors + sectors)
                return true
            }
            return false
        } ?? false
        if !extended {
            flushVerifyRun()
            changeVerify { $0.run = (sector, sectors) }
        }
    }

    mutating func flushVerifyRun() {
        guard let r = verify?.run else { return }
        verify?.run = nil
        log("Out of sync: start=\(r.sector), size=\(r.sectors) (sectors)")
    }

    // MARK: VerifyT

    /// P_OV_REQUEST: this node's digest of the block, read at this point of the stream.
    mutating func onVerifyRequest(_ r: BlockRequest) {
        guard !settings.verifyAlg.isEmpty else {
            fail("protocol error: P_OV_REQUEST but verify-alg is not set here")
            return
        }
        if var v = verify, !v.isSource, !v.targetStarted {
            verify = nil
            v.targetStarted = true
            v.startBit = r.sector / 8
            v.totalBits = bmBits - v.startBit
            v.reportSector = v.startBit * 8
            v.doneBits = 0
            verify = v
            log("Online verify start sector: \(r.sector)")
        }
        receiveBudget.resyncReplyBytes += Int(r.size)
        pointRead(sector: r.sector, size: r.size, purpose: .verifyRead(generation: linkGeneration, sector: r.sector, size: r.size,
                                                                       kind: .forPeer(blockID: r.blockID)))
    }

    /// P_OV_RESULT: the peer compared; a block out of sync is marked here too.
    mutating func onVerifyResult(_ a: BlockAck) {
        let inSync = a.blockID != BlockRequest.outOfSyncID
        guard a.blockID == BlockRequest.inSyncID || !inSync else {
            fail("protocol error: P_OV_RESULT with block id \(a.blockID)")
            return
        }
        let offset = a.sector * 512
        guard offset <= sizeBytes, UInt64(a.size) <= sizeBytes - offset else {
            fail("protocol error: P_OV_RESULT beyond the end of the device")
            return
        }
        guard let v = verify, !v.isSource else {
            // The result of a verify that already ended here (the peer's state came first).
            if !inSync { setBits(offset: offset, length: UInt64(a.size)) }
            return
        }
        changeVerify { $0.doneBits += 1 }
        reportVerifyResult(sector: a.sector, size: a.size, inSync: inSync)
        if v.doneBits + 1 >= v.totalBits { finishVerify() }
    }

    // MARK: ending

    mutating func finishVerify() {
        guard var v = verify else { return }
        // Results not reported yet (a gap: the peer ended early) are counted in their order.
        for sector in v.unreported.keys.sorted() {
            let r = v.unreported[sector]!
            verify?.unreported[sector] = nil
            noteVerifyResult(sector: sector, size: r.size, inSync: r.inSync)
        }
        v = verify!
        flushVerifyRun()
        verify = nil
        lastVerify = (v.totalBits, v.foundBits)
        conn = .connected
        let seconds = max(1, (nowMs &- v.startMs) / 1000)
        logState("Online verify done (total \(seconds) sec; \(v.doneBits * 4 / seconds) K/sec)")
        if v.foundBits > 0 {
            logState("Online verify found \(v.foundBits) 4k block out of sync!")
        }
        sendState()
    }

    /// The link went down during a verify: the next one starts where this one got to.
    mutating func verifyLinkLost() {
        guard let v = verify else { return }
        verify = nil
        let reached = v.isSource ? (v.inFlight.keys.min().map { $0 / 8 } ?? v.cursor) : v.startBit + v.doneBits
        if reached < bmBits {
            verifyResumeBit = reached
            logState("Online verify stopped at sector \(reached * 8) (\(v.foundBits) blocks out of sync found so far); the next verify starts there")
        }
        if let r = v.run { log("Out of sync: start=\(r.sector), size=\(r.sectors) (sectors)") }
    }

    // MARK: reads at a point of the stream

    /// A read that must see its blocks after every write issued before it and before any
    /// issued after it: it waits for local writes in flight, and holds read locks that make
    /// later writes wait until it is done.
    mutating func pointRead(sector: UInt64, size: UInt32, purpose: DiskPurpose) {
        let lo = sector / 8, hi = lo + (UInt64(size) + 4095) / 4096
        for b in lo..<hi { readLocks[b, default: 0] += 1 }
        if localWritesCover(sector: sector, size: size) {
            readsWaitingForWrites.append(WaitingRead(sector: sector, size: size, purpose: purpose, locked: true))
        } else {
            diskOp(.read(offset: sector * 512, length: Int(size)), purpose)
        }
    }

    mutating func releaseReadLocks(sector: UInt64, size: UInt32) {
        let lo = sector / 8, hi = lo + (UInt64(size) + 4095) / 4096
        for b in lo..<hi {
            guard let n = readLocks[b] else { invariantViolated("read lock of block \(b) released twice"); continue }
            readLocks[b] = n > 1 ? n - 1 : nil
        }
        if !writesWaitingForReads.isEmpty { wakeWritesWaitingForReads() }
        if inbound.waitingForRead {
            inbound.waitingForRead = false
            drainInbound()
        }
    }

    func readLocked(offset: UInt64, length: UInt64) -> Bool {
        guard !readLocks.isEmpty, length > 0 else { return false }
        return (offset / 4096..<(offset + length + 4095) / 4096).contains { readLocks[$0] != nil }
    }

    /// An application write must wait: a verify read holds one of its blocks, or an earlier
    /// write that overlaps it waits already.
    func writeMustWaitForReads(offset: UInt64, length: UInt64) -> Bool {
        if readLocked(offset: offset, length: length) { return true }
        return writesWaitingForReads.contains { rid in
            guard let r = requests[rid] else { return false }
            return r.offset < offset + length && offset < r.offset + r.length
        }
    }

    /// The writes held by verify reads go on, in order, unless still held.
    mutating func wakeWritesWaitingForReads() {
        let waiting = writesWaitingForReads
        writesWaitingForReads = []
        for rid in waiting where requests[rid]?.pending != nil { issue(rid) }
    }
}
