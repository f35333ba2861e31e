/// The text forms drbdmeta prints for v08 meta-data (`dump-md`, `get-gi`, `show-gi`), produced
/// from decoded values so `tandem dump-md` and `drbdmeta dump-md` can be compared line by line.
/// One difference is deliberate: drbdmeta 9.22 prints `flags 0x00000000;` in every v08 dump (it
/// reads the wrong variable); Tandem prints the real flags.
public enum MetaDataText {
    /// drbdmeta reads the bitmap in chunks of this many bytes; runs of equal words are found
    /// within a chunk and carried across its end, which shapes where a run is printed.
    static let dumpChunkBytes = 128 * 1024

    /// The body of `dump-md` after the comment header: version line through `# bits-set`.
    /// `bitmapBytes` are the on-disk bitmap bytes covering the last agreed size.
    public static func dumpBody(superblock s: Superblock, layout: MetaDataLayout, bitmapBytes: [UInt8]) -> String {
        var out = "version \"v08\";\n\n"
        if !s.isClean {
            out += "This_is_an_unclean_meta_data_dump._Don't_trust_the_bitmap.\n"
            out += "# You should \"apply-al\" first, if you plan to restore this.\n\n"
        }
        out += "# md_size_sect \(s.metaDataSizeSectors)\n"
        out += "# md_offset \(layout.superblockOffset)\n"
        out += "# al_offset \(layout.alOffset)\n"
        out += "# bm_offset \(layout.bitmapOffset)\n\n"
        out += "uuid {\n"
        out += "    " + s.uuids.map { "0x" + Hex.upper($0, digits: 16) + ";" }.joined(separator: " ") + "\n"
        out += "    flags 0x" + Hex.upper(s.flags.rawValue, digits: 8) + ";\n"
        out += "}\n"
        out += "# al-extents \(s.alExtents);\n"
        out += "la-size-sect \(s.lastAgreedSizeSectors);\n"
        out += "bm-byte-per-bit \(s.bitmapBytesPerBit);\n"
        out += "device-uuid 0x" + Hex.upper(s.deviceUUID, digits: 16) + ";\n"
        out += "la-peer-max-bio-size \(Int32(bitPattern: s.lastPeerMaxBioSize));\n"
        out += "al-stripes \(s.alStripes);\n"
        out += "al-stripe-size-4k \(s.alStripeSize4k);\n"
        let bmBytes = MetaDataLayout.bitmapBytes(forSectors: s.lastAgreedSizeSectors)
        out += "# bm-bytes \(bmBytes);\n"
        let (text, bits) = bitmapText(Array(bitmapBytes.prefix(Int(bmBytes))) + [UInt8](repeating: 0, count: max(0, Int(bmBytes) - bitmapBytes.count)))
        out += "bm " + text
        out += "# bits-set \(bits);\n"
        return out
    }

    /// The `{ ... }` bitmap block of a dump, with drbdmeta's run-length rule: at the start of
    /// each line of four 64-bit words, a run of at least eight equal 64-bit words (sixteen
    /// 32-bit halves, counted in whole lines) is printed as `N times 0x...;`. Every 64th
    /// 32-bit word starts a line with a `# at NkB` comment. Returns the text and the bits set.
    public static func bitmapText(_ bytes: [UInt8]) -> (String, UInt64) {
        let n = bytes.count / 4
        var w = [UInt32](repeating: 0, count: n)
        for i in 0..<n { w[i] = ByteIO.readLE(bytes, i * 4) }
        let chunkWords = dumpChunkBytes / 4
        var out = "{"
        var bits: UInt64 = 0
        var r = 0
        var count = 0
        var cw: UInt32 = 0
        var lw: UInt32 = 0
        func hex(_ v: UInt32) -> String { Hex.upper(v, digits: 8) }
        while r < n {
            let chunkEnd = min(n, (r / chunkWords + 1) * chunkWords)
            if count == 0 { cw = w[r] }
            if r % 8 == 0 {
                if count == 0 {
                    out += r % 64 == 0 ? "\n   # at \(128 * UInt64(r))kB\n   " : "\n   "
                }
                var j = r
                while j < chunkEnd && w[j] == cw { j += 1 }
                let run = (j - r) / 8 * 8
                if run > 8 {
                    count += run
                    r += run
                    if j >= chunkEnd && r < n { continue }
                }
                if count > 0 {
                    out += " \(count / 2) times 0x\(hex(cw))\(hex(cw));"
                    bits += UInt64(count) * UInt64(cw.nonzeroBitCount)
                    count = 0
                    if r >= n { break }
                    continue
                }
            }
            if r % 2 == 0 { lw = w[r] } else { out += " 0x\(hex(w[r]))\(hex(lw));" }
            bits += UInt64(w[r].nonzeroBitCount)
            r += 1
        }
        out += "\n}\n"
        return (out, bits)
    }

