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
    /// The recovery point now (see ReplicationEngine.replicationLag).
    public var lagBytes: UInt64 = 0
    public var lagSeconds: Double = 0
    /// What the node asked of its disk since the daemon started.
    public var diskIO = DiskIO()
    /// Clients with the export open, and application requests not yet answered.
    public var exportOpen = 0
    public var upperPending = 0
    public var lowerPending = 0
    /// Requests sent to the peer awaiting its ack; the peer's writes not acknowledged yet.
    public var peerPending = 0
    public var peerUnacked = 0
    public var peerNodeID = 0
    public var minor = 0
    /// The EC2 node's snapshots (nil elsewhere).
    public var snapshots: SnapshotFacts?

    public struct DiskIO: Sendable, Equatable {
        public var readBytes: UInt64 = 0
        public var writtenBytes: UInt64 = 0
        public var activityLogWrites: UInt64 = 0
        public var bitmapWrites: UInt64 = 0
        public init(readBytes: UInt64 = 0, writtenBytes: UInt64 = 0, activityLogWrites: UInt64 = 0, bitmapWrites: UInt64 = 0) {
            self.readBytes = readBytes; self.writtenBytes = writtenBytes
            self.activityLogWrites = activityLogWrites; self.bitmapWrites = bitmapWrites
        }
    }

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

    /// The status as the control protocol carries it (and `status --json` prints it).
    public var snapshot: StatusSnapshot {
        var o = StatusSnapshot(
            resource: resource, role: "\(status.role)", disk: "\(status.disk)", connection: "\(status.connection)",
            peer: peerName, peerRole: "\(status.peerRole)", peerDisk: "\(status.peerDisk)", outOfSyncKiB: outOfSyncKiB,
            protocol: ["?", "A", "B", "C"][Int(min(status.wireProtocol, 3))], export: export,
            writesInFlight: status.writesInFlight, alWritesWaiting: status.writesWaitingForActivityLog,
            alExtentsHot: status.activityLogHot, alExtentsHeld: status.activityLogHeld,
            bitmapUnwrittenPages: status.bitmapPagesUnwritten,
            sizeKiB: status.sizeSectors / 2, dataAreaKiB: status.backingSectors / 2,
            resyncDataKiB: status.resyncDataBytes / 1024, resyncWireKiB: status.resyncWireBytes / 1024,
            replicatedDataKiB: status.replicatedDataBytes / 1024, replicatedWireKiB: status.replicatedWireBytes / 1024,
            uuids: [Hex.upper(status.uuids.current, digits: 16), Hex.upper(status.uuids.bitmap, digits: 16),
                    Hex.upper(status.uuids.history0, digits: 16), Hex.upper(status.uuids.history1, digits: 16)],
            holds: DataHint.describe(status))
        o.heapInUseKiB = heapInUseKiB
        if let w = diskWrites {
            o.diskWrites = w.writes
            o.diskWriteIOs = w.ios
        }
        if let d = done {
            o.done = (d * 100).rounded() / 100
            if !isVerifying { o.resyncTotalKiB = status.resyncTotalBits * 4 }
        }
        if status.resyncSameBytes > 0 { o.resyncSameKiB = status.resyncSameBytes / 1024 }
        // The verify running, else the last one: KiB to verify, verified, found out of sync.
        if status.verifyTotalBits > 0 || isVerifying {
            o.verifyTotalKiB = status.verifyTotalBits * 4
            o.verifyDoneKiB = status.verifyDoneBits * 4
            o.verifyFoundKiB = status.verifyFoundBits * 4
        }
        o.verifyResumeSector = status.verifyResumeSector
        if let r = syncRate { o.syncRateKiB = UInt64(r / 1024) }
        if let e = etaSeconds { o.etaSeconds = UInt64(e.rounded(.up)) }
        o.lastError = lastError ?? status.lastError
        o.tls = tls
        o.diskError = status.diskError
        if status.splitBrain { o.splitBrain = true }
        o.apInFlightBytes = status.apInFlightBytes
        o.sentBytes = status.sentDataBytes
        o.receivedBytes = status.receivedDataBytes
        o.replicationLagBytes = lagBytes
        o.replicationLagSeconds = (lagSeconds * 1000).rounded() / 1000
        o.diskReadBytes = diskIO.readBytes
        o.diskWrittenBytes = diskIO.writtenBytes
        o.alWrites = diskIO.activityLogWrites
        o.bitmapWrites = diskIO.bitmapWrites
        o.exportOpen = exportOpen
        o.appRequestsPending = upperPending
        o.diskRequestsPending = lowerPending
        o.peerPending = peerPending
        o.peerUnacked = peerUnacked
        o.peerNodeID = peerNodeID
        o.minor = minor
        if let f = snapshots {
            o.lastSnapshotTime = f.lastTime
            o.lastSnapshotHoldMs = f.lastHoldMs
            o.snapshotsTaken = f.taken
            o.snapshotsFailed = f.failures
        }
        return o
    }

    /// The status as a JSON object, for event lines that add their own keys.
    public var json: [String: Any] {
        let data = (try? JSONEncoder().encode(snapshot)) ?? Data("{}".utf8)
        return ((try? JSONSerialization.jsonObject(with: data)) as? [String: Any]) ?? [:]
    }

}

