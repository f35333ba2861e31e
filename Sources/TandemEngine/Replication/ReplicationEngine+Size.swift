import TandemCodecs

/// The device's size as both nodes agree it (DRBD 8.4's receive_sizes and drbd_new_dev_size):
/// the smaller data area of the two, or the `size` option (the smaller of both nodes' once
/// connected), remembered as the last agreed size in the meta-data. A node whose data is usable
/// (Outdated or better) never shrinks at a handshake: a peer smaller than the size in use is
/// refused. `resize` grows online once both backing devices grew: each node moves its
/// meta-data to the new end (the daemon, `.checkBacking`), the size grows when both have, and
/// the grown part resyncs from the Primary.
extension ReplicationEngine {
    mutating func sendSizes(askingForReply: Bool = false) {
        let wsame = (link?.featureFlags ?? 0) & ConnectionFeatures.writeSame != 0
        send(.sizes(Sizes(backingSectors: backingSectors, userSectors: userSizeSectors, currentSectors: askingForReply ? 0 : sizeSectors,
                          maxBioSize: settings.maxBioSize, queueLimits: wsame ? .init(
                            physicalBlockSize: 4096, logicalBlockSize: 512, ioMin: 4096, ioOpt: 0,
                            discardEnabled: 1, discardZeroesData: 1, writeSameCapable: 0) : nil)))
    }

    /// P_SIZES. At the handshake the size is agreed at once (before the UUIDs decide the sync
    /// direction); later (the peer resized) this node first looks whether its own backing
    /// device grew too, and the data stream waits for the answer.
    mutating func onPeerSizes(_ s: Sizes) {
        link?.peerSizes = s
        guard s.backingSectors != 0 else { return } // a diskless peer: nothing to agree
        if conn == .wfReportParams {
            if s.userSectors != 0 { userSizeSectors = userSizeSectors == 0 ? s.userSectors : min(userSizeSectors, s.userSectors) }
            agreeSize(with: s, atHandshake: true)
            return
        }
        guard backingCheck == nil else { return } // the answer to the check in flight agrees with the newest sizes
        inbound.waitingForBacking = true
        checkBacking(admin: nil)
    }

    mutating func checkBacking(admin: UInt64?) {
        let token = nextToken
        nextToken += 1
        backingCheck = BackingCheck(token: token, admin: admin)
        emit(.checkBacking(token: token))
    }

    /// The daemon's answer to `.checkBacking`: the data area now (larger if the device grew and
    /// the meta-data moved), or why it could not look.
    mutating func onBackingChecked(token: UInt64, dataSectors: UInt64?, error: String?) {
        guard let c = backingCheck, c.token == token else {
            invariantViolated("a backing-device check answered that was not asked for (token \(token))")
            return
        }
        backingCheck = nil
        if let error { log("resize: \(error)") }
        if let n = dataSectors, n != backingSectors {
            guard n > backingSectors else {
                invariantViolated("the data area shrank from \(backingSectors) to \(n) sectors")
                return
            }
            log("the backing device grew: data area \(backingSectors) -> \(n) sectors (meta-data moved to the new end)")
            backingSectors = n
            bitmap = bitmap.grown(to: (n + 7) / 8)
        }
        if let l = link, let s = l.peerSizes, s.backingSectors != 0, conn.isConnected, conn != .wfReportParams {
            let before = sizeSectors
            agreeSize(with: s, atHandshake: false)
            // The peer learns this node's sizes when they changed or differ from what it
            // said; `resize` asks for its answer (DRBD's trigger_reply: current size 0).
            if c.admin != nil { sendSizes(askingForReply: true) }
            else if before != sizeSectors || s.currentSectors != sizeSectors { sendSizes() }
            // The source of a grown part starts once the peer said it has the same size (its
            // P_SIZES comes after it waits for the sync UUID).
            if growResyncPending && conn == .connected && s.currentSectors == sizeSectors { resyncAfterGrow() }
        }
        if let t = c.admin { emit(.adminDone(token: t, error: error.map { AdminRefusal($0) })) }
        if inbound.waitingForBacking {
            inbound.waitingForBacking = false
            drainInbound()
        }
    }

