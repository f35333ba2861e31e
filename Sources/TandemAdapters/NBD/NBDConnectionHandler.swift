import NIOCore
import TandemEngine

/// One NBD client connection: the newstyle fixed handshake (EXPORT_NAME, LIST, INFO, GO,
/// ABORT; anything else NBD_REP_ERR_UNSUP), then pipelined transmission with simple replies.
/// Bad requests get NBD errors; a broken stream (bad magic, oversized payload) closes this
/// connection only. Requests in flight are limited per connection and over all connections
/// (QueueLimits): at the limit the connection stops reading its client and holds what it
/// already decoded until replies have left.
final class NBDConnectionHandler: ByteToMessageDecoder, @unchecked Sendable {
    typealias InboundOut = Never

    private var parser = NBDStreamParser()
    private var noZeroes = false
    private let backend: NBDBackend
    private let log: @Sendable (String) -> Void
    /// Requests handed to the backend whose replies have not left yet, and their payload bytes.
    private var inFlight = 0
    private var inFlightBytes = 0
    /// Requests decoded while at the limit, in order; they go to the backend as replies leave.
    private var waiting: [NBDRequest] = []
    private var readingPaused = false
    private let admission: NBDAdmission
    /// Told when this connection has the export open and when it closes (nil for the kernel
    /// client's socket, which the daemon watches through the block device).
    private let openClients: NBDOpenClients?
    /// NBD_CMD_DISC arrived: close once the requests in flight are answered.
    private var disconnecting = false

    /// `transmissionOnly`: the connection starts in the transmission phase (the kernel
    /// client's ioctl interface, which negotiates nothing on the wire).
    init(backend: NBDBackend, admission: NBDAdmission, openClients: NBDOpenClients?, log: @escaping @Sendable (String) -> Void,
         transmissionOnly: Bool = false) {
        self.backend = backend
        self.admission = admission
        self.openClients = openClients
        self.log = log
        if transmissionOnly { parser.phase = .transmission }
    }

    static func greeting(_ allocator: ByteBufferAllocator) -> ByteBuffer {
        var b = allocator.buffer(capacity: 18)
        b.writeInteger(NBDProtocol.initMagic)
        b.writeInteger(NBDProtocol.optionMagic)
        b.writeInteger(NBDProtocol.flagFixedNewstyle | NBDProtocol.flagNoZeroes)
        return b
    }

