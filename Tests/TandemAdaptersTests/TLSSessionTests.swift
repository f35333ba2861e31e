import Foundation
import NIOCore
import NIOEmbedded
import Testing
@testable import TandemAdapters

/// TLSSession pairs pumped against each other, and TLSChannelHandler on EmbeddingChannels:
/// the handshake, records both ways, each refusal with its reason, and no plaintext on the
/// wire before the handshake.
@Suite struct TLSSessionTests {
    /// Certificates from make-certs.py, made once for the suite.
    static let certs: String = {
        let d = NSTemporaryDirectory() + "tandem-tls-unit-\(getpid())"
        if !FileManager.default.fileExists(atPath: d + "/beta-self.sha256") {
            try? FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
            let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            p.arguments = [root.path + "/TandemIntegrationTests/Helpers/make-certs.py", d, "alpha", "beta"]
            try? p.run()
            p.waitUntilExit()
        }
        return d
    }()

    static func context(_ node: String, cert: String? = nil, ca: Bool = true, peerName: String? = nil, pin: [UInt8]? = nil) throws -> TLSContext {
        let d = certs
        let c = cert ?? node
        return try TLSContext(TLSSettings(certificateFile: "\(d)/\(c).crt", privateKeyFile: "\(d)/\(c).key",
                                          caFile: ca ? "\(d)/ca.crt" : nil, peerName: peerName ?? (node == "alpha" ? "beta" : "alpha"),
                                          peerFingerprint: pin))
    }

    /// Runs the handshake between two sessions; the error each side saw, if any.
    static func handshake(_ client: TLSSession, _ server: TLSSession) -> (client: String?, server: String?) {
        var errs: (String?, String?) = (nil, nil)
        var done = (false, false)
        for _ in 0..<20 {
            for (i, (me, peer)) in [(client, server), (server, client)].enumerated() {
                if (i == 0 ? errs.0 : errs.1) == nil && !(i == 0 ? done.0 : done.1) {
                    do {
                        let ok = try me.handshake()
                        if i == 0 { done.0 = ok } else { done.1 = ok }
                    } catch {
                        if i == 0 { errs.0 = error.description } else { errs.1 = error.description }
                    }
                }
                var out = ByteBuffer()
                me.takeOutput(into: &out)
                out.withUnsafeReadableBytes { peer.feed($0) }
            }
            if (done.0 || errs.0 != nil) && (done.1 || errs.1 != nil) { break }
        }
        return errs
    }

    @Test func recordsCrossBothWays() throws {
        let client = try TLSSession(context: try Self.context("alpha"), role: .client)
        let server = try TLSSession(context: try Self.context("beta"), role: .server)
        let errs = Self.handshake(client, server)
        try #require(errs.client == nil && errs.server == nil, "\(errs)")
        #expect(client.isEstablished && server.isEstablished)
        #expect(client.negotiated.hasPrefix("TLSv1.3 TLS_"), "\(client.negotiated)")
        var rng = SplitMix(seed: 7)
        for size in [1, 100, 16384, 16385, 1 << 20] {
            let data = (0..<size).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            for (from, to) in [(client, server), (server, client)] {
                try data.withUnsafeBytes { try from.writePlaintext($0) }
                var wire = ByteBuffer()
                from.takeOutput(into: &wire)
                #expect(wire.readableBytes > size, "a record is larger than its data")
                // Fed in small pieces: records split anywhere still decrypt.
                var got = ByteBuffer()
                while wire.readableBytes > 0 {
                    let piece = wire.readSlice(length: min(wire.readableBytes, 1000))!
                    piece.withUnsafeReadableBytes { to.feed($0) }
                    try to.readPlaintext(into: &got)
                }
                #expect(Array(got.readableBytesView) == data, "\(size) bytes did not come through intact")
            }
        }
        // close_notify reaches the other side.
        client.shutdown()
        var wire = ByteBuffer()
        client.takeOutput(into: &wire)
        wire.withUnsafeReadableBytes { server.feed($0) }
        var none = ByteBuffer()
        try server.readPlaintext(into: &none)
        #expect(server.peerClosed)
    }

    @Test func aTamperedRecordIsRefused() throws {
        let client = try TLSSession(context: try Self.context("alpha"), role: .client)
        let server = try TLSSession(context: try Self.context("beta"), role: .server)
        let errs = Self.handshake(client, server)
        try #require(errs.client == nil && errs.server == nil, "\(errs)")
        try [UInt8](repeating: 7, count: 4096).withUnsafeBytes { try client.writePlaintext($0) }
        var wire = ByteBuffer()
        client.takeOutput(into: &wire)
        var bytes = Array(wire.readableBytesView)
        bytes[100] ^= 1
        bytes.withUnsafeBytes { server.feed($0) }
        var got = ByteBuffer()
        #expect(throws: TLSFailure.self) { try server.readPlaintext(into: &got) }
        #expect(got.readableBytes == 0, "plaintext of a tampered record was delivered")
    }

