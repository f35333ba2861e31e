import Foundation
import Logging
import NIOCore
import NIOPosix
import TandemAdapters
import TandemAWS
import TandemCodecs
import TandemEngine

/// The node daemon for one resource: owns the backing disk and its meta-data, runs the engine
/// on one event loop, and connects it to the peer transport, the NBD export, the disk thread
/// and the control socket. Everything that touches the engine happens on `loop`; everything
/// that touches the disk happens, in order, on the single disk thread.
public final class NodeDaemon: @unchecked Sendable {
    /// The resource as the file said at `up` (and as `adjust` changed it since).
    public private(set) var plan: ResourcePlan
    let runDir: String
    let group: MultiThreadedEventLoopGroup
    let loop: EventLoop
    let diskThread: NIOThreadPool
    /// Reads the engine asks for (a resync source's) run here, many at once: random reads go
    /// several times faster with requests in flight, and the engine never relies on a read's
    /// order relative to writes (DiskOperation.read).
    let readPool: NIOThreadPool
    let device: FileBlockDevice
    /// An EBS volume's writes go through this: merged per batch, direct I/O, bounded depth.
    let ebsWriter: BatchedDirectWriter?
    /// The writes queued for the EBS writer's next batch on the disk thread (nil: none open).
    /// Any other operation queued on the disk thread seals it first, so a batch never spans a
    /// flush, a meta-data write or a read.
    var openBatch: WriteBatch?
    let store: MetaDataStore
    var engine: ReplicationEngine
    var transport: PeerTransport!
    lazy var handlers = HandlerRunner(commands: plan.handlers, environment: plan.handlerEnvironment, loop: loop,
                                      log: { [unowned self] in self.log($0) },
                                      done: { [unowned self] h, code in self.feed(.handlerDone(h, exitCode: code)) })
    var nbd: NBDServer?
    /// The kernel NBD client, when the device is `/dev/nbdN`.
    var kernelClient: KernelNBDClient?
    var control: ControlServer?
    var pendingApp: [UInt64: @Sendable (NBDReply) -> Void] = [:]
    var pendingAdmin: [UInt64: (AdminRefusal?) -> Void] = [:]
    /// What admin commands produced (a snapshot's id), until their done.
    var adminResults: [UInt64: String] = [:]
    /// The EC2 node's snapshots (its disk is an EBS volume).
    lazy var snapshotKeeper: SnapshotKeeper? = plan.ebs.map { BackingDisk.keeper($0, resource: plan.name) }
    /// The ebs section's snapshot policy at work, when it asks for anything.
    lazy var snapshotSchedule: SnapshotSchedule? = snapshotKeeper.flatMap { keeper in
        guard SnapshotSchedule.isActive(keeper.policy) else { return nil }
        let wall = self.wall
        return SnapshotSchedule(keeper: keeper, now: { wall.now().timeIntervalSince1970 }, log: { [unowned self] s in
            self.loop.execute { self.log(s) }
        }, take: { [unowned self] in try await self.policySnapshot() })
    }
    /// A tick of the schedule is running (one at a time).
    var scheduleTicking = false
    var nextID: UInt64 = 1
    var eventSubscribers: [ObjectIdentifier: (String) -> Void] = [:]
    var lastStatus: EngineStatus?
    var lastError: String?
    var shuttingDown = false
    /// The engine's clock: milliseconds of the monotonic clock since the daemon started, so a
    /// wall clock stepped by NTP or an operator changes nothing.
    let startedUptimeNs = DispatchTime.now().uptimeNanoseconds
    var rateSample: (time: UInt64, bits: UInt64)?
    /// The time of day for log lines and snapshots (see WallClock).
    let wall = WallClock.fromEnvironment()
    var syncRate: Double?
    let exitPromise: EventLoopPromise<Void>
    /// Where the log goes (the journal or an appended file) and the logger writing to it.
    let logSink: DaemonLog
    let logger: Logger

    /// Threads reading for the engine at once (random 4 KiB reads here: about 3k per second one
    /// at a time, 23-30k with 8-32 in flight).
    static let readThreads = 16

    public var controlPath: String { "\(runDir)/\(plan.name).ctl" }
    public var pidPath: String { "\(runDir)/\(plan.name).pid" }

