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

/// Splits the control stream into lines (at most 64 KiB each).
final class LineDecoder: ByteToMessageDecoder, @unchecked Sendable {
    typealias InboundOut = String
    func decode(context: ChannelHandlerContext, buffer: inout ByteBuffer) throws -> DecodingState {
        guard let nl = buffer.readableBytesView.firstIndex(of: UInt8(ascii: "\n")) else {
            if buffer.readableBytes > 65536 { context.close(promise: nil) }
            return .needMoreData
        }
        let len = nl - buffer.readerIndex
        let line = buffer.readString(length: len) ?? ""
        buffer.moveReaderIndex(forwardBy: 1)
        context.fireChannelRead(wrapInboundOut(line))
        return .continue
    }
}

final class ControlHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = String
    let daemon: NodeDaemon
    init(daemon: NodeDaemon) { self.daemon = daemon }

    private func send(_ context: ChannelHandlerContext, _ obj: [String: Any]) {
        guard let d = try? JSONSerialization.data(withJSONObject: obj, options: [.sortedKeys]) else { return }
        var b = context.channel.allocator.buffer(capacity: d.count + 1)
        b.writeBytes(d)
        b.writeInteger(UInt8(ascii: "\n"))
        context.writeAndFlush(NIOAny(b), promise: nil)
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        let line = unwrapInboundIn(data)
        guard let obj = (try? JSONSerialization.jsonObject(with: Data(line.utf8))) as? [String: Any],
              let verb = obj["verb"] as? String else {
            send(context, ["ok": false, "error": "malformed control request"])
            return
        }
        let d = daemon
        let bound = NIOLoopBound(context, eventLoop: context.eventLoop)
        let reply: (String?) -> Void = { [self] err in
            self.send(bound.value, err.map { ["ok": false, "error": $0] } ?? ["ok": true])
        }
        switch verb {
        case "status":
            var o = d.report().json
            o["ok"] = true
            send(context, o)
        case "primary": d.admin(.primary(force: obj["force"] as? Bool ?? false), done: reply)
        case "secondary": d.admin(.secondary, done: reply)
        case "connect": d.admin(obj["discard-my-data"] as? Bool == true ? .connectDiscardingMyData : .connect, done: reply)
        case "disconnect": d.admin(.disconnect, done: reply)
        case "resync": d.admin(.resync, done: reply)
        case "pause-sync": d.admin(.pauseSync, done: reply)
        case "resume-sync": d.admin(.resumeSync, done: reply)
        case "verify":
            var start: UInt64?
            if let v = obj["start-sector"] {
                guard let n = v as? Int, n >= 0 else { send(context, ["ok": false, "error": "start-sector must be a sector number"]); return }
                start = UInt64(n)
            }
            d.admin(.verify(startSector: start), done: reply)
        case "invalidate": d.admin(.invalidate, done: reply)
        case "outdate": d.admin(.outdate, done: reply)
        case "restore": d.admin(.restore(discardMyData: obj["discard-my-data"] as? Bool ?? false), done: reply)
        case "invalidate-remote": d.admin(.invalidateRemote, done: reply)
        case "resize": d.admin(.resize, done: reply)
        case "snapshot":
            d.adminWithResult(.snapshot(force: obj["force"] as? Bool ?? false)) { [self] err, text in
                self.send(bound.value, err.map { ["ok": false, "error": $0] } ?? ["ok": true, "snapshot": text ?? ""])
            }
        case "down": d.shutdown(done: reply)
        case "events":
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
            send(context, o)
        default:
            send(context, ["ok": false, "error": "unknown verb \(verb)"])
        }
    }
}
