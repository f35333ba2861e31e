import Foundation
import NIOCore
import NIOPosix
import TandemCodecs
import TandemEngine

/// DRBD's connection to the peer: two TCP connections (data and meta), made by listening on
/// this node's address and connecting to the peer's (outgoing connections bound to this node's
/// address); the first packet of a connection says which one it is. Then the feature handshake
/// and, with a shared secret, cram-hmac authentication. With `tls`, every connection is TLS
/// 1.3 from its first byte (TLSChannelHandler) and the peer's certificate is checked on both
/// sides. Everything runs on one event loop.
public final class PeerTransport: @unchecked Sendable {
    public struct Endpoint: Sendable, Equatable {
        public var host: String
        public var port: Int
        public init(host: String, port: Int) { self.host = host; self.port = port }
    }

    public struct Callbacks {
        public var established: (_ agreedVersion: Int, _ features: UInt32, _ resolveConflicts: Bool) -> Void
        public var packet: (Packet, TandemEngine.Socket) -> Void
        public var lost: (String) -> Void
        /// A refusal that must not be retried (wrong secret, incompatible dialect).
        public var refused: (String) -> Void
        public var log: (String) -> Void
        public init(established: @escaping (Int, UInt32, Bool) -> Void, packet: @escaping (Packet, TandemEngine.Socket) -> Void,
                    lost: @escaping (String) -> Void, refused: @escaping (String) -> Void, log: @escaping (String) -> Void) {
            self.established = established; self.packet = packet; self.lost = lost; self.refused = refused; self.log = log
        }
    }

    let loop: EventLoop
    let me: Endpoint
    let peer: Endpoint
    let secret: String?
    let hmacAlg: String?
    let callbacks: Callbacks
    let handshakeTimeout: TimeAmount
    /// sndbuf-size and rcvbuf-size (0: the kernel tunes them) and connect-int.
    let sendBufferBytes: Int
    let receiveBufferBytes: Int
    let maxRetryDelay: TimeAmount
    let tls: TLSContext?

    /// What the link's TLS negotiated ("TLSv1.3 TLS_AES_256_GCM_SHA384") while it is up with
    /// TLS; nil in clear text or while down.
    public private(set) var linkSecurity: String?
    /// Why the last attempt to set up a connection failed (a TLS refusal, a clear-text peer);
    /// nil once the link is up.
    public private(set) var lastFailure: String?
    private var lastNegotiated: String?

    private var listener: Channel?
    private var data: Channel?
    private var meta: Channel?
    private var metaOutgoing = false
    private var connecting = false
    private var enabled = false
    private var retryDelay = TimeAmount.milliseconds(200)
    /// When the link last came up, and how many links in a row went down within
    /// `shortLinkLimit` of coming up (a peer whose disk is full drops every resync at once):
    /// the wait before reconnecting doubles with each, up to connect-int.
    private var establishedAt: NIODeadline?
    private var shortLinks = 0
    static let shortLinkLimit = TimeAmount.seconds(10)
    private var retryTask: Scheduled<Void>?
    private var handshakeDeadline: Scheduled<Void>?
    // Handshake progress.
    private var sentFeatures = false
    private var agreed: (version: Int, features: UInt32)?
    private var myChallenge: [UInt8]?
    private var peerAuthenticated = false
    private var sentResponse = false
    private var isEstablished = false
    private var framers: [ObjectIdentifier: PacketChannelHandler] = [:]
    /// Counts link teardowns, so a deferred teardown never hits a newer link.
    private var closeGeneration = 0
    /// Connections being closed: their input is ignored.
    private var draining: Set<ObjectIdentifier> = []

    public init(loop: EventLoop, me: Endpoint, peer: Endpoint, sharedSecret: String?, cramHmacAlg: String?,
                handshakeTimeout: TimeAmount = .seconds(5), sendBufferBytes: Int = 0, receiveBufferBytes: Int = 0,
                connectInterval: TimeAmount = .seconds(10), tls: TLSContext? = nil, connectsFirst: Bool? = nil,
                callbacks: Callbacks) {
        self.tls = tls
        self.connectsFirst = connectsFirst
        self.loop = loop; self.me = me; self.peer = peer
        self.secret = sharedSecret; self.hmacAlg = cramHmacAlg
        self.handshakeTimeout = handshakeTimeout; self.callbacks = callbacks
        self.sendBufferBytes = sendBufferBytes; self.receiveBufferBytes = receiveBufferBytes
        self.maxRetryDelay = max(connectInterval, .milliseconds(200))
    }