    public init(plan: ResourcePlan, runDir: String) throws {
        self.plan = plan
        self.runDir = runDir
        // SIGHUP asks for the log to be opened again (logrotate); its default would end us.
        signal(SIGHUP, SIG_IGN)
        let clock = WallClock.fromEnvironment()
        logSink = try DaemonLog(file: plan.logFile, now: { clock.now() })
        let sink = logSink
        logger = Logger(label: plan.name) { label in DaemonLogHandler(sink: sink, label: label) }
        do {
            device = try FileBlockDevice(path: plan.diskPath)
        } catch { throw ConfigError(nil, "\(plan.diskPath): \(error)") }
        if plan.ebs != nil {
            do { ebsWriter = try BatchedDirectWriter(path: plan.diskPath, buffered: device) } catch {
                throw ConfigError(nil, "\(plan.diskPath): direct I/O: \(error)")
            }
        } else { ebsWriter = nil }
        let (sbBefore, _) = try MetaDataStore.readSuperblock(from: device)
        let crashed = !sbBefore.isClean
        store = try MetaDataStore(device: device, alExtents: plan.alExtents)
        let sb = store.superblock
        let p = PersistentState(current: sb.currentUUID & ~1, bitmap: sb.bitmapUUID, history0: sb.historyUUIDs.0,
                                history1: sb.historyUUIDs.1, consistent: sb.flags.contains(.consistent),
                                wasUpToDate: sb.flags.contains(.wasUpToDate), primary: false,
                                crashedPrimary: sb.flags.contains(.crashedPrimary) || (crashed && sb.flags.contains(.primaryIndicator)),
                                peerOutdated: sb.flags.contains(.peerOutdated), agreedSectors: sb.lastAgreedSizeSectors)
        guard plan.settings.userSizeSectors <= store.layout.dataSectors else {
            throw ConfigError(nil, "\(plan.name): size \(plan.settings.userSizeSectors) sectors is larger than the data area of \(plan.diskPath) (\(store.layout.dataSectors) sectors)")
        }
        engine = ReplicationEngine(settings: plan.settings, backingSectors: store.layout.dataSectors, persistent: p,
                                   bitmap: try store.loadBitmap(), activityLogNextTransaction: store.activityLogNextTransaction)
        engine.entropy = UInt64.random(in: 1...UInt64.max)
        if case .kernel(let path, _) = plan.export {
            kernelClient = try KernelNBDClient(devicePath: path, sizeBytes: engine.sizeSectors * 512,
                                               flags: NBDProtocol.servedFlags & ~NBDProtocol.tfCanMultiConn)
            // Serving the kernel's own block device: lock memory and become an I/O flusher
            // before the first thread exists, so every thread inherits it.
            try WritebackSafety.apply()
        }
        group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        loop = group.next()
        diskThread = NIOThreadPool(numberOfThreads: 1)
        diskThread.start()
        readPool = NIOThreadPool(numberOfThreads: NodeDaemon.readThreads)
        readPool.start()
        exitPromise = loop.makePromise()
        if crashed { log("meta-data was not cleanly closed: activity log applied\(p.crashedPrimary ? ", node was a crashed primary" : "")") }
    }

    // MARK: running

    /// Starts everything and blocks until the daemon is taken down.
    public func run() throws {
        try FileManager.default.createDirectory(atPath: runDir, withIntermediateDirectories: true)
        let me = self
        transport = PeerTransport(
            loop: loop, me: .init(host: plan.me.host, port: plan.me.port), peer: .init(host: plan.peer.host, port: plan.peer.port),
            sharedSecret: plan.sharedSecret, cramHmacAlg: plan.cramHmacAlg,
            sendBufferBytes: plan.sendBufferBytes, receiveBufferBytes: plan.receiveBufferBytes,
            connectInterval: .seconds(Int64(plan.connectIntervalSeconds)), tls: plan.tls,
            connectsFirst: plan.node < plan.peerName,
            callbacks: .init(
                established: { v, f, rc in me.feed(.linkEstablished(agreedVersion: v, featureFlags: f, resolveConflicts: rc)) },
                packet: { p, s in me.feed(.packet(p, from: s)) },
                lost: { why in me.feed(.linkLost(reason: why)) },
                refused: { why in me.lastError = why; me.log("connection refused: \(why)"); me.feed(.admin(token: 0, .disconnect)) },
                log: { me.log($0) }))
        let server = NBDServer(group: group, backend: ExportBackend(daemon: self), log: { me.log($0) })
        switch plan.export {
        case .unix(let path, _): try server.listen(unixPath: path)
        case .tcp(let host, let port, _): try server.listen(host: host, port: port)
        case .kernel(let path, _):
            let client = kernelClient!
            try server.serve(connectedSocket: client.serverSocket)
            try client.setReadOnly(true)
            client.start { why in me.loop.execute { me.log("kernel NBD client on \(path) stopped\(why.map { ": \($0)" } ?? "")") } }
        }
        nbd = server
        // Listen for the peer before answering on the control socket: once `up` returns, the
        // replication port accepts.
        try transport.start()
        control = try ControlServer(group: group, path: controlPath, daemon: self)
        try "\(getpid())\n".write(toFile: pidPath, atomically: true, encoding: .utf8)
        try loop.submit {
            // The engine leaves StandAlone before the transport takes a connection: a peer
            // that connects while the engine is StandAlone would be dropped, and the transport
            // disabled with it.
            self.feed(.admin(token: 0, .connect))
            self.transport.enable()
            self.loop.scheduleRepeatedTask(initialDelay: .milliseconds(20), delay: .milliseconds(20)) { _ in
                self.feed(.tick(nowMs: self.monotonicMs))
            }
            self.loop.scheduleRepeatedTask(initialDelay: .seconds(1), delay: .seconds(1)) { _ in self.periodic() }
            if self.snapshotSchedule != nil {
                self.loop.scheduleRepeatedTask(initialDelay: .seconds(2), delay: .seconds(NodeDaemon.scheduleSeconds)) { _ in
                    self.tickSchedule()
                }
            }
        }.wait()
        log("up: \(plan.name) on \(plan.node), disk \(plan.diskPath) (\(engine.sizeSectors / 2) KiB of a \(store.layout.dataSectors / 2) KiB data area), export \(plan.export.uri), protocol \(["?", "A", "B", "C"][Int(plan.settings.wireProtocol)])")
        // The newest snapshot's time, for its age before this daemon takes one.
        if let keeper = snapshotKeeper {
            Task {
                if let newest = try? await keeper.list().map(SnapshotKeeper.takenAt).max() {
                    me.loop.execute { me.snapshotFacts.seed(newest: newest) }
                }
            }
        }
        // Serving now: the control socket answers and the export listens (systemd's
        // Type=notify; units ordered After= this one start from here).
        SystemdNotify.send("READY=1\nMAINPID=\(getpid())\nSTATUS=\(statusLine)")
        let signals = DispatchSource.makeSignalSource(signal: SIGTERM, queue: .global())
        signal(SIGTERM, SIG_IGN)
        signals.setEventHandler { me.loop.execute { me.shutdown { _ in } } }
        signals.resume()
        let hupSignals = DispatchSource.makeSignalSource(signal: SIGHUP, queue: .global())
        hupSignals.setEventHandler {
            me.loop.execute {
                do {
                    try me.logSink.reopen()
                    me.log("log file opened again (SIGHUP)")
                } catch { me.log("SIGHUP: \(error); logging goes on to the old file", .error) }
            }
        }
        hupSignals.resume()
        let intSignals = DispatchSource.makeSignalSource(signal: SIGINT, queue: .global())
        signal(SIGINT, SIG_IGN)
        intSignals.setEventHandler { me.loop.execute { me.shutdown { _ in } } }
        intSignals.resume()
        try exitPromise.futureResult.wait()
        try? group.syncShutdownGracefully()
        try? diskThread.syncShutdownGracefully()
        try? readPool.syncShutdownGracefully()
    }

