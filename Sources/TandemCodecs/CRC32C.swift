import CCRC32C

/// CRC-32C (Castagnoli), the checksum DRBD puts on activity-log transactions and offers as a
/// data-integrity and verify digest. OpenSSL does not provide it, so Tandem carries its own:
/// the CPU's CRC32C instruction where present, a table-driven software path otherwise.
///
/// Two conventions are in use and both are offered:
/// - `raw(_:seed:)` runs the reflected register with no inversion (DRBD's activity log uses
///   seed 0 and stores the register as is);
/// - `checksum(_:)` is the standard iSCSI/RFC 3720 form (seed and final value inverted).
public enum CRC32C {
    /// Whether the hardware path is used on this machine.
    public static let hardwareAccelerated: Bool = tandem_crc32c_hw_available() != 0

    /// The raw register after feeding `bytes`, starting from `seed`.
    public static func raw(_ bytes: [UInt8], seed: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBytes { raw($0, seed: seed) }
    }

    /// The raw register after feeding the buffer, starting from `seed`.
    public static func raw(_ buffer: UnsafeRawBufferPointer, seed: UInt32 = 0) -> UInt32 {
        if hardwareAccelerated, let base = buffer.baseAddress {
            return tandem_crc32c_hw(seed, base, buffer.count)
        }
        return software(buffer, seed: seed)
    }

    /// The standard CRC-32C of `bytes` (for "123456789" it is 0xE3069283).
    public static func checksum(_ bytes: [UInt8]) -> UInt32 {
        ~raw(bytes, seed: 0xFFFF_FFFF)
    }

    /// The table-driven path (slicing by 8), public so tests can hold it against the hardware path.
    public static func software(_ buffer: UnsafeRawBufferPointer, seed: UInt32) -> UInt32 {
        var crc = seed
        var index = 0
        let count = buffer.count
        let t = tables
        while count - index >= 8 {
            let lo = crc ^ (UInt32(buffer[index]) | UInt32(buffer[index + 1]) << 8
                | UInt32(buffer[index + 2]) << 16 | UInt32(buffer[index + 3]) << 24)
            crc = t[7 * 256 + Int(lo & 0xFF)] ^ t[6 * 256 + Int((lo >> 8) & 0xFF)]
                ^ t[5 * 256 + Int((lo >> 16) & 0xFF)] ^ t[4 * 256 + Int(lo >> 24)]
                ^ t[3 * 256 + Int(buffer[index + 4])] ^ t[2 * 256 + Int(buffer[index + 5])]
                ^ t[1 * 256 + Int(buffer[index + 6])] ^ t[Int(buffer[index + 7])]
            index += 8
        }
        while index < count {
            crc = t[Int((crc ^ UInt32(buffer[index])) & 0xFF)] ^ (crc >> 8)
            index += 1
        }
        return crc
    }

    /// Eight 256-entry tables for slicing-by-8 over the reflected polynomial 0x82F63B78.
    private static let tables: [UInt32] = {
        var t = [UInt32](repeating: 0, count: 8 * 256)
        for i in 0..<256 {
            var c = UInt32(i)
            for _ in 0..<8 { c = (c & 1) != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
            t[i] = c
        }
        for k in 1..<8 {
            for i in 0..<256 {
                let prev = t[(k - 1) * 256 + i]
                t[k * 256 + i] = t[Int(prev & 0xFF)] ^ (prev >> 8)
            }
        }
        return t
    }()
}
