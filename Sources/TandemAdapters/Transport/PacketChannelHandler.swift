import NIOCore
import TandemCodecs

/// Frames DRBD packets out of one TCP connection and hands them to the transport, together
/// with the channel they came from. A framing error closes the connection with the reason.
final class PacketChannelHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer

    /// The connection carries DRBD packets in clear text (no TLS below this handler): a peer
    /// that begins with a TLS handshake is told apart from one that sends garbage.
    let clearText: Bool
    private var sawInput = false

    /// Any header until the versions are agreed (a peer may switch to h100 before this side
    /// has read its features), then only the agreed one.
    var framer = PacketFramer(expecting: nil)
    let onPacket: (Channel, Packet) -> Void
    let onError: (Channel, String) -> Void
    let onClose: (Channel) -> Void

    init(clearText: Bool, onPacket: @escaping (Channel, Packet) -> Void, onError: @escaping (Channel, String) -> Void,
         onClose: @escaping (Channel) -> Void) {
        self.clearText = clearText
        self.onPacket = onPacket; self.onError = onError; self.onClose = onClose
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        var buf = unwrapInboundIn(data)
        if clearText && !sawInput, let first = buf.getInteger(at: buf.readerIndex, as: UInt8.self) {
            sawInput = true
            if first == 0x16 {
                onError(context.channel, "the peer began a TLS handshake: tls is configured on the peer but not here")
                context.close(promise: nil)
                return
            }
        }
        buf.withUnsafeReadableBytes { framer.append($0) }
        buf.moveReaderIndex(to: buf.writerIndex)
        do {
            while context.channel.isActive, let (_, p) = try framer.next() { onPacket(context.channel, p) }
        } catch {
            onError(context.channel, "\(error)")
            context.close(promise: nil)
        }
    }

    func channelInactive(context: ChannelHandlerContext) {
        onClose(context.channel)
        context.fireChannelInactive()
    }

    func errorCaught(context: ChannelHandlerContext, error: Error) {
        if let tls = error as? TLSFailure { onError(context.channel, tls.description) }
        context.close(promise: nil)
    }
}
