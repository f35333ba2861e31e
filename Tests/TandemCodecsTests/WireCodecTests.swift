import Foundation
import Testing
@testable import TandemCodecs

/// Loads a gzip-compressed wire vector cut from the kernel captures (scripts/extract-wire-vectors.py).
func wireVector(_ name: String) throws -> [UInt8] {
    let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Vectors/\(name).bin.gz")
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/gzip")
    p.arguments = ["-dc", url.path]
    let pipe = Pipe()
    p.standardOutput = pipe
    try p.run()
    let data = pipe.fileHandleForReading.readDataToEndOfFile()
    p.waitUntilExit()
    #expect(p.terminationStatus == 0)
    return [UInt8](data)
}

@Suite struct WireCodecTests {
    /// Every packet of real kernel DRBD 8.4 traffic decodes, and re-encodes to the same bytes.
    @Test(arguments: ["kernel-session", "kernel-protoA", "kernel-protoB"])
    func kernelCapturesRoundTrip(name: String) throws {
        let bytes = try wireVector(name)
        var framer = PacketFramer(expecting: nil)
        framer.append(bytes)
        var offset = 0
        var seen = Set<PacketCommand>()
        while let (header, packet) = try framer.next() {
            let total = header.format.size + header.length
            let original = Array(bytes[offset..<offset + total])
            let again = packet.encode(format: header.format, volume: header.volume)
            #expect(again == original, "\(packet.command) at offset \(offset) does not re-encode to the same bytes")
            seen.insert(packet.command)
            offset += total
        }
        #expect(offset == bytes.count)
        #expect(framer.pendingBytes == 0)
        let expected: Set<PacketCommand> = [.initialData, .initialMeta, .connectionFeatures, .protocol, .syncParam89,
                                            .sizes, .uuids, .state, .data, .barrier, .barrierAck, .ping, .pingAck,
                                            .rsDataRequest, .rsDataReply, .rsWriteAck, .compressedBitmap, .syncUUID]
        #expect(expected.isSubset(of: seen), "missing: \(expected.subtracting(seen))")
        if name == "kernel-session" { #expect(seen.contains(.writeAck)) }
        if name == "kernel-protoB" { #expect(seen.contains(.recvAck)) }
    }

    /// The handshake packets of the kernel carry what our reference says they carry.
    @Test func kernelHandshakeValues() throws {
        var framer = PacketFramer(expecting: nil)
        framer.append(try wireVector("kernel-session"))
        var features: ConnectionFeatures?, sizes: Sizes?, sync: SyncParameters?, bitmap: (UInt8, [UInt8])?
        while let (_, p) = try framer.next() {
            switch p {
            case .features(let f): features = f
            case .sizes(let s): sizes = s
            case .syncParam(let s, _): sync = s
            case .compressedBitmap(let e, let c): bitmap = (e, c)
            default: break
            }
        }
        #expect(features == .kernel84)
        #expect(sizes?.queueLimits != nil)  // FF_WSAME agreed: 56-byte P_SIZES
        #expect(sizes?.currentSectors == 130_992)
        #expect(sync?.controller == .init(planAhead: 20, delayTarget: 10, fillTarget: 100, maxRate: 102_400))
        // Full sync: the kernel's compressed bitmap is one run of set bits over all 16374 bits.
        let (enc, code) = try #require(bitmap)
        let decoded = try BitmapRLE.decode(encoding: enc, code: code)
        #expect(decoded.firstSet)
        #expect(decoded.runs == [16_374])
    }

    @Test func knownHeaderBytes() {
        #expect(hex(Packet.initialData.encode(format: .h80)) == "83740267fff20000")
        #expect(hex(Packet.initialMeta.encode(format: .h80)) == "83740267fff10000")
        let f = Packet.features(.kernel84).encode(format: .h80)
        #expect(f.count == 80)
        #expect(hex(Array(f[0..<24])) == "83740267fffe0048" + "00000056" + "0000000f" + "00000065" + "00000000")
        let st = StateWord(role: .secondary, peer: .unknown, conn: .wfReportParams, disk: .upToDate, pdsk: .dUnknown)
        #expect(st.raw == 0xD092)
        #expect(hex(Packet.state(st).encode(agreedVersion: 101)) == "8620ec20" + "0000000e" + "00000004" + "00000000" + "0000d092")
        #expect(HeaderFormat.forSending(agreedVersion: 96, length: 40000) == .h95)
        #expect(HeaderFormat.forSending(agreedVersion: 96, length: 4096) == .h80)
    }

    /// The values list checked against the kernel's own drbd_vli.h (reference §2.10).
    @Test func vliMatchesKernelBytes() throws {
        let values: [UInt64] = [1, 2, 3, 4, 5, 8, 9, 16, 17, 48, 49, 304, 305, 8496, 8497, 2_105_648, 2_105_649, 65536]
        let (enc, code, consumed) = try BitmapRLE.encode(firstSet: false, runs: values[...], maxBytes: 64)
        #expect(consumed == values.count)
        #expect(code.count == 32)
        #expect(enc >> 4 & 7 == 3)
        #expect(hex(Array(code.prefix(8))) == "988e7db83ff0fe07")
        #expect(hex(Array(code.suffix(2))) == "de00")
        let back = try BitmapRLE.decode(encoding: enc, code: code)
        #expect(back.runs == values)
        #expect(!back.firstSet)
    }

    @Test func vliRoundTripsRandomRuns() throws {
        var rng = SeededRandom.make(10)
        for _ in 0..<200 {
            let runs = (0..<Int.random(in: 1...300, using: &rng)).map { _ in
                UInt64.random(in: 1...(UInt64(1) << UInt64.random(in: 1...40, using: &rng)), using: &rng)
            }
            var i = 0
            var decoded: [UInt64] = []
            while i < runs.count {
                let (e, c, n) = try BitmapRLE.encode(firstSet: true, runs: runs[i...], maxBytes: 100)
                #expect(n > 0)
                decoded += try BitmapRLE.decode(encoding: e, code: c).runs
                i += n
            }
            #expect(decoded == runs, "\(SeededRandom.replay)")
        }
    }

    @Test func refusesLyingHeadersBeforeBuffering() {
        // A P_DATA announcing 2 GiB is refused from its header alone.
        var framer = PacketFramer(expecting: .h100)
        framer.append([0x86, 0x20, 0xec, 0x20, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff, 0, 0, 0, 0])
        #expect(throws: WireError.tooLong(command: .data, length: 0x7fff_ffff, limit: PacketCommand.data.payloadLimit)) {
            try framer.next()
        }
        var f2 = PacketFramer(expecting: .h100)
        f2.append([0x86, 0x20, 0xec, 0x20, 0, 0, 0x00, 0x99, 0, 0, 0, 0, 0, 0, 0, 0])
        #expect(throws: WireError.unknownCommand(0x99)) { try f2.next() }
        var f3 = PacketFramer(expecting: .h100)
        f3.append([0x86, 0x20, 0xec, 0x20, 0, 0, 0, 0x13, 0, 0, 0, 0, 0, 0, 0, 1])
        #expect(throws: WireError.headerPadNotZero) { try f3.next() }
        var f4 = PacketFramer(expecting: .h100)
        f4.append(Packet.initialData.encode(format: .h80))
        #expect(throws: WireError.badMagic(0x8374_0267)) { try f4.next() }
        // Meta-socket packets must have their exact size.
        #expect(throws: WireError.badLength(command: .writeAck, length: 20)) {
            try Packet.decode(command: .writeAck, payload: [UInt8](repeating: 0, count: 20))
        }
        #expect(throws: WireError.badValue(command: .data, field: "data size", value: 100)) {
            try Packet.decode(command: .data, payload: [UInt8](repeating: 0, count: 124))
        }
    }

    /// Mutated real packets never crash the decoder: each either decodes or is refused.
    @Test func fuzzMutatedKernelPackets() throws {
        let bytes = try wireVector("kernel-session")
        var framer = PacketFramer(expecting: nil)
        framer.append(bytes)
        var packets: [[UInt8]] = []
        while let (h, p) = try framer.next() { if h.length < 600 { packets.append(p.encode(format: h.format)) } }
        var rng = SeededRandom.make(20)
        var refused = 0
        for _ in 0..<20_000 {
            var p = packets.randomElement(using: &rng)!
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                switch Int.random(in: 0..<3, using: &rng) {
                case 0: p[Int.random(in: 0..<p.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                case 1: if p.count > 1 { p.removeLast(Int.random(in: 1..<min(p.count, 9), using: &rng)) }
                default: p.append(UInt8.random(in: 0...255, using: &rng))
                }
            }
            var f = PacketFramer(expecting: nil)
            f.append(p)
            do { while try f.next() != nil {} } catch { refused += 1 }
        }
        #expect(refused > 1000, "\(SeededRandom.replay)")
    }

    /// The Tandem extension packet: round trip, and what it claims is checked before anything
    /// is decompressed.
    @Test func compressedResyncReplyRoundTripsAndRefusesLies() throws {
        let data = [UInt8](repeating: 0x41, count: 65536)
        let c = try LZ4Block.compress(data)
        let p = Packet.compressedResyncReply(DataHeader(sector: 128, blockID: BlockRequest.syncerID, seqNum: 0, flags: 0),
                                             originalSize: 65536, compressed: c)
        var f = PacketFramer(expecting: .h100)
        f.append(p.encode(agreedVersion: 101))
        let back = try #require(try f.next())
        #expect(back.packet == p && back.header.rawCommand == 0x7a01)
        func refused(size: UInt32, compressed: [UInt8]) -> Bool {
            var w = p.encode(agreedVersion: 101)
            let body = Packet.compressedResyncReply(DataHeader(sector: 0, blockID: 1, seqNum: 0, flags: 0), originalSize: size,
                                                    compressed: compressed).encodeBody()
            w = Array(w[0..<8]) + withUnsafeBytes(of: UInt32(body.count).bigEndian, Array.init) + Array(w[12..<16]) + body
            var f = PacketFramer(expecting: .h100)
            f.append(w)
            do { _ = try f.next(); return false } catch { return true }
        }
        #expect(refused(size: 0, compressed: [1]))
        #expect(refused(size: 1000, compressed: [1]))           // not a multiple of 512
        #expect(refused(size: 2 << 20, compressed: [1]))        // more than max-bio-size
        #expect(refused(size: 4096, compressed: [UInt8](repeating: 0, count: 4096)))  // did not shrink
        #expect(refused(size: 4096, compressed: []))
        #expect(!refused(size: 4096, compressed: [1, 2, 3]))
    }
}
