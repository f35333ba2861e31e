import Foundation
import TandemCodecs
@testable import TandemEngine

/// The simulation's seeded generator (splitmix64), so a seed replays a run exactly.
struct SimRandom: RandomNumberGenerator {
    var base: SplitMix64
    init(state: UInt64) { base = SplitMix64(seed: state) }
    mutating func next() -> UInt64 { base.next() }
    mutating func chance(_ p: Double) -> Bool { Double(next() >> 11) / Double(1 << 53) < p }
}

/// A simulated disk of sectors, each holding the stamp of the write that last wrote it, and its
/// meta-data area. Completed writes are in `volatile`; only flushed ones are in `durable`.
/// Writes complete in any order, even past an earlier flush (as on a real device with
/// concurrent I/O); a flush completes once every write issued before it has, and makes exactly
/// those durable. Reads and overlapping writes keep their order. Meta-data writes complete in
/// any order with the data I/O and are durable when they complete (the daemon writes them FUA
/// or flushes after them).
struct SimDisk {
    enum Op {
        case data(DiskOperation)
        case meta(MetaDataOperation)
    }
    var volatile: [UInt64]
    var durable: [UInt64]
    /// A write cache that survives power loss (battery-backed): completed writes are durable.
    var nonVolatileCache = false
    /// Completed writes not yet flushed: issue number, start sector, stamps; in completion order.
    var unflushed: [(seq: Int, start: Int, stamps: [UInt64])] = []
    var queue: [(token: UInt64, op: Op, seq: Int)] = []
    var nextSeq = 0
    var meta = SimMetaData()
    /// Sector ranges written since the write-order oracle last took this disk as its base.
    var touched: [Range<Int>] = []
    /// Operations completed (a cheap "did anything change" for the divergence check).
    var completions = 0
    /// A failing device: every data read, write and flush fails (and changes nothing); the
    /// meta-data area still works.
    var failing = false

    init(sectors: Int) { volatile = .init(repeating: 0, count: sectors); durable = volatile }

    mutating func submit(_ token: UInt64, _ op: Op) {
        queue.append((token, op, nextSeq))
        nextSeq += 1
    }

    /// The stamp of each sector: its first 8 bytes, little-endian (this is an x86-64 test).
    static func stamps(_ data: [UInt8]) -> [UInt64] {
        data.withUnsafeBytes { raw in
            (0..<raw.count / 512).map { raw.loadUnaligned(fromByteOffset: $0 * 512, as: UInt64.self) }
        }
    }

