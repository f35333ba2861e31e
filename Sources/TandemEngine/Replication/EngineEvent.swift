import TandemCodecs

/// Which of DRBD's two TCP connections a packet travels on.
public enum Socket: Sendable, Equatable { case data, meta }

/// Everything that can happen to a resource, fed to the engine one at a time. The engine
/// never looks at a clock: time arrives as `tick(nowMs:)`.
public enum EngineEvent: Sendable {
    /// Both sockets are up, features agreed and the peer authenticated.
    case linkEstablished(agreedVersion: Int, featureFlags: UInt32, resolveConflicts: Bool)
    /// The transport lost the connection (or gave up on it).
    case linkLost(reason: String)
    case packet(Packet, from: Socket)
    /// An application write (NBD WRITE); `fua` asks for it to be durable on completion.
    case appWrite(id: UInt64, offset: UInt64, data: [UInt8], fua: Bool)
    /// NBD TRIM (`discard`) or WRITE_ZEROES.
    case appZero(id: UInt64, offset: UInt64, length: UInt64, discard: Bool, fua: Bool)
    /// NBD FLUSH.
    case appFlush(id: UInt64)
    /// NBD READ on a Primary whose disk is being restored or is detached (an UpToDate disk is
    /// read directly).
    case appRead(id: UInt64, offset: UInt64, length: UInt64)
    /// A read the daemon made directly from the UpToDate disk failed: the engine applies
    /// on-io-error and answers the read from the peer where it can (DRBD's read retry).
    case appReadFailed(id: UInt64, offset: UInt64, length: UInt64, error: String)
    /// A disk or meta-data operation the engine asked for has finished.
    case diskDone(token: UInt64, result: DiskResult)
    /// The packet of a `.sendTracked` action is in the kernel's socket buffer.
    case sent(token: UInt64)
    /// The time, in milliseconds of a monotonic clock: it never goes backwards.
    case tick(nowMs: UInt64)
    /// An operator verb; the engine answers with `.adminDone(token, ...)`.
    case admin(token: UInt64, AdminCommand)
    /// `adjust`: the resource file's settings as they are now; taken when every change is one
    /// a running engine may take (SettingsAdjustment), else refused with what needs down and
    /// up. Answered with `.adminDone`.
    case adjust(token: UInt64, EngineSettings)
    /// A handler the engine called has exited (only those whose result the engine uses:
    /// fence-peer). -1: it could not be run.
    case handlerDone(Handler, exitCode: Int32)
    /// The answer to `.checkBacking`: the data area in sectors now, or why it could not be read
    /// (`dataSectors` nil) or the device grew but the meta-data could not move (the old size).
    case backingChecked(token: UInt64, dataSectors: UInt64?, error: String?)
    /// The answer to `.takeSnapshot`: the EBS snapshot's id, or why none was taken.
    case snapshotTaken(id: UInt64, snapshotID: String?, error: String?)
}

public enum DiskResult: Sendable, Equatable {
    case ok
    case data([UInt8])
    case failed(String)
}

/// How much a log line matters, which decides its level and whether repeats may be dropped.
public enum LogWeight: Sendable, Equatable {
    /// An ordinary note (info).
    case note
    /// A state change: a notice, never rate-limited.
    case stateChange
    /// Something went wrong that the engine handles (warning).
    case warning
    /// Data could not be read or written (error).
    case error
}

