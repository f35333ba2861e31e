import ArgumentParser
import Foundation
import TandemAdapters
import TandemDaemon

/// The resource argument shared by the daemon verbs.
struct ResourceArguments: ParsableArguments {
    @OptionGroup var globals: GlobalOptions
    @Argument(help: "Resource name.") var resource: String

    func plan() throws -> ResourcePlan {
        do {
            let config = try ConfigLoader.load(path: globals.config)
            let local = try LocalResource(config: config, name: resource, node: globals.nodeName)
            return try ResourcePlan(local, runDir: RuntimePaths.runDirectory)
        } catch let f as VerbFailure { throw f } catch { throw VerbFailure("\(error)") }
    }

    /// A connection to the running daemon, or a failure saying it is not up.
    func client() throws -> ControlClient {
        guard let c = ControlClient(resource: resource) else {
            // A name the resource file does not have for this node is a typo, not a daemon that is down.
            if let config = try? ConfigLoader.load(path: globals.config),
               config.resource(resource)?.host(named: globals.nodeName) == nil {
                throw VerbFailure("'\(resource)' not defined in your config (for this host \(globals.nodeName))")
            }
            throw VerbFailure("\(resource): not up (no daemon answers on \(ControlClient.path(resource))); `tandem up \(resource)` starts it", exit: .notRunning)
        }
        return c
    }
}

struct Up: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "up", abstract: "Start the node daemon: attach the disk, listen and connect to the peer, export the device over NBD.")
    @OptionGroup var arguments: ResourceArguments
    @Flag(help: "Run the daemon in this process instead of in the background.") var foreground = false

    func run() throws {
        // The daemon stops on SIGTERM/SIGINT: make sure neither is blocked (a blocked mask is
        // inherited from whoever started us) before any thread exists (an EBS disk's checks
        // start HTTP threads).
        if foreground { unblockTerminationSignals() }
        let plan = try arguments.plan()
        let runDir = RuntimePaths.runDirectory
        if ControlClient(resource: plan.name).flatMap({ try? $0.status() }) != nil {
            print("\(plan.name): already up")
            return
        }
        if foreground {
            // Requests and packets are up to 1 MiB: keep such buffers on the heap and the heap
            // from shrinking, instead of mapping and zeroing fresh pages for every request.
            MemoryTuning.keepLargeBuffersOnHeap()
            do {
                let daemon = try NodeDaemon(plan: plan, runDir: runDir)
                try daemon.run()
            } catch { throw VerbFailure("\(plan.name): \(error)") }
            return
        }
        try FileManager.default.createDirectory(atPath: runDir, withIntermediateDirectories: true)
        let logPath = plan.logFile
        try? FileManager.default.createDirectory(atPath: (logPath as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        // The log goes on across restarts (what happened before a crash stays readable), and
        // is appended to (O_APPEND), so logrotate's copytruncate leaves no hole.
        let fd = open(logPath, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o640)
        guard fd >= 0 else { throw VerbFailure("cannot write \(logPath): \(String(cString: strerror(errno)))") }
        let log = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        let logStart = log.seekToEndOfFile()
        // Re-execute ourselves in a new session (never fork() in a process that has threads).
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/setsid")
        p.arguments = [CommandLine.executablePath, "up", "--foreground", "-c", arguments.globals.config,
                       "--node", arguments.globals.nodeName, plan.name]
        p.standardInput = FileHandle.nullDevice
        p.standardOutput = log
        p.standardError = log
        try p.run()
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            if let c = ControlClient(resource: plan.name), (try? c.status()) != nil { return }
            if !p.isRunning {
                let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
                let tail = String(text.utf8.dropFirst(Int(logStart))).flatMap { $0 } ?? text
                let last = tail.split(separator: "\n").last.map(String.init) ?? "exit status \(p.terminationStatus)"
                throw VerbFailure("\(plan.name): the daemon did not start: \(last.replacingOccurrences(of: "tandem: ", with: ""))")
            }
            usleep(50_000)
        }
        throw VerbFailure("\(plan.name): the daemon did not answer within 30 s (see \(logPath))")
    }
}

extension CommandLine {
    static var executablePath: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }
}

