/// One DRBD packet as a value: the typed body of every command the 8.4 kernel sends or
/// handles. Commands sharing one layout share a case and carry the command. Encoding gives the
/// exact bytes DRBD puts on the wire; decoding checks every length against the command.
public enum Packet: Sendable, Equatable {
    case initialData
    case initialMeta
    case features(ConnectionFeatures)
    case authChallenge([UInt8])
    case authResponse([UInt8])
    /// P_PROTOCOL, or P_PROTOCOL_UPDATE when `update`.
    case protocolSettings(ProtocolSettings, update: Bool)
    /// P_SYNC_PARAM89 (`legacy` false) or P_SYNC_PARAM.
    case syncParam(SyncParameters, legacy: Bool)
    case uuids(UUIDSet)
    case sizes(Sizes)
    case state(StateWord)
    /// P_STATE_CHG_REQ, or P_CONN_ST_CHG_REQ when `connectionWide`.
    case stateChangeRequest(mask: UInt32, value: UInt32, connectionWide: Bool)
    /// P_STATE_CHG_REPLY / P_CONN_ST_CHG_REPLY; success when `retcode >= 1`.
    case stateChangeReply(retcode: Int32, connectionWide: Bool)
    /// P_DATA, P_DATA_REPLY or P_RS_DATA_REPLY: header, integrity digest (may be empty), data.
    case data(PacketCommand, DataHeader, digest: [UInt8], payload: [UInt8])
    /// P_TRIM or P_ZEROES: a range without payload.
    case trim(PacketCommand, DataHeader, size: UInt32)
    /// P_WSAME: fill `size` bytes with one logical block.
    case writeSame(DataHeader, size: UInt32, digest: [UInt8], block: [UInt8])
    case barrier(number: UInt32, pad: UInt32)
    case barrierAck(number: UInt32, setSize: UInt32)
    /// P_DATA_REQUEST, P_RS_DATA_REQUEST, P_OV_REQUEST, P_RS_THIN_REQ, and with a digest
    /// P_CSUM_RS_REQUEST and P_OV_REPLY.
    case blockRequest(PacketCommand, BlockRequest, digest: [UInt8])
    /// Every p_block_ack command on the meta socket.
    case blockAck(PacketCommand, BlockAck)
    /// P_BITMAP: little-endian 64-bit words, raw.
    case bitmap([UInt8])
    /// P_COMPRESSED_BITMAP: encoding byte and the RLE/VLI code stream.
    case compressedBitmap(encoding: UInt8, code: [UInt8])
    case syncUUID(UInt64)
    /// P_OUT_OF_SYNC or P_RS_DEALLOCATED.
    case blockDescriptor(PacketCommand, BlockDescriptor)
    case ping
    case pingAck
    case unplugRemote
    case delayProbe(seqNum: UInt32, offset: UInt32)
    /// Tandem extension P_TANDEM_RS_DATA_REPLY_LZ4: a resync reply's header, the size of the
    /// data before compression, and the data as one LZ4 block.
    case compressedResyncReply(DataHeader, originalSize: UInt32, compressed: [UInt8])
    /// Tandem extension P_TANDEM_DATA_LZ4: an application write (P_DATA's header, flags
    /// included), the size of its data, and the data as one LZ4 block.
    case compressedData(DataHeader, originalSize: UInt32, compressed: [UInt8])
    /// Tandem extension P_TANDEM_SNAPSHOT_MARK: a snapshot's id (chosen by the Primary), the
    /// epoch whose barrier precedes the mark, and flags (bit 0: take it even of an
    /// Inconsistent disk).
    case snapshotMark(id: UInt64, epoch: UInt32, flags: UInt32)
    /// Tandem extension P_TANDEM_SNAPSHOT_RESULT: the mark's id, 0 when the snapshot was taken
    /// (text: its id) or 1 when not (text: why), UTF-8, at most `snapshotTextLimit` bytes.
    case snapshotResult(id: UInt64, status: UInt32, text: String)

    /// The longest text a P_TANDEM_SNAPSHOT_RESULT carries.
    public static let snapshotTextLimit = 400