/// One resource's status in DRBD's spellings: what `status --json` prints, what the control
/// protocol carries, and what the text layout is rendered from. Optional fields are left out
/// of the JSON when they do not apply.
public struct StatusSnapshot: Codable, Sendable, Equatable {
    public var resource: String
    public var role: String
    public var disk: String
    public var connection: String
    public var peer: String
    public var peerRole: String
    public var peerDisk: String
    public var outOfSyncKiB: UInt64
    public var `protocol`: String
    public var export: String
    public var writesInFlight: Int
    public var alWritesWaiting: Int
    public var alExtentsHot: Int
    public var alExtentsHeld: Int
    public var bitmapUnwrittenPages: Int
    public var sizeKiB: UInt64
    public var dataAreaKiB: UInt64
    public var resyncDataKiB: UInt64
    public var resyncWireKiB: UInt64
    public var replicatedDataKiB: UInt64
    public var replicatedWireKiB: UInt64
    public var uuids: [String]
    /// What this node's data is (the newest, older than the peer's, being restored...).
    public var holds: String
    public var heapInUseKiB: UInt64?
    public var diskWrites: UInt64?
    public var diskWriteIOs: UInt64?
    /// Percent done of the running resync or verify.
    public var done: Double?
    public var resyncTotalKiB: UInt64?
    public var resyncSameKiB: UInt64?
    public var verifyTotalKiB: UInt64?
    public var verifyDoneKiB: UInt64?
    public var verifyFoundKiB: UInt64?
    public var verifyResumeSector: UInt64?
    public var syncRateKiB: UInt64?
    public var etaSeconds: UInt64?
    public var lastError: String?
    public var tls: String?
    public var diskError: String?
    public var splitBrain: Bool?
    public var apInFlightBytes: UInt64?
    public var sentBytes: UInt64?
    public var receivedBytes: UInt64?
    public var replicationLagBytes: UInt64?
    public var replicationLagSeconds: Double?
    public var diskReadBytes: UInt64?
    public var diskWrittenBytes: UInt64?
    public var alWrites: UInt64?
    public var bitmapWrites: UInt64?
    public var exportOpen: Int?
    public var appRequestsPending: Int?
    public var diskRequestsPending: Int?
    public var peerPending: Int?
    public var peerUnacked: Int?
    public var peerNodeID: Int?
    public var minor: Int?
    /// Unix seconds of the newest EBS snapshot of the resource (the EC2 node).
    public var lastSnapshotTime: Double?
    public var lastSnapshotHoldMs: UInt64?
    public var snapshotsTaken: UInt64?
    public var snapshotsFailed: UInt64?

    public init(resource: String, role: String, disk: String, connection: String, peer: String, peerRole: String,
                peerDisk: String, outOfSyncKiB: UInt64, protocol: String, export: String, writesInFlight: Int,
                alWritesWaiting: Int, alExtentsHot: Int, alExtentsHeld: Int, bitmapUnwrittenPages: Int, sizeKiB: UInt64,
                dataAreaKiB: UInt64, resyncDataKiB: UInt64, resyncWireKiB: UInt64, replicatedDataKiB: UInt64,
                replicatedWireKiB: UInt64, uuids: [String], holds: String) {
        self.resource = resource; self.role = role; self.disk = disk; self.connection = connection; self.peer = peer
        self.peerRole = peerRole; self.peerDisk = peerDisk; self.outOfSyncKiB = outOfSyncKiB; self.protocol = `protocol`
        self.export = export; self.writesInFlight = writesInFlight; self.alWritesWaiting = alWritesWaiting
        self.alExtentsHot = alExtentsHot; self.alExtentsHeld = alExtentsHeld; self.bitmapUnwrittenPages = bitmapUnwrittenPages
        self.sizeKiB = sizeKiB; self.dataAreaKiB = dataAreaKiB; self.resyncDataKiB = resyncDataKiB
        self.resyncWireKiB = resyncWireKiB; self.replicatedDataKiB = replicatedDataKiB
        self.replicatedWireKiB = replicatedWireKiB; self.uuids = uuids; self.holds = holds
    }