public enum AdminCommand: Sendable, Equatable {
    case primary(force: Bool)
    case secondary
    case disconnect
    case connect
    /// `outdate`: this disconnected Secondary's data is older than the Primary's (DRBD's
    /// outdate, what a fence-peer handler runs on the peer).
    case outdate
    /// `connect --discard-my-data`: this connection's handshake resolves a split brain by
    /// making this node the sync target (DRBD's one-shot DISCARD_MY_DATA flag).
    case connectDiscardingMyData
    /// Stop accepting application I/O and report when nothing is in flight (for `down`).
    case drain
    /// Resync every block marked out of sync now (connecting first when disconnected); done
    /// once the resync runs (or there was nothing to resync).
    case resync
    /// drbdadm's pause-sync / resume-sync (the user_isp flag).
    case pauseSync
    case resumeSync
    /// `verify [--start SECTOR]`: online verify from that sector (default: where the last one
    /// stopped, else the start), as VerifyS.
    case verify(startSector: UInt64?)
    /// `invalidate`: this node's data is marked bad and resyncs from the peer.
    case invalidate
    /// `invalidate-remote`: the peer's data is marked bad and resyncs from this node.
    case invalidateRemote
    /// `restore [--discard-my-data]`: this node's data is lost or stale; it becomes the sync
    /// target of the peer (done once it is SyncTarget).
    case restore(discardMyData: Bool)
    /// `resize`: grow the device to what both backing devices allow now (after they grew).
    case resize
    /// `snapshot [--force]`: an EBS snapshot on the EC2 node at an epoch boundary (a Tandem
    /// extension); --force takes it even of a disk that is not UpToDate.
    case snapshot(force: Bool)
}

/// A disk operation on the backing device's data area (offsets in bytes). Writes, zeroes and
/// flushes complete in the order they were issued where they overlap (a flush after everything
/// before it); a read may run concurrently with anything and see a write in flight or not (the
/// engine's only reads are a resync source's, and the target keeps application writes that
/// overtook a resync reply).
public enum DiskOperation: Sendable, Equatable {
    case write(offset: UInt64, data: [UInt8], fua: Bool)
    case zero(offset: UInt64, length: UInt64, discard: Bool)
    case read(offset: UInt64, length: Int)
    case flush
}

/// What the engine asks the outside world to do, in order.
public enum EngineAction: Sendable {
    case send(Packet, on: Socket)
    /// A packet on the data socket whose departure the engine waits for: report `.sent(token)`
    /// once it is in the socket buffer (never, if the connection fails first). Protocol A's
    /// P_DATA (a write is not complete before, so a slow link holds the application back
    /// instead of filling memory) and the resync source's replies (they count against
    /// max-buffers until then).
    case sendTracked(Packet, token: UInt64)
    /// Stop (false) or resume (true) reading the data socket: what the peer sent waits in TCP
    /// while what was received is written (max-buffers).
    case readData(Bool)
    case disk(token: UInt64, DiskOperation)
    /// A meta-data write (activity-log transaction, bitmap pages, superblock), durable when it
    /// completes; its completion comes back as `.diskDone` with the same token. The engine
    /// issues one at a time and orders them and the data writes they cover itself.
    case metaData(token: UInt64, MetaDataOperation)
    case completeApp(id: UInt64, error: String?)
    /// An `.appRead` is answered: its data, or why it failed.
    case completeRead(id: UInt64, data: [UInt8]?, error: String?)
    /// Close both sockets; reconnect afterwards unless the connection state is StandAlone.
    case dropLink(reason: String)
    /// An admin command has finished: nil when it did what it asked, else why not (and of what
    /// kind, which the command turns into its exit code).
    case adminDone(token: UInt64, error: AdminRefusal?)
    /// Something an operator wants in the log and in `events`, with its weight: a state change
    /// (role, connection, disk, resync start and end, split brain, detach) is never
    /// rate-limited; only identical repeats of other lines are.
    case log(String, LogWeight)
    /// Re-read the backing device's size; if it grew, move the meta-data to the new end (with
    /// the engine's bitmap as it is now) and answer `.backingChecked` with the new data area.
    case checkBacking(token: UInt64)
    /// Take an EBS snapshot of this node's volume now, tagged with `point`; writes are held
    /// until `.snapshotTaken` answers (the daemon answers within settings.snapshotHoldMs).
    case takeSnapshot(id: UInt64, SnapshotPoint)
    /// What an admin command produced (a snapshot's id), sent before its `.adminDone`.
    case adminResult(token: UInt64, text: String)
    /// Run the resource file's handler of this name, if one is configured (DRBD's helpers).
    case runHandler(Handler)
}

