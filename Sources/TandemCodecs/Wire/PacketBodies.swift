/// P_CONNECTION_FEATURES: the version range and feature flags a node speaks.
public struct ConnectionFeatures: Sendable, Equatable {
    public var protocolMin: UInt32
    public var featureFlags: UInt32
    public var protocolMax: UInt32
    public init(protocolMin: UInt32, featureFlags: UInt32, protocolMax: UInt32) {
        self.protocolMin = protocolMin; self.featureFlags = featureFlags; self.protocolMax = protocolMax
    }
    /// What the 8.4 kernel offers, and so what Tandem offers: versions 86..101,
    /// TRIM | THIN_RESYNC | WSAME | WZEROES.
    public static let kernel84 = ConnectionFeatures(protocolMin: 86, featureFlags: 0x0F, protocolMax: 101)
    /// What Tandem offers: the kernel's, and its extensions in a bit far above DRBD's (DRBD 9
    /// uses the low bits). A kernel peer keeps only the bits both sides set, so it never sees
    /// an extension.
    public static let tandem = ConnectionFeatures(protocolMin: 86, featureFlags: 0x0F | tandemPeer | lz4Resync | lz4Data | snapshotMark,
                                                  protocolMax: 101)

    public static let trim: UInt32 = 1, thinResync: UInt32 = 2, writeSame: UInt32 = 4, writeZeroes: UInt32 = 8
    /// Tandem extension: both nodes are Tandem. A SyncTarget then keeps max-buffers of resync
    /// requests in flight at c-max-rate instead of running DRBD's controller (which a kernel
    /// source gets, unchanged).
    public static let tandemPeer: UInt32 = 1 << 30
    /// Tandem extension: this node decodes P_TANDEM_RS_DATA_REPLY_LZ4 (resync data as LZ4).
    public static let lz4Resync: UInt32 = 1 << 29
    /// Tandem extension: this node decodes P_TANDEM_DATA_LZ4 (application writes as LZ4).
    public static let lz4Data: UInt32 = 1 << 28
    /// Tandem extension: this node handles P_TANDEM_SNAPSHOT_MARK and P_TANDEM_SNAPSHOT_RESULT.
    public static let snapshotMark: UInt32 = 1 << 27
}

/// P_PROTOCOL / P_PROTOCOL_UPDATE: the replication settings both sides must share.
public struct ProtocolSettings: Sendable, Equatable {
    /// 1 = A, 2 = B, 3 = C.
    public var wireProtocol: UInt32
    public var afterSB0p: UInt32, afterSB1p: UInt32, afterSB2p: UInt32
    /// bit 0 discard-my-data, bit 1 dry-run.
    public var connFlags: UInt32
    public var twoPrimaries: UInt32
    /// data-integrity-alg, "" when unset (sent as a lone NUL from version 87 on).
    public var integrityAlg: String
    public init(wireProtocol: UInt32, afterSB0p: UInt32 = 0, afterSB1p: UInt32 = 0, afterSB2p: UInt32 = 0,
                connFlags: UInt32 = 0, twoPrimaries: UInt32 = 0, integrityAlg: String = "") {
        self.wireProtocol = wireProtocol; self.afterSB0p = afterSB0p; self.afterSB1p = afterSB1p
        self.afterSB2p = afterSB2p; self.connFlags = connFlags; self.twoPrimaries = twoPrimaries
        self.integrityAlg = integrityAlg
    }
}

/// P_SYNC_PARAM89 (and the old P_SYNC_PARAM): resync rate, verify/csums algorithms and the
/// dynamic resync controller's settings (present from version 95 on).
public struct SyncParameters: Sendable, Equatable {
    public var resyncRate: UInt32
    public var verifyAlg: String
    public var csumsAlg: String
    /// c-plan-ahead, c-delay-target, c-fill-target, c-max-rate; nil in the 132-byte layout.
    public var controller: Controller?
    public struct Controller: Sendable, Equatable {
        public var planAhead: UInt32, delayTarget: UInt32, fillTarget: UInt32, maxRate: UInt32
        public init(planAhead: UInt32, delayTarget: UInt32, fillTarget: UInt32, maxRate: UInt32) {
            self.planAhead = planAhead; self.delayTarget = delayTarget; self.fillTarget = fillTarget; self.maxRate = maxRate
        }
    }
    public init(resyncRate: UInt32, verifyAlg: String = "", csumsAlg: String = "", controller: Controller?) {
        self.resyncRate = resyncRate; self.verifyAlg = verifyAlg; self.csumsAlg = csumsAlg; self.controller = controller
    }
}

