/// Reads and writes fixed-width integers at byte offsets of a byte array, in big- or
/// little-endian order. The codecs use it instead of unaligned pointer loads so a short or odd
/// buffer is a checked error, never undefined behaviour.
public enum ByteIO {
    @inlinable public static func readBE<T: FixedWidthInteger>(_ bytes: [UInt8], _ offset: Int, as: T.Type = T.self) -> T {
        var v: T = 0
        for i in 0..<MemoryLayout<T>.size { v = (v << 8) | T(bytes[offset + i]) }
        return v
    }

    @inlinable public static func readLE<T: FixedWidthInteger>(_ bytes: [UInt8], _ offset: Int, as: T.Type = T.self) -> T {
        var v: T = 0
        for i in (0..<MemoryLayout<T>.size).reversed() { v = (v << 8) | T(bytes[offset + i]) }
        return v
    }

    @inlinable public static func writeBE<T: FixedWidthInteger>(_ value: T, into bytes: inout [UInt8], at offset: Int) {
        let n = MemoryLayout<T>.size
        for i in 0..<n { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> ((n - 1 - i) * 8)) }
    }

    @inlinable public static func writeLE<T: FixedWidthInteger>(_ value: T, into bytes: inout [UInt8], at offset: Int) {
        let n = MemoryLayout<T>.size
        for i in 0..<n { bytes[offset + i] = UInt8(truncatingIfNeeded: value >> (i * 8)) }
    }
}