    /// Log lines carry milliseconds (2026-12-01T16:50:37.123Z), as one needs to follow a resync.
    let logTimeFormat: ISO8601DateFormatter = {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f
    }()

    var monotonicMs: UInt64 { (DispatchTime.now().uptimeNanoseconds - startedUptimeNs) / 1_000_000 }

    func log(_ s: String, _ weight: LogWeight = .note) {
        // The limiter is the loop's: a line from another thread goes through it.
        guard loop.inEventLoop else { loop.execute { self.log(s, weight) }; return }
        // Repeated messages are limited (a few a minute each), state changes never; events
        // carry what the log does.
        let lines = weight == .stateChange ? [s] : logLimiter.lines(for: s, nowMs: monotonicMs)
        for m in lines {
            logger.log(level: DaemonLog.level(weight), "\(m)")
            broadcast(["type": "log", "resource": plan.name, "message": m])
        }
    }
    private var logLimiter = LogLimiter()

    /// Feeds the engine (on the loop) and carries out what it asks.
    func feed(_ event: EngineEvent) {
        loop.preconditionInEventLoop()
        if case .diskDone = event { diskCounters.inFlight = max(0, diskCounters.inFlight - 1) }
        let actions = engine.handle(event)
        for a in actions { perform(a) }
        let st = engine.status
        if st.connection == .standAlone { transport.disable(reason: "StandAlone") }
        if let k = kernelClient, st.role != lastStatus?.role {
            do { try k.setReadOnly(st.role != .primary) } catch { log("\(error)") }
        }
        // Only state changes are news (not every write in flight): log them and tell `events`.
        if let old = lastStatus, old.connection == st.connection, old.role == st.role, old.disk == st.disk,
           old.peerDisk == st.peerDisk, old.peerRole == st.peerRole, old.lastError == st.lastError {
            lastStatus = st
            return
        }
        if lastStatus != nil {
            log("state: \(st.role)/\(st.peerRole) \(st.connection) \(st.disk)/\(st.peerDisk)", .stateChange)
            if !shuttingDown { SystemdNotify.send("STATUS=\(statusLine)") }
        }
        if let old = lastStatus, [.syncTarget, .pausedSyncT].contains(old.connection), old.disk != .upToDate, st.disk == .upToDate,
           let schedule = snapshotSchedule {
            // This node's copy is whole again: the policy's after-resync snapshot.
            Task { await schedule.resyncCompleted(); self.loop.execute { self.tickSchedule() } }
        }
        lastStatus = st
        publish("change")
    }

    /// What the exporter shows of this node's EBS snapshots (the EC2 node).
    var snapshotFacts = SnapshotFacts()

    /// What this node asked of its disk (for the exporter's drbd_device_* counters).
    struct DiskCounters {
        var readBytes: UInt64 = 0
        var writtenBytes: UInt64 = 0
        var activityLogWrites: UInt64 = 0
        var bitmapWrites: UInt64 = 0
        /// Disk and meta-data operations issued and not completed (DRBD's lower-pending).
        var inFlight = 0
    }
    var diskCounters = DiskCounters()

