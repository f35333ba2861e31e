import Testing
import TandemCodecs
@testable import TandemEngine

/// Two engines joined directly (packets handed over in order, disks in memory), for feeding
/// one of them what a lying or broken peer would send at a chosen moment.
struct EnginePair {
    var engines: [ReplicationEngine]
    var disks: [[UInt8]]
    /// Packets on their way: (to, packet, socket).
    var wire: [(Int, Packet, Socket)] = []
    var diskQueue: [(Int, UInt64, DiskResult)] = []
    var sentReports: [(Int, UInt64)] = []
    var linkUp = false
    var drops: [String] = []
    /// Packets held back instead of delivered (by the receiving node's test predicate).
    var hold: (Int, Packet) -> Bool = { _, _ in false }
    var held: [(Int, Packet, Socket)] = []
    var backingAnswers: [(Int, UInt64)] = []
    var snapshotsAsked: [(Int, UInt64, SnapshotPoint)] = []
    var adminDone: [UInt64: String?] = [:]
    var adminResults: [UInt64: String] = [:]
    var completed: Set<UInt64> = []
    var handlersRun: [(Int, Handler)] = []
    /// Per node: why a data operation fails (nil: it succeeds); failed writes change nothing.
    var diskFault: [(DiskOperation) -> String?] = [{ _ in nil }, { _ in nil }]
    /// Per node: meta-data completions held back instead of completed.
    var holdMeta = [false, false]
    var heldMeta: [(Int, UInt64)] = []
    /// Application calls answered with an error, and reads answered (nil data: an error).
    var appErrors: [UInt64: String] = [:]
    var reads: [UInt64: (data: [UInt8]?, error: String?)] = [:]
    var logs: [[String]] = [[], []]
    func log(_ n: Int) -> [String] { logs[n] }

    static let sectors: UInt64 = 16384  // 8 MiB
    /// Each node's data area as `.checkBacking` finds it (a test grows it for a resize).
    var backing: [UInt64]

    init(settings: EngineSettings, sectors: (UInt64, UInt64) = (sectors, sectors),
         persistent: PersistentState = PersistentState(current: 0xABCD_0000, consistent: true, wasUpToDate: true)) {
        backing = [sectors.0, sectors.1]
        engines = [sectors.0, sectors.1].map { n in
            ReplicationEngine(settings: settings, backingSectors: n, persistent: persistent, bitmap: OutOfSyncBitmap(bitCount: (n + 7) / 8))
        }
        disks = [[UInt8](repeating: 0, count: Int(sectors.0) * 512), [UInt8](repeating: 0, count: Int(sectors.1) * 512)]
    }

    mutating func feed(_ n: Int, _ e: EngineEvent) {
        for a in engines[n].handle(e) {
            switch a {
            case .send(let p, let s): if linkUp { wire.append((1 - n, p, s)) }
            case .sendTracked(let p, let t):
                if linkUp { wire.append((1 - n, p, .data)) }
                sentReports.append((n, t))
            case .disk(let t, let op):
                if let why = diskFault[n](op) { diskQueue.append((n, t, .failed(why))); continue }
                switch op {
                case .write(let o, let d, _): disks[n].replaceSubrange(Int(o)..<Int(o) + d.count, with: d); diskQueue.append((n, t, .ok))
                case .zero(let o, let l, _):
                    disks[n].replaceSubrange(Int(o)..<Int(o + l), with: [UInt8](repeating: 0, count: Int(l))); diskQueue.append((n, t, .ok))
                case .read(let o, let l): diskQueue.append((n, t, .data(Array(disks[n][Int(o)..<Int(o) + l]))))
                case .flush: diskQueue.append((n, t, .ok))
                }
            case .metaData(let t, _): if holdMeta[n] { heldMeta.append((n, t)) } else { diskQueue.append((n, t, .ok)) }
            case .dropLink(let why):
                drops.append("node \(n): \(why)")
                cut()
            case .checkBacking(let t): backingAnswers.append((n, t))
            case .takeSnapshot(let id, let p): snapshotsAsked.append((n, id, p))
            case .adminDone(let t, let e): adminDone[t] = .some(e?.message)
            case .adminResult(let t, let text): adminResults[t] = text
            case .completeApp(let id, let e):
                completed.insert(id)
                if let e { appErrors[id] = e }
            case .completeRead(let id, let d, let e): reads[id] = (d, e)
            case .log(let line, _): logs[n].append(line)
            case .runHandler(let h): handlersRun.append((n, h))
            default: break
            }
        }
    }

    mutating func connect() {
        linkUp = true
        feed(0, .linkEstablished(agreedVersion: 101, featureFlags: 0x0F | ConnectionFeatures.tandemPeer | ConnectionFeatures.lz4Resync | ConnectionFeatures.snapshotMark, resolveConflicts: true))
        feed(1, .linkEstablished(agreedVersion: 101, featureFlags: 0x0F | ConnectionFeatures.tandemPeer | ConnectionFeatures.lz4Resync | ConnectionFeatures.snapshotMark, resolveConflicts: false))
    }