    public var command: PacketCommand {
        switch self {
        case .initialData: .initialData
        case .initialMeta: .initialMeta
        case .features: .connectionFeatures
        case .authChallenge: .authChallenge
        case .authResponse: .authResponse
        case .protocolSettings(_, let u): u ? .protocolUpdate : .protocol
        case .syncParam(_, let legacy): legacy ? .syncParam : .syncParam89
        case .uuids: .uuids
        case .sizes: .sizes
        case .state: .state
        case .stateChangeRequest(_, _, let cw): cw ? .connStateChangeRequest : .stateChangeRequest
        case .stateChangeReply(_, let cw): cw ? .connStateChangeReply : .stateChangeReply
        case .data(let c, _, _, _), .trim(let c, _, _), .blockRequest(let c, _, _), .blockAck(let c, _),
             .blockDescriptor(let c, _): c
        case .writeSame: .writeSame
        case .barrier: .barrier
        case .barrierAck: .barrierAck
        case .bitmap: .bitmap
        case .compressedBitmap: .compressedBitmap
        case .syncUUID: .syncUUID
        case .ping: .ping
        case .pingAck: .pingAck
        case .unplugRemote: .unplugRemote
        case .delayProbe: .delayProbe
        case .compressedResyncReply: .rsDataReplyLZ4
        case .compressedData: .dataLZ4
        case .snapshotMark: .snapshotMark
        case .snapshotResult: .snapshotResult
        }
    }

    // MARK: encoding

    /// The payload bytes (everything after the header).
    public func encodeBody() -> [UInt8] {
        var w = WireWriter()
        switch self {
        case .initialData, .initialMeta, .ping, .pingAck, .unplugRemote: break
        case .features(let f):
            w.u32(f.protocolMin); w.u32(f.featureFlags); w.u32(f.protocolMax); w.zeros(4 + 56)
        case .authChallenge(let b), .authResponse(let b), .bitmap(let b): w.raw(b)
        case .protocolSettings(let p, _):
            w.u32(p.wireProtocol); w.u32(p.afterSB0p); w.u32(p.afterSB1p); w.u32(p.afterSB2p)
            w.u32(p.connFlags); w.u32(p.twoPrimaries); w.cString(p.integrityAlg)
        case .syncParam(let s, let legacy):
            w.u32(s.resyncRate)
            if legacy { w.cString(s.verifyAlg); break }
            w.fixedString(s.verifyAlg, width: 64); w.fixedString(s.csumsAlg, width: 64)
            if let c = s.controller { w.u32(c.planAhead); w.u32(c.delayTarget); w.u32(c.fillTarget); w.u32(c.maxRate) }
        case .uuids(let u):
            for v in [u.current, u.bitmap, u.history0, u.history1, u.bitsSet, u.flags] { w.u64(v) }
        case .sizes(let s):
            w.u64(s.backingSectors); w.u64(s.userSectors); w.u64(s.currentSectors); w.u32(s.maxBioSize)
            w.u16(s.queueOrderType); w.u16(s.ddsFlags)
            if let q = s.queueLimits {
                w.u32(q.physicalBlockSize); w.u32(q.logicalBlockSize); w.u32(q.alignmentOffset); w.u32(q.ioMin); w.u32(q.ioOpt)
                w.u8(q.discardEnabled); w.u8(q.discardZeroesData); w.u8(q.writeSameCapable); w.u8(q.pad)
            }
        case .state(let s): w.u32(s.raw)
        case .stateChangeRequest(let m, let v, _): w.u32(m); w.u32(v)
        case .stateChangeReply(let r, _): w.i32(r)
        case .data(_, let h, let d, let p):
            w = WireWriter(capacity: 24 + d.count + p.count); Self.put(h, &w); w.raw(d); w.raw(p)
        case .trim(_, let h, let size): Self.put(h, &w); w.u32(size)
        case .writeSame(let h, let size, let d, let b): Self.put(h, &w); w.u32(size); w.raw(d); w.raw(b)
        case .barrier(let n, let pad): w.u32(n); w.u32(pad)
        case .barrierAck(let n, let s): w.u32(n); w.u32(s)
        case .blockRequest(_, let r, let d): w.u64(r.sector); w.u64(r.blockID); w.u32(r.size); w.u32(r.pad); w.raw(d)
        case .blockAck(_, let a): w.u64(a.sector); w.u64(a.blockID); w.u32(a.size); w.u32(a.seqNum)
        case .compressedBitmap(let e, let c): w.u8(e); w.raw(c)
        case .syncUUID(let u): w.u64(u)
        case .blockDescriptor(_, let d): w.u64(d.sector); w.u32(d.size); w.u32(d.pad)
        case .delayProbe(let s, let o): w.u32(s); w.u32(o)
        case .compressedResyncReply(let h, let size, let c), .compressedData(let h, let size, let c):
            w = WireWriter(capacity: 28 + c.count); Self.put(h, &w); w.u32(size); w.raw(c)
        case .snapshotMark(let id, let epoch, let flags): w.u64(id); w.u32(epoch); w.u32(flags)
        case .snapshotResult(let id, let status, let text):
            w.u64(id); w.u32(status); w.raw(Array(Array(text.utf8).prefix(Self.snapshotTextLimit)))
        }
        return w.bytes
    }

