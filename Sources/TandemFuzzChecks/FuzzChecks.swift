import NIOCore
import TandemAdapters
import TandemCodecs

/// What each fuzz target checks on one input, shared by the libFuzzer targets in Fuzz/ and by
/// the regression tests that replay the seed corpora and every crash the fuzzers found. Each
/// check must return normally for any input: bad bytes are refused with an error, never a
/// crash, a hang or an unbounded allocation; what decodes re-encodes to something that decodes
/// to the same value. A broken property traps (precondition), which libFuzzer reports.
public enum FuzzChecks {
    /// The targets, by the name of their corpus folder.
    public static let targets: [(name: String, check: @Sendable ([UInt8]) -> Void)] = [
        ("wire", wire), ("bitmap", bitmap), ("nbd", nbd), ("metadata", metaData), ("config", config),
    ]

    /// DRBD packets framed out of the bytes (any header first, as before the handshake); each
    /// that decodes re-encodes in its own header format to bytes that frame and decode to the
    /// same packet. At most 256 packets an input.
    public static func wire(_ bytes: [UInt8]) {
        var framer = PacketFramer(expecting: nil)
        framer.append(bytes)
        var count = 0
        while count < 256 {
            guard let next = try? framer.next(), let (header, packet) = Optional(next) else { return }
            count += 1
            let again = packet.encode(format: header.format, volume: header.volume)
            var check = PacketFramer(expecting: header.format)
            check.append(again)
            guard case .some(let (_, decoded))? = try? check.next() else {
                preconditionFailure("\(packet.command) re-encoded to bytes that do not decode")
            }
            precondition(decoded == packet, "\(packet.command) changed in a round trip")
        }
    }

    /// A P_COMPRESSED_BITMAP body (first byte the encoding, the rest the code): what decodes
    /// re-encodes to code that decodes to the same runs.
    public static func bitmap(_ bytes: [UInt8]) {
        guard let first = bytes.first else { return }
        guard let (firstSet, runs) = try? BitmapRLE.decode(encoding: first, code: Array(bytes.dropFirst())) else { return }
        precondition(runs.allSatisfy { $0 >= 1 }, "a decoded run of length 0")
        guard !runs.isEmpty, let enc = try? BitmapRLE.encode(firstSet: firstSet, runs: runs[...], maxBytes: 1 << 16) else { return }
        guard let (f2, r2) = try? BitmapRLE.decode(encoding: enc.encoding, code: enc.code) else {
            preconditionFailure("re-encoded bitmap code does not decode")
        }
        precondition(f2 == firstSet && Array(r2.prefix(enc.consumed)) == Array(runs.prefix(enc.consumed)), "bitmap runs changed in a round trip")
    }

    /// An NBD client's byte stream, from the phase the first byte picks (flags, options,
    /// transmission); every item taken consumes bytes, a write carries exactly its length, and
    /// INFO/GO option data is parsed.
    public static func nbd(_ bytes: [UInt8]) {
        guard let first = bytes.first else { return }
        var parser = NBDStreamParser(phase: [.clientFlags, .options, .transmission][Int(first % 3)])
        var buffer = ByteBuffer(bytes: bytes.dropFirst())
        var items = 0
        while items < 1024 {
            let before = buffer.readableBytes
            guard let item = try? parser.next(&buffer) else { return }
            items += 1
            precondition(buffer.readableBytes < before, "an item that consumed no bytes")
            switch item {
            case .request(let r):
                if r.type == 1 { precondition(r.data.count == Int(r.length), "a write's payload is not its length") }
                else { precondition(r.data.isEmpty, "a request other than a write carried data") }
            case .option(_, let data):
                precondition(data.count <= Int(NBDStreamParser.optionDataLimit))
                _ = NBDStreamParser.infoRequest(data)
                if first % 7 == 0 { parser.phase = .transmission }  // as after GO
            case .clientFlags: break
            }
        }
    }

    /// A meta-data superblock and activity-log transactions (4 KiB blocks): what decodes
    /// re-encodes to bytes that decode to the same value; replaying the log never traps.
    public static func metaData(_ bytes: [UInt8]) {
        var block = Array(bytes.prefix(4096))
        if block.count < 4096 { block += [UInt8](repeating: 0, count: 4096 - block.count) }
        if let s = try? Superblock.decode(block) {
            guard let again = try? Superblock.decode(s.encode()) else { preconditionFailure("a superblock re-encoded to bytes that do not decode") }
            precondition(again == s, "a superblock changed in a round trip")
        }
        if let t = try? ActivityLogTransaction.decode(block) {
            guard let again = try? ActivityLogTransaction.decode(t.encode()) else { preconditionFailure("an AL transaction re-encoded to bytes that do not decode") }
            precondition(again.encode() == t.encode(), "an AL transaction changed in a round trip")
        }
        var blocks: [[UInt8]] = []
        var i = 0
        while i < bytes.count && blocks.count < 64 {
            var b = Array(bytes[i..<min(i + 4096, bytes.count)])
            if b.count < 4096 { b += [UInt8](repeating: 0, count: 4096 - b.count) }
            blocks.append(b)
            i += 4096
        }
        _ = ActivityLogTransaction.replay(blocks: blocks)
    }

    /// A resource file: what parses dumps (for every host of every resource) to text that parses
    /// again to the same resources. Includes are not followed.
    public static func config(_ bytes: [UInt8]) {
        let text = String(decoding: bytes, as: UTF8.self)
        guard let c = try? ConfigParser.parse(text: text, file: "fuzz.res", include: { _, _ in [] }) else { return }
        for r in c.resources {
            for h in r.hosts.prefix(4) {
                guard let name = h.names.first else { continue }
                let dumped = ConfigDumper.dump(r, node: name)
                guard let again = try? ConfigParser.parse(text: dumped, file: "dump.res", include: { _, _ in [] }) else {
                    preconditionFailure("the dump of a parsed resource does not parse:\n\(dumped)")
                }
                precondition(again.resources.count == 1 && again.resources[0].name == r.name, "the dump names another resource")
            }
        }
    }
}