    mutating func cut() {
        guard linkUp else { return }
        linkUp = false
        wire.removeAll()
        held.removeAll()
        for n in 0..<2 { feed(n, .linkLost(reason: "test cut")) }
    }

    /// Delivers packets and completes disk operations until nothing moves (ticks advance time).
    mutating func settle(ms: UInt64 = 2000) {
        var now: UInt64 = engines[0].nowMs
        let end = now + ms
        while now < end {
            var moved = true
            while moved {
                moved = false
                if !wire.isEmpty {
                    let (to, p, s) = wire.removeFirst()
                    if hold(to, p) { held.append((to, p, s)) } else { feed(to, .packet(p, from: s)) }
                    moved = true
                } else if !diskQueue.isEmpty {
                    let (n, t, r) = diskQueue.removeFirst()
                    feed(n, .diskDone(token: t, result: r))
                    moved = true
                } else if !sentReports.isEmpty {
                    let (n, t) = sentReports.removeFirst()
                    feed(n, .sent(token: t))
                    moved = true
                } else if !backingAnswers.isEmpty {
                    let (n, t) = backingAnswers.removeFirst()
                    if backing[n] > disks[n].count / 512 { disks[n] += [UInt8](repeating: 0, count: Int(backing[n]) * 512 - disks[n].count) }
                    feed(n, .backingChecked(token: t, dataSectors: backing[n], error: nil))
                    moved = true
                }
            }
            now += 20
            for n in 0..<2 { feed(n, .tick(nowMs: now)) }
        }
    }

    var states: [ConnectionState] { engines.map(\.status.connection) }
}

/// #9 item 7: a resync or verify request outside the device or larger than the link carries, a
/// compressed block that does not decompress to its stated size, a digest of the wrong length,
/// answers to requests never made: the connection drops with a clear error and no block is
/// marked in sync that is not.
@Suite struct PeerBadInputTests {
    static func settings(csums: Bool = false) -> EngineSettings {
        var s = EngineSettings()
        s.verifyAlg = "sha1"
        s.csumsAlg = csums ? "md5" : ""
        s.compression = .lz4
        return s
    }

    /// A pair connected, node 0 Primary, with `blocks` 4 KiB blocks written while cut (so
    /// marked), reconnected with the first resync reply to node 1 held back.
    static func pairWithResyncInFlight(csums: Bool = false) -> EnginePair {
        var pair = EnginePair(settings: settings(csums: csums))
        for n in 0..<2 { pair.feed(n, .admin(token: 0, .connect)) }
        pair.connect()
        pair.settle()
        pair.feed(0, .admin(token: 1, .primary(force: false)))
        pair.settle()
        pair.cut()
        for i in 0..<8 {
            pair.feed(0, .appWrite(id: UInt64(100 + i), offset: UInt64(i) * 65536, data: [UInt8](repeating: 0x5A, count: 4096), fua: false))
        }
        pair.settle(ms: 200)
        pair.hold = { to, p in
            if to != 1 { return false }
            switch p {
            case .data(.rsDataReply, _, _, _), .compressedResyncReply, .blockAck(.rsIsInSync, _): return true
            default: return false
            }
        }
        pair.connect()
        pair.settle(ms: 400)
        return pair
    }

    @Test func aCompressedBlockThatDoesNotDecompressToItsSizeDropsTheLink() throws {
        var pair = Self.pairWithResyncInFlight()
        #expect(pair.states[1] == .syncTarget, "\(pair.states)")
        let bitsBefore = pair.engines[1].bitmap.setCount
        #expect(bitsBefore == 8)
        // The first block asked for (sector 0, 4 KiB) with garbage that claims to be LZ4.
        pair.feed(1, .packet(.compressedResyncReply(DataHeader(sector: 0, blockID: BlockRequest.syncerID, seqNum: 0, flags: 0),
                                                     originalSize: 4096, compressed: [0xF0, 0x01, 0x02, 0x03]), from: .data))
        #expect(pair.drops.contains { $0.contains("does not decompress to 4096 bytes") }, "\(pair.drops)")
        #expect(pair.engines[1].bitmap.setCount == bitsBefore, "a block was marked in sync")
    }

    @Test func aResyncReplyOfAnotherSizeOrSectorDropsTheLink() throws {
        var pair = Self.pairWithResyncInFlight()
        let bitsBefore = pair.engines[1].bitmap.setCount
        pair.feed(1, .packet(.data(.rsDataReply, DataHeader(sector: 8, blockID: BlockRequest.syncerID, seqNum: 0, flags: 0), digest: [],
                                   payload: [UInt8](repeating: 1, count: 4096)), from: .data))
        #expect(pair.drops.contains { $0.contains("unexpected P_RS_DATA_REPLY for sector 8") }, "\(pair.drops)")
        #expect(pair.engines[1].bitmap.setCount == bitsBefore)
    }