    /// This node connects first and, when connections cross, keeps the ones it opened; the
    /// other mostly accepts, so the two TCP connections rarely cross. Both nodes must come to
    /// opposite answers: the daemon decides by host name (the same on both sides, where
    /// addresses are not: behind NAT or a relay each side sees another address for the peer).
    /// Without a decision, the lower endpoint.
    private let connectsFirst: Bool?
    private var iConnectFirst: Bool { connectsFirst ?? ((me.host, me.port) < (peer.host, peer.port)) }

    public var isConnected: Bool { isEstablished }

    /// Listens; connections are taken and made only once `enable` is called (until then an
    /// accepted connection is closed at its first packet and the peer retries).
    public func start() throws {
        var bootstrap = ServerBootstrap(group: loop)
            .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
            .serverChannelOption(.backlog, value: 5)
            .childChannelOption(.socketOption(.tcp_nodelay), value: 1)
        // Accepted connections inherit the listener's buffer sizes (set before listen, so TCP
        // can scale its window to them).
        if sendBufferBytes > 0 { bootstrap = bootstrap.serverChannelOption(.socketOption(.so_sndbuf), value: SocketOptionValue(sendBufferBytes)) }
        if receiveBufferBytes > 0 { bootstrap = bootstrap.serverChannelOption(.socketOption(.so_rcvbuf), value: SocketOptionValue(receiveBufferBytes)) }
        bootstrap = bootstrap
            .childChannelInitializer { [self] ch in
                ch.eventLoop.makeCompletedFuture { try ch.pipeline.syncOperations.addHandlers(self.makeHandlers(ch, role: .server)) }
            }
        listener = try bootstrap.bind(host: me.host, port: me.port).wait()
    }

    /// (Re)starts connection attempts: `connect`.
    public func enable() {
        enabled = true
        shortLinks = 0
        retryDelay = .milliseconds(200)
        scheduleAttempt(after: iConnectFirst ? .milliseconds(10) : .milliseconds(1500))
    }

    /// Drops the connection and stops trying (StandAlone).
    public func disable(reason: String) {
        guard enabled || data != nil || meta != nil else { return }  // already StandAlone
        enabled = false
        retryTask?.cancel()
        closeAll(reason: reason, notify: false)
    }

    public func stop() {
        disable(reason: "shutting down")
        listener?.close(promise: nil)
    }

    /// Drops the connection (a protocol error or the engine's decision) and reconnects later.
    public func drop(reason: String) {
        let delay = delayAfterLinkLoss()
        closeAll(reason: reason, notify: false)
        if enabled { scheduleAttempt(after: delay) }
    }

    /// The wait before reconnecting after a link went down: 200 ms after a link that lasted,
    /// doubling with each link in a row that went down soon after it came up.
    private func delayAfterLinkLoss() -> TimeAmount {
        guard let up = establishedAt else { return retryDelay }
        establishedAt = nil
        if NIODeadline.now() - up < PeerTransport.shortLinkLimit { shortLinks += 1 } else { shortLinks = 0 }
        let d = shortLinks <= 1 ? TimeAmount.milliseconds(200) : .milliseconds(200 << Int64(min(shortLinks - 1, 10)))
        return min(d, maxRetryDelay)
    }

    /// Sends a packet; `written` runs (on the loop) once it is in the kernel's socket buffer,
    /// never if the connection fails first.
    public func send(_ packet: Packet, on socket: TandemEngine.Socket, written: (@Sendable () -> Void)? = nil) {
        guard isEstablished, let ch = socket == .data ? data : meta, let a = agreed else { return }
        let (prefix, bulk) = packet.encodeParts(agreedVersion: a.version)
        var b = ch.allocator.buffer(capacity: prefix.count + bulk.count)
        b.writeBytes(prefix)
        b.writeBytes(bulk)
        var promise: EventLoopPromise<Void>?
        if let written {
            promise = ch.eventLoop.makePromise(of: Void.self)
            promise!.futureResult.whenSuccess { written() }
        }
        ch.write(b, promise: promise)
        scheduleFlush(ch)
    }

    /// Channels with packets written but not yet flushed: one flush (one writev) at the end of
    /// the event loop's current task carries everything the engine sent in it.
    private var unflushed: [ObjectIdentifier: Channel] = [:]

    private func scheduleFlush(_ ch: Channel) {
        guard unflushed.updateValue(ch, forKey: ObjectIdentifier(ch)) == nil, unflushed.count == 1 else { return }
        loop.execute { [self] in
            let chans = self.unflushed.values
            self.unflushed.removeAll(keepingCapacity: true)
            for c in chans { c.flush() }
        }
    }