/// P_UUIDS: the data-generation identifiers, the sender's out-of-sync count and its flags.
public struct UUIDSet: Sendable, Equatable {
    public var current: UInt64, bitmap: UInt64, history0: UInt64, history1: UInt64
    public var bitsSet: UInt64
    public var flags: UInt64
    public init(current: UInt64, bitmap: UInt64, history0: UInt64, history1: UInt64, bitsSet: UInt64, flags: UInt64) {
        self.current = current; self.bitmap = bitmap; self.history0 = history0; self.history1 = history1
        self.bitsSet = bitsSet; self.flags = flags
    }
    public static let flagDiscardMyData: UInt64 = 1, flagCrashedPrimary: UInt64 = 2
    public static let flagInconsistent: UInt64 = 4, flagSkipInitialSync: UInt64 = 8
}

/// P_SIZES: backing, user and current sizes in sectors, the largest request, and (when
/// FF_WSAME is agreed) the queue limits trailer.
public struct Sizes: Sendable, Equatable {
    public var backingSectors: UInt64, userSectors: UInt64, currentSectors: UInt64
    public var maxBioSize: UInt32
    public var queueOrderType: UInt16
    public var ddsFlags: UInt16
    public var queueLimits: QueueLimits?
    public struct QueueLimits: Sendable, Equatable {
        public var physicalBlockSize: UInt32, logicalBlockSize: UInt32, alignmentOffset: UInt32
        public var ioMin: UInt32, ioOpt: UInt32
        public var discardEnabled: UInt8, discardZeroesData: UInt8, writeSameCapable: UInt8, pad: UInt8
        public init(physicalBlockSize: UInt32, logicalBlockSize: UInt32, alignmentOffset: UInt32 = 0,
                    ioMin: UInt32, ioOpt: UInt32, discardEnabled: UInt8, discardZeroesData: UInt8,
                    writeSameCapable: UInt8, pad: UInt8 = 0) {
            self.physicalBlockSize = physicalBlockSize; self.logicalBlockSize = logicalBlockSize
            self.alignmentOffset = alignmentOffset; self.ioMin = ioMin; self.ioOpt = ioOpt
            self.discardEnabled = discardEnabled; self.discardZeroesData = discardZeroesData
            self.writeSameCapable = writeSameCapable; self.pad = pad
        }
    }
    public init(backingSectors: UInt64, userSectors: UInt64, currentSectors: UInt64, maxBioSize: UInt32,
                queueOrderType: UInt16 = 0, ddsFlags: UInt16 = 0, queueLimits: QueueLimits?) {
        self.backingSectors = backingSectors; self.userSectors = userSectors; self.currentSectors = currentSectors
        self.maxBioSize = maxBioSize; self.queueOrderType = queueOrderType; self.ddsFlags = ddsFlags
        self.queueLimits = queueLimits
    }
}

/// The fixed part of P_DATA and its replies: where, the sender's opaque request handle, the
/// sequence number and the request flags.
public struct DataHeader: Sendable, Equatable {
    public var sector: UInt64
    /// Opaque: echoed byte for byte in the ack (read and written big-endian so it round-trips).
    public var blockID: UInt64
    public var seqNum: UInt32
    public var flags: UInt32
    public init(sector: UInt64, blockID: UInt64, seqNum: UInt32, flags: UInt32) {
        self.sector = sector; self.blockID = blockID; self.seqNum = seqNum; self.flags = flags
    }
}

/// dp_flags bits on P_DATA.
public enum DataFlags {
    public static let rwSync: UInt32 = 2, maySetInSync: UInt32 = 4, fua: UInt32 = 16, flush: UInt32 = 32
    public static let discard: UInt32 = 64, sendReceiveAck: UInt32 = 128, sendWriteAck: UInt32 = 256
    public static let writeSame: UInt32 = 512, zeroes: UInt32 = 1024
}

/// p_block_req: a read request (resync, verify, remote read).
public struct BlockRequest: Sendable, Equatable {
    public var sector: UInt64, blockID: UInt64, size: UInt32, pad: UInt32
    public init(sector: UInt64, blockID: UInt64, size: UInt32, pad: UInt32 = 0) {
        self.sector = sector; self.blockID = blockID; self.size = size; self.pad = pad
    }
    /// ID_SYNCER: the block_id of resync and verify traffic.
    public static let syncerID: UInt64 = .max
    /// P_OV_RESULT's block_id: the block was found in sync (ID_IN_SYNC) or not (ID_OUT_OF_SYNC).
    public static let inSyncID: UInt64 = 4711
    public static let outOfSyncID: UInt64 = 4712
}

/// p_block_ack: every per-request ack on the meta socket.
public struct BlockAck: Sendable, Equatable {
    public var sector: UInt64, blockID: UInt64, size: UInt32, seqNum: UInt32
    public init(sector: UInt64, blockID: UInt64, size: UInt32, seqNum: UInt32) {
        self.sector = sector; self.blockID = blockID; self.size = size; self.seqNum = seqNum
    }
}

/// p_block_desc: a range (P_OUT_OF_SYNC, P_RS_DEALLOCATED).
public struct BlockDescriptor: Sendable, Equatable {
    public var sector: UInt64, size: UInt32, pad: UInt32
    public init(sector: UInt64, size: UInt32, pad: UInt32 = 0) { self.sector = sector; self.size = size; self.pad = pad }
}