    func countDiskIO(_ a: EngineAction) {
        switch a {
        case .disk, .metaData: diskCounters.inFlight += 1
        default: break
        }
        switch a {
        case .disk(_, .write(_, let d, _)): diskCounters.writtenBytes &+= UInt64(d.count)
        case .disk(_, .zero(_, let l, _)): diskCounters.writtenBytes &+= l
        case .disk(_, .read(_, let l)): diskCounters.readBytes &+= UInt64(l)
        case .metaData(_, .activityLog): diskCounters.activityLogWrites &+= 1
        case .metaData(_, .bitmapPages(let pages, _)): diskCounters.bitmapWrites &+= UInt64(pages.count)
        default: break
        }
    }

    /// The state in one line, as `systemctl status` shows it.
    var statusLine: String {
        let st = engine.status
        return "\(st.role)/\(st.peerRole) \(st.connection) \(st.disk)/\(st.peerDisk)"
    }

    /// Sends the current status to `events` subscribers with the given type.
    func publish(_ type: String) {
        guard !eventSubscribers.isEmpty else { return }
        var o = report().json
        o["type"] = type
        broadcast(o)
    }

    /// One JSON line to every `events` subscriber; nothing is built when nobody listens.
    func broadcast(_ object: [String: Any]) {
        guard !eventSubscribers.isEmpty, let line = eventLine(object) else { return }
        for (_, sub) in eventSubscribers { sub(line) }
    }