    func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        let item: NBDStreamParser.Item
        do {
            guard let next = try parser.next(&buffer) else { return .needMoreData }
            item = next
        } catch {
            log("nbd: \(error); closing this connection")
            buffer.moveReaderIndex(to: buffer.writerIndex)
            context.close(promise: nil)
            return .needMoreData
        }
        switch item {
        case .clientFlags(let nz): noZeroes = nz
        case .option(let code, let data): handleOption(context: context, option: code, data: data)
        case .request(let r):
            handleRequest(context: context, flags: r.flags, type: r.type, handle: r.handle, offset: r.offset, length: r.length, data: r.data)
        }
        return .continue
    }

    func decodeLast(context: ChannelHandlerContext, buffer: inout ByteBuffer, seenEOF: Bool) throws -> DecodingState {
        .needMoreData
    }

    /// The connection is gone: requests not yet started are dropped (no client waits for them);
    /// those in flight release their room when their replies fail to leave.
    func decoderRemoved(context: ChannelHandlerContext) {
        waiting.removeAll()
        admission.forget(ObjectIdentifier(self))
        openClients?.closed(ObjectIdentifier(self))
    }

    /// The handshake is over: the client has the export open.
    private func enterTransmission(_ context: ChannelHandlerContext) {
        parser.phase = .transmission
        let from = context.channel.remoteAddress.map { "\($0)" } ?? "a Unix socket client"
        openClients?.opened(ObjectIdentifier(self), from: from)
    }

    // MARK: options

    private func optionReply(_ context: ChannelHandlerContext, _ option: UInt32, _ type: UInt32, _ data: [UInt8] = []) {
        var b = context.channel.allocator.buffer(capacity: 20 + data.count)
        b.writeInteger(NBDProtocol.optionReplyMagic)
        b.writeInteger(option)
        b.writeInteger(type)
        b.writeInteger(UInt32(data.count))
        b.writeBytes(data)
        context.writeAndFlush(NIOAny(b), promise: nil)
    }

    private var transmissionFlags: UInt16 {
        var f = NBDProtocol.servedFlags
        if !backend.writable { f |= NBDProtocol.tfReadOnly }
        return f
    }

    private func handleOption(context: ChannelHandlerContext, option: UInt32, data: [UInt8]) {
        switch option {
        case NBDProtocol.optExportName:
            let name = String(decoding: data, as: UTF8.self)
            guard name == backend.exportName || name.isEmpty else {
                log("nbd: client asked for unknown export \"\(name)\"; closing")
                context.close(promise: nil)
                return
            }
            var b = context.channel.allocator.buffer(capacity: 134)
            b.writeInteger(backend.sizeBytes)
            b.writeInteger(transmissionFlags)
            if !noZeroes { b.writeBytes([UInt8](repeating: 0, count: 124)) }
            context.writeAndFlush(NIOAny(b), promise: nil)
            enterTransmission(context)
        case NBDProtocol.optAbort:
            optionReply(context, option, NBDProtocol.repAck)
            context.close(promise: nil)
        case NBDProtocol.optList:
            guard data.isEmpty else { optionReply(context, option, NBDProtocol.repErrInvalid); return }
            let name = Array(backend.exportName.utf8)
            var d: [UInt8] = []
            d.append(contentsOf: withUnsafeBytes(of: UInt32(name.count).bigEndian, Array.init))
            d.append(contentsOf: name)
            optionReply(context, option, NBDProtocol.repServer, d)
            optionReply(context, option, NBDProtocol.repAck)
        case NBDProtocol.optInfo, NBDProtocol.optGo:
            guard let (name, _) = NBDStreamParser.infoRequest(data) else { optionReply(context, option, NBDProtocol.repErrInvalid); return }
            guard name == backend.exportName || name.isEmpty else {
                optionReply(context, option, NBDProtocol.repErrUnknown, Array("unknown export \"\(name)\"".utf8))
                return
            }
            var export: [UInt8] = []
            export.append(contentsOf: withUnsafeBytes(of: NBDProtocol.infoExport.bigEndian, Array.init))
            export.append(contentsOf: withUnsafeBytes(of: backend.sizeBytes.bigEndian, Array.init))
            export.append(contentsOf: withUnsafeBytes(of: transmissionFlags.bigEndian, Array.init))
            optionReply(context, option, NBDProtocol.repInfo, export)
            var sizes: [UInt8] = []
            sizes.append(contentsOf: withUnsafeBytes(of: NBDProtocol.infoBlockSize.bigEndian, Array.init))
            for v in [NBDProtocol.minimumBlock, NBDProtocol.preferredBlock, NBDProtocol.maximumPayload] {
                sizes.append(contentsOf: withUnsafeBytes(of: v.bigEndian, Array.init))
            }
            optionReply(context, option, NBDProtocol.repInfo, sizes)
            optionReply(context, option, NBDProtocol.repAck)
            if option == NBDProtocol.optGo { enterTransmission(context) }
        default:
            optionReply(context, option, NBDProtocol.repErrUnsup)
        }
    }

    // MARK: transmission

    private func reply(_ context: ChannelHandlerContext, handle: UInt64, _ r: NBDReply, promise: EventLoopPromise<Void>? = nil) {
        var b = context.channel.allocator.buffer(capacity: 16 + r.data.count)
        b.writeInteger(NBDProtocol.simpleReplyMagic)
        b.writeInteger(r.error)
        b.writeInteger(handle)
        if r.error == 0 { b.writeBytes(r.data) }
        context.writeAndFlush(NIOAny(b), promise: promise)
    }

    /// Payload bytes a request holds in memory while in flight (a write's data, a read's reply).
    static func cost(_ r: NBDRequest) -> Int { r.command == .write || r.command == .read ? Int(r.length) : 0 }

    private func fits(_ bytes: Int) -> Bool {
        inFlight < QueueLimits.nbdRequestsPerConnection
            && (inFlightBytes == 0 || inFlightBytes + bytes <= QueueLimits.nbdBytesPerConnection)
            && admission.fits(bytes)
    }

    /// Hands requests to the backend while they fit; stops reading the client while they do not.
    private func pump(_ context: ChannelHandlerContext) {
        while let r = waiting.first, fits(Self.cost(r)) {
            waiting.removeFirst()
            dispatch(context, r)
        }
        if waiting.isEmpty {
            admission.forget(ObjectIdentifier(self))
            if readingPaused {
                readingPaused = false
                context.channel.setOption(ChannelOptions.autoRead, value: true).whenFailure { _ in }
            }
        } else {
            let loop = context.eventLoop
            let boxed = NIOLoopBound(context, eventLoop: loop)
            admission.wakeWhenRoom(ObjectIdentifier(self)) { [self] in self.pump(boxed.value) }
            if !readingPaused {
                readingPaused = true
                context.channel.setOption(ChannelOptions.autoRead, value: false).whenFailure { _ in }
            }
        }
        if disconnecting && inFlight == 0 && waiting.isEmpty { context.close(promise: nil) }
    }

    private func dispatch(_ context: ChannelHandlerContext, _ request: NBDRequest) {
        let cost = Self.cost(request)
        inFlight += 1
        inFlightBytes += cost
        admission.take(cost)
        let loop = context.eventLoop
        let boxed = NIOLoopBound(context, eventLoop: loop)
        let handle = request.handle
        backend.handle(request) { [self] r in
            loop.execute {
                // The request counts until its reply is in the socket buffer: a client that
                // does not read its replies holds the server back, not its memory.
                let sent = loop.makePromise(of: Void.self)
                sent.futureResult.whenComplete { _ in
                    self.inFlight -= 1
                    self.inFlightBytes -= cost
                    self.admission.release(cost)
                    self.pump(boxed.value)
                }
                self.reply(boxed.value, handle: handle, r, promise: sent)
            }
        }
    }

    private func handleRequest(context: ChannelHandlerContext, flags: UInt16, type: UInt16, handle: UInt64,
                               offset: UInt64, length: UInt32, data: [UInt8]) {
        guard let cmd = NBDCommand(rawValue: type) else {
            reply(context, handle: handle, NBDReply(error: NBDProtocol.eInval))
            return
        }
        switch cmd {
        case .disconnect:
            disconnecting = true
            if inFlight == 0 && waiting.isEmpty { context.close(promise: nil) }
            return
        case .flush:
            break
        case .read, .write, .trim, .writeZeroes, .cache:
            if offset % UInt64(NBDProtocol.minimumBlock) != 0 || length % NBDProtocol.minimumBlock != 0 {
                reply(context, handle: handle, NBDReply(error: NBDProtocol.eInval)); return
            }
            if offset > backend.sizeBytes || UInt64(length) > backend.sizeBytes - offset {
                reply(context, handle: handle, NBDReply(error: cmd == .read || cmd == .cache ? NBDProtocol.eInval : NBDProtocol.eNoSpc))
                return
            }
            if cmd == .read && length > NBDProtocol.maximumPayload {
                reply(context, handle: handle, NBDReply(error: NBDProtocol.eOverflow)); return
            }
        }
        if cmd == .cache { reply(context, handle: handle, NBDReply()); return }
        if cmd != .read && !backend.writable {
            reply(context, handle: handle, NBDReply(error: NBDProtocol.ePerm)); return
        }
        let request = NBDRequest(command: cmd, fua: flags & NBDProtocol.cmdFlagFUA != 0,
                                 noHole: flags & NBDProtocol.cmdFlagNoHole != 0, handle: handle, offset: offset,
                                 length: length, data: data)
        waiting.append(request)
        pump(context)
    }
}