    enum Case: String, CaseIterable { case untrustedCA, wrongName, expired, wrongPin, pinned }

    @Test(arguments: Case.allCases)
    func peersAreChecked(_ c: Case) throws {
        let d = Self.certs
        let pinBeta = TLSSettings.parseFingerprint(try String(contentsOfFile: "\(d)/beta-self.sha256", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines))
        let pinAlpha = TLSSettings.parseFingerprint(try String(contentsOfFile: "\(d)/alpha-self.sha256", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines))
        let (clientCtx, serverCtx, expected): (TLSContext, TLSContext, String?)
        switch c {
        case .untrustedCA: (clientCtx, serverCtx, expected) = (try Self.context("alpha"), try Self.context("beta", cert: "beta-other"), "unable to get local issuer certificate")
        case .wrongName: (clientCtx, serverCtx, expected) = (try Self.context("alpha", peerName: "gamma"), try Self.context("beta"), "hostname mismatch")
        case .expired: (clientCtx, serverCtx, expected) = (try Self.context("alpha"), try Self.context("beta", cert: "beta-expired"), "certificate has expired")
        case .wrongPin: (clientCtx, serverCtx, expected) = (try Self.context("alpha", cert: "alpha-self", ca: false, pin: pinAlpha),
                                                             try Self.context("beta", cert: "beta-self", ca: false, pin: pinAlpha), "not the pinned")
        case .pinned: (clientCtx, serverCtx, expected) = (try Self.context("alpha", cert: "alpha-self", ca: false, pin: pinBeta),
                                                           try Self.context("beta", cert: "beta-self", ca: false, pin: pinAlpha), nil)
        }
        let client = try TLSSession(context: clientCtx, role: .client)
        let server = try TLSSession(context: serverCtx, role: .server)
        let errs = Self.handshake(client, server)
        if let expected {
            #expect(errs.client?.contains(expected) == true, "client: \(errs.client ?? "no error")")
            #expect(errs.server != nil || !server.isEstablished || !client.isEstablished)
            #expect(!client.isEstablished, "the client accepted a peer it should refuse")
        } else {
            #expect(errs.client == nil && errs.server == nil, "\(errs)")
            #expect(client.isEstablished && server.isEstablished)
        }
        // The server checks the client just the same (mutual TLS): beta refuses alpha's expired one.
        if c == .expired {
            let client2 = try TLSSession(context: try Self.context("alpha", cert: "alpha-expired"), role: .client)
            let server2 = try TLSSession(context: try Self.context("beta"), role: .server)
            let e2 = Self.handshake(client2, server2)
            #expect(e2.server?.contains("certificate has expired") == true, "server: \(e2)")
            #expect(!server2.isEstablished)
        }
    }

    /// On a channel: nothing the transport writes before the handshake reaches the socket in
    /// clear; a clear-text DRBD peer is refused with the reason.
    @Test func theHandlerHoldsPlaintextAndRefusesClearText() throws {
        let ch = EmbeddedChannel()
        let h = try TLSChannelHandler(context: try Self.context("alpha"), role: .client, established: { _ in })
        try ch.pipeline.syncOperations.addHandler(h)
        try ch.connect(to: SocketAddress(ipAddress: "127.0.0.1", port: 1)).wait()
        var hello = try #require(try ch.readOutbound(as: ByteBuffer.self), "no ClientHello")
        #expect(hello.readInteger(as: UInt8.self) == 0x16)
        var p = ch.allocator.buffer(capacity: 8)
        p.writeBytes([0x83, 0x74, 0x02, 0x67, 0, 0, 0, 0])
        ch.writeAndFlush(p, promise: nil)
        #expect(try ch.readOutbound(as: ByteBuffer.self) == nil, "plaintext went out before the handshake")

        let server = EmbeddedChannel()
        let sh = try TLSChannelHandler(context: try Self.context("beta"), role: .server, established: { _ in })
        try server.pipeline.syncOperations.addHandler(sh)
        var clear = server.allocator.buffer(capacity: 8)
        clear.writeBytes([0x83, 0x74, 0x02, 0x67, 0xff, 0xfe, 0, 0])
        #expect(throws: TLSFailure("the peer sent DRBD packets in clear text: tls is configured here, so the peer must use it too")) {
            try server.writeInbound(clear)
        }
        #expect(!server.isActive)
    }
}
