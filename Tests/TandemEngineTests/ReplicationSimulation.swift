import Foundation
import TandemCodecs
@testable import TandemEngine

/// A small deterministic PRNG (splitmix64) so a seed replays a run exactly.
struct SimRandom: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func chance(_ p: Double) -> Bool { Double(next() >> 11) / Double(1 << 53) < p }
}

/// A simulated disk of sectors, each holding the stamp of the write that last wrote it.
/// Completed writes are in `volatile`; only flushed ones are in `durable`. Writes complete in
/// any order, even past an earlier flush (as on a real device with concurrent I/O); a flush
/// completes once every write issued before it has, and makes exactly those durable. Reads and
/// overlapping writes keep their order.
struct SimDisk {
    var volatile: [UInt64]
    var durable: [UInt64]
    /// A write cache that survives power loss (battery-backed): completed writes are durable.
    var nonVolatileCache = false
    /// Completed writes not yet flushed: issue number, start sector, stamps; in completion order.
    var unflushed: [(seq: Int, start: Int, stamps: [UInt64])] = []
    var queue: [(token: UInt64, op: DiskOperation, seq: Int)] = []
    var nextSeq = 0

    init(sectors: Int) { volatile = .init(repeating: 0, count: sectors); durable = volatile }

    mutating func submit(_ token: UInt64, _ op: DiskOperation) {
        queue.append((token, op, nextSeq))
        nextSeq += 1
    }

    static func stamps(_ data: [UInt8]) -> [UInt64] {
        stride(from: 0, to: data.count, by: 512).map { ByteIO.readLE(data, $0, as: UInt64.self) }
    }

    static func bytes(_ stamps: ArraySlice<UInt64>) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: stamps.count * 512)
        for (i, s) in stamps.enumerated() { ByteIO.writeLE(s, into: &out, at: i * 512) }
        return out
    }

    func range(_ op: DiskOperation) -> Range<Int>? {
        switch op {
        case .write(let o, let d, _): return Int(o / 512)..<Int(o / 512) + d.count / 512
        case .zero(let o, let l, _): return Int(o / 512)..<Int((o + l) / 512)
        case .read(let o, let l): return Int(o / 512)..<Int(o / 512) + l / 512
        case .flush: return nil
        }
    }

    /// Indices of queued operations allowed to complete now.
    func eligible() -> [Int] {
        var out: [Int] = []
        for (i, q) in queue.enumerated() {
            var ok = true
            for j in 0..<i {
                let earlier = queue[j].op
                switch (earlier, q.op) {
                case (.flush, .flush), (.flush, .read), (.read, _): ok = false
                case (_, .flush), (_, .read): ok = false  // flush and read wait for everything before them
                case (.flush, _): break                     // a write may overtake a flush
                default: if let a = range(earlier), let b = range(q.op), a.overlaps(b) { ok = false }
                }
                if !ok { break }
            }
            if ok { out.append(i) }
        }
        return out
    }

    mutating func complete(_ index: Int) -> (UInt64, DiskResult) {
        let (token, op, seq) = queue.remove(at: index)
        switch op {
        case .write(let o, let d, let fua):
            let s = Int(o / 512), st = SimDisk.stamps(d)
            volatile.replaceSubrange(s..<s + st.count, with: st)
            if nonVolatileCache { durable.replaceSubrange(s..<s + st.count, with: st); return (token, .ok) }
            if fua && !unflushed.contains(where: { $0.start < s + st.count && s < $0.start + $0.stamps.count }) {
                durable.replaceSubrange(s..<s + st.count, with: st)
            } else {
                unflushed.append((seq, s, st))
            }
            return (token, .ok)
        case .zero(let o, let l, _):
            let s = Int(o / 512), st = [UInt64](repeating: 0, count: Int(l / 512))
            volatile.replaceSubrange(s..<s + st.count, with: st)
            if nonVolatileCache { durable.replaceSubrange(s..<s + st.count, with: st); return (token, .ok) }
            unflushed.append((seq, s, st))
            return (token, .ok)
        case .read(let o, let l):
            let s = Int(o / 512)
            return (token, .data(SimDisk.bytes(volatile[s..<s + l / 512])))
        case .flush:
            var keep: [(seq: Int, start: Int, stamps: [UInt64])] = []
            for u in unflushed {
                if u.seq < seq { durable.replaceSubrange(u.start..<u.start + u.stamps.count, with: u.stamps) } else { keep.append(u) }
            }
            unflushed = keep
            return (token, .ok)
        }
    }

    /// The disk after a power loss: durable data plus any subset of unflushed writes, some
    /// torn at a sector boundary. Queued operations are lost.
    mutating func crash(_ rng: inout SimRandom) {
        var image = durable
        for u in unflushed where rng.chance(0.5) {
            let keep = rng.chance(0.3) ? Int(rng.next() % UInt64(u.stamps.count + 1)) : u.stamps.count
            for i in 0..<keep { image[u.start + i] = u.stamps[i] }
        }
        volatile = image
        durable = image
        unflushed.removeAll()
        queue.removeAll()
    }
}