struct Down: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "down", abstract: "Drain in-flight writes, mark the meta-data clean and stop the daemon.")
    @OptionGroup var arguments: ResourceArguments

    func run() throws {
        let path = ControlClient.path(arguments.resource)
        guard let c = ControlClient(resource: arguments.resource) else { return }  // already down
        let pidText = try? String(contentsOfFile: "\(RuntimePaths.runDirectory)/\(arguments.resource).pid", encoding: .utf8)
        try c.request(ControlRequest(.down), limit: 60)
        let pid = pidText.flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            let alive = pid.map { kill($0, 0) == 0 } ?? false
            if !alive && !FileManager.default.fileExists(atPath: path) { return }
            usleep(20_000)
        }
        throw VerbFailure("\(arguments.resource): the daemon did not exit within 30 s")
    }
}

struct Primary: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "primary", abstract: "Become Primary; --force makes this disk UpToDate and starts the initial full sync.")
    @OptionGroup var arguments: ResourceArguments
    @Flag(help: "Promote even if the local disk is not UpToDate (initial sync source).") var force = false
    @Flag(help: "Return when the sync this starts (the initial full sync) has ended; show its progress.") var wait = false
    func run() throws {
        try arguments.client().request(ControlRequest(.primary, force: force))
        // The peer may still be connecting: the sync starts once it is there.
        if wait { try SyncProgress(arguments: arguments).waitUntilInSync() }
    }
}

struct Secondary: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "secondary", abstract: "Become Secondary.")
    @OptionGroup var arguments: ResourceArguments
    func run() throws { try arguments.client().request(ControlRequest(.secondary)) }
}

struct Connect: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "connect", abstract: "Connect to the peer (leave StandAlone).")
    @OptionGroup var arguments: ResourceArguments
    @Flag(name: .customLong("discard-my-data"),
          help: "After a split brain: this node's changes are thrown away and it resyncs from the peer.") var discardMyData = false
    func run() throws { try arguments.client().request(ControlRequest(.connect, discardMyData: discardMyData)) }
}

struct Disconnect: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "disconnect", abstract: "Drop the connection to the peer and stay StandAlone.")
    @OptionGroup var arguments: ResourceArguments
    func run() throws { try arguments.client().request(ControlRequest(.disconnect)) }
}

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Show role, disk and connection states (drbdadm status layout); --json for machines.")
    @OptionGroup var arguments: ResourceArguments
    @Flag(help: "One JSON object.") var json = false
    @Flag(help: "Every key, and Tandem's own lines (holds:, tls:, last-error:).") var verbose = false
    @Flag(help: "The counters (sizes and amounts in KiB, as drbdsetup).") var statistics = false

    func run() throws {
        let s = try arguments.client().status()
        if json { print(s.jsonLine) } else { print(DrbdsetupText.status(s, verbose: verbose, statistics: statistics), terminator: "") }
    }
}

struct Events: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "events", abstract: "Stream state changes and log lines, one JSON object a line.")
    @OptionGroup var arguments: ResourceArguments

    func run() throws {
        unblockTerminationSignals()
        let c = try arguments.client()
        try c.send(ControlRequest(.events))
        // The first line comes at once (the current state); then lines come when things happen.
        var deadline: Date? = Date().addingTimeInterval(ControlClient.answerLimit)
        while let line = try c.receiveLine(deadline: deadline, waitingFor: "`events` within \(Int(ControlClient.answerLimit)) s") {
            deadline = nil
            if line.hasPrefix("{\"error\"") || line.contains("\"ok\":false") {
                let reply = try? ControlReply.decode(line: line)
                throw VerbFailure(reply?.error?.message ?? line, exit: reply?.error.map { ExitCode($0.kind) } ?? .failed)
            }
            FileHandle.standardOutput.write(Data((line + "\n").utf8))
        }
    }
}

/// Unblocks SIGTERM and SIGINT, which a parent may have left blocked in the inherited mask, so
/// long-running verbs (the daemon, `events`) stop when asked.
func unblockTerminationSignals() {
    var set = sigset_t()
    sigemptyset(&set)
    sigaddset(&set, SIGTERM)
    sigaddset(&set, SIGINT)
    sigprocmask(SIG_UNBLOCK, &set, nil)
}
