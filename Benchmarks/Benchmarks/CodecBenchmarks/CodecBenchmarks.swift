import Benchmark
import TandemCodecs

/// Throughput of the codecs on the hot paths: checksums of 1 MiB, LZ4 on database-like pages,
/// activity-log transaction encoding, P_DATA framing on the replication path. `Throughput (# / s)`
/// with 1 MiB per iteration is MiB/s.
let benchmarks: @Sendable () -> Void = {
    let mib = (0..<(1 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 13) }
    let page = Array(String(repeating: "INSERT INTO orders VALUES (1042, 'tandem', 19.99, '2026-11-25');\n", count: 16_000).utf8.prefix(1 << 20))
    let config = Benchmark.Configuration(metrics: [.wallClock, .throughput], scalingFactor: .one)

    Benchmark("CRC32C 1 MiB (hardware path)", configuration: config) { b in
        for _ in b.scaledIterations { blackHole(CRC32C.raw(mib)) }
    }
    Benchmark("CRC32C 1 MiB (software path)", configuration: config) { b in
        for _ in b.scaledIterations { blackHole(mib.withUnsafeBytes { CRC32C.software($0, seed: 0) }) }
    }
    Benchmark("LZ4 compress 1 MiB database-like", configuration: config) { b in
        for _ in b.scaledIterations { blackHole(try LZ4Block.compress(page)) }
    }
    let data = Packet.data(.data, DataHeader(sector: 2048, blockID: 7, seqNum: 1, flags: DataFlags.sendWriteAck), digest: [], payload: mib)
    Benchmark("P_DATA 1 MiB encode (prefix + payload)", configuration: config) { b in
        for _ in b.scaledIterations { blackHole(data.encodeParts(agreedVersion: 101)) }
    }
    let wire = data.encode(agreedVersion: 101)
    Benchmark("P_DATA 1 MiB frame and decode", configuration: config) { b in
        for _ in b.scaledIterations {
            var framer = PacketFramer(expecting: .h100)
            framer.append(wire)
            blackHole(try framer.next())
        }
    }
    Benchmark("AL transaction encode", configuration: config) { b in
        let t = ActivityLogTransaction(transactionNumber: 9, updates: (0..<64).map { .init(slot: UInt16($0), extent: UInt32($0)) },
                                       contextSize: 1237, contextStartSlot: 0, context: (0..<919).map { UInt32($0) })
        for _ in b.scaledIterations { blackHole(t.encode()) }
    }
}