/// What an EBS snapshot holds: the data generation (current UUID), the epoch it follows, and
/// crash-consistent or inconsistent (taken with --force while not UpToDate).
public struct SnapshotPoint: Sendable, Equatable {
    public var generation: UInt64
    public var epoch: UInt32
    public var consistency: String
    public init(generation: UInt64, epoch: UInt32, consistency: String) {
        self.generation = generation; self.epoch = epoch; self.consistency = consistency
    }
}

/// The handlers (resource file `handlers`) the engine calls, as DRBD's kernel calls its helpers.
public enum Handler: String, Sendable, CaseIterable {
    /// A split brain was detected, resolved or not.
    case initialSplitBrain = "initial-split-brain"
    /// A split brain was detected and the policies did not resolve it: the connection is dropped.
    case splitBrain = "split-brain"
    /// call-pri-lost-after-sb: this Primary lost and could not give up its role.
    case priLostAfterSB = "pri-lost-after-sb"
    /// fencing resource-only: outdate the peer's disk by other means than the replication
    /// link (DRBD's exit codes: 3 peer Inconsistent, 4 peer outdated, 5 peer unreachable,
    /// 6 peer is Primary: outdate myself, 7 peer stonithed). The engine waits for its result.
    case fencePeer = "fence-peer"
    /// A Tandem addition: run on the Primary before a snapshot's mark (fsfreeze, PostgreSQL's
    /// backup start, ...); the mark is sent once it exits 0, and the snapshot is tagged
    /// application-consistent. Any other exit takes no snapshot.
    case beforeSnapshot = "before-snapshot"
    /// on-io-error call-local-io-error: a data read or write of the local disk failed (the
    /// disk is detached as well).
    case localIOError = "local-io-error"
    /// A Tandem addition: run right after the mark is sent, or after a before-snapshot that
    /// failed or ran too long (it undoes what that did: fsfreeze -u, the backup's stop).
    case afterSnapshot = "after-snapshot"
}

/// disk on-io-error: what a node does when a read or write of its data area fails (meta-data
/// errors always detach).
public enum IOErrorPolicy: Sendable, Equatable {
    /// The failed blocks are marked out of sync and the disk becomes Inconsistent: reads of
    /// those blocks go to the peer, and they resync from it (at once when connected).
    case passOn
    /// As detach, after running the local-io-error handler.
    case callLocalIOError
    /// The disk is detached (Diskless): the node stays connected, and a Primary goes on
    /// serving reads and writes through its UpToDate peer (the default, as DRBD 8.4).
    case detach
}

/// disk fencing: what a node does about its peer's data when the link is lost.
public enum Fencing: Sendable, Equatable {
    /// Nothing: a Secondary that lost its Primary stays UpToDate (the default).
    case dontCare
    /// A Primary that loses its UpToDate peer calls fence-peer to outdate it; a Consistent
    /// disk (restarted while disconnected) is promoted only once the peer is fenced.
    case resourceOnly
}

/// The parts of the meta-data the engine changes and the daemon must write to the superblock.
public struct PersistentState: Sendable, Equatable {
    public var current: UInt64, bitmap: UInt64, history0: UInt64, history1: UInt64
    public var consistent: Bool
    public var wasUpToDate: Bool
    public var primary: Bool
    public var crashedPrimary: Bool
    public var peerOutdated: Bool
    /// The device size both nodes last agreed, in sectors (the meta-data's la-size); 0: none yet.
    public var agreedSectors: UInt64

    public init(current: UInt64 = 4, bitmap: UInt64 = 0, history0: UInt64 = 0, history1: UInt64 = 0,
                consistent: Bool = false, wasUpToDate: Bool = false, primary: Bool = false,
                crashedPrimary: Bool = false, peerOutdated: Bool = false, agreedSectors: UInt64 = 0) {
        self.current = current; self.bitmap = bitmap; self.history0 = history0; self.history1 = history1
        self.consistent = consistent; self.wasUpToDate = wasUpToDate; self.primary = primary
        self.crashedPrimary = crashedPrimary; self.peerOutdated = peerOutdated; self.agreedSectors = agreedSectors
    }
}

