import CLZ4

/// LZ4 block compression (system liblz4), used for compressed resync data and benchmarks.
/// The block format carries no length: callers frame it and pass the expected size back in.
public enum LZ4Block {
    /// Why an LZ4 operation failed.
    public enum Failure: Error, Equatable, CustomStringConvertible {
        case inputTooLarge(Int)
        case compressionFailed
        case corruptInput
        case sizeMismatch(expected: Int, got: Int)

        public var description: String {
            switch self {
            case .inputTooLarge(let n): return "LZ4: input of \(n) bytes is larger than LZ4 accepts"
            case .compressionFailed: return "LZ4: compression failed"
            case .corruptInput: return "LZ4: compressed data is corrupt"
            case .sizeMismatch(let e, let g): return "LZ4: expected \(e) bytes after decompression, got \(g)"
            }
        }
    }

    /// The largest compressed size of `count` input bytes.
    public static func maxCompressedSize(_ count: Int) -> Int {
        Int(LZ4_compressBound(Int32(clamping: count)))
    }

    /// Compresses `input`; the result may be larger than the input for data that does not compress.
    public static func compress(_ input: [UInt8], acceleration: Int32 = 1) throws -> [UInt8] {
        guard input.count <= Int(LZ4_MAX_INPUT_SIZE) else { throw Failure.inputTooLarge(input.count) }
        let bound = maxCompressedSize(input.count)
        var output = [UInt8](repeating: 0, count: max(bound, 1))
        let written = input.withUnsafeBytes { src -> Int32 in
            output.withUnsafeMutableBytes { dst -> Int32 in
                LZ4_compress_fast(
                    src.baseAddress?.assumingMemoryBound(to: CChar.self),
                    dst.baseAddress!.assumingMemoryBound(to: CChar.self),
                    Int32(input.count), Int32(bound), acceleration)
            }
        }
        guard written > 0 || input.isEmpty else { throw Failure.compressionFailed }
        output.removeSubrange(Int(written)...)
        return output
    }

    /// Decompresses `input`, which must expand to exactly `originalSize` bytes.
    /// Never writes past `originalSize`: corrupt input is refused, not trusted.
    public static func decompress(_ input: [UInt8], originalSize: Int) throws -> [UInt8] {
        guard originalSize >= 0, originalSize <= Int(LZ4_MAX_INPUT_SIZE) else {
            throw Failure.inputTooLarge(originalSize)
        }
        if originalSize == 0 { return [] }
        var output = [UInt8](repeating: 0, count: originalSize)
        let got = input.withUnsafeBytes { src -> Int32 in
            output.withUnsafeMutableBytes { dst -> Int32 in
                LZ4_decompress_safe(
                    src.baseAddress?.assumingMemoryBound(to: CChar.self),
                    dst.baseAddress!.assumingMemoryBound(to: CChar.self),
                    Int32(input.count), Int32(originalSize))
            }
        }
        guard got >= 0 else { throw Failure.corruptInput }
        guard Int(got) == originalSize else { throw Failure.sizeMismatch(expected: originalSize, got: Int(got)) }
        return output
    }

    /// The version of the linked liblz4, e.g. "1.9.4".
    public static var libraryVersion: String { String(cString: LZ4_versionString()) }
}
