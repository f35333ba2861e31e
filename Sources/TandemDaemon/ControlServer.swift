import Foundation
import NIOCore
import NIOPosix
import TandemEngine

/// The daemon's control socket: one JSON request per line, one JSON answer per line
/// (`{"ok":true,...}` or `{"ok":false,"error":"..."}`); `events` keeps the connection and
/// streams one JSON object per line.
final class ControlServer: @unchecked Sendable {
    private var channel: Channel?
    let path: String

    init(group: EventLoopGroup, path: String, daemon: NodeDaemon) throws {
        self.path = path
        channel = try ServerBootstrap(group: group)
            .childChannelInitializer { ch in
                ch.eventLoop.makeCompletedFuture {
                    try ch.pipeline.syncOperations.addHandler(ByteToMessageHandler(LineDecoder()))
                    try ch.pipeline.syncOperations.addHandler(ControlHandler(daemon: daemon))
                }
            }
            .bind(unixDomainSocketPath: path, cleanupExistingSocketFile: true).wait()
    }

    func close() {
        channel?.close(promise: nil)
        try? FileManager.default.removeItem(atPath: path)
    }
}

/// Splits the control stream into lines (at most ControlProtocol.maxLineBytes each). A longer
/// line is answered with the reason and the connection closed.
final class LineDecoder: ByteToMessageDecoder, @unchecked Sendable {
    typealias InboundOut = String
    func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let nl = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else {
            if buffer.readableBytes > ControlProtocol.maxLineBytes {
                let reply = ControlReply.failure(ControlError("control request longer than \(ControlProtocol.maxLineBytes) bytes", kind: .badRequest))
                var b = context.channel.allocator.buffer(capacity: 256)
                b.writeString(reply.line + "\n")
                buffer.moveReaderIndex(to: buffer.writerIndex)
                context.writeAndFlush(NIOAny(b)).whenComplete { _ in context.close(promise: nil) }
            }
            return .needMoreData
        }
        let len = nl - buffer.readerIndex
        let line = buffer.readString(length: len) ?? ""
        buffer.moveReaderIndex(forwardBy: 1)
        context.fireChannelRead(wrapInboundOut(line))
        return .continue
    }
}

/// One control connection: decodes each request (ControlRequest), carries it out on the
/// daemon's loop and answers with ControlReply lines.
final class ControlHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = String
    let daemon: NodeDaemon
    init(daemon: NodeDaemon) { self.daemon = daemon }

    private func send(_ context: ChannelHandlerContext, _ reply: ControlReply) {
        send(context, line: reply.line)
    }

    private func send(_ context: ChannelHandlerContext, line: String) {
        var b = context.channel.allocator.buffer(capacity: line.utf8.count + 1)
        b.writeString(line)
        b.writeInteger(UInt8(ascii: "\n"))
        context.writeAndFlush(NIOAny(b), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let request: ControlRequest
        switch ControlRequest.decode(line: unwrapInboundIn(data)) {
        case .success(let r): request = r
        case .failure(let e):
            send(context, .failure(e))
            return
        }
        let d = daemon
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        let reply: (AdminRefusal?) -> Void = { [self] err in
            self.send(bound.value, err.map { .failure(ControlError($0)) } ?? ControlReply(ok: true))
        }
        if !request.verb.answeredAtOnce { send(context, .acceptedReply) }
        let force = request.force ?? false, discard = request.discardMyData ?? false
        switch request.verb {
        case .status: send(context, ControlReply(ok: true, status: d.report().snapshot))
        case .primary: d.admin(.primary(force: force), done: reply)
        case .secondary: d.secondary(done: reply)
        case .connect: d.admin(discard ? .connectDiscardingMyData : .connect, done: reply)
        case .disconnect: d.admin(.disconnect, done: reply)
        case .resync: d.admin(.resync, done: reply)
        case .pauseSync: d.admin(.pauseSync, done: reply)
        case .resumeSync: d.admin(.resumeSync, done: reply)
        case .verify: d.admin(.verify(startSector: request.startSector), done: reply)
        case .invalidate: d.admin(.invalidate, done: reply)
        case .outdate: d.admin(.outdate, done: reply)
        case .restore: d.admin(.restore(discardMyData: discard), done: reply)
        case .invalidateRemote: d.admin(.invalidateRemote, done: reply)
        case .resize: d.admin(.resize, done: reply)
        case .snapshot:
            d.adminWithResult(.snapshot(force: force)) { [self] err, text in
                self.send(bound.value, err.map { .failure(ControlError($0)) } ?? ControlReply(ok: true, result: text ?? ""))
            }
        case .down: d.shutdown(done: reply)
        case .adjust:
            guard let config = request.config, let node = request.node else {
                send(context, .failure(ControlError("adjust needs the resource file and the node (config, node)", kind: .badRequest)))
                return
            }
            guard node == d.plan.node else {
                send(context, .failure(ControlError("adjust as node \(node), but this daemon runs as \(d.plan.node)", kind: .refused)))
                return
            }
            d.adjust(configPath: config, node: node) { [self] err, text in
                self.send(bound.value, err.map { .failure(ControlError($0)) } ?? ControlReply(ok: true, result: text ?? ""))
            }
        case .events:
            let id = ObjectIdentifier(context.channel)
            let ch = context.channel
            d.eventSubscribers[id] = { line in
                var b = ch.allocator.buffer(capacity: line.utf8.count + 1)
                b.writeString(line + "\n")
                ch.writeAndFlush(b, promise: nil)
            }
            ch.closeFuture.whenComplete { _ in d.eventSubscribers[id] = nil }
            var o = d.report().json
            o["type"] = "exists"
            if let line = d.eventLine(o) { send(context, line: line) }
        }
    }
}
