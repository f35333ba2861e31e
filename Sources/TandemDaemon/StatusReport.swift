import Foundation
import TandemCodecs
import TandemEngine

/// The status of a resource in the two shapes `tandem status` prints: one JSON object with
/// DRBD's spellings, and DRBD's text layout rendered from it.
public struct StatusReport: Sendable {
    public var resource: String
    public var peerName: String
    public var status: EngineStatus
    public var export: String
    /// Resync progress: bytes per second over the last interval and the estimated seconds left.
    public var syncRate: Double?
    public var lastError: String?
    /// The link's TLS: what it negotiated while up ("TLSv1.3 TLS_AES_256_GCM_SHA384"),
    /// "configured" while down; nil without TLS.
    public var tls: String?
    /// The EBS writer's counts: writes applied and the I/Os they took (nil without one).
    public var diskWrites: (writes: UInt64, ios: UInt64)?
    /// The daemon's heap in use (allocated, not freed), in KiB.
    public var heapInUseKiB: UInt64?

    public init(resource: String, peerName: String, status: EngineStatus, export: String, syncRate: Double?, lastError: String?) {
        self.resource = resource; self.peerName = peerName; self.status = status; self.export = export
        self.syncRate = syncRate; self.lastError = lastError
    }

    public var outOfSyncKiB: UInt64 { status.outOfSyncBits * 4 }

    /// Percentage of the resync done, when one runs.
    public var done: Double? {
        if isVerifying {
            guard status.verifyTotalBits > 0 else { return 100 }
            return 100.0 * Double(min(status.verifyDoneBits, status.verifyTotalBits)) / Double(status.verifyTotalBits)
        }
        guard status.connection.isSyncing || [.wfBitMapS, .wfBitMapT, .wfSyncUUID].contains(status.connection),
              status.resyncTotalBits > 0 else { return nil }
        let left = min(status.outOfSyncBits, status.resyncTotalBits)
        return 100.0 * Double(status.resyncTotalBits - left) / Double(status.resyncTotalBits)
    }

    var isVerifying: Bool { status.connection == .verifyS || status.connection == .verifyT }

    public var etaSeconds: Double? {
        guard done != nil, let r = syncRate, r > 0 else { return nil }
        if isVerifying { return Double(status.verifyTotalBits &- status.verifyDoneBits) * 4096 / r }
        return Double(outOfSyncKiB * 1024) / r
    }

    public var json: [String: Any] {
        var o: [String: Any] = [
            "resource": resource, "role": "\(status.role)", "disk": "\(status.disk)",
            "connection": "\(status.connection)", "peer": peerName, "peer-role": "\(status.peerRole)",
            "peer-disk": "\(status.peerDisk)", "out-of-sync-kib": outOfSyncKiB,
            "protocol": ["?", "A", "B", "C"][Int(min(status.wireProtocol, 3))], "export": export,
            "writes-in-flight": status.writesInFlight,
            "al-writes-waiting": status.writesWaitingForActivityLog,
            "al-extents-hot": status.activityLogHot, "al-extents-held": status.activityLogHeld,
            "bitmap-unwritten-pages": status.bitmapPagesUnwritten,
            "size-kib": status.sizeSectors / 2, "data-area-kib": status.backingSectors / 2,
            "resync-data-kib": status.resyncDataBytes / 1024, "resync-wire-kib": status.resyncWireBytes / 1024,
            "replicated-data-kib": status.replicatedDataBytes / 1024, "replicated-wire-kib": status.replicatedWireBytes / 1024,
            "uuids": [Hex.upper(status.uuids.current, digits: 16), Hex.upper(status.uuids.bitmap, digits: 16),
                      Hex.upper(status.uuids.history0, digits: 16), Hex.upper(status.uuids.history1, digits: 16)],
        ]
        if let h = heapInUseKiB { o["heap-in-use-kib"] = h }
        if let w = diskWrites {
            o["disk-writes"] = w.writes
            o["disk-write-ios"] = w.ios
        }
        if let d = done {
            o["done"] = (d * 100).rounded() / 100
            if !isVerifying { o["resync-total-kib"] = status.resyncTotalBits * 4 }
        }
        if status.resyncSameBytes > 0 { o["resync-same-kib"] = status.resyncSameBytes / 1024 }
        // The verify running, else the last one: KiB to verify, verified, found out of sync.
        if status.verifyTotalBits > 0 || isVerifying {
            o["verify-total-kib"] = status.verifyTotalBits * 4
            o["verify-done-kib"] = status.verifyDoneBits * 4
            o["verify-found-kib"] = status.verifyFoundBits * 4
        }
        if let s = status.verifyResumeSector { o["verify-resume-sector"] = s }
        if let r = syncRate { o["sync-rate-kib"] = Int(r / 1024) }
        if let e = etaSeconds { o["eta-seconds"] = Int(e.rounded(.up)) }
        if let e = lastError ?? status.lastError { o["last-error"] = e }
        if let t = tls { o["tls"] = t }
        if let e = status.diskError { o["disk-error"] = e }
        if status.splitBrain { o["split-brain"] = true }
        o["holds"] = DataHint.describe(status)
        return o
    }

    public var jsonLine: String {
        let data = try! JSONSerialization.data(withJSONObject: json, options: [.sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }

    /// The `drbdadm status` layout, from the JSON object (what the command gets over the
    /// control socket).
    public static func text(json r: [String: Any]) -> String {
        func s(_ k: String) -> String { (r[k] as? String) ?? "?" }
        var out = "\(s("resource")) role:\(s("role"))\n  disk:\(s("disk"))"
        // As drbdsetup's `blocked:`: writes wait, here for a free activity-log slot.
        if let w = r["al-writes-waiting"] as? Int, w > 0 { out += " blocked:activity-log writes-waiting:\(w)" }
        if let e = r["disk-error"] as? String { out += "\n  disk-error: \(e)" }
        out += "\n"
        out += "  \(s("peer")) connection:\(s("connection")) role:\(s("peer-role"))\n    peer-disk:\(s("peer-disk"))"
        if let d = r["done"] as? Double {
            out += String(format: " done:%.2f", d)
            if let rate = r["sync-rate-kib"] as? Int { out += " rate:\(rate)KiB/s" }
            if let eta = r["eta-seconds"] as? Int { out += " eta:\(eta)s" }
        }
        if let oos = r["out-of-sync-kib"] as? Int, oos > 0 { out += " out-of-sync:\(oos)k" }
        if let t = r["tls"] as? String { out += "\n  tls: \(t)" }
        if let h = r["holds"] as? String { out += "\n  holds: \(h)" }
        if let e = r["last-error"] as? String { out += "\n  last-error: \(e)" }
        if r["split-brain"] as? Bool == true {
            out += "\n  split-brain: unresolved; on the node whose changes are to be dropped: secondary, connect --discard-my-data"
        }
        return out
    }
}