    /// `resize`: grow to what both backing devices allow now.
    mutating func resizeCommand(token: UInt64) {
        let refusal: String? =
            disk <= .diskless ? "no local disk"
            : backingCheck != nil ? "a resize is already running"
            : conn.isSyncing || verify != nil || [.startingSyncS, .startingSyncT, .wfBitMapS, .wfBitMapT, .wfSyncUUID, .wfReportParams].contains(conn)
                ? "resize is not allowed during a resync or verify (\(conn))"
            : role != .primary && peerRole != .primary ? "need one Primary to resize (as DRBD)"
            : nil
        if let refusal { emit(.adminDone(token: token, error: AdminRefusal(refusal))); return }
        checkBacking(admin: token)
    }

    /// drbd_new_dev_size with the peer's P_SIZES: the smaller data area, or the `size` option.
    mutating func agreeSize(with s: Sizes, atHandshake: Bool) {
        var new = min(backingSectors, s.backingSectors)
        if userSizeSectors != 0 {
            guard userSizeSectors <= new else {
                fail("the size option (\(userSizeSectors) sectors) is larger than the smaller data area of the two nodes (\(new) sectors)", standAlone: true)
                return
            }
            new = userSizeSectors
        }
        guard new != sizeSectors else { return }
        if new < sizeSectors && (!atHandshake || disk >= .outdated) {
            // Never shrink a device with usable data at a handshake (its data would be cut
            // off); Tandem does not shrink online either.
            fail("the peer's disk is too small: its data area is \(s.backingSectors) sectors, this node's device is \(sizeSectors) sectors (the size last agreed); refusing to connect", standAlone: true)
            return
        }
        changeSize(to: new, atHandshake: atHandshake)
    }

    /// The agreed size changes: bits past a smaller size are cleared, a grown part is marked out
    /// of sync (both nodes do), and the new size is written to the meta-data after those bits.
    mutating func changeSize(to new: UInt64, atHandshake: Bool) {
        precondition(new <= backingSectors && new > 0, "a size beyond the data area")
        let old = sizeSectors
        let oldBits = bmBits
        sizeSectors = new
        let newBits = bmBits
        if newBits < oldBits { _ = bitmap.clear(newBits..<oldBits) }
        if newBits > oldBits { noteBitsSet(bitmap.set(oldBits..<newBits)) }
        writeBackBitmap()
        persistent.agreedSectors = new
        persist()
        log("size: \(old) -> \(new) sectors (\(new / 2) KiB) agreed with the peer")
        guard new > old else { return }
        growResyncPending = true
        // Online, the node that will be the target waits for the sync UUID at once: the
        // source sends it only after this node's P_SIZES with the new size.
        if !atHandshake && conn == .connected && !iAmGrowSource { resyncAfterGrow() }
    }

    /// resync_after_online_grow's choice: the Primary, or with two Secondaries the node that
    /// resolves conflicts.
    var iAmGrowSource: Bool { role == .primary || (peerRole != .primary && link?.resolveConflicts == true) }

    /// resync_after_online_grow: the Primary (both Secondary: the node that resolves
    /// conflicts) is the source of the grown part; the other waits for its sync UUID.
    mutating func resyncAfterGrow() {
        growResyncPending = false
        guard disk >= .inconsistent, peerDisk >= .inconsistent, conn == .connected else { return }
        if iAmGrowSource {
            guard disk == .upToDate else { return }
            log("resync of the grown part (\(bitmap.setCount * 4) KiB) as SyncSource")
            startResyncAsSource()
        } else {
            conn = .wfSyncUUID
            sendState()
        }
    }
}

/// A `.checkBacking` in flight: for `resize` (its token) or for the peer's P_SIZES.
struct BackingCheck: Sendable {
    var token: UInt64
    var admin: UInt64?
}