    /// Stops or resumes reading the data connection: the engine's max-buffers backpressure
    /// (the peer's packets wait in TCP while what arrived is written).
    public func setReading(_ on: Bool) {
        data?.setOption(ChannelOptions.autoRead, value: on).whenFailure { [self] e in
            self.callbacks.log("could not \(on ? "resume" : "pause") reading the data connection: \(e)")
        }
    }

    private func write(_ ch: Channel, _ bytes: [UInt8]) {
        var b = ch.allocator.buffer(capacity: bytes.count)
        b.writeBytes(bytes)
        ch.writeAndFlush(b, promise: nil)
    }

    /// The handlers of one connection: TLS (when configured) under the packet framer.
    private func makeHandlers(_ ch: Channel, role: TLSSession.Role) throws -> [ChannelHandler] {
        let h = PacketChannelHandler(
            clearText: tls == nil,
            onPacket: { [self] ch, p in self.received(p, on: ch) },
            onError: { [self] ch, why in self.connectionFailed(ch, why) },
            onClose: { [self] ch in self.closed(ch) })
        framers[ObjectIdentifier(ch)] = h
        guard let tls else { return [h] }
        let t = try TLSChannelHandler(context: tls, role: role, established: { [self] what in self.lastNegotiated = what })
        return [t, h]
    }

    /// A connection failed its TLS handshake or sent what is not DRBD. One of the link's own
    /// connections takes the link down (retried with backoff); one accepted but not yet
    /// announced is only closed.
    private func connectionFailed(_ ch: Channel, _ why: String) {
        if !isEstablished { lastFailure = why }
        guard ch === data || ch === meta else {
            callbacks.log("connection from the peer refused: \(why)")
            ch.close(promise: nil)
            return
        }
        callbacks.log("protocol error from peer: \(why)")
        lostConnection("protocol error: \(why)")
    }

    // MARK: connecting

    private func scheduleAttempt(after delay: TimeAmount) {
        retryTask?.cancel()
        retryTask = loop.scheduleTask(in: delay) { [self] in self.attempt() }
    }

    private func attempt() {
        guard enabled, !connecting, data == nil || meta == nil else { return }
        connecting = true
        var bootstrap = ClientBootstrap(group: loop)
            .channelOption(.socketOption(.tcp_nodelay), value: 1)
            .connectTimeout(.seconds(2))
        if sendBufferBytes > 0 { bootstrap = bootstrap.channelOption(.socketOption(.so_sndbuf), value: SocketOptionValue(sendBufferBytes)) }
        if receiveBufferBytes > 0 { bootstrap = bootstrap.channelOption(.socketOption(.so_rcvbuf), value: SocketOptionValue(receiveBufferBytes)) }
        bootstrap = bootstrap
            .channelInitializer { [self] ch in
                ch.eventLoop.makeCompletedFuture { try ch.pipeline.syncOperations.addHandlers(self.makeHandlers(ch, role: .client)) }
            }
        if let local = try? SocketAddress.makeAddressResolvingHost(me.host, port: 0) { bootstrap = bootstrap.bind(to: local) }
        bootstrap.connect(host: peer.host, port: peer.port).hop(to: loop).whenComplete { [self] result in
            self.connecting = false
            switch result {
            case .success(let ch):
                guard self.enabled else { ch.close(promise: nil); return }
                if self.data == nil {
                    self.data = ch
                    self.write(ch, Packet.initialData.encode(format: .h80))
                    self.sendFeatures()
                } else if self.meta == nil {
                    self.meta = ch; self.metaOutgoing = true
                    self.write(ch, Packet.initialMeta.encode(format: .h80))
                } else {
                    ch.close(promise: nil)
                }
                self.progress()
                if self.data == nil || self.meta == nil {
                    // The peer opens the meta connection as soon as it has our data connection.
                    // Under TLS that takes a handshake: wait for it rather than open a second
                    // meta connection that crosses the peer's (and one of them is dropped,
                    // perhaps after a node already used it).
                    let waitForPeer = self.tls != nil && self.meta == nil && self.data === ch
                    self.scheduleAttempt(after: waitForPeer ? .seconds(1) : .milliseconds(10))
                }
            case .failure:
                if self.enabled && (self.data == nil || self.meta == nil) {
                    self.scheduleAttempt(after: self.retryDelay)
                    self.retryDelay = min(self.retryDelay * 2, self.maxRetryDelay)
                }
            }
        }
    }