/// One simulated node: an engine, its disk and what the daemon would persist.
struct SimNode {
    var engine: ReplicationEngine
    var disk: SimDisk
    var persisted: PersistentState
    var activated: Set<UInt32> = []
    /// The bitmap as on disk: set bits are written at once (the activity log or an explicit
    /// write covers them), cleared bits only after a data flush made their blocks durable.
    var persistedBitmap: OutOfSyncBitmap
}

struct SimFailure: Error, CustomStringConvertible {
    var description: String
}

/// Two engines over a simulated network (four ordered queues: data and meta, each way) and
/// disks, with delays, cuts, crashes and reordered disk completions; checks the invariants.
struct ReplicationSimulation {
    static let sectors = 2048  // 1 MiB: 256 bitmap bits, one AL extent
    var rng: SimRandom
    let seed: UInt64
    var nodes: [SimNode]
    var nowMs: UInt64 = 0
    /// queues[from][socket]: packets in flight from node `from`, with delivery time.
    var queues: [[Socket: [(at: UInt64, bytes: [UInt8])]]] = [[.data: [], .meta: []], [.data: [], .meta: []]]
    var linkUp = false
    var reconnectAt: UInt64? = 0
    var generation = 0
    var nextStamp: UInt64 = 1
    var nextAppID: UInt64 = 1
    var outstanding: [UInt64: (offset: Int, stamps: [UInt64], sentGeneration: Int?, isFlush: Bool)] = [:]
    let wireProtocol: UInt32
    var log: [String] = []
    var adminToken: UInt64 = 1
    var primaryIndex = 0
    // Write-order oracle for the current link generation.
    var genBase: [UInt64]?
    var genEpochs: [[(Int, [UInt64])]] = [[]]
    var genPrimarySentWrites = false
    var settleSteps = 0
    var drainOrdering = false
    /// Per node: barrier acks sent and disk flushes issued (drain ordering issues fewer flushes
    /// than it acknowledges barriers; flush ordering at least as many).
    var barrierAcksSent = [0, 0], flushesIssued = [0, 0]
    /// Protocol A packets handed to the simulated socket, reported back on a later step.
    var sentReports: [[UInt64]] = [[], []]
    var orderChecks = 0

    init(seed: UInt64) {
        self.seed = seed
        rng = SimRandom(state: seed)
        wireProtocol = UInt32(1 + seed % 3)
        var settings = EngineSettings()
        settings.wireProtocol = wireProtocol
        settings.maxBioSize = 64 * 1024
        settings.maxBuffers = 32
        settings.cFillTarget = seed % 2 == 0 ? 0 : 100
        // Every fifth seed: no-disk-flushes (drain write ordering) on battery-backed disks.
        drainOrdering = seed % 5 == 3
        settings.diskFlushes = !drainOrdering
        let fresh = PersistentState()
        nodes = (0..<2).map { _ in
            SimNode(engine: ReplicationEngine(settings: settings, sizeSectors: UInt64(Self.sectors), persistent: fresh,
                                              bitmap: OutOfSyncBitmap(bitCount: UInt64(Self.sectors / 8))),
                    disk: SimDisk(sectors: Self.sectors), persisted: fresh,
                    persistedBitmap: OutOfSyncBitmap(bitCount: UInt64(Self.sectors / 8)))
        }
        for n in 0..<2 { nodes[n].disk.nonVolatileCache = drainOrdering }
        nodes[0].engine.entropy = seed
        nodes[1].engine.entropy = ~seed
    }