    /// An event as its line: each says when it happened (the wall clock, as drbdsetup events2
    /// --timestamps).
    func eventLine(_ object: [String: Any]) -> String? {
        var object = object
        object["time"] = logTimeFormat.string(from: wall.now())
        guard let d = try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]) else { return nil }
        return String(decoding: d, as: UTF8.self)
    }

    func perform(_ a: EngineAction) {
        countDiskIO(a)
        switch a {
        case .send(let p, let s): transport.send(p, on: s)
        case .sendTracked(let p, let token):
            transport.send(p, on: .data) { self.feed(.sent(token: token)) }
        case .readData(let on): transport.setReading(on)
        case .disk(let token, .write(let o, let d, let fua)) where ebsWriter != nil:
            enqueueWrite(token: token, offset: o, data: d, fua: fua)
        case .metaData(let token, let op):
            sealBatch()
            let store = self.store
            diskThread.runIfActive(eventLoop: loop) { () -> DiskResult in
                do { try store.write(op); return .ok } catch { return .failed("\(error)") }
            }.whenComplete { r in
                switch r {
                case .success(let res): self.feed(.diskDone(token: token, result: res))
                case .failure(let e): self.feed(.diskDone(token: token, result: .failed("\(e)")))
                }
            }
        case .disk(let token, let op):
            let device = self.device
            let pool: NIOThreadPool
            if case .read = op { pool = readPool } else { pool = diskThread; sealBatch() }
            pool.runIfActive(eventLoop: loop) { () -> DiskResult in
                do {
                    switch op {
                    case .write(let o, let d, let fua):
                        try device.write(d, at: o)
                        if fua { try device.flush() }
                        return .ok
                    case .zero(let o, let l, let discard):
                        if discard { try device.discard(at: o, length: l) } else { try device.writeZeroes(at: o, length: l) }
                        return .ok
                    case .read(let o, let l): return .data(try device.read(at: o, count: l))
                    case .flush: try device.flush(); return .ok
                    }
                } catch { return .failed("\(error)") }
            }.whenComplete { r in
                switch r {
                case .success(let res): self.feed(.diskDone(token: token, result: res))
                case .failure(let e): self.feed(.diskDone(token: token, result: .failed("\(e)")))
                }
            }
        case .completeApp(let id, let error):
            pendingApp.removeValue(forKey: id)?(NBDReply(error: error == nil ? 0 : NBDProtocol.eIO))
            if let error { log("I/O error: \(error)") }
        case .completeRead(let id, let data, let error):
            let reply = pendingApp.removeValue(forKey: id)
            if let data { reply?(NBDReply(data: data)) } else {
                reply?(NBDReply(error: NBDProtocol.eIO))
                log("read error: \(error ?? "?")")
            }
        case .dropLink(let reason):
            transport.drop(reason: reason)
        case .adminDone(let token, let error):
            pendingAdmin.removeValue(forKey: token)?(error)
            adminResults.removeValue(forKey: token)
        case .adminResult(let token, let text):
            adminResults[token] = text
        case .takeSnapshot(let id, let point):
            takeSnapshot(id: id, point)
        case .log(let s, let weight): log(s, weight)
        case .runHandler(let h): handlers.run(h)
        case .checkBacking(let token):
            // The bitmap as it stands now: later changes reach the disk through meta-data
            // writes issued after this one, on the same disk thread, at the new place.
            let store = self.store, bitmap = engine.bitmap
            sealBatch()
            diskThread.runIfActive(eventLoop: loop) { () -> UInt64 in
                try store.moveToGrownDevice(bitmap: bitmap)?.dataSectors ?? store.layout.dataSectors
            }.whenComplete { r in
                switch r {
                case .success(let n): self.feed(.backingChecked(token: token, dataSectors: n, error: nil))
                case .failure(let e): self.feed(.backingChecked(token: token, dataSectors: nil, error: "\(e)"))
                }
            }
        }
    }

    @discardableResult
    func onDisk(_ body: @escaping @Sendable () throws -> Void) -> EventLoopFuture<Void> {
        sealBatch()
        return diskThread.runIfActive(eventLoop: loop, body)
    }

    /// Queues a write for the EBS writer: into the open batch, or a new one whose turn on the
    /// disk thread comes after everything queued there before it.
    func enqueueWrite(token: UInt64, offset: UInt64, data: [UInt8], fua: Bool) {
        let item = WriteBatch.Item(token: token, write: .init(offset: offset, data: data), fua: fua)
        if let b = openBatch, b.append(item) { return }
        let batch = WriteBatch(item)
        openBatch = batch
        let writer = ebsWriter!, device = self.device
        diskThread.runIfActive(eventLoop: loop) { () -> [(UInt64, DiskResult)] in
            let items = batch.take()
            var errors = writer.apply(items.map(\.write))
            if items.contains(where: \.fua) {
                do { try device.flush() } catch { errors = errors.map { $0 ?? "flush: \(error)" } }
            }
            return zip(items, errors).map { ($0.token, $1.map { DiskResult.failed($0) } ?? .ok) }
        }.whenComplete { r in
            switch r {
            case .success(let results): for (t, res) in results { self.feed(.diskDone(token: t, result: res)) }
            case .failure(let e): for item in batch.take() { self.feed(.diskDone(token: item.token, result: .failed("\(e)"))) }
            }
        }
    }

    /// Later writes go into a new batch (called before anything else is queued on the disk thread).
    func sealBatch() { openBatch = nil }

    func periodic() {
        let st = engine.status
        let verifying = st.connection == .verifyS || st.connection == .verifyT
        if st.connection.isSyncing || verifying {
            // A resync counts down the bits left; a verify counts up the blocks verified.
            let left = verifying ? st.verifyTotalBits &- st.verifyDoneBits : st.outOfSyncBits
            // The rate on the monotonic clock: a wall clock stepped meanwhile does not skew it.
            let now = monotonicMs
            if let s = rateSample, s.bits >= left {
                let dt = Double(now &- s.time) / 1000
                if dt > 0 { syncRate = Double(s.bits - left) * 4096 / dt }
            }
            rateSample = (now, left)
            publish("progress")
        } else {
            rateSample = nil; syncRate = nil
        }
    }

    public func report() -> StatusReport {
        var r = StatusReport(resource: plan.name, peerName: plan.peerName, status: engine.status, export: plan.export.uri,
                             syncRate: syncRate, lastError: lastError ?? transport?.lastFailure)
        r.diskWrites = ebsWriter?.stats
        r.heapInUseKiB = MemoryTuning.heapInUseBytes / 1024
        r.tls = plan.tls == nil ? nil : (transport?.linkSecurity ?? "configured")
        let lag = engine.replicationLag()
        r.lagBytes = lag.bytes
        r.lagSeconds = Double(lag.ageMs) / 1000
        r.diskIO = .init(readBytes: diskCounters.readBytes, writtenBytes: diskCounters.writtenBytes,
                       activityLogWrites: diskCounters.activityLogWrites, bitmapWrites: diskCounters.bitmapWrites)
        r.exportOpen = (nbd?.openClients.count ?? 0) + (kernelClient.map { $0.isHeldOpen ? 1 : 0 } ?? 0)
        r.upperPending = pendingApp.count
        r.lowerPending = diskCounters.inFlight
        (r.peerPending, r.peerUnacked) = engine.peerRequestCounts()
        r.peerNodeID = plan.peerNodeID
        r.minor = plan.minor
        r.snapshots = snapshotKeeper.map { _ in snapshotFacts }
        return r
    }

    // MARK: verbs from the control socket (on the loop)

    func admin(_ cmd: AdminCommand, token given: UInt64? = nil, done: @escaping (AdminRefusal?) -> Void) {
        let token = given ?? nextID
        nextID = max(nextID, token) + 1
        pendingAdmin[token] = done
        var connects = cmd == .connect || cmd == .connectDiscardingMyData || cmd == .resync
        if case .restore = cmd { connects = true }
        if connects { lastError = nil; transport.enable() }
        feed(.admin(token: token, cmd))
    }

    /// An admin command whose done also carries what it produced (a snapshot's id).
    func adminWithResult(_ cmd: AdminCommand, done: @escaping (AdminRefusal?, String?) -> Void) {
        let token = nextID
        admin(cmd, token: token) { [unowned self] err in done(err, self.adminResults[token]) }
    }

    /// CreateSnapshot for the engine, answered within the hold limit: a call that returns later
    /// made a snapshot past the held point, and it is deleted.
    func takeSnapshot(id: UInt64, _ point: SnapshotPoint) {
        guard let keeper = snapshotKeeper else {
            feed(.snapshotTaken(id: id, snapshotID: nil, error: "this node's disk is not an EBS volume (disk ebs:vol-...)"))
            return
        }
        let answered = OnceFlag()
        let limitMs = plan.settings.snapshotHoldMs
        let heldFrom = monotonicMs
        let p = SnapshotKeeper.Point(generation: point.generation, epoch: point.epoch, time: wall.now().timeIntervalSince1970,
                                     consistency: point.consistency)
        let loop = self.loop
        Task {
            do {
                let s = try await keeper.take(p)
                if answered.claim() {
                    loop.execute {
                        self.snapshotFacts.taken(at: p.time, heldMs: self.monotonicMs &- heldFrom)
                        self.feed(.snapshotTaken(id: id, snapshotID: s.id, error: nil))
                    }
                }
                else {
                    loop.execute { self.log("snapshot: \(s.id) returned after the hold limit; deleting it (it is not at the marked point)") }
                    try? await keeper.ec2.deleteSnapshot(id: s.id)
                }
            } catch {
                if answered.claim() {
                    loop.execute {
                        self.snapshotFacts.failed(heldMs: self.monotonicMs &- heldFrom)
                        self.feed(.snapshotTaken(id: id, snapshotID: nil, error: "CreateSnapshot: \(error)"))
                    }
                }
            }
        }
        loop.scheduleTask(in: .milliseconds(Int64(limitMs))) {
            if answered.claim() {
                self.snapshotFacts.failed(heldMs: self.monotonicMs &- heldFrom)
                self.feed(.snapshotTaken(id: id, snapshotID: nil, error: "CreateSnapshot did not return within \(limitMs / 1000) s (snapshot-hold-limit): writes released, no snapshot"))
            }
        }
    }

    /// How often the snapshot policy looks at the clock (its smallest unit is a minute).
    static let scheduleSeconds: Int64 = 10

    func tickSchedule() {
        guard let schedule = snapshotSchedule, !scheduleTicking, !shuttingDown else { return }
        scheduleTicking = true
        Task {
            await schedule.tick()
            self.loop.execute { self.scheduleTicking = false }
        }
    }

    /// A snapshot the policy asks for, taken as `tandem snapshot` on this node is: at this
    /// node's next epoch boundary, writes held while CreateSnapshot runs.
    func policySnapshot() async throws -> String {
        try await withCheckedThrowingContinuation { (c: CheckedContinuation<String, Error>) in
            loop.execute {
                self.adminWithResult(.snapshot(force: false)) { err, id in
                    if let id, err == nil { c.resume(returning: id) } else { c.resume(throwing: PolicySnapshotError(why: err?.message ?? "no snapshot id")) }
                }
            }
        }
    }

    /// `adjust`: the resource file as it is now (read off the loop: an EBS disk is looked up in
    /// AWS) against what this daemon runs. Changes a running node takes (the engine's live
    /// settings, handlers) are applied; if anything needs down and up, nothing changes and the
    /// answer names it. `done` gets what is now in force.
    func adjust(configPath: String, node: String, done: @escaping (AdminRefusal?, String?) -> Void) {
        let old = plan, runDir = self.runDir, loop = self.loop
        let answer = NIOLoopBound(done, eventLoop: loop)
        DispatchQueue.global().async {
            let result: Result<ResourcePlan, Error> = Result {
                let config = try ConfigLoader.load(path: configPath)
                return try ResourcePlan(LocalResource(config: config, name: old.name, node: node), runDir: runDir)
            }
            loop.execute {
                switch result {
                case .failure(let e): answer.value(AdminRefusal("nothing changed: the resource file does not load: \(e)"), nil)
                case .success(let new): self.apply(new, over: old, done: answer.value)
                }
            }
        }
    }

    private func apply(_ new: ResourcePlan, over old: ResourcePlan, done: @escaping (AdminRefusal?, String?) -> Void) {
        var restart: [String] = []
        func differ(_ name: String, _ changed: Bool) { if changed { restart.append(name) } }
        differ("disk", new.diskPath != old.diskPath)
        differ("device", new.export != old.export)
        differ("address", new.me.host != old.me.host || new.me.port != old.me.port)
        differ("the peer's address", new.peer.host != old.peer.host || new.peer.port != old.peer.port || new.peerName != old.peerName)
        differ("shared-secret", new.sharedSecret != old.sharedSecret)
        differ("cram-hmac-alg", new.cramHmacAlg != old.cramHmacAlg)
        differ("tls", new.tls?.settings != old.tls?.settings)
        differ("sndbuf-size", new.sendBufferBytes != old.sendBufferBytes)
        differ("rcvbuf-size", new.receiveBufferBytes != old.receiveBufferBytes)
        differ("connect-int", new.connectIntervalSeconds != old.connectIntervalSeconds)
        differ("log-file", new.logFile != old.logFile)
        differ("minor", new.minor != old.minor)
        let engineSide = SettingsAdjustment.differences(old.settings, new.settings)
        restart += engineSide.needsRestart
        guard restart.isEmpty else {
            done(AdminRefusal("nothing changed: \(restart.joined(separator: ", ")) cannot change on a running node; `tandem down` and `tandem up` apply it"), nil)
            return
        }
        let handlersChanged = new.handlers != old.handlers || new.handlerEnvironment != old.handlerEnvironment
        let changes = engineSide.live + (handlersChanged ? ["handlers"] : [])
        guard !changes.isEmpty else { done(nil, "no changes"); return }
        let token = nextID
        nextID += 1
        pendingAdmin[token] = { [unowned self] err in
            guard err == nil else { done(err, nil); return }
            self.plan = new
            if handlersChanged {
                self.handlers = HandlerRunner(commands: new.handlers, environment: new.handlerEnvironment, loop: self.loop,
                                              log: { [unowned self] in self.log($0) },
                                              done: { [unowned self] h, code in self.feed(.handlerDone(h, exitCode: code)) })
                self.log("adjust: handlers now in force", .stateChange)
            }
            let controller = engineSide.live.contains { $0.hasPrefix("c-") || $0 == "resync-rate" }
            done(nil, changes.joined(separator: ", ") + " now in force" + (controller ? " (the resync controller's from the next resync)" : ""))
        }
        feed(.adjust(token: token, new.settings))
    }

    /// `secondary`: refused while the export is open on this Primary (DRBD: device held open),
    /// else the engine's role change.
    func secondary(done: @escaping (AdminRefusal?) -> Void) {
        if let why = exportHeldOpen(going: "Secondary") {
            log(why.message)
            done(why)
            return
        }
        admin(.secondary, done: done)
    }

    /// DRBD's refusal (SS_DEVICE_IN_USE, exit 11) when this node is Primary and someone has its
    /// export open: an NBD client past its handshake, or the kernel device open or mounted.
    /// Nil when nothing holds it (or this node is not Primary: its export is read-only).
    func exportHeldOpen(going: String) -> AdminRefusal? {
        guard engine.status.role == .primary else { return nil }
        var holders = nbd?.openClients.descriptions.map { "an NBD client (\($0))" } ?? []
        if let k = kernelClient {
            if k.isHeldOpen { holders.append("\(k.devicePath) (mounted, or held by device mapper or md)") }
            holders += k.openers().map { "\(k.devicePath) open in process \($0.pid) (\($0.command))" }
        }
        guard !holders.isEmpty else { return nil }
        return AdminRefusal("State change failed: (-12) Device is held open by someone: \(holders.joined(separator: ", ")); "
            + "stop the application (unmount, close the NBD client) before going \(going)")
    }

    /// `down`: stop taking I/O, wait until in-flight writes are acknowledged by the peer (or
    /// the peer is gone, at most 10 s), close the meta-data cleanly, remove the sockets, exit.
    func shutdown(done: @escaping (AdminRefusal?) -> Void) {
        guard !shuttingDown else { done(nil); return }
        // As DRBD refuses to go down while /dev/drbdN is open: the application's next write
        // would fail (a mounted filesystem, a database with the export open).
        if let why = exportHeldOpen(going: "down") {
            log(why.message)
            done(why)
            return
        }
        if let k = kernelClient {
            // A Secondary's device mounted read-only: detaching it would fail its reads.
            if k.isHeldOpen {
                let why = AdminRefusal("State change failed: (-12) Device is held open by someone: \(k.devicePath) is mounted or held by device mapper or md; not going down")
                log(why.message)
                done(why)
                return
            }
            shuttingDown = true
            log("going down: detaching the kernel NBD client from \(k.devicePath)")
            k.disconnect()
            // Then the usual down, once (whichever comes first: detached, or 10 s).
            let resume = {
                guard self.kernelClient != nil else { return }
                self.kernelClient = nil
                self.shuttingDown = false
                self.shutdown(done: done)
            }
            let loop = self.loop
            let bound = NIOLoopBound(resume, eventLoop: loop)
            k.whenDetached { loop.execute { bound.value() } }
            loop.scheduleTask(in: .seconds(10)) {
                if self.kernelClient != nil { self.log("the kernel NBD client did not stop within 10 s") }
                bound.value()
            }
            return
        }
        shuttingDown = true
        SystemdNotify.send("STOPPING=1\nSTATUS=going down")
        log("going down")
        let deadline = loop.scheduleTask(in: .seconds(10)) {
            self.log("peer did not acknowledge in-flight writes in time; marking them out of sync")
            self.transport.disable(reason: "down")
            self.feed(.linkLost(reason: "down"))
        }
        admin(.drain) { _ in
            deadline.cancel()
            self.transport.stop()
            self.nbd?.close()
            let store = self.store, device = self.device
            // A detached disk is left as it is: its meta-data stays unclean, so the next `up`
            // applies the activity log.
            let detached = self.engine.status.disk == .diskless
            self.onDisk {
                if !detached {
                    try device.flush()
                    try store.close()
                }
                self.ebsWriter?.close()
                device.close()
            }.whenComplete { r in
                if case .failure(let e) = r { self.log("closing meta-data failed: \(e)") }
                else { self.log(detached ? "disk was detached: meta-data left unclean" : "meta-data marked clean") }
                self.control?.close()
                try? FileManager.default.removeItem(atPath: self.pidPath)
                if case .unix(let p, _) = self.plan.export { try? FileManager.default.removeItem(atPath: p) }
                done(nil)
                self.loop.scheduleTask(in: .milliseconds(50)) { self.exitPromise.succeed(()) }
            }
        }
    }
}