    static func bytes(_ stamps: ArraySlice<UInt64>) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: stamps.count * 512)
        out.withUnsafeMutableBytes { raw in
            for (i, s) in stamps.enumerated() { raw.storeBytes(of: s, toByteOffset: i * 512, as: UInt64.self) }
        }
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

    /// Indices of queued operations allowed to complete now. A read may complete at any time
    /// (the daemon reads in a pool of threads) and sees what completed so far.
    func eligible() -> [Int] {
        var out: [Int] = []
        for (i, q) in queue.enumerated() {
            guard case .data(let op) = q.op else { out.append(i); continue }
            if case .read = op { out.append(i); continue }
            var ok = true
            for j in 0..<i {
                guard case .data(let earlier) = queue[j].op else { continue }
                if case .read = earlier { continue }
                switch (earlier, op) {
                case (.flush, .flush), (.flush, .read), (.read, _): ok = false
                case (_, .flush), (_, .read): ok = false  // flush and read wait for everything before them
                case (.flush, _): break                     // a write may overtake a flush
                default: if let a = range(earlier), let b = range(op), a.overlaps(b) { ok = false }
                }
                if !ok { break }
            }
            if ok { out.append(i) }
        }
        return out
    }

    /// Makes every completed data write durable.
    mutating func flushCompleted(before seq: Int = .max) {
        var keep: [(seq: Int, start: Int, stamps: [UInt64])] = []
        for u in unflushed {
            if u.seq < seq { durable.replaceSubrange(u.start..<u.start + u.stamps.count, with: u.stamps) } else { keep.append(u) }
        }
        unflushed = keep
    }

    mutating func complete(_ index: Int) -> (UInt64, DiskResult) {
        let (token, op, seq) = queue.remove(at: index)
        completions += 1
        if failing, case .data = op { return (token, .failed("Input/output error")) }
        if case .data(let d) = op, let r = range(d) {
            switch d { case .write, .zero: touched.append(r); default: break }
        }
        switch op {
        case .meta(let m):
            if case .bitmapPages(_, true) = m { flushCompleted() }
            meta.apply(m, sectors: 8)
            return (token, .ok)
        case .data(.write(let o, let d, let fua)):
            let s = Int(o / 512), st = SimDisk.stamps(d)
            volatile.replaceSubrange(s..<s + st.count, with: st)
            if nonVolatileCache { durable.replaceSubrange(s..<s + st.count, with: st); return (token, .ok) }
            if fua && !unflushed.contains(where: { $0.start < s + st.count && s < $0.start + $0.stamps.count }) {
                durable.replaceSubrange(s..<s + st.count, with: st)
            } else {
                unflushed.append((seq, s, st))
            }
            return (token, .ok)
        case .data(.zero(let o, let l, _)):
            let s = Int(o / 512), st = [UInt64](repeating: 0, count: Int(l / 512))
            volatile.replaceSubrange(s..<s + st.count, with: st)
            if nonVolatileCache { durable.replaceSubrange(s..<s + st.count, with: st); return (token, .ok) }
            unflushed.append((seq, s, st))
            return (token, .ok)
        case .data(.read(let o, let l)):
            let s = Int(o / 512)
            return (token, .data(SimDisk.bytes(volatile[s..<s + l / 512])))
        case .data(.flush):
            flushCompleted(before: seq)
            return (token, .ok)
        }
    }

    /// The disk after a power loss: durable data plus any subset of unflushed writes, some
    /// torn at a sector boundary. A meta-data write in flight is lost, lands whole, or lands
    /// torn. Queued operations are lost.
    mutating func crash(_ rng: inout SimRandom) {
        for q in queue {
            guard case .meta(let m) = q.op, rng.chance(0.5) else { continue }
            // It reached the disk, whole or torn; a bitmap write that flushes data first did that.
            if case .bitmapPages(_, true) = m { flushCompleted() }
            meta.apply(m, sectors: rng.chance(0.5) ? 8 : Int(rng.next() % 8))
        }
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

/// The durable meta-data area of a simulated node: the activity-log ring, bitmap pages and the
/// superblock, as the meta-data store lays them down (a torn write keeps its first sectors).
struct SimMetaData {
    static let ringBlocks = 8
    var alBlocks = [[UInt8]](repeating: ActivityLogTransaction.initialized().encode(), count: SimMetaData.ringBlocks)
    var pages: [Int: [UInt8]] = [:]
    var superblock = PersistentState()
    /// Clean: closed, or just initialized (no transaction since).
    var clean = true

    /// Applies a write; only its first `sectors` 512-byte sectors land when torn.
    mutating func apply(_ op: MetaDataOperation, sectors: Int) {
        func torn(_ old: [UInt8], _ new: [UInt8]) -> [UInt8] {
            let n = min(new.count, sectors * 512)
            return Array(new[0..<n]) + old[n...]
        }
        switch op {
        case .activityLog(let t):
            let i = Int(t.transactionNumber % UInt32(Self.ringBlocks))
            alBlocks[i] = torn(alBlocks[i], t.encode())
            clean = false
        case .bitmapPages(let ps, _):
            for p in ps { pages[p.index] = torn(pages[p.index] ?? [UInt8](repeating: 0, count: 4096), p.bytes) }
        case .superblock(let p):
            if sectors > 0 { superblock = p }  // every field lies in the first sector
            clean = false
        }
    }

    /// What the meta-data store does when it opens the area after a crash: replays the activity
    /// log into the bitmap (every bit of every hot extent), writes that bitmap and
    /// re-initializes the log. Returns the bitmap and the next transaction number.
    mutating func open(bitCount: UInt64) -> (bitmap: OutOfSyncBitmap, nextTransaction: UInt32) {
        let replay = ActivityLogTransaction.replay(blocks: alBlocks)
        var next: UInt32 = 0
        for b in alBlocks {
            if let t = try? ActivityLogTransaction.decode(b), t.type == ActivityLogTransaction.typeUpdate,
               Int32(bitPattern: t.transactionNumber &- next) >= 0 { next = t.transactionNumber &+ 1 }
        }
        var bytes: [UInt8] = []
        let pageCount = Int((bitCount + OutOfSyncBitmap.bitsPerPage - 1) / OutOfSyncBitmap.bitsPerPage)
        for i in 0..<pageCount { bytes += pages[i] ?? [UInt8](repeating: 0, count: 4096) }
        var bm = OutOfSyncBitmap(bitCount: bitCount, onDiskBytes: bytes)
        for e in replay.hotExtents { bm.set(UInt64(e) * OutOfSyncBitmap.bitsPerExtent..<UInt64(e + 1) * OutOfSyncBitmap.bitsPerExtent) }
        for p in 0..<pageCount { pages[p] = bm.pageBytes(p) }
        bm.markPagesWritten(0..<pageCount)
        alBlocks = [[UInt8]](repeating: ActivityLogTransaction.initialized().encode(), count: Self.ringBlocks)
        return (bm, next)
    }
}

/// One simulated node: an engine and its disk (data and meta-data).
struct SimNode {
    var engine: ReplicationEngine
    var disk: SimDisk
    /// Barrier flushes of the engines this node ran before its last crash.
    var earlierBarrierFlushes = 0
}

struct SimFailure: Error, CustomStringConvertible {
    var description: String
}

/// Two engines over a simulated network (four ordered queues: data and meta, each way) and
/// disks, with delays, cuts, crashes and reordered disk completions; checks the invariants.
struct ReplicationSimulation {
    /// Three whole 4 MiB activity-log extents and a partial fourth (12.5 MiB, 3200 bitmap bits),
    /// with two or three activity-log slots: writes often find every slot held.
    static let sectors = 3 * 8192 + 1024
    static let extentSectors = 8192
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
    /// Per node: barrier acks sent (flush ordering flushes for each; drain ordering for none).
    var barrierAcksSent = [0, 0]
    /// Protocol version the two engines agree (86...101, by seed), and their feature flags.
    let agreedVersion: Int
    let featureFlags: UInt32
    /// Times the "nothing differs that is not marked out of sync" check ran.
    var divergenceChecks = 0
    var lastDivergenceCheck = -1
    /// Before protocol 91 the UUIDs could not say how to resync, so the nodes stayed apart.
    var endedUnresolvable = false
    /// Whether the run starts with an initial full sync (fresh meta-data on both nodes).
    let fullInitialSync: Bool
    /// Writes that waited for an activity-log slot (seen in the engine's status).
    var activityLogWaits = 0
    /// Per node: the engine stopped reading its data socket (max-buffers); steps it held packets.
    var readingPaused = [false, false]
    var readPauses = 0
    /// Tracked packets handed to the simulated socket, reported back on a later step.
    var sentReports: [[UInt64]] = [[], []]
    var orderChecks = 0
    /// Online verify: blocks changed behind the engines' backs on node 1's disk (one seed in
    /// six), the node running the verify and the bits it had set when it started, whether a
    /// resync must mend what it found, and the verifies checked.
    let verifySeed: Bool
    var corrupted: Set<UInt64> = []
    var verifySource: Int?
    var bitsBeforeVerify: Set<UInt64> = []
    var corruptedAtStart: Set<UInt64> = []
    var verifyDoneLogs = [0, 0]
    var verifiesDone = [0, 0]
    var resyncAfterVerify = false
    var verifiesChecked = 0
    var compressedWrites = 0
    /// Admin commands answered (token: the error, empty if none), and the verify's token.
    var adminResults: [UInt64: String] = [:]
    var verifyToken: UInt64 = 0
    /// invalidate (node 1) or invalidate-remote (node 0) at step 400, one seed in ten.
    let invalidateSeed: Bool
    /// Instant access, one seed in twenty: `restore` on node 1 at step 400, then node 0 made
    /// Secondary and node 1 Primary while it is SyncTarget; the load moves there and reads
    /// are checked against what the writes left (`truth`).
    let instantSeed: Bool
    var instantSwitched = false
    /// Per sector: the stamp the last uncontested completed write left; sectors whose last
    /// writes overlapped in flight (or failed) are ambiguous; after a crash nothing is known.
    var truth: [UInt64] = []
    var ambiguous = Set<Int>()
    var truthValid = true
    var contested = Set<UInt64>()
    var reads: [UInt64: (node: Int, offset: Int, expected: [UInt64], loose: Set<Int>)] = [:]
    var readsChecked = 0
    var readsFailed = 0
    /// Disk faults, one seed in ten: from step 300 (once the other node is UpToDate and
    /// Connected) node `faultNode`'s data reads and writes fail, under on-io-error detach or pass_on (by seed); at step 500 the disk is mended. A
    /// detached node then restarts on it (from its meta-data, as `down` and `up`); a pass_on
    /// Primary gets `resync`. Reads are checked throughout (served by the peer where this disk
    /// failed them).
    let diskFaultSeed: Bool
    let faultNode: Int
    /// Nodes whose disk failed: their disks no longer hold a state the primary passed through
    /// at an epoch boundary (failed writes are missing), so the write-order oracle skips them.
    var faulted = [false, false]
    var detachesSeen = 0

    init(seed: UInt64) {
        self.seed = seed
        rng = SimRandom(state: seed)
        wireProtocol = UInt32(1 + seed % 3)
        agreedVersion = 86 + Int(seed / 3 % 16)
        // No features, the kernel's, or the kernel's and Tandem's (the windowed resync).
        featureFlags = seed / 7 % 4 == 0 ? 0 : (seed / 7 % 4 == 1 ? 0x0F : 0x0F | ConnectionFeatures.tandemPeer | ConnectionFeatures.lz4Resync | ConnectionFeatures.lz4Data)
        var settings = EngineSettings()
        settings.wireProtocol = wireProtocol
        settings.maxBioSize = seed / 11 % 2 == 0 ? 64 * 1024 : 1 << 20
        settings.maxBuffers = 256
        settings.cFillTarget = seed % 2 == 0 ? 0 : 100
        settings.alExtents = 2 + Int(seed / 13 % 2)
        settings.bitmapWritebackMs = 500
        settings.compression = [CompressionMode.lz4, .auto, .off][Int(seed / 19 % 3)]
        settings.verifyAlg = "crc32c"
        // A third of the seeds compare digests before resyncing (csums-alg).
        settings.csumsAlg = seed / 23 % 3 == 0 ? "crc32c" : ""
        verifySeed = seed % 12 == 5 || seed % 12 == 10
        invalidateSeed = seed % 20 == 7 || seed % 20 == 14
        instantSeed = seed % 20 == 13 || seed % 20 == 16
        diskFaultSeed = seed % 20 == 11 || seed % 20 == 12
        faultNode = Int(seed / 20 % 2)
        if diskFaultSeed { settings.onIOError = seed / 40 % 2 == 0 ? .detach : .passOn }
        // Half the protocol A seeds pull ahead when 16 KiB are unacknowledged (Ahead/Behind),
        // a quarter disconnect then.
        if wireProtocol == 1 && seed / 17 % 4 != 3 {
            settings.onCongestion = seed / 17 % 4 == 2 ? .disconnect : .pullAhead
            settings.congestionFillBytes = 16 * 1024
        }
        // Every fifth seed: no-disk-flushes (drain write ordering) on battery-backed disks.
        drainOrdering = seed % 5 == 3
        settings.diskFlushes = !drainOrdering
        // One seed in eight starts with fresh meta-data and a full initial sync; the others with
        // disks already in sync (as after `new-current-uuid --clear-bitmap`), so their steps go
        // to the write load and its faults.
        fullInitialSync = seed % 8 == 1
        let start = fullInitialSync ? PersistentState()
            : PersistentState(current: 0x5EED_0000_0000_0004 &+ seed << 8, consistent: true, wasUpToDate: true)
        nodes = (0..<2).map { _ in
            var disk = SimDisk(sectors: Self.sectors)
            disk.meta.superblock = start
            return SimNode(engine: ReplicationEngine(settings: settings, backingSectors: UInt64(Self.sectors), persistent: start,
                                                     bitmap: OutOfSyncBitmap(bitCount: UInt64(Self.sectors / 8))),
                           disk: disk)
        }
        for n in 0..<2 { nodes[n].disk.nonVolatileCache = drainOrdering }
        nodes[0].engine.entropy = seed
        nodes[1].engine.entropy = ~seed
    }

    /// A read returns what the writes before it left, sector by sector (sectors a write in
    /// flight meanwhile covered may hold either); it fails only without a good copy.
    mutating func onReadDone(_ n: Int, _ id: UInt64, _ data: [UInt8]?, _ error: String?) throws {
        guard let r = reads.removeValue(forKey: id), r.node == n else {
            throw SimFailure(description: "node \(n) answered read \(id), which the simulation never issued to it")
        }
        guard let data else {
            if nodes[n].engine.status.disk == .upToDate { throw SimFailure(description: "read \(id) of an UpToDate disk failed: \(error ?? "?")") }
            readsFailed += 1
            return
        }
        guard data.count == r.expected.count * 512 else { throw SimFailure(description: "read \(id) returned \(data.count) bytes") }
        let got = SimDisk.stamps(data)
        for (i, want) in r.expected.enumerated() where !r.loose.contains(r.offset + i) && got[i] != want {
            throw SimFailure(description: "read \(id) on node \(n): sector \(r.offset + i) holds \(got[i]), the last write left \(want)")
        }
        readsChecked += 1
    }

    /// A write's sectors overlap writes in flight: neither leaves a known value there.
    mutating func noteWriteIssued(_ id: UInt64, offset: Int, count: Int) {
        let mine = offset..<(offset + count)
        for (oid, o) in outstanding where oid != id && !o.isFlush && (o.offset..<(o.offset + o.stamps.count)).overlaps(mine) {
            contested.insert(oid)
            contested.insert(id)
        }
        for (rid, r) in reads where (r.offset..<(r.offset + r.expected.count)).overlaps(mine) {
            for s in mine { reads[rid]?.loose.insert(s) }
        }
    }

    mutating func noteWriteDone(_ id: UInt64, offset: Int, stamps: [UInt64], error: String?) {
        let wasContested = contested.remove(id) != nil
        guard !truth.isEmpty else { return }
        for (i, st) in stamps.enumerated() {
            if error == nil && !wasContested { truth[offset + i] = st; ambiguous.remove(offset + i) } else { ambiguous.insert(offset + i) }
        }
    }

    mutating func feed(_ n: Int, _ e: EngineEvent) throws {
        let actions = nodes[n].engine.handle(e)
        for a in actions { try perform(n, a) }
    }

    mutating func perform(_ n: Int, _ a: EngineAction) throws {
        switch a {
        case .readData(let on): readingPaused[n] = !on
        case .sendTracked(let p, let rid):
            guard linkUp else { return }
            let last = queues[n][.data]!.last?.at ?? 0
            queues[n][.data]!.append((max(last, nowMs + rng.next() % 20), p.encode(agreedVersion: agreedVersion)))
            sentReports[n].append(rid)
        case .send(let p, let socket):
            guard linkUp else { return }
            if case .barrierAck = p { barrierAcksSent[n] += 1 }
            let delay = rng.next() % 20
            let last = queues[n][socket]!.last?.at ?? 0
            queues[n][socket]!.append((max(last, nowMs + delay), p.encode(agreedVersion: agreedVersion)))
        case .disk(let token, let op): nodes[n].disk.submit(token, .data(op))
        case .metaData(let token, let op): nodes[n].disk.submit(token, .meta(op))
        case .completeApp(let id, let error):
            guard let o = outstanding.removeValue(forKey: id) else { throw SimFailure(description: "completion for unknown app id \(id)") }
            if !o.isFlush { noteWriteDone(id, offset: o.offset, stamps: o.stamps, error: error) }
            if error == nil && !o.isFlush && wireProtocol == 3, let g = o.sentGeneration, g == generation, linkUp {
                // Protocol C: the acknowledged write is on the peer's disk.
                let peer = nodes[1 - n].disk.volatile
                // (Unless the peer's disk failed: then the write is on this node's disk alone,
                // as the protocol allows when one copy fails.)
                for (i, st) in o.stamps.enumerated() where peer[o.offset + i] < st && !faulted[1 - n] {
                    throw SimFailure(description: "protocol C write \(st) acknowledged but sector \(o.offset + i) of the peer holds \(peer[o.offset + i])")
                }
            }
        case .dropLink: cut(initiator: n)
        case .adminDone(let token, let err):
            adminResults[token] = err?.message ?? ""
            if let err { log.append("admin on \(n): \(err)") }
        case .runHandler(let h): log.append("[\(n)] handler \(h.rawValue)")
        case .takeSnapshot, .adminResult:
            throw SimFailure(description: "node \(n) took a snapshot: the simulation never asks for one")
        case .checkBacking:
            // Only a resize asks, and the simulation never resizes (SizeTests and the engine's
            // size tests do).
            throw SimFailure(description: "node \(n) looked at its backing device without a resize")
        case .completeRead(let id, let data, let error): try onReadDone(n, id, data, error)
        case .log(let s, _):
            if s.hasPrefix("Online verify done") { verifiesDone[n] += 1 }
            log.append("[\(n)] \(s)")
        }
    }

    mutating func cut(initiator: Int?) {
        guard linkUp else { return }
        linkUp = false
        queues = [[.data: [], .meta: []], [.data: [], .meta: []]]
        readingPaused = [false, false]
        reconnectAt = nowMs + 50 + rng.next() % 200
        for i in 0..<2 where i != initiator { pendingLost.append(i) }
    }
    var pendingLost: [Int] = []

    mutating func deliverLost() throws {
        while let i = pendingLost.popLast() { try feed(i, .linkLost(reason: "simulated cut")) }
    }

    /// Checks the secondary's durable image against the write-order oracle.
    mutating func checkWriteOrder(_ image: [UInt64], touched: [Range<Int>]) throws {
        guard let base = genBase, genPrimarySentWrites else { return }
        orderChecks += 1
        var state = base
        // Only sectors an epoch wrote or the disk wrote since the base can tell states apart.
        var candidates = Set<Int>()
        for r in touched { for i in r where image[i] != base[i] { candidates.insert(i) } }
        for e in genEpochs { for (s, st) in e { for i in s..<s + st.count { candidates.insert(i) } } }
        func matches(_ s: [UInt64], partial: [(Int, [UInt64])]) -> Bool {
            for i in candidates where image[i] != s[i] {
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
        // Writes a crash may lose (protocol A, unflushed) leave nothing known for reads; reads
        // in flight on the crashed node are gone with it.
        truthValid = false
        for (id, r) in reads where r.node == n { reads[id] = nil }
        nodes[n].disk.crash(&rng)
        if verifySource == n { verifySource = nil }  // its answer died with it
        sentReports[n] = []  // the process is gone (and a new engine numbers requests anew)
        if (n != primaryIndex || !wasPrimary) && !faulted[n] { try checkWriteOrder(nodes[n].disk.durable, touched: nodes[n].disk.touched) }
        cut(initiator: n)
        try deliverLost()
        // Restart from the meta-data as it lies on disk, as the meta-data store opens it: the
        // activity log replayed into the bitmap, the superblock's UUIDs and flags.
        let (bm, next) = nodes[n].disk.meta.open(bitCount: UInt64(Self.sectors / 8))
        var p = nodes[n].disk.meta.superblock
        p.crashedPrimary = p.crashedPrimary || p.primary
        p.primary = false
        p.current &= ~1
        nodes[n].earlierBarrierFlushes += nodes[n].engine.barrierFlushes
        nodes[n].engine = ReplicationEngine(settings: nodes[n].engine.settings, backingSectors: UInt64(Self.sectors),
                                            persistent: p, bitmap: bm, activityLogNextTransaction: next)
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
        // The oracle follows epochs on a Connected secondary only: Behind (the primary pulled
        // ahead) and the resync after it write outside epochs, as a resync after a cut does.
        if genBase != nil && nodes[1 - primaryIndex].engine.status.connection != .connected { genBase = nil }
        if rng.chance(0.05) && !faulted[1 - primaryIndex] {
            // What the secondary's disk would hold if it lost power now.
            var d = nodes[1 - primaryIndex].disk
            d.crash(&rng)
            try checkWriteOrder(d.durable, touched: d.touched)
        }
        var choices: [Int] = []
        for n in 0..<2 {
            for s in [Socket.data, .meta] where queues[n][s]!.first.map({ $0.at <= nowMs }) ?? false {
                // A receiver over max-buffers does not read its data socket.
                if s == .data && readingPaused[1 - n] { readPauses += 1; continue }
                choices.append(n * 2 + (s == .data ? 0 : 1))
            }
        }
        // The oldest queued operation can always complete, so a non-empty queue has a choice.
        let diskChoices = (0..<2).filter { !nodes[$0].disk.queue.isEmpty }
        let r = rng.next() % 100
        if !choices.isEmpty && r < 45 {
            let c = choices[Int(rng.next() % UInt64(choices.count))]
            let from = c / 2, s: Socket = c % 2 == 0 ? .data : .meta
            let (_, bytes) = queues[from][s]!.removeFirst()
            var framer = PacketFramer(expecting: agreedVersion >= 100 ? .h100 : .h80)
            framer.append(bytes)
            guard let (_, p) = try framer.next() else { throw SimFailure(description: "packet did not decode") }
            let to = 1 - from
            // The oracle reads a compressed write (LZ4_DATA) as the P_DATA it stands for.
            var plain = p
            if case .compressedData(let h, let size, let c) = p {
                plain = .data(.data, h, digest: [], payload: try LZ4Block.decompress(c, originalSize: Int(size)))
                compressedWrites += 1
            }
            if to != primaryIndex {
                // The write-order oracle: from a clean point on, the epochs as the secondary receives them.
                let st = nodes[to].engine.status
                if case .data(.data, let h, _, let payload) = plain {
                    if st.connection != .connected || st.disk != .upToDate {
                        genBase = nil
                    } else {
                        let d = nodes[to].disk
                        if genBase == nil && d.unflushed.isEmpty && d.queue.isEmpty {
                            genBase = d.durable
                            genEpochs = [[]]
                            nodes[to].disk.touched.removeAll()
                        }
                        if genBase != nil {
                            genEpochs[genEpochs.count - 1].append((Int(h.sector), SimDisk.stamps(payload)))
                            genPrimarySentWrites = true
                        }
                    }
                } else if case .barrier = plain, genBase != nil {
                    genEpochs.append([])
                } else if case .trim = p { genBase = nil }
            }
            try feed(to, .packet(p, from: s))
        } else if !diskChoices.isEmpty && r < 80 {
            let n = diskChoices[Int(rng.next() % UInt64(diskChoices.count))]
            let el = nodes[n].disk.eligible()
            let pick = el[Int(rng.next() % UInt64(el.count))]
            let (token, result) = nodes[n].disk.complete(pick)
            try feed(n, .diskDone(token: token, result: result))
        } else if workload && r >= 80 && r < 92 && outstanding.count < 6 && nodes[primaryIndex].engine.status.role == .primary {
            let id = nextAppID
            nextAppID += 1
            if (instantSeed || diskFaultSeed) && rng.chance(0.35) {
                try issueRead(id)
            } else if rng.chance(0.1) {
                outstanding[id] = (0, [], nil, true)
                try feed(primaryIndex, .appFlush(id: id))
            } else {
                // Near the start of one of the four extents (crossing into it from the one
                // before), so writes spread over more extents than the activity log has slots.
                let len = 1 + Int(rng.next() % 16)
                let k = Int(rng.next() % 4)
                let lo = max(0, k * Self.extentSectors - 256), hi = min(Self.sectors, k * Self.extentSectors + 768)
                let off = lo + Int(rng.next() % UInt64(hi - lo - len))
                let stamps = (0..<len).map { _ in let s = nextStamp; nextStamp += 1; return s }
                let st = nodes[primaryIndex].engine.status
                let replicating = linkUp && [.connected, .syncSource, .syncTarget, .pausedSyncT].contains(st.connection) && st.peerDisk >= .inconsistent
                outstanding[id] = (off, stamps, replicating ? generation : nil, false)
                noteWriteIssued(id, offset: off, count: len)
                try feed(primaryIndex, .appWrite(id: id, offset: UInt64(off * 512), data: SimDisk.bytes(stamps[...]),
                                                 fua: rng.chance(0.1)))
                if nodes[primaryIndex].engine.status.writesWaitingForActivityLog > 0 { activityLogWaits += 1 }
            }
        } else if workload && r == 92 && rng.chance(0.1) {
            cut(initiator: nil)
        } else if workload && r == 93 && rng.chance(0.05) {
            // (Not the node whose disk is failing: a crash on top of a failing disk is a
            // second fault, which can leave no good copy of the newest writes.)
            let n = Int(rng.next() % 2)
            if !nodes[n].disk.failing { try crash(n) }
        } else if r >= 94 && r < 97 && sentReports.contains(where: { !$0.isEmpty }) {
            let n = sentReports[0].isEmpty ? 1 : (sentReports[1].isEmpty ? 0 : Int(rng.next() % 2))
            let rid = sentReports[n].removeFirst()
            try feed(n, .sent(token: rid))
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
                try feed(0, .linkEstablished(agreedVersion: agreedVersion, featureFlags: featureFlags, resolveConflicts: true))
                try feed(1, .linkEstablished(agreedVersion: agreedVersion, featureFlags: featureFlags, resolveConflicts: false))
            }
            for n in 0..<2 { try feed(n, .tick(nowMs: nowMs)) }
        }
        try driveVerify()
        try checkNothingDiffersUnmarked()
    }

    /// Blocks changed on node 1's disk behind the engines' backs are found by a verify started
    /// before the first of them on either node: exactly those that still differ are marked, no other; then
    /// a resync on the primary mends them.
    mutating func driveVerify() throws {
        guard !corrupted.isEmpty || verifySource != nil || resyncAfterVerify else { return }
        if let n = verifySource {
            let st = nodes[n].engine.status
            if st.connection == .verifyS || adminResults[verifyToken] == nil { return }
            let doneLogs = verifiesDone[n]
            verifySource = nil
            guard doneLogs > verifyDoneLogs[n] else { return }  // cut short: another verify later
            verifyDoneLogs[n] = doneLogs
            verifiesChecked += 1
            let a = nodes[0].disk.volatile, b = nodes[1].disk.volatile
            // Blocks changed while it ran may be found or not; those changed before must be.
            for blk in corruptedAtStart where (Int(blk) * 8..<Int(blk) * 8 + 8).contains(where: { a[$0] != b[$0] }) {
                guard nodes[n].engine.bitmap.isSet(blk) else {
                    throw SimFailure(description: "verify on node \(n) missed block \(blk), changed behind its back")
                }
            }
            for blk in 0..<nodes[n].engine.bitmap.bitCount where nodes[n].engine.bitmap.isSet(blk) {
                if !corrupted.contains(blk) && !bitsBeforeVerify.contains(blk) {
                    throw SimFailure(description: "verify on node \(n) marked block \(blk), which nothing changed behind its back")
                }
            }
            corrupted = corrupted.filter { !corruptedAtStart.contains($0) && !nodes[n].engine.bitmap.isSet($0) }
            resyncAfterVerify = true
            return
        }
        let s0 = nodes[0].engine.status, s1 = nodes[1].engine.status
        let idle = linkUp && s0.connection == .connected && s1.connection == .connected && s0.disk == .upToDate && s1.disk == .upToDate
        if resyncAfterVerify && idle && rng.chance(0.05) {
            let p = s0.role == .primary ? 0 : (s1.role == .primary ? 1 : 0)
            resyncAfterVerify = false
            try feed(p, .admin(token: adminToken, .resync))
            log.append("resync on node \(p) after the verify")
            return
        }
        if !corrupted.isEmpty && idle && rng.chance(0.02) {
            let n = Int(rng.next() % 2)
            bitsBeforeVerify = Set((0..<nodes[n].engine.bitmap.bitCount).filter { nodes[n].engine.bitmap.isSet($0) })
            adminToken += 1
            verifyToken = adminToken
            corruptedAtStart = corrupted
            verifySource = n
            // From a little before the first changed block (verify --start), so runs stay short.
            let start = corrupted.min()!.subtractingReportingOverflow(rng.next() % 64)
            try feed(n, .admin(token: verifyToken, .verify(startSector: start.overflow ? 0 : start.partialValue * 8)))
            log.append("verify on node \(n) with \(corrupted.count) blocks changed behind its back")
        }
    }

    /// Changes a 4 KiB block of node 1's disk (both its cache and what is durable) as a fault
    /// below the engine would: one of the last 256, where the write load also goes, so the
    /// verify from a little before it stays short (a verify step costs as much as a resync's).
    mutating func corruptBlock() {
        let blk = UInt64(Self.sectors / 8) - 1 - rng.next() % 256
        for s in Int(blk) * 8..<Int(blk) * 8 + 8 {
            let v = 0xBAD0_0000_0000 &+ nextStamp
            nextStamp += 1
            nodes[1].disk.volatile[s] = v
            nodes[1].disk.durable[s] = v
        }
        corrupted.insert(blk)
        genBase = nil  // the write-order oracle starts again from a clean point
    }

    /// Whenever both nodes are Connected and UpToDate with nothing in flight, every sector that
    /// differs between the disks lies in a block one of them marks out of sync. (After a crash
    /// and the resync, this is what "no silent divergence" means.)
    mutating func checkNothingDiffersUnmarked() throws {
        guard linkUp, outstanding.isEmpty, queues.allSatisfy({ $0.values.allSatisfy(\.isEmpty) }),
              nodes.allSatisfy({ $0.disk.queue.isEmpty }) else { return }
        let s0 = nodes[0].engine.status, s1 = nodes[1].engine.status
        guard s0.connection == .connected, s1.connection == .connected, s0.disk == .upToDate, s1.disk == .upToDate,
              s0.peerDisk == .upToDate, s1.peerDisk == .upToDate, s0.writesInFlight == 0, s1.writesInFlight == 0 else { return }
        // Nothing changed on either disk since the last check: it would find the same.
        let key = nodes[0].disk.completions &* 1_000_003 &+ nodes[1].disk.completions
        guard key != lastDivergenceCheck else { return }
        lastDivergenceCheck = key
        divergenceChecks += 1
        let a = nodes[0].disk.volatile, b = nodes[1].disk.volatile
        for i in 0..<a.count where a[i] != b[i] {
            let block = UInt64(i / 8)
            if corrupted.contains(block) { continue }  // a verify is to find it
            if !nodes[0].engine.bitmap.isSet(block) && !nodes[1].engine.bitmap.isSet(block) {
                throw SimFailure(description: "silent divergence: sector \(i) holds \(a[i]) on node 0 and \(b[i]) on node 1, and neither marks block \(block) out of sync")
            }
        }
    }

    /// A read on the Primary of a range no write in flight covers and whose last writes are
    /// known (instant-access seeds).
    mutating func issueRead(_ id: UInt64) throws {
        guard truthValid, reads.count < 4 else { return }
        let len = 1 + Int(rng.next() % 16)
        let k = Int(rng.next() % 4)
        let lo = max(0, k * Self.extentSectors - 256), hi = min(Self.sectors, k * Self.extentSectors + 768)
        let off = lo + Int(rng.next() % UInt64(hi - lo - len))
        let range = off..<(off + len)
        guard !range.contains(where: { ambiguous.contains($0) }) else { return }
        var loose = Set<Int>()
        for o in outstanding.values where !o.isFlush {
            for s in range where s >= o.offset && s < o.offset + o.stamps.count { loose.insert(s) }
        }
        reads[id] = (primaryIndex, off, Array(truth[range]), loose)
        try feed(primaryIndex, .appRead(id: id, offset: UInt64(off * 512), length: UInt64(len * 512)))
    }

    /// Instant access: once node 1 is SyncTarget and node 0 idle, node 0 steps down and node 1
    /// is promoted with a plain `primary`; the load follows.
    mutating func switchToRestoringPrimary() throws {
        guard !instantSwitched, outstanding.isEmpty, reads.isEmpty else { return }
        let s1 = nodes[1].engine.status, s0 = nodes[0].engine.status
        guard s1.connection == .syncTarget, s1.disk == .inconsistent, s0.role == .primary, s0.writesInFlight == 0 else { return }
        try feed(0, .admin(token: adminToken, .secondary))
        guard nodes[0].engine.status.role == .secondary else { return }
        instantSwitched = true
        primaryIndex = 1
        try feed(1, .admin(token: adminToken, .primary(force: false)))
        log.append("instant access: node 1 promoted while SyncTarget (\(nodes[1].engine.status.role))")
    }

    /// The failing disk is mended: a detached node restarts on it from its meta-data (its
    /// application, if Primary, with it); a pass_on Primary still Inconsistent resyncs.
    mutating func mendDisk() throws {
        let n = faultNode
        guard faulted[n] else { return }
        nodes[n].disk.failing = false
        let st = nodes[n].engine.status
        log.append("node \(n)'s disk is mended (\(st.disk), \(st.connection))")
        if st.disk == .diskless {
            detachesSeen += 1
            try crash(n)
        } else if st.role == .primary && st.disk == .inconsistent && !st.connection.isSyncing {
            try feed(n, .admin(token: adminToken, .resync))
        }
    }

    /// A whole run: connect, force node 0 primary (initial full sync), a write load with
    /// faults, then heal and check that both disks converge.
    mutating func run(steps: Int) throws {
        for n in 0..<2 { try feed(n, .admin(token: 0, .connect)) }
        var promoted = false
        truth = nodes[0].disk.volatile
        for i in 0..<steps {
            // Promote node 0 (retried: a cut may lose the state-change request).
            if nodes[0].engine.status.role == .primary { promoted = true }
            if verifySeed && (i == 300 || i == 310) { corruptBlock() }
            // One seed in twenty: restore on the secondary (joins a resync, or pulls everything).
            if (seed % 20 == 3 || seed % 20 == 8 || instantSeed) && i == 400 {
                try feed(1, .admin(token: adminToken, .restore(discardMyData: seed / 20 % 2 == 0)))
            }
            if instantSeed && i > 400 { try switchToRestoringPrimary() }
            // One fault at a time: the disk fails while the other node holds a good copy
            // (UpToDate and Connected, not Behind), as soon after step 300 as it does.
            if diskFaultSeed && i >= 300 && i < 500 && !faulted[faultNode]
                && nodes.allSatisfy({ $0.engine.status.disk == .upToDate && $0.engine.status.connection == .connected }) {
                nodes[faultNode].disk.failing = true
                faulted[faultNode] = true
                log.append("node \(faultNode)'s disk fails (\(nodes[faultNode].engine.settings.onIOError))")
            }
            if diskFaultSeed && i == 500 { try mendDisk() }
            if invalidateSeed && i == 400 {
                try feed(seed / 10 % 2 == 0 ? 1 : 0, .admin(token: adminToken, seed / 10 % 2 == 0 ? .invalidate : .invalidateRemote))
            }
            if i > 20 && i % 25 == 0 && nodes[primaryIndex].engine.status.role != .primary {
                try feed(primaryIndex, .admin(token: adminToken, .primary(force: primaryIndex == 0 && !promoted)))
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
                && s1.disk == .upToDate && corrupted.isEmpty && verifySource == nil && !resyncAfterVerify && outstanding.isEmpty && queues.allSatisfy({ $0.values.allSatisfy(\.isEmpty) })
                && nodes.allSatisfy({ $0.disk.queue.isEmpty }) {
                break
            }
            if s0.connection == .standAlone || s1.connection == .standAlone {
                // Before protocol 91 DRBD cannot resolve some histories (an interrupted resync
                // after a crash): it refuses the connection, as the kernel does. The run ends there.
                if agreedVersion < 91 && log.contains(where: { $0.contains("have to support at least protocol 91") }) {
                    endedUnresolvable = true
                    return
                }
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
