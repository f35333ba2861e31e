/// DRBD 8.4's packet command numbers (the `command` field of every header). Only commands the
/// 8.4 kernel handles are listed; any other number is refused as a protocol error, as the kernel
/// does (8.4 has no "may ignore" range).
public enum PacketCommand: UInt16, Sendable, CaseIterable, CustomStringConvertible {
    case data = 0x00, dataReply = 0x01, rsDataReply = 0x02, barrier = 0x03, bitmap = 0x04
    case unplugRemote = 0x07, dataRequest = 0x08, rsDataRequest = 0x09, syncParam = 0x0a
    case `protocol` = 0x0b, uuids = 0x0c, sizes = 0x0d, state = 0x0e, syncUUID = 0x0f
    case authChallenge = 0x10, authResponse = 0x11, stateChangeRequest = 0x12
    case ping = 0x13, pingAck = 0x14, recvAck = 0x15, writeAck = 0x16, rsWriteAck = 0x17
    case superseded = 0x18, negAck = 0x19, negDReply = 0x1a, negRSDReply = 0x1b, barrierAck = 0x1c
    case stateChangeReply = 0x1d, ovRequest = 0x1e, ovReply = 0x1f, ovResult = 0x20
    case csumRSRequest = 0x21, rsIsInSync = 0x22, syncParam89 = 0x23, compressedBitmap = 0x24
    case delayProbe = 0x27, outOfSync = 0x28, rsCancel = 0x29
    case connStateChangeRequest = 0x2a, connStateChangeReply = 0x2b, retryWrite = 0x2c
    case protocolUpdate = 0x2d, trim = 0x31, rsThinRequest = 0x32, rsDeallocated = 0x33
    case writeSame = 0x34, zeroes = 0x36
    case initialMeta = 0xfff1, initialData = 0xfff2, connectionFeatures = 0xfffe
    /// Tandem extension (feature bit LZ4_RESYNC): a resync reply whose data is one LZ4 block.
    /// Outside DRBD's numbers; only ever sent to a peer that offered the bit.
    case rsDataReplyLZ4 = 0x7a01
    /// Tandem extension (feature bit LZ4_DATA): an application write whose data is one LZ4 block.
    case dataLZ4 = 0x7a02
    /// Tandem extension (feature bit SNAPSHOT_MARK): the Primary's mark in the data stream at
    /// an epoch boundary, where the EC2 node takes an EBS snapshot.
    case snapshotMark = 0x7a03
    /// Tandem extension (SNAPSHOT_MARK): the EC2 node's answer to a mark.
    case snapshotResult = 0x7a04

    /// DRBD's own name, as logs and tshark print it.
    public var description: String {
        switch self {
        case .data: "P_DATA"; case .dataReply: "P_DATA_REPLY"; case .rsDataReply: "P_RS_DATA_REPLY"
        case .barrier: "P_BARRIER"; case .bitmap: "P_BITMAP"; case .unplugRemote: "P_UNPLUG_REMOTE"
        case .dataRequest: "P_DATA_REQUEST"; case .rsDataRequest: "P_RS_DATA_REQUEST"
        case .syncParam: "P_SYNC_PARAM"; case .protocol: "P_PROTOCOL"; case .uuids: "P_UUIDS"
        case .sizes: "P_SIZES"; case .state: "P_STATE"; case .syncUUID: "P_SYNC_UUID"
        case .authChallenge: "P_AUTH_CHALLENGE"; case .authResponse: "P_AUTH_RESPONSE"
        case .stateChangeRequest: "P_STATE_CHG_REQ"; case .ping: "P_PING"; case .pingAck: "P_PING_ACK"
        case .recvAck: "P_RECV_ACK"; case .writeAck: "P_WRITE_ACK"; case .rsWriteAck: "P_RS_WRITE_ACK"
        case .superseded: "P_SUPERSEDED"; case .negAck: "P_NEG_ACK"; case .negDReply: "P_NEG_DREPLY"
        case .negRSDReply: "P_NEG_RS_DREPLY"; case .barrierAck: "P_BARRIER_ACK"
        case .stateChangeReply: "P_STATE_CHG_REPLY"; case .ovRequest: "P_OV_REQUEST"
        case .ovReply: "P_OV_REPLY"; case .ovResult: "P_OV_RESULT"; case .csumRSRequest: "P_CSUM_RS_REQUEST"
        case .rsIsInSync: "P_RS_IS_IN_SYNC"; case .syncParam89: "P_SYNC_PARAM89"
        case .compressedBitmap: "P_COMPRESSED_BITMAP"; case .delayProbe: "P_DELAY_PROBE"
        case .outOfSync: "P_OUT_OF_SYNC"; case .rsCancel: "P_RS_CANCEL"
        case .connStateChangeRequest: "P_CONN_ST_CHG_REQ"; case .connStateChangeReply: "P_CONN_ST_CHG_REPLY"
        case .retryWrite: "P_RETRY_WRITE"; case .protocolUpdate: "P_PROTOCOL_UPDATE"; case .trim: "P_TRIM"
        case .rsThinRequest: "P_RS_THIN_REQ"; case .rsDeallocated: "P_RS_DEALLOCATED"
        case .writeSame: "P_WSAME"; case .zeroes: "P_ZEROES"; case .initialMeta: "P_INITIAL_META"
        case .initialData: "P_INITIAL_DATA"; case .connectionFeatures: "P_CONNECTION_FEATURES"
        case .rsDataReplyLZ4: "P_TANDEM_RS_DATA_REPLY_LZ4"
        case .dataLZ4: "P_TANDEM_DATA_LZ4"
        case .snapshotMark: "P_TANDEM_SNAPSHOT_MARK"
        case .snapshotResult: "P_TANDEM_SNAPSHOT_RESULT"
        }
    }

    /// The socket a command travels on. The meta socket carries acks and pings only.
    public var travelsOnMeta: Bool {
        switch self {
        case .ping, .pingAck, .recvAck, .writeAck, .rsWriteAck, .superseded, .negAck, .negDReply,
             .negRSDReply, .barrierAck, .stateChangeReply, .ovResult, .rsIsInSync, .rsCancel,
             .connStateChangeReply, .retryWrite, .initialMeta:
            true
        default: false
        }
    }

    /// The largest payload the receiver accepts for this command, checked against the header's
    /// length before a single payload byte is buffered. Data-bearing packets may carry up to
    /// 1 MiB (DRBD_MAX_BIO_SIZE) plus their fixed part and an integrity digest.
    public var payloadLimit: Int {
        switch self {
        case .data, .dataReply, .rsDataReply, .writeSame: WireLimits.maxBioSize + 24 + 4 + WireLimits.maxDigest
        // Sent only when the block shrank by an eighth or more.
        case .rsDataReplyLZ4, .dataLZ4: WireLimits.maxBioSize + 24 + 4
        case .bitmap, .compressedBitmap: WireLimits.socketBufferSize
        case .authChallenge, .authResponse: 128
        case .ovReply, .csumRSRequest: 24 + WireLimits.maxDigest
        default: 512
        }
    }
}

/// Size limits shared by the framer and the packet decoders.
public enum WireLimits {
    /// DRBD_MAX_BIO_SIZE: the largest write or resync block in one packet.
    public static let maxBioSize = 1 << 20
    /// DRBD_SOCKET_BUFFER_SIZE: bitmap packets, header included, fit in it.
    public static let socketBufferSize = 4096
    /// The largest digest any supported algorithm produces (sha512).
    public static let maxDigest = 64
    /// P_TRIM / P_ZEROES may cover at most 128 MiB.
    public static let maxTrimSize = 128 << 20
}