    @Test func anInSyncAnswerToNoRequestDropsTheLink() throws {
        var pair = Self.pairWithResyncInFlight(csums: true)
        let bitsBefore = pair.engines[1].bitmap.setCount
        pair.feed(1, .packet(.blockAck(.rsIsInSync, BlockAck(sector: 4096, blockID: BlockRequest.syncerID, size: 4096, seqNum: 1)), from: .meta))
        #expect(pair.drops.contains { $0.contains("P_RS_IS_IN_SYNC for sector 4096, which was not requested") }, "\(pair.drops)")
        #expect(pair.engines[1].bitmap.setCount == bitsBefore)
    }

    @Test func resyncRequestsOutsideTheDeviceOrTooLargeDropTheLink() throws {
        for (sector, size, why) in [(EnginePair.sectors - 4, UInt32(4096), "beyond the end of the device"),
                                    (UInt64(0), UInt32(2 << 20), "this link carries at most")] {
            var pair = Self.pairWithResyncInFlight()
            pair.feed(0, .packet(.blockRequest(.rsDataRequest, BlockRequest(sector: sector, blockID: BlockRequest.syncerID, size: size), digest: []),
                                 from: .data))
            #expect(pair.drops.contains { $0.contains(why) }, "\(pair.drops)")
        }
        // The codec refuses a request over 1 MiB before the engine sees it.
        var w = [UInt8]()
        for v in [UInt64(0), UInt64.max] { for i in (0..<8).reversed() { w.append(UInt8(truncatingIfNeeded: v >> (8 * UInt64(i)))) } }
        w += [0, 0x20, 0, 0, 0, 0, 0, 0]
        #expect(throws: WireError.self) { try Packet.decode(command: .rsDataRequest, body: w[...]) }
    }

    @Test func aChecksumOfTheWrongLengthDropsTheLink() throws {
        var pair = Self.pairWithResyncInFlight(csums: true)
        pair.feed(0, .packet(.blockRequest(.csumRSRequest, BlockRequest(sector: 0, blockID: BlockRequest.syncerID, size: 4096),
                                           digest: [UInt8](repeating: 7, count: 20)), from: .data))
        #expect(pair.drops.contains { $0.contains("digest of 20 bytes; csums-alg md5 gives 16") }, "\(pair.drops)")
    }

    /// Verify: a reply with a digest of the wrong length, or for a block never asked for, and a
    /// result beyond the device drop the link; nothing is marked.
    @Test func verifyAnswersThatLieDropTheLink() throws {
        func verifying() -> EnginePair {
            var pair = EnginePair(settings: Self.settings())
            for n in 0..<2 { pair.feed(n, .admin(token: 0, .connect)) }
            pair.connect()
            pair.settle()
            pair.hold = { to, p in
                if case .blockRequest(.ovReply, _, _) = p, to == 0 { return true }
                return false
            }
            pair.feed(0, .admin(token: 2, .verify(startSector: nil)))
            pair.settle(ms: 300)
            return pair
        }
        var pair = verifying()
        #expect(pair.states == [.verifyS, .verifyT], "\(pair.states)")
        pair.feed(0, .packet(.blockRequest(.ovReply, BlockRequest(sector: 0, blockID: BlockRequest.syncerID, size: 4096),
                                           digest: [UInt8](repeating: 0, count: 16)), from: .data))
        #expect(pair.drops.contains { $0.contains("digest of 16 bytes; verify-alg sha1 gives 20") }, "\(pair.drops)")
        #expect(pair.engines[0].bitmap.setCount == 0 && pair.engines[1].bitmap.setCount == 0)

        pair = verifying()
        pair.feed(0, .packet(.blockRequest(.ovReply, BlockRequest(sector: 8, blockID: BlockRequest.syncerID, size: 8192),
                                           digest: [UInt8](repeating: 0, count: 20)), from: .data))
        #expect(pair.drops.contains { $0.contains("P_OV_REPLY for sector 8 (8192 bytes), which was not requested") }, "\(pair.drops)")

        pair = verifying()
        pair.feed(1, .packet(.blockAck(.ovResult, BlockAck(sector: EnginePair.sectors, blockID: BlockRequest.outOfSyncID, size: 4096, seqNum: 1)),
                             from: .meta))
        #expect(pair.drops.contains { $0.contains("P_OV_RESULT beyond the end of the device") }, "\(pair.drops)")
        #expect(pair.engines[1].bitmap.setCount == 0)
    }

    /// The held replies delivered, the same pair converges: the harness itself lets a resync end.
    @Test func theHarnessResyncsWhenNothingLies() throws {
        var pair = Self.pairWithResyncInFlight(csums: true)
        pair.hold = { _, _ in false }
        for (to, p, s) in pair.held { pair.feed(to, .packet(p, from: s)) }
        pair.held.removeAll()
        pair.settle()
        #expect(pair.drops.isEmpty, "\(pair.drops)")
        #expect(pair.states == [.connected, .connected])
        #expect(pair.engines[0].bitmap.setCount == 0 && pair.engines[1].bitmap.setCount == 0)
        #expect(pair.disks[0] == pair.disks[1])
    }
}
