import COpenSSL

/// A message digest named the way DRBD names them in `cram-hmac-alg`, `data-integrity-alg`,
/// `csums-alg` and `verify-alg` (the Linux crypto API names: "sha1", "sha256", "md5", "crc32c", ...).
/// Cryptographic digests come from OpenSSL's EVP interface; "crc32c" is Tandem's own.
public struct DigestAlgorithm: Sendable, Hashable, CustomStringConvertible {
    /// The DRBD name, as written in a resource file.
    public let name: String
    /// Bytes in one digest.
    public let size: Int

    public var description: String { name }

    /// Why a digest could not be set up or computed.
    public enum Failure: Error, Equatable, CustomStringConvertible {
        case unknownAlgorithm(String)
        case openSSL(String)

        public var description: String {
            switch self {
            case .unknownAlgorithm(let n): return "unknown digest algorithm '\(n)'"
            case .openSSL(let what): return "OpenSSL failed: \(what)"
            }
        }
    }

    /// Looks up a digest by its DRBD name.
    public init(named name: String) throws {
        let lowered = name.lowercased()
        if lowered == "crc32c" {
            self.name = lowered
            self.size = 4
            return
        }
        guard let md = DigestAlgorithm.evp(lowered) else { throw Failure.unknownAlgorithm(name) }
        self.name = lowered
        self.size = Int(EVP_MD_get_size(md))
    }

    private static func openSSLName(_ drbdName: String) -> String {
        switch drbdName {
        case "rmd160": return "ripemd160"
        default: return drbdName
        }
    }

    private static func evp(_ drbdName: String) -> OpaquePointer? {
        EVP_get_digestbyname(openSSLName(drbdName))
    }

    /// The digest of `data`. For "crc32c" this is what the Linux crypto API's crc32c shash
    /// produces: the inverted register over an all-ones seed, stored little-endian.
    public func digest(_ data: [UInt8]) throws -> [UInt8] {
        if name == "crc32c" {
            let v = CRC32C.checksum(data)
            return [UInt8(v & 0xFF), UInt8((v >> 8) & 0xFF), UInt8((v >> 16) & 0xFF), UInt8(v >> 24)]
        }
        guard let md = DigestAlgorithm.evp(name) else { throw Failure.unknownAlgorithm(name) }
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var len: UInt32 = 0
        let ok = data.withUnsafeBytes { buf in
            EVP_Digest(buf.baseAddress, buf.count, &out, &len, md, nil)
        }
        guard ok == 1 else { throw Failure.openSSL("EVP_Digest(\(name))") }
        return Array(out[0..<Int(len)])
    }

    /// HMAC of `data` under `key` with this digest, as DRBD's cram-hmac authentication uses it.
    public func hmac(key: [UInt8], data: [UInt8]) throws -> [UInt8] {
        guard let md = DigestAlgorithm.evp(name) else { throw Failure.unknownAlgorithm(name) }
        var out = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var len: UInt32 = 0
        let result = key.withUnsafeBytes { k in
            data.withUnsafeBytes { d in
                HMAC(md, k.baseAddress, Int32(k.count), d.baseAddress?.assumingMemoryBound(to: UInt8.self),
                     d.count, &out, &len)
            }
        }
        guard result != nil else { throw Failure.openSSL("HMAC(\(name))") }
        return Array(out[0..<Int(len)])
    }

    /// The version string of the linked OpenSSL.
    public static var openSSLVersion: String { String(cString: OpenSSL_version(OPENSSL_VERSION)) }
}