/// The NBD export's view of the daemon: reads go to the local disk (in order with writes, on
/// the disk thread); writes, trims and flushes go through the engine.
final class ExportBackend: NBDBackend, @unchecked Sendable {
    unowned let daemon: NodeDaemon
    init(daemon: NodeDaemon) { self.daemon = daemon }
    var exportName: String { daemon.plan.export.name }
    /// The size both nodes agreed (a client connecting after a resize sees the new size).
    var sizeBytes: UInt64 { daemon.engine.sizeSectors * 512 }
    var writable: Bool { daemon.lastStatus?.role == .primary }

    func handle(_ request: NBDRequest, reply: @escaping @Sendable (NBDReply) -> Void) {
        let d = daemon
        d.loop.execute {
            if d.shuttingDown { reply(NBDReply(error: NBDProtocol.eShutdown)); return }
            let st = d.engine.status
            switch request.command {
            case .read:
                if st.role == .primary && st.disk < .upToDate {
                    // Instant access, or a detached disk: the engine serves it, from the peer
                    // where this disk lacks the data.
                    self.engineRead(request, reply: reply, localError: nil)
                    return
                }
                guard st.disk == .upToDate else { reply(NBDReply(error: NBDProtocol.eIO)); return }
                d.sealBatch()
                d.diskCounters.readBytes &+= UInt64(request.length)
                let device = d.device
                d.diskThread.runIfActive(eventLoop: d.loop) { try device.read(at: request.offset, count: Int(request.length)) }
                    .whenComplete { r in
                        switch r {
                        case .success(let data): reply(NBDReply(data: data))
                        case .failure(let e):
                            // on-io-error applies; the engine answers from the peer if it can.
                            self.engineRead(request, reply: reply, localError: "\(e)")
                        }
                    }
                return
            default: break
            }
            guard st.role == .primary else { reply(NBDReply(error: NBDProtocol.ePerm)); return }
            let id = d.nextID
            d.nextID += 1
            d.pendingApp[id] = reply
            switch request.command {
            case .write: d.feed(.appWrite(id: id, offset: request.offset, data: request.data, fua: request.fua))
            case .trim: d.feed(.appZero(id: id, offset: request.offset, length: UInt64(request.length), discard: true, fua: request.fua))
            case .writeZeroes:
                // Zeroes are written as zeroes (never a hole), so NBD_CMD_FLAG_NO_HOLE holds either way.
                d.feed(.appZero(id: id, offset: request.offset, length: UInt64(request.length), discard: false, fua: request.fua))
            case .flush: d.feed(.appFlush(id: id))
            default: d.pendingApp[id] = nil; reply(NBDReply(error: NBDProtocol.eInval))
            }
        }
    }
}