    private func sendFeatures() {
        guard !sentFeatures, let d = data else { return }
        sentFeatures = true
        write(d, Packet.features(.tandem).encode(format: .h80))
        handshakeDeadline?.cancel()
        handshakeDeadline = loop.scheduleTask(in: handshakeTimeout) { [self] in
            if !self.isEstablished && (self.data != nil || self.meta != nil) {
                self.callbacks.log("handshake did not complete in time")
                self.lostConnection("handshake timeout")
            }
        }
    }

    // MARK: receiving

    private func received(_ p: Packet, on ch: Channel) {
        if draining.contains(ObjectIdentifier(ch)) { return }
        let isData = data.map { $0 === ch } ?? false
        let isMeta = meta.map { $0 === ch } ?? false
        if !isData && !isMeta {
            // StandAlone: do not talk to the peer at all (as a kernel node does not listen).
            guard enabled else { ch.close(promise: nil); return }
            // An accepted connection announces what it is.
            switch p {
            case .initialData:
                if data != nil {
                    if iConnectFirst { ch.close(promise: nil); return }  // keep mine
                    let old = data; data = nil; sentFeatures = false; old?.close(promise: nil)
                }
                data = ch
                sendFeatures()
                if meta == nil { scheduleAttempt(after: .milliseconds(1)) }
            case .initialMeta:
                if meta != nil {
                    if iConnectFirst { ch.close(promise: nil); return }
                    let old = meta; meta = nil; old?.close(promise: nil)
                }
                meta = ch; metaOutgoing = false
            default:
                callbacks.log("connection from peer began with \(p.command), expected P_INITIAL_DATA or P_INITIAL_META")
                ch.close(promise: nil)
            }
            progress()
            return
        }
        if isEstablished {
            callbacks.packet(p, isData ? .data : .meta)
            return
        }
        guard pendingEarly.count < QueueLimits.packetsBeforeHandshake else {
            callbacks.log("protocol error from peer: more than \(QueueLimits.packetsBeforeHandshake) packets before the handshake completed")
            lostConnection("protocol error: more than \(QueueLimits.packetsBeforeHandshake) packets before the handshake completed")
            return
        }
        guard isData else {
            // The peer finished its handshake first and already pings or acks: keep it for later.
            pendingEarly.append((p, .meta))
            return
        }
        switch p {
        case .features(let f):
            let peerMax = f.protocolMax == 0 ? f.protocolMin : f.protocolMax
            let mine = ConnectionFeatures.tandem
            if mine.protocolMax < f.protocolMin || mine.protocolMin > peerMax {
                refuse("incompatible DRBD dialects: I support \(mine.protocolMin)-\(mine.protocolMax), peer supports \(f.protocolMin)-\(peerMax)")
                return
            }
            let version = Int(min(mine.protocolMax, peerMax))
            agreed = (version, mine.featureFlags & f.featureFlags)
            let fmt: HeaderFormat = version >= 100 ? .h100 : .h80
            for c in [data, meta].compactMap({ $0 }) { framers[ObjectIdentifier(c)]?.framer.expecting = fmt }
            callbacks.log("handshake: peer speaks protocol \(f.protocolMin)-\(peerMax), agreed \(version), features 0x\(String(agreed!.features, radix: 16))")
            if secret != nil { sendChallenge() }
        case .authChallenge(let c):
            guard let key = secret, let alg = hmacAlg else {
                refuse("the peer requires authentication (cram-hmac-alg) but none is configured here")
                return
            }
            if c == myChallenge { refuse("Peer presented the same challenge!"); return }
            do {
                let resp = try DigestAlgorithm(named: alg).hmac(key: Array(key.utf8), data: c)
                write(data!, Packet.authResponse(resp).encode(agreedVersion: agreed?.version ?? 80))
                sentResponse = true
            } catch {
                refuse("cram-hmac-alg \(alg): \(error)")
                return
            }
        case .authResponse(let r):
            guard let key = secret, let alg = hmacAlg, let mine = myChallenge,
                  let expected = try? DigestAlgorithm(named: alg).hmac(key: Array(key.utf8), data: mine) else {
                refuse("unexpected P_AUTH_RESPONSE")
                return
            }
            guard r == expected else { refuse("Authentication of peer failed (wrong shared-secret?)"); return }
            peerAuthenticated = true
            callbacks.log("Peer authenticated using \(expected.count) bytes HMAC")
        default:
            if secret != nil && !peerAuthenticated {
                refuse("the peer did not authenticate (no cram-hmac-alg configured on the peer?)")
                return
            }
            pendingEarly.append((p, .data))
        }
        progress()
    }

