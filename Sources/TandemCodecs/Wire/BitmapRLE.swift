/// The run-length / variable-length-integer code of P_COMPRESSED_BITMAP. A bitmap chunk is a
/// list of run lengths of alternating polarity; each length is a prefix code word read
/// least-significant bit first. The table is DRBD's (`drbd_vli.h` as documented in our
/// protocol-spec.md); the encoder and decoder here are written from that table.
public enum BitmapRLE {
    /// RLE_VLI_Bits, the only code DRBD defines.
    public static let codeRLEVLIBits: UInt8 = 2

    struct Level { let total: Int; let prefixBits: Int; let prefix: UInt64; let base: UInt64 }
    static let levels: [Level] = {
        let spec: [(Int, Int, UInt64)] = [(2, 1, 0x0), (3, 2, 0x1), (5, 3, 0x3), (7, 4, 0x7), (10, 5, 0x0f),
                                          (14, 6, 0x1f), (21, 8, 0x3f), (29, 8, 0x7f), (42, 8, 0xbf), (64, 8, 0xff)]
        var base: UInt64 = 1
        return spec.map { t, b, p in
            defer { base &+= (1 << UInt64(t - b)) }
            return Level(total: t, prefixBits: b, prefix: p, base: base)
        }
    }()

    public enum Failure: Error, Equatable, CustomStringConvertible {
        case unknownEncoding(UInt8), badCode, zeroRun, valueTooLarge
        public var description: String {
            switch self {
            case .unknownEncoding(let e): "compressed bitmap uses unknown encoding \(e & 15)"
            case .badCode: "compressed bitmap code stream is corrupt"
            case .zeroRun: "compressed bitmap contains a run of length zero"
            case .valueTooLarge: "run length too large to encode"
            }
        }
    }

    /// Decodes a P_COMPRESSED_BITMAP payload into the polarity of its first run and its runs.
    public static func decode(encoding: UInt8, code: [UInt8]) throws(Failure) -> (firstSet: Bool, runs: [UInt64]) {
        guard encoding & 15 == codeRLEVLIBits else { throw .unknownEncoding(encoding) }
        let padBits = Int(encoding >> 4 & 7)
        let totalBits = code.count * 8 - padBits
        guard totalBits > 0 else { throw .badCode }
        var runs: [UInt64] = []
        var pos = 0
        while pos < totalBits {
            let look = peek(code, bit: pos, count: min(64, totalBits - pos))
            var matched = false
            for l in levels {
                let pmask: UInt64 = (1 << UInt64(l.prefixBits)) - 1
                guard look & pmask == l.prefix else { continue }
                guard pos + l.total <= totalBits else { throw .badCode }
                let word = l.total == 64 ? look : look & ((1 << UInt64(l.total)) - 1)
                let (v, o) = (word >> UInt64(l.prefixBits)).addingReportingOverflow(l.base)
                guard !o else { throw .badCode }
                runs.append(v)
                pos += l.total
                matched = true
                break
            }
            guard matched else { throw .badCode }
        }
        return (encoding & 0x80 != 0, runs)
    }

    /// Encodes runs (each >= 1) into at most `maxBytes` bytes of code. Returns the encoding byte,
    /// the code and how many runs fit; the caller sends the rest in the next packet.
    public static func encode(firstSet: Bool, runs: ArraySlice<UInt64>, maxBytes: Int) throws(Failure) -> (encoding: UInt8, code: [UInt8], consumed: Int) {
        var code = [UInt8](repeating: 0, count: maxBytes)
        var pos = 0, consumed = 0
        for r in runs {
            guard r >= 1 else { throw .zeroRun }
            guard let l = levels.last(where: { r >= $0.base }) else { throw .valueTooLarge }
            if l.total == 64 && r - l.base >= 1 << 56 { throw .valueTooLarge }
            if pos + l.total > maxBytes * 8 { break }
            put(&code, bit: pos, value: ((r - l.base) << UInt64(l.prefixBits)) | l.prefix, count: l.total)
            pos += l.total
            consumed += 1
        }
        let bytes = (pos + 7) / 8
        let pad = UInt8(bytes * 8 - pos)
        return ((firstSet ? 0x80 : 0) | pad << 4 | codeRLEVLIBits, Array(code[0..<bytes]), consumed)
    }

    static func peek(_ b: [UInt8], bit: Int, count: Int) -> UInt64 {
        var v: UInt64 = 0
        for i in 0..<count {
            let p = bit + i
            if b[p >> 3] >> UInt8(p & 7) & 1 == 1 { v |= 1 << UInt64(i) }
        }
        return v
    }

    static func put(_ b: inout [UInt8], bit: Int, value: UInt64, count: Int) {
        for i in 0..<count where value >> UInt64(i) & 1 == 1 {
            let p = bit + i
            b[p >> 3] |= 1 << UInt8(p & 7)
        }
    }
}