extension ExportBackend {
    /// A read the engine answers (on the loop): `localError` says why the daemon's own read of
    /// the disk failed, if it tried.
    func engineRead(_ request: NBDRequest, reply: @escaping @Sendable (NBDReply) -> Void, localError: String?) {
        let d = daemon
        let id = d.nextID
        d.nextID += 1
        d.pendingApp[id] = reply
        let (offset, length) = (request.offset, UInt64(request.length))
        if let e = localError { d.feed(.appReadFailed(id: id, offset: offset, length: length, error: e)) }
        else { d.feed(.appRead(id: id, offset: offset, length: length)) }
    }
}

/// Writes queued together for the EBS writer: appended on the loop until the disk thread takes
/// them (then sealed), at most BatchedDirectWriter's limits.
final class WriteBatch: @unchecked Sendable {
    struct Item {
        var token: UInt64
        var write: WriteMerge.Write
        var fua: Bool
    }
    private let lock = NSLock()
    private var items: [Item]
    private var bytes: Int
    private var taken = false

    init(_ first: Item) { items = [first]; bytes = first.write.data.count }

    /// False once the disk thread took the batch or it is full.
    func append(_ item: Item) -> Bool {
        lock.withLock {
            guard !taken, items.count < BatchedDirectWriter.batchWrites,
                  bytes + item.write.data.count <= BatchedDirectWriter.batchBytes else { return false }
            items.append(item)
            bytes += item.write.data.count
            return true
        }
    }

    func take() -> [Item] { lock.withLock { taken = true; return items } }
}

/// Why the policy's snapshot was not taken (the engine's answer).
struct PolicySnapshotError: Error, CustomStringConvertible {
    var why: String
    var description: String { why }
}

/// True for the first caller of `claim` only: of a snapshot's answer and its time limit,
/// whichever comes first answers the engine.
final class OnceFlag: @unchecked Sendable {
    private let lock = NSLock()
    private var claimed = false
    func claim() -> Bool { lock.withLock { defer { claimed = true }; return !claimed } }
}