    /// Parameter packets that arrive after the features but before our meta socket exists.
    private var pendingEarly: [(Packet, TandemEngine.Socket)] = []

    private func sendChallenge() {
        var rng = SystemRandomNumberGenerator()
        let c = (0..<64).map { _ in UInt8.random(in: 0...255, using: &rng) }
        myChallenge = c
        write(data!, Packet.authChallenge(c).encode(agreedVersion: agreed?.version ?? 80))
    }

    private func progress() {
        guard !isEstablished, data != nil, meta != nil, let a = agreed else { return }
        let fmt: HeaderFormat = a.version >= 100 ? .h100 : .h80
        for c in [data, meta].compactMap({ $0 }) { framers[ObjectIdentifier(c)]?.framer.expecting = fmt }
        if secret != nil && !(peerAuthenticated && sentResponse) { return }
        isEstablished = true
        lastFailure = nil
        linkSecurity = tls == nil ? nil : (lastNegotiated ?? "TLS")
        handshakeDeadline?.cancel()
        retryTask?.cancel()
        retryDelay = .milliseconds(200)
        establishedAt = .now()
        // The node that accepted the meta connection holds the tie-breaker (RESOLVE_CONFLICTS).
        callbacks.established(a.version, a.features, !metaOutgoing)
        let early = pendingEarly
        pendingEarly = []
        for (p, s) in early { callbacks.packet(p, s) }
    }

    private func refuse(_ why: String) {
        callbacks.log(why)
        closeAll(reason: why, notify: false)
        enabled = false
        retryTask?.cancel()
        callbacks.refused(why)
    }

    private func closed(_ ch: Channel) {
        framers[ObjectIdentifier(ch)] = nil
        guard ch === data || ch === meta else { return }
        let other = ch === data ? meta : data
        if ch === data { data = nil } else { meta = nil }
        let reason = isEstablished ? "connection closed by peer" : "connection closed during the handshake"
        if let other, other.isActive {
            // The peer closed both; the other connection may still hold packets it sent before
            // (its P_PROTOCOL telling why it refused us): read them before giving up the link.
            let generation = closeGeneration
            loop.scheduleTask(in: .milliseconds(300)) { [self] in
                if self.closeGeneration == generation { self.lostConnection(reason) }
            }
            return
        }
        lostConnection(reason)
    }

    private func lostConnection(_ reason: String) {
        // The peer hung up during our handshake but had already sent its parameters (it
        // finished its side first and refused ours): let the engine see them, so both sides
        // report the same reason.
        if !isEstablished { callbacks.log("handshake interrupted: \(reason)") }
        if !isEstablished, let a = agreed, !pendingEarly.isEmpty, secret == nil || peerAuthenticated {
            let early = pendingEarly
            pendingEarly = []
            callbacks.established(a.version, a.features, !metaOutgoing)
            for (p, s) in early { callbacks.packet(p, s) }
            callbacks.lost(reason)
        }
        let was = isEstablished
        if was {
            let delay = delayAfterLinkLoss()
            closeAll(reason: reason, notify: was)
            if enabled { scheduleAttempt(after: delay) }
            return
        }
        closeAll(reason: reason, notify: was)
        if enabled { scheduleAttempt(after: retryDelay); retryDelay = min(retryDelay * 2, maxRetryDelay) }
    }

    private func closeAll(reason: String, notify: Bool) {
        closeGeneration += 1
        let was = isEstablished
        isEstablished = false
        linkSecurity = nil
        let chans = [data, meta].compactMap { $0 }
        data = nil; meta = nil
        sentFeatures = false; agreed = nil; myChallenge = nil; peerAuthenticated = false; sentResponse = false
        pendingEarly = []
        handshakeDeadline?.cancel()
        // Half-close first: what we sent (say, the P_PROTOCOL the peer needs to see why we
        // refuse) is delivered before the FIN; closing with unread input would send a reset
        // that makes the peer's kernel discard it. The full close follows shortly.
        for c in chans {
            draining.insert(ObjectIdentifier(c))
            c.close(mode: .output, promise: nil)
            loop.scheduleTask(in: .milliseconds(500)) { [self] in
                self.draining.remove(ObjectIdentifier(c))
                c.close(promise: nil)
            }
        }
        if notify && was { callbacks.lost(reason) }
    }
}