    /// `get-gi`: the four UUIDs and seven flag digits, colon-separated.
    public static func generationLine(_ s: Superblock) -> String {
        let f = s.flags
        func d(_ flag: MetaDataFlags) -> String { f.contains(flag) ? "1" : "0" }
        return s.uuids.map { Hex.upper($0, digits: 16) }.joined(separator: ":") + ":" +
            [d(.consistent), d(.wasUpToDate), d(.primaryIndicator), d(.connectedIndicator),
             d(.fullSync), d(.peerOutdated), d(.crashedPrimary)].joined(separator: ":") + "\n"
    }

    /// `show-gi`: the generation line explained, the flags in words, the size.
    public static func showGenerations(_ s: Superblock) -> String {
        let f = s.flags
        var out = "\n"
        out += "       +--<  Current data generation UUID  >-\n"
        out += "       |               +--<  Bitmap's base data generation UUID  >-\n"
        out += "       |               |                 +--<  younger history UUID  >-\n"
        out += "       |               |                 |         +-<  older history  >-\n"
        out += "       V               V                 V         V\n"
        out += generationLine(s)
        out += "                                                                    ^ ^ ^ ^ ^ ^ ^\n"
        out += "                                      -<  Data consistency flag  >--+ | | | | | |\n"
        out += "                             -<  Data was/is currently up-to-date  >--+ | | | | |\n"
        out += "                                  -<  Node was/is currently primary  >--+ | | | |\n"
        out += "                                  -<  Node was/is currently connected  >--+ | | |\n"
        out += "         -<  Node was in the progress of setting all bits in the bitmap  >--+ | |\n"
        out += "                        -<  The peer's disk was out-dated or inconsistent  >--+ |\n"
        out += "      -<  This node was a crashed primary, and has not seen its peer since   >--+\n"
        out += "\n"
        let disk = f.contains(.consistent) ? (f.contains(.wasUpToDate) ? "UpToDate" : "Outdated") : "Inconsistent"
        out += "flags:" + (f.contains(.crashedPrimary) ? " crashed" : "") + " "
            + (f.contains(.primaryIndicator) ? "Primary" : "Secondary") + ", "
            + (f.contains(.connectedIndicator) ? "Connected" : "StandAlone") + ", " + disk
            + (f.contains(.fullSync) ? ", need full sync" : "")
            + (f.contains(.peerOutdated) ? ", peer Outdated" : "") + "\n"
        out += "meta-data: " + (f.contains(.activityLogClean) ? "clean" : "need apply-al") + "\n"
        if s.lastAgreedSizeSectors != 0 {
            out += "last agreed size: \(humanSize(kib: s.lastAgreedSizeSectors >> 1)) (\(s.lastAgreedSizeSectors) sectors)\n"
            out += "last agreed max bio size: \(s.lastPeerMaxBioSize) Byte\n"
        } else {
            out += "zero size device -- never seen peer yet?\n"
        }
        return out
    }

    /// Sizes the way drbd-utils print them: KiB scaled by 1024 (rounding) while 10000 or more.
    public static func humanSize(kib: UInt64) -> String {
        let units: [Character] = ["K", "M", "G", "T", "P", "E"]
        var size = kib
        var base = 0
        while size >= 10000 && base < units.count - 1 {
            size = (size >> 10) + ((size & (1 << 9)) != 0 ? 1 : 0)
            base += 1
        }
        return "\(size) \(units[base])B"
    }
}