/// The resource settings the engine needs, from the resource file.
public struct EngineSettings: Sendable, Equatable {
    /// 1 = A, 2 = B, 3 = C.
    public var wireProtocol: UInt32 = 3
    public var afterSB0p: UInt32 = 0, afterSB1p: UInt32 = 0, afterSB2p: UInt32 = 0
    /// net always-asbp: apply the after-sb policies also when the UUIDs only show a history
    /// match (rule 100), with a full sync.
    public var alwaysAsbp = false
    public var fencing = Fencing.dontCare
    public var onIOError = IOErrorPolicy.detach
    public var discardMyData = false
    /// disk size: the device is this many sectors, not the whole data area (0: the data area).
    public var userSizeSectors: UInt64 = 0
    /// ebs snapshot-hold-limit: how long writes may be held while CreateSnapshot runs; the
    /// daemon gives up on the call after it (kept below ko-count × timeout).
    public var snapshotHoldMs: UInt64 = 30_000
    /// A before-snapshot handler is configured: the Primary runs it (and after-snapshot)
    /// around a snapshot's mark.
    public var beforeSnapshotHandler = false
    /// How long the Primary waits for before-snapshot to exit before it gives up on the
    /// snapshot (and runs after-snapshot).
    public var beforeSnapshotLimitMs: UInt64 = 60_000
    public var verifyAlg = "", csumsAlg = "", integrityAlg = ""
    /// csums-after-crash-only: digests are compared only in the resync after a crashed primary.
    public var csumsAfterCrashOnly = false
    public var resyncRateKiB: UInt32 = 250
    public var cPlanAhead: UInt32 = 20, cDelayTarget: UInt32 = 10, cFillTarget: UInt32 = 100
    public var cMaxRateKiB: UInt32 = 102_400
    /// c-min-rate (KiB/s): the resync yields to application writes down to this rate; 0 = never.
    public var cMinRateKiB: UInt32 = 250
    public var maxBioSize: UInt32 = 1 << 20
    public var maxEpochSize = 2048
    public var pingIntervalMs: UInt64 = 10_000
    public var pingTimeoutMs: UInt64 = 500
    /// ko-count × timeout: a write the peer does not finish in this time drops the link.
    public var requestTimeoutMs: UInt64 = 42_000
    /// disk-flushes: the secondary flushes its disk before it acknowledges a barrier. With
    /// `no-disk-flushes` (DRBD's "drain" write ordering, for disks whose write cache survives a
    /// power loss) it only waits for the epoch's writes to complete.
    public var diskFlushes = true
    /// net max-buffers (pages of 4 KiB): a SyncTarget keeps at most this much resync data in
    /// flight, whatever the controller asks.
    public var maxBuffers = 2048
    /// disk al-extents: slots of the activity log. A write holds its extent's slot from the
    /// moment it starts until it can no longer be lost; when every slot is held, writes wait.
    public var alExtents = 1237
    /// How often changed bitmap pages are written back (ms of the engine's clock), and how often
    /// while a resync runs (so a resync cut short resumes close to where it stopped).
    public var bitmapWritebackMs: UInt64 = 1000
    public var resyncBitmapWritebackMs: UInt64 = 250
    /// Requests the transfer log holds (in flight or waiting for their epoch's barrier ack);
    /// more wait to start.
    public var transferLogLimit = QueueLimits.transferLog
    /// net on-congestion, congestion-fill (bytes of replicated writes not yet acknowledged; 0
    /// = off) and congestion-extents (hot activity-log extents): what a protocol A primary does
    /// when the link cannot keep up.
    public var onCongestion = CongestionPolicy.block
    /// net compression (a Tandem addition): resync data and replicated writes go as LZ4 to a
    /// peer that decodes them.
    public var compression = CompressionMode.auto
    /// `compression auto` compresses while resync data leaves slower than this (bytes per
    /// second before compression): then the link, not LZ4 (0.5-0.7 GB/s a core here), is what
    /// limits the resync.
    public var autoCompressBelowBytesPerSecond: UInt64 = 300_000_000
    public var congestionFillBytes: UInt64 = 0
    /// How long `restore` waits for the peer to connect (startup wfc-timeout, else 60 s).
    public var restoreWaitMs: UInt64 = 60_000
    public var congestionExtents = 1237
    /// The resync controller's parameters from these settings.
    public var controller: ResyncController.Parameters {
        .init(resyncRateKiB: resyncRateKiB, planAhead: cPlanAhead, delayTarget: cDelayTarget, fillTarget: cFillTarget,
              maxRateKiB: cMaxRateKiB)
    }
    public init() {}
}

