/// DRBD's out-of-sync bitmap: one bit per 4 KiB block of the data area, set = the block may
/// differ from the peer's. Kept as little-endian 64-bit words exactly as it lies on disk (and as
/// P_BITMAP carries it), and tracks which 4 KiB pages changed since they were last written.
public struct OutOfSyncBitmap: Equatable, Sendable {
    /// Bytes of data one bit stands for.
    public static let bytesPerBit: UInt64 = 4096
    /// Bits in one 4 KiB on-disk page.
    public static let bitsPerPage: UInt64 = 4096 * 8
    /// Bits per 4 MiB activity-log extent.
    public static let bitsPerExtent: UInt64 = 1024

    /// Number of meaningful bits.
    public let bitCount: UInt64
    public private(set) var words: [UInt64]
    /// Pages changed in memory and not yet written.
    public private(set) var dirtyPages: Set<Int> = []

    /// An all-clear bitmap of `bitCount` bits, sized in whole 4 KiB pages.
    public init(bitCount: UInt64) {
        self.bitCount = bitCount
        let pages = max(1, (bitCount + Self.bitsPerPage - 1) / Self.bitsPerPage)
        self.words = [UInt64](repeating: 0, count: Int(pages * Self.bitsPerPage / 64))
    }

    /// Loads a bitmap from its on-disk bytes (little-endian words). Bits beyond `bitCount` are
    /// cleared, as DRBD keeps them.
    public init(bitCount: UInt64, onDiskBytes bytes: [UInt8]) {
        self.init(bitCount: bitCount)
        let n = min(words.count, bytes.count / 8)
        for i in 0..<n { words[i] = ByteIO.readLE(bytes, i * 8) }
        clearTail()
        count = words.reduce(0) { $0 + UInt64($1.nonzeroBitCount) }
    }

    /// The same bits in a bitmap of `bitCount` bits (a grown data area); the new bits are clear
    /// and their pages not marked changed.
    public func grown(to bitCount: UInt64) -> OutOfSyncBitmap {
        precondition(bitCount >= self.bitCount, "a bitmap only grows")
        var g = OutOfSyncBitmap(bitCount: bitCount)
        g.words.replaceSubrange(0..<words.count, with: words)
        g.count = count
        g.dirtyPages = dirtyPages
        return g
    }

    /// Number of 4 KiB pages.
    public var pageCount: Int { words.count / 512 }

    private mutating func clearTail() {
        let full = Int(bitCount / 64)
        let rem = bitCount % 64
        if full < words.count {
            if rem != 0 { words[full] &= (UInt64(1) << rem) - 1; for i in (full + 1)..<words.count { words[i] = 0 } }
            else { for i in full..<words.count { words[i] = 0 } }
        }
    }

    public func isSet(_ bit: UInt64) -> Bool {
        precondition(bit < bitCount)
        return words[Int(bit / 64)] & (UInt64(1) << (bit % 64)) != 0
    }

    /// Sets the bits in `range`; returns how many were newly set.
    @discardableResult
    public mutating func set(_ range: Range<UInt64>) -> UInt64 { change(range, to: true) }

    /// Clears the bits in `range`; returns how many were newly cleared.
    @discardableResult
    public mutating func clear(_ range: Range<UInt64>) -> UInt64 { change(range, to: false) }

    private mutating func change(_ range: Range<UInt64>, to value: Bool) -> UInt64 {
        let r = range.clamped(to: 0..<bitCount)
        guard !r.isEmpty else { return 0 }
        var changed: UInt64 = 0
        var bit = r.lowerBound
        while bit < r.upperBound {
            let w = Int(bit / 64)
            let lo = bit % 64
            let hi = min(64, lo + (r.upperBound - bit))
            let mask: UInt64 = hi - lo == 64 ? ~0 : ((UInt64(1) << (hi - lo)) - 1) << lo
            let old = words[w]
            let new = value ? old | mask : old & ~mask
            if new != old {
                let n = UInt64((old ^ new).nonzeroBitCount)
                changed += n
                if value { count += n } else { count -= n }
                words[w] = new
                dirtyPages.insert(w / 512)
            }
            bit += hi - lo
        }
        return changed
    }

    /// ORs 64-bit words received from a peer into the bitmap, starting at `wordOffset`; bits
    /// past `bitCount` are ignored. Returns how many bits were newly set.
    @discardableResult
    public mutating func merge(words incoming: some Collection<UInt64>, at wordOffset: Int) -> UInt64 {
        var added: UInt64 = 0
        for (i, w) in incoming.enumerated() where w != 0 {
            let base = UInt64(wordOffset + i) * 64
            guard base < bitCount else { break }
            var v = w
            while v != 0 {
                let b = UInt64(v.trailingZeroBitCount)
                let run = UInt64((~(v >> b)).trailingZeroBitCount)
                added += set((base + b)..<(base + b + run))
                v = run + b >= 64 ? 0 : v & ~(((UInt64(1) << run) - 1) << b)
            }
        }
        return added
    }

    /// The first set bit at or after `bit`, or nil.
    public func nextSet(from bit: UInt64) -> UInt64? {
        var b = bit
        while b < bitCount {
            let w = words[Int(b / 64)] >> (b % 64)
            if w != 0 {
                let r = b + UInt64(w.trailingZeroBitCount)
                return r < bitCount ? r : nil
            }
            b = (b / 64 + 1) * 64
        }
        return nil
    }

    /// Bits set in the whole bitmap.
    public var setCount: UInt64 { count }

    /// Kept up to date by every change, so asking for it costs nothing on a large device.
    private var count: UInt64 = 0

    /// Bits covering the byte range of data (4 KiB granularity, partial blocks included).
    public static func bits(coveringBytes offset: UInt64, length: UInt64) -> Range<UInt64> {
        guard length > 0 else { return (offset / bytesPerBit)..<(offset / bytesPerBit) }
        return (offset / bytesPerBit)..<((offset + length + bytesPerBit - 1) / bytesPerBit)
    }

    /// Activity-log extent (4 MiB) that holds a bit.
    public static func extent(ofBit bit: UInt64) -> UInt32 { UInt32(bit / bitsPerExtent) }

    /// The on-disk bytes of page `index`.
    public func pageBytes(_ index: Int) -> [UInt8] {
        #if _endian(little)
        return words[(index * 512)..<(index * 512 + 512)].withUnsafeBytes { Array($0) }
        #else
        var out = [UInt8](repeating: 0, count: 4096)
        for i in 0..<512 { ByteIO.writeLE(words[index * 512 + i], into: &out, at: i * 8) }
        return out
        #endif
    }

    /// All on-disk bytes.
    public func onDiskBytes() -> [UInt8] {
        var out = [UInt8](repeating: 0, count: words.count * 8)
        for (i, w) in words.enumerated() { ByteIO.writeLE(w, into: &out, at: i * 8) }
        return out
    }

    /// Forgets that pages changed (after they were written).
    public mutating func markPagesWritten(_ pages: some Sequence<Int>) {
        for p in pages { dirtyPages.remove(p) }
    }

    /// Pages holding the bits of an extent.
    public static func page(ofExtent extent: UInt32) -> Int {
        Int(UInt64(extent) * bitsPerExtent / bitsPerPage)
    }
}