    mutating func feed(_ n: Int, _ e: EngineEvent) throws {
        let actions = nodes[n].engine.handle(e)
        for a in actions { try perform(n, a) }
    }

    mutating func perform(_ n: Int, _ a: EngineAction) throws {
        switch a {
        case .sendReplicated(let p, let rid):
            guard linkUp else { return }
            let last = queues[n][.data]!.last?.at ?? 0
            queues[n][.data]!.append((max(last, nowMs + rng.next() % 20), p.encode(agreedVersion: 101)))
            sentReports[n].append(rid)
        case .send(let p, let socket):
            guard linkUp else { return }
            if case .barrierAck = p { barrierAcksSent[n] += 1 }
            let delay = rng.next() % 20
            let last = queues[n][socket]!.last?.at ?? 0
            queues[n][socket]!.append((max(last, nowMs + delay), p.encode(agreedVersion: 101)))
        case .activateExtents(let e): nodes[n].activated.formUnion(e)
        case .disk(let token, let op):
            if case .flush = op { flushesIssued[n] += 1 }
            nodes[n].disk.submit(token, op)
        case .completeApp(let id, let error):
            guard let o = outstanding.removeValue(forKey: id) else { throw SimFailure(description: "completion for unknown app id \(id)") }
            if error == nil && !o.isFlush && wireProtocol == 3, let g = o.sentGeneration, g == generation, linkUp {
                // Protocol C: the acknowledged write is on the peer's disk.
                let peer = nodes[1 - n].disk.volatile
                for (i, st) in o.stamps.enumerated() where peer[o.offset + i] < st {
                    throw SimFailure(description: "protocol C write \(st) acknowledged but sector \(o.offset + i) of the peer holds \(peer[o.offset + i])")
                }
            }
        case .bitmapChanged(let r, let set): if set { nodes[n].persistedBitmap.set(r) }
        case .persist(let p): nodes[n].persisted = p
        case .dropLink: cut(initiator: n)
        case .adminDone(_, let err): if let err { log.append("admin on \(n): \(err)") }
        case .log(let s): log.append("[\(n)] \(s)")
        }
    }

    mutating func cut(initiator: Int?) {
        guard linkUp else { return }
        linkUp = false
        queues = [[.data: [], .meta: []], [.data: [], .meta: []]]
        reconnectAt = nowMs + 50 + rng.next() % 200
        for i in 0..<2 where i != initiator { pendingLost.append(i) }
    }
    var pendingLost: [Int] = []

    mutating func deliverLost() throws {
        while let i = pendingLost.popLast() { try feed(i, .linkLost(reason: "simulated cut")) }
    }

    /// Checks the secondary's durable image against the write-order oracle.
    mutating func checkWriteOrder(_ image: [UInt64]) throws {
        guard let base = genBase, genPrimarySentWrites else { return }
        orderChecks += 1
        var state = base
        func matches(_ s: [UInt64], partial: [(Int, [UInt64])]) -> Bool {
            for i in 0..<s.count where image[i] != s[i] {
                if !partial.contains(where: { i >= $0.0 && i < $0.0 + $0.1.count && $0.1[i - $0.0] == image[i] }) { return false }
            }
            return true
        }
        for k in 0..<genEpochs.count {
            if matches(state, partial: genEpochs[k]) { return }
            for (s, st) in genEpochs[k] { state.replaceSubrange(s..<s + st.count, with: st) }
        }
        if matches(state, partial: []) { return }
        throw SimFailure(description: "secondary's disk after a crash is not a state the primary passed through at an epoch boundary")
    }