    enum CodingKeys: String, CodingKey {
        case resource, role, disk, connection, peer
        case peerRole = "peer-role", peerDisk = "peer-disk", outOfSyncKiB = "out-of-sync-kib"
        case `protocol`, export
        case writesInFlight = "writes-in-flight", alWritesWaiting = "al-writes-waiting"
        case alExtentsHot = "al-extents-hot", alExtentsHeld = "al-extents-held"
        case bitmapUnwrittenPages = "bitmap-unwritten-pages", sizeKiB = "size-kib", dataAreaKiB = "data-area-kib"
        case resyncDataKiB = "resync-data-kib", resyncWireKiB = "resync-wire-kib"
        case replicatedDataKiB = "replicated-data-kib", replicatedWireKiB = "replicated-wire-kib"
        case uuids, holds
        case heapInUseKiB = "heap-in-use-kib", diskWrites = "disk-writes", diskWriteIOs = "disk-write-ios"
        case done, resyncTotalKiB = "resync-total-kib", resyncSameKiB = "resync-same-kib"
        case verifyTotalKiB = "verify-total-kib", verifyDoneKiB = "verify-done-kib", verifyFoundKiB = "verify-found-kib"
        case verifyResumeSector = "verify-resume-sector", syncRateKiB = "sync-rate-kib", etaSeconds = "eta-seconds"
        case lastError = "last-error", tls, diskError = "disk-error", splitBrain = "split-brain"
        case apInFlightBytes = "ap-in-flight-bytes", sentBytes = "sent-bytes", receivedBytes = "received-bytes"
        case replicationLagBytes = "replication-lag-bytes", replicationLagSeconds = "replication-lag-seconds"
        case diskReadBytes = "disk-read-bytes", diskWrittenBytes = "disk-written-bytes"
        case alWrites = "al-writes", bitmapWrites = "bitmap-writes", exportOpen = "export-open"
        case diskRequestsPending = "disk-requests-pending", peerPending = "peer-pending", peerUnacked = "peer-unacked"
        case appRequestsPending = "app-requests-pending", peerNodeID = "peer-node-id", minor
        case lastSnapshotTime = "last-snapshot-time", lastSnapshotHoldMs = "last-snapshot-hold-ms"
        case snapshotsTaken = "snapshots-taken", snapshotsFailed = "snapshots-failed"
    }

    /// One JSON object, keys sorted (`status --json`).
    public var jsonLine: String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return String(decoding: (try? encoder.encode(self)) ?? Data("{}".utf8), as: UTF8.self)
    }

    /// Whether both disks hold the same data now: connected, both UpToDate, nothing marked.
    public var inSync: Bool {
        connection == "Connected" && disk == "UpToDate" && peerDisk == "UpToDate" && outOfSyncKiB == 0
    }

}

/// The EC2 node's snapshots as the exporter shows them: when the newest was taken (its age is
/// the recovery point of the backups), how long writes were held for the last one, and counts.
public struct SnapshotFacts: Sendable, Equatable {
    public var lastTime: Double?
    public var lastHoldMs: UInt64?
    public var taken: UInt64 = 0
    public var failures: UInt64 = 0
    public init() {}

    mutating func taken(at time: Double, heldMs: UInt64) {
        lastTime = max(lastTime ?? time, time)
        lastHoldMs = heldMs
        taken += 1
    }

    mutating func failed(heldMs: UInt64) {
        lastHoldMs = heldMs
        failures += 1
    }

    /// The newest snapshot EC2 lists, before this daemon took one.
    mutating func seed(newest: Double) { lastTime = max(lastTime ?? newest, newest) }
}
