/// Append-only big-endian writer for building packet bodies. The wire format is big-endian
/// except for a few opaque fields, which callers write with `bytesOf`.
public struct WireWriter: Sendable {
    public private(set) var bytes: [UInt8]

    public init(capacity: Int = 64) { bytes = []; bytes.reserveCapacity(capacity) }

    public mutating func u8(_ v: UInt8) { bytes.append(v) }
    public mutating func u16(_ v: UInt16) { append(v) }
    public mutating func u32(_ v: UInt32) { append(v) }
    public mutating func u64(_ v: UInt64) { append(v) }
    public mutating func i32(_ v: Int32) { append(UInt32(bitPattern: v)) }
    public mutating func raw<C: Collection>(_ b: C) where C.Element == UInt8 { bytes.append(contentsOf: b) }
    public mutating func zeros(_ n: Int) { bytes.append(contentsOf: repeatElement(0, count: n)) }

    /// A NUL-terminated string in a fixed field of `width` bytes, zero-padded.
    public mutating func fixedString(_ s: String, width: Int) {
        let u = Array(s.utf8.prefix(width - 1))
        raw(u); zeros(width - u.count)
    }

    /// A NUL-terminated string taking exactly its length plus one byte.
    public mutating func cString(_ s: String) { raw(Array(s.utf8)); u8(0) }

    private mutating func append<T: FixedWidthInteger>(_ v: T) {
        let n = MemoryLayout<T>.size
        for i in 0..<n { bytes.append(UInt8(truncatingIfNeeded: v >> ((n - 1 - i) * 8))) }
    }
}

/// Bounds-checked big-endian reader over a packet body. Every read checks the remaining length
/// and throws instead of trapping, so a short or lying packet is a protocol error, not a crash.
public struct WireReader: Sendable {
    /// The body; a slice of the receive buffer, so reading it copies only what is kept.
    public let bytes: ArraySlice<UInt8>
    /// Bytes consumed so far (relative to the start of the body).
    public private(set) var offset: Int
    let command: PacketCommand

    public init(_ bytes: ArraySlice<UInt8>, command: PacketCommand) { self.bytes = bytes; offset = 0; self.command = command }

    public var remaining: Int { bytes.count - offset }

    mutating func take(_ n: Int) throws(WireError) -> ArraySlice<UInt8> {
        guard n >= 0, remaining >= n else { throw .truncated(command: command, needed: offset + n, got: bytes.count) }
        defer { offset += n }
        let at = bytes.startIndex + offset
        return bytes[at..<at + n]
    }

    public mutating func u8() throws(WireError) -> UInt8 { try take(1).first! }
    public mutating func u16() throws(WireError) -> UInt16 { try read() }
    public mutating func u32() throws(WireError) -> UInt32 { try read() }
    public mutating func u64() throws(WireError) -> UInt64 { try read() }
    public mutating func i32() throws(WireError) -> Int32 { Int32(bitPattern: try read()) }
    public mutating func rest() -> [UInt8] { defer { offset = bytes.count }; return Array(bytes[(bytes.startIndex + offset)...]) }
    public mutating func raw(_ n: Int) throws(WireError) -> [UInt8] { Array(try take(n)) }

    /// A NUL-terminated string in a fixed field; bytes after the NUL are ignored. Not valid
    /// UTF-8 is refused (the names these fields hold are ASCII; decoding them lossily would
    /// hand on a name the peer never sent).
    public mutating func fixedString(width: Int) throws(WireError) -> String {
        let f = try take(width)
        guard let nul = f.firstIndex(of: 0), let s = String(validating: f[f.startIndex..<nul], as: UTF8.self) else {
            throw .badString(command: command)
        }
        return s
    }

    /// A NUL-terminated string filling the rest of the body (P_PROTOCOL's integrity-alg).
    public mutating func trailingCString(max: Int) throws(WireError) -> String {
        let r = rest()
        guard r.count <= max, let nul = r.firstIndex(of: 0), nul == r.count - 1,
              let s = String(validating: r[..<nul], as: UTF8.self) else { throw .badString(command: command) }
        return s
    }

    public func expectEnd() throws(WireError) {
        guard remaining == 0 else { throw .badLength(command: command, length: bytes.count) }
    }

    private mutating func read<T: FixedWidthInteger>() throws(WireError) -> T {
        let s = try take(MemoryLayout<T>.size)
        var v: T = 0
        for b in s { v = (v << 8) | T(b) }
        return v
    }
}