    mutating func crash(_ n: Int) throws {
        let wasPrimary = nodes[n].engine.status.role == .primary
        nodes[n].disk.crash(&rng)
        sentReports[n] = []  // the process is gone (and a new engine numbers requests anew)
        if n != primaryIndex || !wasPrimary { try checkWriteOrder(nodes[n].disk.durable) }
        cut(initiator: n)
        try deliverLost()
        // Restart from what was persisted: bits as known plus every extent in the activity log.
        var bm = nodes[n].persistedBitmap
        for e in nodes[n].activated { bm.set(UInt64(e) * 1024..<UInt64(e + 1) * 1024) }
        var p = nodes[n].persisted
        p.crashedPrimary = p.primary
        p.primary = false
        p.current &= ~1
        nodes[n].persisted = p
        nodes[n].engine = ReplicationEngine(settings: nodes[n].engine.settings, sizeSectors: UInt64(Self.sectors),
                                            persistent: p, bitmap: bm)
        nodes[n].persistedBitmap = bm
        nodes[n].activated = []
        nodes[n].engine.entropy = rng.next()
        try feed(n, .tick(nowMs: nowMs))
        try feed(n, .admin(token: 0, .connect))
        if wasPrimary {
            outstanding.removeAll()  // the application died with the primary
            try feed(n, .admin(token: 0, .primary(force: false)))
        }
        log.append("crash of node \(n)")
    }

    mutating func step(workload: Bool) throws {
        try deliverLost()
        if rng.chance(0.05) {
            // What the secondary's disk would hold if it lost power now.
            var d = nodes[1 - primaryIndex].disk
            d.crash(&rng)
            try checkWriteOrder(d.durable)
        }
        var choices: [Int] = []
        for n in 0..<2 {
            for s in [Socket.data, .meta] where queues[n][s]!.first.map({ $0.at <= nowMs }) ?? false { choices.append(n * 2 + (s == .data ? 0 : 1)) }
        }
        let diskChoices = (0..<2).filter { !nodes[$0].disk.eligible().isEmpty }
        let r = rng.next() % 100
        if !choices.isEmpty && r < 45 {
            let c = choices[Int(rng.next() % UInt64(choices.count))]
            let from = c / 2, s: Socket = c % 2 == 0 ? .data : .meta
            let (_, bytes) = queues[from][s]!.removeFirst()
            var framer = PacketFramer(expecting: .h100)
            framer.append(bytes)
            guard let (_, p) = try framer.next() else { throw SimFailure(description: "packet did not decode") }
            let to = 1 - from
            if to != primaryIndex {
                // The write-order oracle: from a clean point on, the epochs as the secondary receives them.
                let st = nodes[to].engine.status
                if case .data(.data, let h, _, let payload) = p {
                    if st.connection != .connected || st.disk != .upToDate {
                        genBase = nil
                    } else {
                        let d = nodes[to].disk
                        if genBase == nil && d.volatile == d.durable && d.queue.isEmpty {
                            genBase = d.durable
                            genEpochs = [[]]
                        }
                        if genBase != nil {
                            genEpochs[genEpochs.count - 1].append((Int(h.sector), SimDisk.stamps(payload)))
                            genPrimarySentWrites = true
                        }
                    }
                } else if case .barrier = p, genBase != nil {
                    genEpochs.append([])
                } else if case .trim = p { genBase = nil }
            }
            try feed(to, .packet(p, from: s))
        } else if !diskChoices.isEmpty && r < 80 {
            let n = diskChoices[Int(rng.next() % UInt64(diskChoices.count))]
            let el = nodes[n].disk.eligible()
            let pick = el[Int(rng.next() % UInt64(el.count))]
            if case .flush = nodes[n].disk.queue[pick].op { nodes[n].persistedBitmap = nodes[n].engine.bitmap }
            let (token, result) = nodes[n].disk.complete(pick)
            try feed(n, .diskDone(token: token, result: result))
        } else if workload && r >= 80 && r < 92 && outstanding.count < 6 && nodes[primaryIndex].engine.status.role == .primary {
            let id = nextAppID
            nextAppID += 1
            if rng.chance(0.1) {
                outstanding[id] = (0, [], nil, true)
                try feed(primaryIndex, .appFlush(id: id))
            } else {
                let len = 1 + Int(rng.next() % 16)
                let off = Int(rng.next() % UInt64(Self.sectors - len))
                let stamps = (0..<len).map { _ in let s = nextStamp; nextStamp += 1; return s }
                let st = nodes[primaryIndex].engine.status
                let replicating = linkUp && [.connected, .syncSource].contains(st.connection) && st.peerDisk >= .inconsistent
                outstanding[id] = (off, stamps, replicating ? generation : nil, false)
                try feed(primaryIndex, .appWrite(id: id, offset: UInt64(off * 512), data: SimDisk.bytes(stamps[...]),
                                                 fua: rng.chance(0.1)))
            }
        } else if workload && r == 92 && rng.chance(0.1) {
            cut(initiator: nil)
        } else if workload && r == 93 && rng.chance(0.05) {
            try crash(Int(rng.next() % 2))
        } else if r >= 94 && r < 97 && sentReports.contains(where: { !$0.isEmpty }) {
            let n = sentReports[0].isEmpty ? 1 : (sentReports[1].isEmpty ? 0 : Int(rng.next() % 2))
            let rid = sentReports[n].removeFirst()
            try feed(n, .replicatedSent(requestID: rid))
        } else {
            nowMs += 1 + rng.next() % 30
            if !linkUp, let at = reconnectAt, nowMs >= at,
               nodes.allSatisfy({ $0.engine.status.connection != .standAlone }) {
                linkUp = true
                reconnectAt = nil
                generation += 1
                genBase = nil
                genEpochs = [[]]
                genPrimarySentWrites = false
                try feed(0, .linkEstablished(agreedVersion: 101, featureFlags: 0x0F, resolveConflicts: true))
                try feed(1, .linkEstablished(agreedVersion: 101, featureFlags: 0x0F, resolveConflicts: false))
            }
            for n in 0..<2 { try feed(n, .tick(nowMs: nowMs)) }
        }
    }

