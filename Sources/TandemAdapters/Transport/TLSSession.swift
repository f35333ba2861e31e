import COpenSSL
import NIOCore

/// One TLS connection's state, with no socket: ciphertext from the peer goes in with `feed`,
/// the handshake is stepped with `handshake`, plaintext comes out of `readPlaintext`, and
/// whatever must go to the peer (handshake messages, records, alerts, close_notify) is taken
/// with `takeOutput`. OpenSSL works on two memory BIOs. TLSChannelHandler drives it on a NIO
/// channel; tests drive two of them against each other.
final class TLSSession {
    enum Role { case client, server }

    let role: Role
    private let ssl: OpaquePointer
    private let input: OpaquePointer
    private let output: OpaquePointer
    private let fingerprint: [UInt8]?
    /// The chain is checked against tls-ca (without it only the pinned fingerprint counts).
    private let checksChain: Bool
    private(set) var isEstablished = false
    /// The peer sent close_notify.
    private(set) var peerClosed = false

    init(context: TLSContext, role: Role) throws(TLSFailure) {
        self.role = role
        fingerprint = context.settings.peerFingerprint
        checksChain = context.settings.caFile != nil
        guard let s = SSL_new(context.ctx) else { throw TLSFailure("SSL_new: \(TLSFailure.openSSLErrors())") }
        guard let i = BIO_new(BIO_s_mem()), let o = BIO_new(BIO_s_mem()) else {
            SSL_free(s)
            throw TLSFailure("BIO_new: \(TLSFailure.openSSLErrors())")
        }
        // An empty input BIO means "more to come", not end of file.
        tandem_bio_set_mem_eof_return(i, -1)
        SSL_set_bio(s, i, o)  // the SSL owns both from here
        ssl = s; input = i; output = o
        if role == .client { SSL_set_connect_state(s) } else { SSL_set_accept_state(s) }
        if context.settings.caFile != nil, let name = context.settings.peerName {
            guard SSL_set1_host(s, name) == 1 else {
                SSL_free(s)
                throw TLSFailure("tls-peer-name \(name): \(TLSFailure.openSSLErrors())")
            }
        }
    }

    deinit { SSL_free(ssl) }

    /// Ciphertext that arrived from the peer.
    func feed(_ bytes: UnsafeRawBufferPointer) {
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        var done = 0
        while done < bytes.count {
            let n = BIO_write(input, base + done, Int32(min(bytes.count - done, Int(Int32.max))))
            precondition(n > 0, "a memory BIO refused a write")
            done += Int(n)
        }
    }

    /// Steps the handshake as far as the input allows; true once it is complete and the peer
    /// passed every check (chain and name or pinned fingerprint, Tandem's ALPN name).
    func handshake() throws(TLSFailure) -> Bool {
        if isEstablished { return true }
        ERR_clear_error()
        let r = SSL_do_handshake(ssl)
        if r == 1 {
            try checkPeer()
            isEstablished = true
            return true
        }
        let e = SSL_get_error(ssl, r)
        if e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE { return false }
        throw failure("TLS handshake failed")
    }

    private func checkPeer() throws(TLSFailure) {
        guard tandem_ssl_alpn_agreed(ssl) == 1 else {
            throw TLSFailure("TLS handshake failed: the peer did not agree on Tandem's protocol name (ALPN tandem-drbd/1)")
        }
        guard let pin = fingerprint else { return }
        guard let cert = SSL_get1_peer_certificate(ssl) else { throw TLSFailure("TLS handshake failed: the peer sent no certificate") }
        defer { X509_free(cert) }
        var md = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var len: UInt32 = 0
        guard X509_digest(cert, EVP_sha256(), &md, &len) == 1 else { throw failure("hashing the peer's certificate") }
        let got = Array(md.prefix(Int(len)))
        guard got == pin else {
            throw TLSFailure("TLS handshake failed: the peer's certificate is sha256:\(got.map { String(format: "%02x", $0) }.joined()), not the pinned tls-peer-fingerprint")
        }
    }

    /// Decrypts what the input holds into `buffer`; false when nothing more can be read yet.
    /// Sets `peerClosed` on the peer's close_notify.
    func readPlaintext(into buffer: inout ByteBuffer) throws(TLSFailure) {
        precondition(isEstablished, "plaintext read before the handshake completed")
        while !peerClosed {
            ERR_clear_error()
            var result: Int32 = 0
            buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: 16 * 1024) { p in
                result = SSL_read(ssl, p.baseAddress, Int32(min(p.count, Int(Int32.max))))
                return result > 0 ? Int(result) : 0
            }
            if result > 0 { continue }
            switch SSL_get_error(ssl, result) {
            case SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE: return
            case SSL_ERROR_ZERO_RETURN: peerClosed = true
            default: throw failure("TLS record from the peer refused")
            }
        }
    }

    /// Encrypts plaintext into the output (taken with `takeOutput`).
    func writePlaintext(_ bytes: UnsafeRawBufferPointer) throws(TLSFailure) {
        precondition(isEstablished, "plaintext written before the handshake completed")
        guard let base = bytes.baseAddress else { return }
        var done = 0
        while done < bytes.count {
            ERR_clear_error()
            let n = SSL_write(ssl, base + done, Int32(min(bytes.count - done, 1 << 30)))
            guard n > 0 else { throw failure("TLS write failed") }
            done += Int(n)
        }
    }

    /// Bytes waiting to go to the peer.
    var outputPending: Int { tandem_bio_pending(output) }

    /// Moves every byte waiting for the peer into `buffer`.
    func takeOutput(into buffer: inout ByteBuffer) {
        while case let pending = tandem_bio_pending(output), pending > 0 {
            buffer.writeWithUnsafeMutableBytes(minimumWritableBytes: pending) { p in
                let n = BIO_read(output, p.baseAddress, Int32(min(pending, p.count)))
                precondition(n > 0, "a memory BIO with \(pending) bytes pending read none")
                return Int(n)
            }
        }
    }

    /// Queues close_notify.
    func shutdown() {
        guard isEstablished else { return }
        ERR_clear_error()
        _ = SSL_shutdown(ssl)
        ERR_clear_error()
    }

    /// "TLSv1.3 TLS_AES_256_GCM_SHA384", once established.
    var negotiated: String {
        let version = String(cString: SSL_get_version(ssl))
        guard let c = SSL_get_current_cipher(ssl), let name = SSL_CIPHER_get_name(c) else { return version }
        return "\(version) \(String(cString: name))"
    }

    private func failure(_ what: String) -> TLSFailure {
        let verify = SSL_get_verify_result(ssl)
        if checksChain && verify != X509_V_OK {
            let why = String(cString: X509_verify_cert_error_string(verify))
            ERR_clear_error()
            return TLSFailure("\(what): the peer's certificate: \(why)")
        }
        return TLSFailure("\(what): \(TLSFailure.openSSLErrors())")
    }
}