    /// Header and payload, in the given header format.
    public func encode(format: HeaderFormat, volume: UInt16 = 0) -> [UInt8] {
        let body = encodeBody()
        var w = WireWriter(capacity: 16 + body.count)
        PacketHeader(format: format, volume: volume, command: command, length: body.count).encode(into: &w)
        w.raw(body)
        return w.bytes
    }

    /// Header and payload with the header DRBD uses at `agreedVersion` (h80 before agreement).
    public func encode(agreedVersion: Int) -> [UInt8] {
        let body = encodeBody()
        var w = WireWriter(capacity: 16 + body.count)
        PacketHeader(format: .forSending(agreedVersion: agreedVersion, length: body.count), command: command,
                     length: body.count).encode(into: &w)
        w.raw(body)
        return w.bytes
    }

    /// The packet as a small prefix (header, fixed part, digest) and its bulk data, so a
    /// transport can hand both to the socket without first copying the data into one array.
    public func encodeParts(agreedVersion: Int) -> (prefix: [UInt8], bulk: [UInt8]) {
        guard case .data(_, let h, let d, let p) = self else { return (encode(agreedVersion: agreedVersion), []) }
        let length = 24 + d.count + p.count
        var w = WireWriter(capacity: 16 + 24 + d.count)
        PacketHeader(format: .forSending(agreedVersion: agreedVersion, length: length), command: command, length: length).encode(into: &w)
        Self.put(h, &w)
        w.raw(d)
        return (w.bytes, p)
    }

    private static func put(_ h: DataHeader, _ w: inout WireWriter) {
        w.u64(h.sector); w.u64(h.blockID); w.u32(h.seqNum); w.u32(h.flags)
    }

    // MARK: decoding

    /// Decodes a payload for `command`. `digestSize` is the agreed data-integrity digest length
    /// (0 when none). `legacyLayout` is true for peers below protocol version 87 (no integrity
    /// string in P_PROTOCOL).
    public static func decode(command: PacketCommand, payload: [UInt8], digestSize: Int = 0) throws(WireError) -> Packet {
        try decode(command: command, body: payload[...], digestSize: digestSize)
    }