    /// A whole run: connect, force node 0 primary (initial full sync), a write load with
    /// faults, then heal and check that both disks converge.
    mutating func run(steps: Int) throws {
        for n in 0..<2 { try feed(n, .admin(token: 0, .connect)) }
        var promoted = false
        for i in 0..<steps {
            // Promote node 0 (retried: a cut may lose the state-change request).
            if nodes[0].engine.status.role == .primary { promoted = true }
            if i > 20 && i % 25 == 0 && nodes[0].engine.status.role != .primary {
                try feed(0, .admin(token: adminToken, .primary(force: !promoted)))
            }
            try step(workload: i > 20)
        }
        // Heal: no more faults, finish outstanding work, reconnect, let the resync finish.
        var settle = 0
        while settle < 200_000 {
            settle += 1
            try step(workload: false)
            let s0 = nodes[0].engine.status, s1 = nodes[1].engine.status
            if linkUp && s0.connection == .connected && s1.connection == .connected && s0.disk == .upToDate
                && s1.disk == .upToDate && outstanding.isEmpty && queues.allSatisfy({ $0.values.allSatisfy(\.isEmpty) })
                && nodes.allSatisfy({ $0.disk.queue.isEmpty }) {
                break
            }
            if s0.connection == .standAlone || s1.connection == .standAlone {
                throw SimFailure(description: "a node went StandAlone: \(s0.lastError ?? s1.lastError ?? "?")")
            }
        }
        settleSteps = settle
        let s0 = nodes[0].engine.status, s1 = nodes[1].engine.status
        guard settle < 200_000 else {
            throw SimFailure(description: "did not settle: \(s0.role) \(s0.connection)/\(s0.disk) peer \(s0.peerDisk), \(s1.role) \(s1.connection)/\(s1.disk), outstanding \(outstanding.count), link \(linkUp), disk queues \(nodes[0].disk.queue.count)/\(nodes[1].disk.queue.count), in flight \(s0.writesInFlight)")
        }
        guard s0.connection == .connected && s1.connection == .connected else {
            throw SimFailure(description: "did not converge: \(s0.connection)/\(s0.disk) and \(s1.connection)/\(s1.disk), outstanding \(outstanding.count)")
        }
        guard s0.outOfSyncBits == 0 && s1.outOfSyncBits == 0 else {
            throw SimFailure(description: "both UpToDate but bits remain set: \(s0.outOfSyncBits)/\(s1.outOfSyncBits)")
        }
        // Nothing marked in sync differs.
        let a = nodes[0].disk.volatile, b = nodes[1].disk.volatile
        if let i = (0..<a.count).first(where: { a[$0] != b[$0] }) {
            throw SimFailure(description: "disks differ at sector \(i) (\(a[i]) vs \(b[i])) while both are UpToDate; bits set: \(s0.outOfSyncBits)/\(s1.outOfSyncBits)")
        }
    }
}

extension Packet {
    var dataSector: UInt64? {
        if case .data(_, let h, _, _) = self { return h.sector }
        return nil
    }
}
