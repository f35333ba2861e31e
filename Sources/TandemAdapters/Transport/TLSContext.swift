import COpenSSL
import Foundation

/// The replication link's TLS settings, from the resource file's `net` section (a Tandem
/// addition: `tls yes`, `tls-certificate`, `tls-privkey`, `tls-ca`, `tls-peer-name`,
/// `tls-peer-fingerprint`). Both connections of the link use them, in both directions: each
/// node is a TLS client on the connections it opens and a server on those it accepts, and
/// each checks the other's certificate.
public struct TLSSettings: Sendable, Equatable {
    /// This node's certificate (PEM; intermediates may follow it in the same file).
    public var certificateFile: String
    /// This node's private key (PEM), readable by its owner only.
    public var privateKeyFile: String
    /// CAs the peer's certificate must chain to (PEM). Nil with a pinned fingerprint alone.
    public var caFile: String?
    /// The name the peer's certificate must carry (subjectAltName DNS or IP, else the CN),
    /// checked with `caFile`.
    public var peerName: String?
    /// SHA-256 of the peer's certificate (DER): the peer must present exactly that one.
    public var peerFingerprint: [UInt8]?

    public init(certificateFile: String, privateKeyFile: String, caFile: String?, peerName: String?, peerFingerprint: [UInt8]?) {
        self.certificateFile = certificateFile; self.privateKeyFile = privateKeyFile
        self.caFile = caFile; self.peerName = peerName; self.peerFingerprint = peerFingerprint
    }

    /// `sha256:` followed by 64 hex digits (colons allowed between bytes, as `openssl x509
    /// -fingerprint -sha256` prints them).
    public static func parseFingerprint(_ text: String) -> [UInt8]? {
        var t = text.lowercased()
        guard t.hasPrefix("sha256:") || t.hasPrefix("sha256=") else { return nil }
        t = String(t.dropFirst(7)).replacingOccurrences(of: ":", with: "")
        guard t.count == 64 else { return nil }
        var out: [UInt8] = []
        var i = t.startIndex
        while i < t.endIndex {
            let j = t.index(i, offsetBy: 2)
            guard let b = UInt8(t[i..<j], radix: 16) else { return nil }
            out.append(b)
            i = j
        }
        return out
    }
}

/// Why TLS could not be set up or a TLS connection failed; the text is for the operator.
public struct TLSFailure: Error, CustomStringConvertible, Equatable {
    public var description: String
    public init(_ d: String) { description = d }

    /// OpenSSL's queued errors, most specific last, as one line (and the queue emptied).
    static func openSSLErrors() -> String {
        var parts: [String] = []
        while case let e = ERR_get_error(), e != 0 {
            if let r = ERR_reason_error_string(e) { parts.append(String(cString: r)) } else { parts.append("error \(e)") }
        }
        return parts.isEmpty ? "no detail from OpenSSL" : parts.joined(separator: "; ")
    }
}

/// One SSL_CTX made from TLSSettings: TLS 1.3 only, the node's certificate and key, peer
/// verification required on both sides (a CA and a name, and/or a pinned certificate), and
/// Tandem's ALPN name, which both sides must agree on. Loaded once at `up`, so a bad file or a
/// key others can read is refused there with the reason. Shared by every connection of the link.
public final class TLSContext: @unchecked Sendable {
    let ctx: OpaquePointer
    public let settings: TLSSettings

    public init(_ s: TLSSettings) throws(TLSFailure) {
        settings = s
        try TLSContext.checkKeyFile(s.privateKeyFile)
        for (what, path) in [("tls-certificate", s.certificateFile), ("tls-ca", s.caFile)] {
            guard let path else { continue }
            guard FileManager.default.isReadableFile(atPath: path) else { throw TLSFailure("\(what) \(path): cannot read the file") }
        }
        guard s.caFile != nil || s.peerFingerprint != nil else {
            throw TLSFailure("tls needs tls-ca (with the peer's name) or tls-peer-fingerprint: the peer's certificate must be checked")
        }
        ERR_clear_error()
        guard let c = SSL_CTX_new(TLS_method()) else { throw TLSFailure("SSL_CTX_new: \(TLSFailure.openSSLErrors())") }
        // From here a throw releases the object, and deinit frees the context.
        ctx = c
        guard tandem_ssl_ctx_tls13_only(c) == 1 else { throw TLSFailure("TLS 1.3: \(TLSFailure.openSSLErrors())") }
        tandem_ssl_ctx_plain_options(c)
        guard SSL_CTX_use_certificate_chain_file(c, s.certificateFile) == 1 else {
            throw TLSFailure("tls-certificate \(s.certificateFile): \(TLSFailure.openSSLErrors())")
        }
        guard SSL_CTX_use_PrivateKey_file(c, s.privateKeyFile, SSL_FILETYPE_PEM) == 1 else {
            let why = TLSFailure.openSSLErrors()
            if why.contains("key values mismatch") {
                throw TLSFailure("tls-privkey \(s.privateKeyFile) is not the key of tls-certificate \(s.certificateFile)")
            }
            throw TLSFailure("tls-privkey \(s.privateKeyFile): \(why)")
        }
        guard SSL_CTX_check_private_key(c) == 1 else {
            throw TLSFailure("tls-privkey \(s.privateKeyFile) is not the key of tls-certificate \(s.certificateFile)")
        }
        if let ca = s.caFile {
            guard SSL_CTX_load_verify_locations(c, ca, nil) == 1 else { throw TLSFailure("tls-ca \(ca): \(TLSFailure.openSSLErrors())") }
        }
        tandem_ssl_ctx_verify_peer(c, s.caFile == nil ? 1 : 0)
        guard tandem_ssl_ctx_use_alpn(c) == 1 else { throw TLSFailure("ALPN: \(TLSFailure.openSSLErrors())") }
    }

    deinit { SSL_CTX_free(ctx) }

    /// Refuses a private key file that its group or others may read or write, or that
    /// belongs to someone else, as ssh refuses an unprotected key.
    static func checkKeyFile(_ path: String) throws(TLSFailure) {
        var st = stat()
        guard stat(path, &st) == 0 else { throw TLSFailure("tls-privkey \(path): \(String(cString: strerror(errno)))") }
        let mode = st.st_mode & 0o777
        if mode & 0o077 != 0 {
            throw TLSFailure("tls-privkey \(path): permissions \(String(mode, radix: 8)) are too open: "
                             + "a private key must be readable by its owner only (chmod 600 \(path))")
        }
        if st.st_uid != geteuid() && st.st_uid != 0 {
            throw TLSFailure("tls-privkey \(path): owned by uid \(st.st_uid), not by this user (\(geteuid())) or root")
        }
    }
}
