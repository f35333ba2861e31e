import TandemCodecs

/// Local data I/O errors (disk on-io-error) and life with a detached disk. A failed read or
/// write marks its blocks out of sync, then the policy applies: pass_on keeps the disk as
/// Inconsistent and resyncs the blocks from the peer; detach (the default) and
/// call-local-io-error drop the disk. A Diskless Primary goes on through its UpToDate peer:
/// writes go to the peer alone (complete on its ack, as the protocol says), reads are asked of
/// it. The peer of a Diskless node holds the only copy: it starts a new data generation and
/// marks every write it applies, durably before the write, so the detached disk resyncs exactly
/// what it missed when it returns (`up` with the disk mended: a bitmap resync).
extension ReplicationEngine {
    /// What failed, for the log: a read or write of a byte range, or a flush.
    enum LocalIO {
        case read(offset: UInt64, length: UInt64)
        case write(offset: UInt64, length: UInt64)
        case flush

        var text: String {
            switch self {
            case .read(let o, let l): "read of sector \(o / 512) (\(l) bytes)"
            case .write(let o, let l): "write of sector \(o / 512) (\(l) bytes)"
            case .flush: "flush"
            }
        }
    }

    /// A read, write or flush of the data area failed: its blocks hold no good copy here.
    mutating func localIOError(_ io: LocalIO, _ why: String) {
        let what = "local disk: \(io.text) failed: \(why)"
        switch io {
        case .read(let o, let l), .write(let o, let l):
            setBits(offset: o, length: l)
            // Before the peer learns this disk is gone, it learns which blocks this disk
            // missed (its bitmap is all that remembers them once the disk is detached).
            if settings.onIOError != .passOn || disk <= .diskless, link != nil, conn.isConnected, l > 0 {
                var at = o
                while at < o + l {
                    let n = min(l - (at - o), UInt64(WireLimits.maxBioSize))
                    send(.blockDescriptor(.outOfSync, BlockDescriptor(sector: at / 512, size: UInt32(n))))
                    at += n
                }
            }
        case .flush: break
        }
        guard disk > .diskless else { log(what, .error); return }
        switch settings.onIOError {
        case .passOn: passOnError(what)
        case .callLocalIOError:
            emit(.runHandler(.localIOError))
            detach(what)
        case .detach: detach(what)
        }
    }

    /// on-io-error pass_on: the disk is no longer UpToDate. A Secondary's Primary starts the
    /// resync of the marked blocks on seeing it Inconsistent; a Primary stays Connected and
    /// Inconsistent (reads of the marked blocks go to the peer) until the next handshake, so
    /// its writes never wait for a bitmap exchange.
    mutating func passOnError(_ what: String) {
        log("\(what) (on-io-error pass_on: the blocks are marked out of sync)")
        guard disk > .inconsistent else { return }
        disk = .inconsistent
        lastError = what
        persistent.consistent = false
        persist()
        sendState()
    }

    /// A read from the UpToDate disk the daemon made itself failed: the policy applies, then
    /// the read is served as any read of a disk that is not UpToDate (from the peer).
    mutating func onAppReadFailed(id: UInt64, offset: UInt64, length: UInt64, error: String) {
        localIOError(.read(offset: offset, length: length), error)
        guard disk < .upToDate else {
            emit(.completeRead(id: id, data: nil, error: "local disk: \(error)"))
            return
        }
        onAppRead(id: id, offset: offset, length: length)
    }

    /// A disk result of an operation the engine issued: the policy applies to a failure.
    /// True if it failed.
    mutating func noteLocalResult(_ result: DiskResult, _ io: LocalIO) -> Bool {
        guard case .failed(let why) = result else { return false }
        localIOError(io, why)
        return true
    }

    /// A read of sectors the engine issued for the peer, a resync or a verify: the policy
    /// applies to a failure. True when the policy dropped the link (the caller stops there).
    mutating func readFailureEndsLink(_ result: DiskResult, sector: UInt64, size: UInt32) -> Bool {
        noteLocalResult(result, .read(offset: sector * 512, length: UInt64(size))) && link == nil
    }

    // MARK: the peer of a Diskless node

    /// The peer's disk is gone (detached, or it connected without one): this node's disk is
    /// the only copy. As DRBD, an UpToDate node starts a new data generation (so the returning
    /// disk resyncs from it by bitmap) and marks every write it applies from now on.
    mutating func peerDiskLost() {
        if conn.isSyncing || verify != nil {
            fail("the peer's disk was detached during a resync or verify")
            return
        }
        guard disk == .upToDate else { return }
        if persistent.bitmap == 0 && (role == .primary || peerRole == .primary) {
            newCurrentUUID()
            // The peer learns the new generation now: when its disk returns it compares with it.
            sendUUIDs()
        }
        log("the peer has no disk: this node holds the only copy; what is written from now on is marked for the peer's disk")
    }

    /// A write of the peer applied while the peer has no disk: the write's bits are set and durable before the write is issued, so a crash of this
    /// node cannot lose the record of it. Returns the meta-data write to wait for, if any.
    mutating func markForAbsentPeerDisk(offset: UInt64, length: UInt64) -> UInt64? {
        let r = OutOfSyncBitmap.bits(coveringBytes: offset, length: length).clamped(to: 0..<bitmap.bitCount)
        guard !r.isEmpty else { return nil }
        bitmap.set(r)
        let first = Int(r.lowerBound / OutOfSyncBitmap.bitsPerPage), last = Int((r.upperBound - 1) / OutOfSyncBitmap.bitsPerPage)
        let pages = Set(first...last)
        if !pages.isDisjoint(with: bitmap.dirtyPages) { return writeBackBitmap(pages: pages) }
        // Already captured in a write queued or in flight, or durable.
        return lane.idle ? nil : lane.nextSeq - 1
    }

    /// Writes of the peer held until their bits are durable, issued once they are.
    mutating func releaseWritesAfterBits(upTo seq: UInt64) {
        guard !writesAfterBits.isEmpty else { return }
        while let w = writesAfterBits.first, w.seq <= seq {
            writesAfterBits.removeFirst()
            diskOp(w.op, w.purpose)
        }
    }

    /// The disk was detached with writes still held for their bits: they fail (the peer
    /// is told: P_NEG_ACK, and marks them).
    mutating func failWritesAfterBits(_ why: String) {
        let held = writesAfterBits
        writesAfterBits = []
        for w in held {
            guard case .peerWrite(let gen, let ack, let sector, let blockID, let size, let clears) = w.purpose else {
                invariantViolated("a write held for its bits is not a peer write")
                continue
            }
            onPeerWriteDone(gen, .failed(why), ack, sector, blockID, size, clears)
        }
    }

    /// A Diskless node reconnected: the blocks it knows its disk missed go to the peer as
    /// P_OUT_OF_SYNC (the P_OUT_OF_SYNC sent when the disk failed may have been lost with the
    /// link).
    mutating func sendOutOfSyncRuns() {
        var at: UInt64 = 0
        let limitBits = UInt64(WireLimits.maxBioSize) / 4096
        while let s = bitmap.nextSet(from: at), s < bitmap.bitCount {
            var e = s + 1
            while e < bitmap.bitCount && e - s < limitBits && bitmap.isSet(e) { e += 1 }
            send(.blockDescriptor(.outOfSync, BlockDescriptor(sector: s * 8, size: UInt32((e - s) * 4096))))
            at = e
        }
    }
}