/// net compression: when resync data goes LZ4-compressed to a peer that offers LZ4_RESYNC.
public enum CompressionMode: Sendable, Equatable {
    case off, lz4
    /// While the link is slower than compression (measured each second).
    case auto
}

/// DRBD's on-congestion policies.
public enum CongestionPolicy: Sendable, Equatable {
    /// Writers wait for the link (the default).
    case block
    /// The primary goes Ahead: it stops replicating writes and marks them out of sync (the peer
    /// Behind learns of them as P_OUT_OF_SYNC), and resyncs them once the link caught up.
    case pullAhead
    /// The primary drops the connection (and reconnects; the writes resync then).
    case disconnect
}

/// A snapshot of the resource's state, for `status` and `events`.
public struct EngineStatus: Sendable, Equatable {
    public var role: Role
    public var peerRole: Role
    public var connection: ConnectionState
    public var disk: DiskState
    public var peerDisk: DiskState
    public var outOfSyncBits: UInt64
    public var resyncTotalBits: UInt64
    public var wireProtocol: UInt32
    public var uuids: PersistentState
    public var lastError: String?
    public var writesInFlight: Int
    /// Writes waiting for an activity-log slot (every slot is held by writes in flight).
    public var writesWaitingForActivityLog: Int
    /// Extents hot in the activity log, and how many of them writes in flight hold.
    public var activityLogHot: Int
    public var activityLogHeld: Int
    /// Why the disk was detached, once it was.
    public var diskError: String?
    /// Resync data moved since the node started (either direction), and what it took in the
    /// packets after compression.
    public var resyncDataBytes: UInt64 = 0
    public var resyncWireBytes: UInt64 = 0
    /// csums-alg: resync data found identical by its digest, so not sent.
    public var resyncSameBytes: UInt64 = 0
    /// Application writes replicated since the node started, and what they took in packets
    /// (less with compression).
    public var replicatedDataBytes: UInt64 = 0
    public var replicatedWireBytes: UInt64 = 0
    /// The online verify running (or the last one): blocks to verify, verified, found out of
    /// sync; and the sector the next one starts at when the last was cut short.
    public var verifyTotalBits: UInt64 = 0
    public var verifyDoneBits: UInt64 = 0
    public var verifyFoundBits: UInt64 = 0
    public var verifyResumeSector: UInt64?
    /// Bitmap pages changed in memory whose change is not yet durable on disk (changed, or
    /// written by a meta-data write still queued or in flight): what a crash now would lose
    /// of the bitmap (a resync then moves more, never less, than needed).
    public var bitmapPagesUnwritten: Int = 0
    /// The last handshake found a split brain the policies did not resolve (cleared by the
    /// next handshake that settles).
    public var splitBrain = false
    /// The local data area in sectors (the most `sizeSectors` can grow to here).
    public var backingSectors: UInt64 = 0
    /// The device's size as both nodes agreed it, in sectors.
    public var sizeSectors: UInt64 = 0
    /// Bytes of replicated writes sent and not yet acknowledged by their barrier ack (DRBD's
    /// ap_in_flight).
    public var apInFlightBytes: UInt64 = 0
    /// Data sent to and received from the peer, as on the wire (DRBD's ns, nr).
    public var sentDataBytes: UInt64 = 0
    public var receivedDataBytes: UInt64 = 0
}
