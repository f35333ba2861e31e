import NIOCore

/// Puts one TCP connection of the replication link under TLS 1.3: it drives a TLSSession,
/// passing plaintext up to the packet framer and ciphertext down to the socket. Writes made
/// before the handshake completes wait (a bounded few: the transport sends only its first
/// packets then). Refuses a peer that speaks clear text instead of TLS, with the reason, and
/// never lets a byte of plaintext reach the socket unencrypted.
final class TLSChannelHandler: ChannelDuplexHandler, @unchecked Sendable {
    typealias InboundIn = ByteBuffer
    typealias InboundOut = ByteBuffer
    typealias OutboundIn = ByteBuffer
    typealias OutboundOut = ByteBuffer

    /// The most writes held before the handshake completes (the transport sends at most its
    /// initial packet, its features and a few more before the handshake of the link ends).
    static let pendingLimit = 64
    /// A handshake not complete by then fails (a peer that connects and stalls).
    static let handshakeLimit = TimeAmount.seconds(10)

    private let session: TLSSession
    private let established: (String) -> Void
    private var pending: [(ByteBuffer, EventLoopPromise<Void>?)] = []
    private var sawInput = false
    private var failed = false
    private var closing = false
    private var deadline: Scheduled<Void>?

    /// `established` runs once the handshake completed and the peer passed its checks, with
    /// what was negotiated ("TLSv1.3 TLS_AES_256_GCM_SHA384").
    init(context: TLSContext, role: TLSSession.Role, established: @escaping (String) -> Void) throws(TLSFailure) {
        session = try TLSSession(context: context, role: role)
        self.established = established
    }

    func channelActive(context: ChannelHandlerContext) {
        if session.role == .client { step(context) }
        context.fireChannelActive()
    }

    func handlerAdded(context: ChannelHandlerContext) {
        let ctx = context
        deadline = context.eventLoop.scheduleTask(in: TLSChannelHandler.handshakeLimit) { [self] in
            if !self.session.isEstablished {
                self.fail(ctx, TLSFailure("the TLS handshake did not complete in \(TLSChannelHandler.handshakeLimit.nanoseconds / 1_000_000_000) s"))
            }
        }
        if session.role == .client && context.channel.isActive { step(context) }
    }

    func handlerRemoved(context: ChannelHandlerContext) {
        deadline?.cancel()
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        guard !failed else { return }
        let buf = unwrapInboundIn(data)
        if !sawInput, let first = buf.getInteger(at: buf.readerIndex, as: UInt8.self) {
            sawInput = true
            // A TLS record of any kind starts with its content type: 0x16 for a handshake.
            // DRBD's headers start with 0x83 or 0x86 (their magic numbers).
            if session.role == .server && first != 0x16 {
                fail(context, TLSFailure(first == 0x83 || first == 0x86
                    ? "the peer sent DRBD packets in clear text: tls is configured here, so the peer must use it too"
                    : "the peer sent something that is not TLS (first byte 0x\(String(first, radix: 16)))"))
                return
            }
        }
        buf.withUnsafeReadableBytes { session.feed($0) }
        step(context)
    }

    /// Advances the handshake, delivers plaintext, sends what the session produced.
    private func step(_ context: ChannelHandlerContext) {
        do {
            if !session.isEstablished {
                if try session.handshake() {
                    deadline?.cancel()
                    established(session.negotiated)
                    let held = pending
                    pending = []
                    for (b, p) in held { try encrypt(context, b, promise: p) }
                    if !held.isEmpty { context.flush() }
                }
            }
            if session.isEstablished {
                var plain = context.channel.allocator.buffer(capacity: 0)
                try session.readPlaintext(into: &plain)
                sendOutput(context, flush: true)
                if plain.readableBytes > 0 { context.fireChannelRead(wrapInboundOut(plain)) }
                if session.peerClosed && !closing {
                    closing = true
                    context.close(promise: nil)
                }
            } else {
                sendOutput(context, flush: true)
            }
        } catch {
            fail(context, error)
        }
    }

    private func encrypt(_ context: ChannelHandlerContext, _ b: ByteBuffer, promise: EventLoopPromise<Void>?) throws(TLSFailure) {
        try b.withUnsafeReadableBytes { (p) throws(TLSFailure) in try session.writePlaintext(p) }
        var out = context.channel.allocator.buffer(capacity: session.outputPending)
        session.takeOutput(into: &out)
        context.write(wrapOutboundOut(out), promise: promise)
    }

    private func sendOutput(_ context: ChannelHandlerContext, flush: Bool) {
        guard session.outputPending > 0 else { return }
        var out = context.channel.allocator.buffer(capacity: session.outputPending)
        session.takeOutput(into: &out)
        context.write(wrapOutboundOut(out), promise: nil)
        if flush { context.flush() }
    }

    private func fail(_ context: ChannelHandlerContext, _ error: TLSFailure) {
        guard !failed else { return }
        failed = true
        // An alert OpenSSL queued tells the peer why.
        sendOutput(context, flush: true)
        failPending(ChannelError.ioOnClosedChannel)
        context.fireErrorCaught(error)
        context.close(promise: nil)
    }

    private func failPending(_ error: Error) {
        let held = pending
        pending = []
        for (_, p) in held { p?.fail(error) }
    }

    func write(context: ChannelHandlerContext, data: NIOAny, promise: EventLoopPromise<Void>?) {
        guard !failed else { promise?.fail(ChannelError.ioOnClosedChannel); return }
        let b = unwrapOutboundIn(data)
        guard session.isEstablished else {
            precondition(pending.count < TLSChannelHandler.pendingLimit, "more than \(TLSChannelHandler.pendingLimit) writes before the TLS handshake")
            pending.append((b, promise))
            return
        }
        do { try encrypt(context, b, promise: promise) } catch { fail(context, error) }
    }

    func flush(context: ChannelHandlerContext) {
        // Writes held for the handshake are flushed when it completes.
        context.flush()
    }

    func close(context: ChannelHandlerContext, mode: CloseMode, promise: EventLoopPromise<Void>?) {
        if session.isEstablished && !failed && !closing && mode != .input {
            closing = true
            session.shutdown()
            sendOutput(context, flush: true)
        }
        context.close(mode: mode, promise: promise)
    }

    func channelInactive(context: ChannelHandlerContext) {
        // Only the connecting side reports a connection closed during the handshake: the
        // accepting side sees that too when the peer drops a connection that crossed its own,
        // or a port check.
        if !session.isEstablished && !failed && session.role == .client {
            failed = true
            context.fireErrorCaught(TLSFailure(sawInput
                ? "the peer closed the connection during the TLS handshake"
                : "the peer closed the connection without answering the TLS handshake (is tls configured there?)"))
        }
        deadline?.cancel()
        failPending(ChannelError.ioOnClosedChannel)
        context.fireChannelInactive()
    }
}
