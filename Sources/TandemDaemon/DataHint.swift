import TandemCodecs
import TandemEngine

/// What a node holds, in one sentence for `status` (#10 item 3): whose data is the newest and
/// what a restore or the next connection would move, so an operator following the failover
/// runbook knows at each step where the good copy is.
enum DataHint {
    static func describe(_ s: EngineStatus) -> String {
        let marked = kib(s.outOfSyncBits * 4)
        let device = kib(s.sizeSectors / 2)
        if s.disk <= .diskless { return "no local disk: nothing is stored here" }
        if s.splitBrain {
            return "split brain: both nodes changed the data while apart (\(marked) changed here); nothing moves until one side's changes are dropped (connect --discard-my-data there)"
        }
        switch s.connection {
        case .syncTarget, .pausedSyncT:
            return "being restored from the peer, whose data is newer: \(marked) left"
        case .syncSource, .pausedSyncS:
            return "the newest data: the peer is resyncing from here, \(marked) left"
        case .startingSyncT, .wfBitMapT, .wfSyncUUID:
            return "the peer's data is newer: a resync from it is starting"
        case .startingSyncS, .wfBitMapS:
            return "the newest data: a resync to the peer is starting"
        case .verifyS, .verifyT:
            return "in sync with the peer by the generation UUIDs; an online verify compares the blocks"
        case .behind:
            return "behind the Primary (it pulled ahead): \(marked) to resync from it"
        case .ahead:
            return "the newest data (ahead of the peer): \(marked) to resync to it when the link catches up"
        case .connected:
            if s.disk == .upToDate && s.peerDisk == .upToDate && s.outOfSyncBits > 0 {
                // A verify found blocks that differ (or writes failed on one side): both disks
                // are UpToDate by their states, not by their blocks.
                return "\(marked) out of sync with the peer (found by verify or a failed write): `tandem resync` \(s.role == .primary ? "here" : "on the Primary") moves them; until then the disks differ there"
            }
            if s.disk == .upToDate && s.peerDisk == .upToDate {
                return s.role == .primary ? "in sync with the peer (both UpToDate)"
                    : "in sync with the peer (both UpToDate); restore here would pull every block again (\(device))"
            }
            if s.disk == .upToDate { return "the newest data; the peer's disk is \(s.peerDisk)" }
            return "\(s.disk): the peer's data (\(s.peerDisk)) is the one to trust"
        default:
            break
        }
        // Not connected.
        switch s.disk {
        case .upToDate where s.role == .primary:
            let peer = s.uuids.peerOutdated ? " (the peer is Outdated)" : ""
            return "the newest data (Primary)\(peer); \(marked) changed since the peer was last connected go to it at the next connection"
        case .upToDate:
            return "UpToDate when last connected; if the peer is Primary and wrote since, its data is newer (restore pulls it, at least the \(marked) marked here); promote this node only if the peer is lost"
        case .outdated:
            return "Outdated: the peer has newer data; restore (or the next connection) pulls what differs"
        case .consistent:
            return "Consistent: restarted while apart, possibly older than the peer's; promoting calls fence-peer first"
        default:
            return "\(s.disk): not usable until it is resynced from the peer (restore)"
        }
    }

    static func kib(_ k: UInt64) -> String {
        k >= 10 << 20 ? "\(k >> 20) GiB" : k >= 10 << 10 ? "\(k >> 10) MiB" : "\(k) KiB"
    }
}