    /// Decodes a body given as a slice of a receive buffer (no copy until a field is kept).
    public static func decode(command: PacketCommand, body payload: ArraySlice<UInt8>, digestSize: Int = 0) throws(WireError) -> Packet {
        guard payload.count <= command.payloadLimit else {
            throw .tooLong(command: command, length: payload.count, limit: command.payloadLimit)
        }
        var r = WireReader(payload, command: command)
        let p: Packet
        switch command {
        case .initialData: p = .initialData
        case .initialMeta: p = .initialMeta
        case .ping: p = .ping
        case .pingAck: p = .pingAck
        case .unplugRemote: p = .unplugRemote
        case .connectionFeatures:
            guard payload.count == 72 else { throw .badLength(command: command, length: payload.count) }
            p = .features(ConnectionFeatures(protocolMin: try r.u32(), featureFlags: try r.u32(), protocolMax: try r.u32()))
            _ = r.rest()
        case .authChallenge:
            guard (64...128).contains(payload.count) else { throw .badLength(command: command, length: payload.count) }
            p = .authChallenge(r.rest())
        case .authResponse:
            guard (16...WireLimits.maxDigest).contains(payload.count) else { throw .badLength(command: command, length: payload.count) }
            p = .authResponse(r.rest())
        case .protocol, .protocolUpdate:
            let s = ProtocolSettings(wireProtocol: try r.u32(), afterSB0p: try r.u32(), afterSB1p: try r.u32(),
                                     afterSB2p: try r.u32(), connFlags: try r.u32(), twoPrimaries: try r.u32(),
                                     integrityAlg: r.remaining == 0 ? "" : try r.trailingCString(max: 64))
            guard (1...3).contains(s.wireProtocol) else {
                throw .badValue(command: command, field: "protocol", value: UInt64(s.wireProtocol))
            }
            p = .protocolSettings(s, update: command == .protocolUpdate)
        case .syncParam:
            let rate = try r.u32()
            p = .syncParam(SyncParameters(resyncRate: rate, verifyAlg: r.remaining == 0 ? "" : try r.trailingCString(max: 64),
                                          controller: nil), legacy: true)
        case .syncParam89:
            guard payload.count == 132 || payload.count == 148 else { throw .badLength(command: command, length: payload.count) }
            let rate = try r.u32(), v = try r.fixedString(width: 64), c = try r.fixedString(width: 64)
            var ctl: SyncParameters.Controller?
            if payload.count == 148 {
                ctl = .init(planAhead: try r.u32(), delayTarget: try r.u32(), fillTarget: try r.u32(), maxRate: try r.u32())
            }
            p = .syncParam(SyncParameters(resyncRate: rate, verifyAlg: v, csumsAlg: c, controller: ctl), legacy: false)
        case .uuids:
            guard payload.count == 48 else { throw .badLength(command: command, length: payload.count) }
            p = .uuids(UUIDSet(current: try r.u64(), bitmap: try r.u64(), history0: try r.u64(), history1: try r.u64(),
                               bitsSet: try r.u64(), flags: try r.u64()))
        case .sizes:
            guard payload.count == 32 || payload.count == 56 else { throw .badLength(command: command, length: payload.count) }
            var s = Sizes(backingSectors: try r.u64(), userSectors: try r.u64(), currentSectors: try r.u64(),
                          maxBioSize: try r.u32(), queueOrderType: try r.u16(), ddsFlags: try r.u16(), queueLimits: nil)
            if payload.count == 56 {
                s.queueLimits = .init(physicalBlockSize: try r.u32(), logicalBlockSize: try r.u32(),
                                      alignmentOffset: try r.u32(), ioMin: try r.u32(), ioOpt: try r.u32(),
                                      discardEnabled: try r.u8(), discardZeroesData: try r.u8(),
                                      writeSameCapable: try r.u8(), pad: try r.u8())
            }
            p = .sizes(s)
        case .state:
            guard payload.count == 4 else { throw .badLength(command: command, length: payload.count) }
            p = .state(StateWord(raw: try r.u32()))
        case .stateChangeRequest, .connStateChangeRequest:
            guard payload.count == 8 else { throw .badLength(command: command, length: payload.count) }
            p = .stateChangeRequest(mask: try r.u32(), value: try r.u32(), connectionWide: command == .connStateChangeRequest)
        case .stateChangeReply, .connStateChangeReply:
            guard payload.count == 4 else { throw .badLength(command: command, length: payload.count) }
            p = .stateChangeReply(retcode: try r.i32(), connectionWide: command == .connStateChangeReply)
        case .data, .dataReply, .rsDataReply:
            let h = try dataHeader(&r)
            let d = try r.raw(digestSize)
            let payloadBytes = r.rest()
            guard payloadBytes.count % 512 == 0, payloadBytes.count <= WireLimits.maxBioSize else {
                throw .badValue(command: command, field: "data size", value: UInt64(payloadBytes.count))
            }
            p = .data(command, h, digest: d, payload: payloadBytes)
        case .rsDataReplyLZ4, .dataLZ4:
            let h = try dataHeader(&r), size = try r.u32()
            let compressed = r.rest()
            // What it claims to hold is checked before anything is decompressed.
            guard size > 0, size % 512 == 0, size <= WireLimits.maxBioSize else {
                throw .badValue(command: command, field: "original size", value: UInt64(size))
            }
            guard !compressed.isEmpty, compressed.count < Int(size) else {
                throw .badValue(command: command, field: "compressed size", value: UInt64(compressed.count))
            }
            p = command == .dataLZ4 ? .compressedData(h, originalSize: size, compressed: compressed)
                : .compressedResyncReply(h, originalSize: size, compressed: compressed)
        case .snapshotMark:
            guard payload.count == 16 else { throw .badLength(command: command, length: payload.count) }
            p = .snapshotMark(id: try r.u64(), epoch: try r.u32(), flags: try r.u32())
        case .snapshotResult:
            guard payload.count >= 12, payload.count <= 12 + Self.snapshotTextLimit else { throw .badLength(command: command, length: payload.count) }
            let id = try r.u64(), status = try r.u32()
            guard status <= 1, let text = String(validating: r.rest(), as: UTF8.self) else {
                throw .badValue(command: command, field: "status or text", value: UInt64(status))
            }
            p = .snapshotResult(id: id, status: status, text: text)
        case .trim, .zeroes:
            guard payload.count == 28 else { throw .badLength(command: command, length: payload.count) }
            let h = try dataHeader(&r), size = try r.u32()
            guard size % 512 == 0, size <= WireLimits.maxTrimSize else {
                throw .badValue(command: command, field: "size", value: UInt64(size))
            }
            p = .trim(command, h, size: size)
        case .writeSame:
            let h = try dataHeader(&r), size = try r.u32(), d = try r.raw(digestSize), b = r.rest()
            guard [512, 1024, 2048, 4096].contains(b.count), size % UInt32(b.count) == 0, size <= WireLimits.maxTrimSize else {
                throw .badValue(command: command, field: "write-same block", value: UInt64(b.count))
            }
            p = .writeSame(h, size: size, digest: d, block: b)
        case .barrier, .barrierAck:
            guard payload.count == 8 else { throw .badLength(command: command, length: payload.count) }
            let a = try r.u32(), b = try r.u32()
            p = command == .barrier ? .barrier(number: a, pad: b) : .barrierAck(number: a, setSize: b)
        case .dataRequest, .rsDataRequest, .ovRequest, .rsThinRequest, .csumRSRequest, .ovReply:
            let withDigest = command == .csumRSRequest || command == .ovReply
            guard withDigest ? payload.count > 24 : payload.count == 24 else { throw .badLength(command: command, length: payload.count) }
            let req = BlockRequest(sector: try r.u64(), blockID: try r.u64(), size: try r.u32(), pad: try r.u32())
            guard req.size > 0, req.size % 512 == 0, Int(req.size) <= WireLimits.maxBioSize else {
                throw .badValue(command: command, field: "block size", value: UInt64(req.size))
            }
            p = .blockRequest(command, req, digest: r.rest())
        case .recvAck, .writeAck, .rsWriteAck, .superseded, .negAck, .negDReply, .negRSDReply, .ovResult,
             .rsIsInSync, .rsCancel, .retryWrite:
            guard payload.count == 24 else { throw .badLength(command: command, length: payload.count) }
            p = .blockAck(command, BlockAck(sector: try r.u64(), blockID: try r.u64(), size: try r.u32(), seqNum: try r.u32()))
        case .bitmap:
            guard payload.count % 8 == 0 else { throw .badLength(command: command, length: payload.count) }
            p = .bitmap(r.rest())
        case .compressedBitmap:
            guard payload.count >= 2 else { throw .badLength(command: command, length: payload.count) }
            p = .compressedBitmap(encoding: try r.u8(), code: r.rest())
        case .syncUUID:
            guard payload.count == 8 else { throw .badLength(command: command, length: payload.count) }
            p = .syncUUID(try r.u64())
        case .outOfSync, .rsDeallocated:
            guard payload.count == 16 else { throw .badLength(command: command, length: payload.count) }
            p = .blockDescriptor(command, BlockDescriptor(sector: try r.u64(), size: try r.u32(), pad: try r.u32()))
        case .delayProbe:
            guard payload.count == 8 else { throw .badLength(command: command, length: payload.count) }
            p = .delayProbe(seqNum: try r.u32(), offset: try r.u32())
        }
        try r.expectEnd()
        if case .initialData = p, !payload.isEmpty { throw .badLength(command: command, length: payload.count) }
        return p
    }

    private static func dataHeader(_ r: inout WireReader) throws(WireError) -> DataHeader {
        DataHeader(sector: try r.u64(), blockID: try r.u64(), seqNum: try r.u32(), flags: try r.u32())
    }
}
