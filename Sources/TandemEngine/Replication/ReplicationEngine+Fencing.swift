import TandemCodecs

/// Why fence-peer runs: the link to the peer was lost, or a promotion waits for it.
enum FencePeerRun: Sendable {
    case lostPeer
    case promotion(token: UInt64, force: Bool)
}

/// Outdating (#10 item 5), as DRBD 8.4 does it with `fencing resource-only`: a Primary that
/// loses its UpToDate peer calls fence-peer, whose exit code says what became of the peer's
/// disk; a disconnected Secondary is outdated by `outdate` (what the handler runs there) or
/// by the Primary's graceful disconnect; an Outdated disk is never promoted without --force,
/// and a Consistent one (restarted while apart) only once the peer is fenced.
extension ReplicationEngine {
    /// A Primary's graceful disconnect outdates an UpToDate peer when fencing is on.
    var disconnectOutdatesPeer: Bool { settings.fencing != .dontCare && role == .primary && peerDisk >= .consistent }

    /// The link to an UpToDate peer is gone while Primary: fence it.
    mutating func fenceLostPeer() {
        guard settings.fencing != .dontCare, role == .primary, fencingPeer == nil else { return }
        log("fencing resource-only: the peer may still be running; calling fence-peer to outdate it")
        fencingPeer = .lostPeer
        emit(.runHandler(.fencePeer))
    }

    /// `primary` on a Consistent disk while disconnected: fence the peer first (DRBD's
    /// conn_try_outdate_peer in drbd_set_role).
    mutating func fenceBeforePromotion(token: UInt64, force: Bool) {
        log("promotion of a Consistent disk: calling fence-peer to outdate the peer first")
        fencingPeer = .promotion(token: token, force: force)
        emit(.runHandler(.fencePeer))
    }

    mutating func onHandlerDone(_ h: Handler, _ code: Int32) {
        if h == .beforeSnapshot { onBeforeSnapshotDone(code); return }
        guard h == .fencePeer, let f = fencingPeer else { return }
        fencingPeer = nil
        // What the peer's disk is now known to be, when the handler fenced it.
        var fencedAs: DiskState?
        let what: String
        switch code {
        case 3:
            what = "peer is inconsistent or worse"
            fencedAs = .inconsistent
        case 4, 7:
            what = code == 4 ? "peer was fenced" : "peer was stonithed"
            fencedAs = .outdated
        case 5:
            if disk == .upToDate {
                what = "peer is unreachable, assumed to be dead"
                fencedAs = .outdated
            } else {
                what = "peer unreachable, doing nothing since disk != UpToDate"
            }
        case 6:
            what = "peer is active"
            if role == .secondary && disk >= .outdated {
                log("Peer is primary, outdating myself.")
                outdateMyself()
            }
        default:
            what = "fence-peer helper broken, returned \(code)"
        }
        log("fence-peer helper returned \(code) (\(what))")
        if let d = fencedAs, link == nil {
            peerDisk = d
            if !persistent.peerOutdated { persistent.peerOutdated = true; persist() }
        }
        guard case .promotion(let token, let force) = f else { return }
        if fencedAs != nil && link == nil && disk == .consistent {
            disk = .upToDate
            becomePrimary(force: force, token: token)
        } else if link != nil {
            emit(.adminDone(token: token, error: "the peer connected while it was being fenced; try again"))
        } else {
            emit(.adminDone(token: token, error: .cannotPromote("local disk is Consistent and fence-peer could not outdate the peer (\(what)): it may hold newer data; use --force only if it is lost")))
        }
    }

    /// `outdate`: refused while connected (DRBD: "Refusing to be Outdated while Connected"),
    /// on a Primary, and below Outdated.
    mutating func outdateVerb(_ token: UInt64) {
        let error: String?
        if link != nil { error = "Refusing to be Outdated while Connected" }
        else if role == .primary { error = "Refusing to be Outdated while Primary" }
        else if disk < .outdated { error = "Disk state is lower than outdated (\(disk))" }
        else {
            if disk != .outdated { logState("disk outdated by request: the peer holds newer data") }
            outdateMyself()
            error = nil
        }
        emit(.adminDone(token: token, error: error.map { AdminRefusal($0) }))
    }

    mutating func outdateMyself() {
        disk = .outdated
        if persistent.wasUpToDate {
            persistent.wasUpToDate = false
            persist()
        }
    }
}
