import ArgumentParser
import Foundation
import TandemDaemon

/// drbdadm's one-line state verbs, for scripts and cluster agents: `role` (Primary/Secondary),
/// `cstate` (Connected), `dstate` (UpToDate/UpToDate). A resource whose daemon is not up prints
/// `Unconfigured`, as drbdadm does for a device that is not configured, and exits 3.
struct StateQuery {
    let arguments: ResourceArguments
    func print(_ line: (StatusSnapshot) -> String) throws {
        guard let c = ControlClient(resource: arguments.resource) else {
            Swift.print("Unconfigured")
            throw VerbFailure("\(arguments.resource): not up", exit: .notRunning)
        }
        Swift.print(line(try c.status()))
    }
}

struct Role: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "role", abstract: "Print this node's and the peer's role (drbdadm role).")
    @OptionGroup var arguments: ResourceArguments
    func run() throws { try StateQuery(arguments: arguments).print { "\($0.role)/\($0.peerRole)" } }
}

struct CState: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "cstate", abstract: "Print the connection state (drbdadm cstate).")
    @OptionGroup var arguments: ResourceArguments
    func run() throws { try StateQuery(arguments: arguments).print { $0.connection } }
}

struct DState: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "dstate", abstract: "Print this node's and the peer's disk state (drbdadm dstate).")
    @OptionGroup var arguments: ResourceArguments
    func run() throws { try StateQuery(arguments: arguments).print { "\($0.disk)/\($0.peerDisk)" } }
}

/// `wait-connect RES`: returns once the node is connected to its peer (Connected, or syncing or
/// verifying with it), waiting at most `--wfc-timeout` seconds, else the resource's
/// `startup { wfc-timeout }` (0: for ever, as DRBD's), and exits 5 when the time is up, as
/// drbdsetup does. A line every 10 s says what it waits for when not on a terminal.
struct WaitConnect: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "wait-connect", abstract: "Wait until connected to the peer (drbdadm wait-connect).")
    @OptionGroup var arguments: ResourceArguments
    @Option(name: .customLong("wfc-timeout"), help: "Seconds to wait (0: for ever); default: startup wfc-timeout.") var timeout: Int?

    static let connected: Set = ["Connected", "StartingSyncS", "StartingSyncT", "WFBitMapS", "WFBitMapT", "WFSyncUUID",
                                 "SyncSource", "SyncTarget", "PausedSyncS", "PausedSyncT", "VerifyS", "VerifyT", "Ahead", "Behind"]

    func run() throws {
        var seconds = timeout
        if seconds == nil {
            let config = try? ConfigLoader.load(path: arguments.globals.config)
            let r = config?.resource(arguments.resource)
            seconds = r.flatMap { config?.effectiveValue("wfc-timeout", in: "startup", resource: $0) }.flatMap { Int($0) } ?? 0
        }
        guard let limit = seconds, limit >= 0 else { throw VerbFailure("--wfc-timeout: seconds, 0 or more", exit: .usage) }
        let started = Date()
        var lastLine = Date.distantPast
        while true {
            let s = try arguments.client().status()
            if Self.connected.contains(s.connection) { return }
            if s.connection == "StandAlone" {
                throw VerbFailure("\(arguments.resource): StandAlone (\(s.lastError ?? "not connecting")): `tandem connect \(arguments.resource)` first", exit: .refused)
            }
            let waited = Date().timeIntervalSince(started)
            if limit > 0 && waited >= Double(limit) {
                throw VerbFailure("\(arguments.resource): not connected within \(limit) s (\(s.connection)\(s.lastError.map { ": \($0)" } ?? ""))", exit: .timedOut)
            }
            if isatty(STDOUT_FILENO) == 0 && Date().timeIntervalSince(lastLine) >= SyncProgress.lineEvery {
                lastLine = Date()
                Swift.print("\(arguments.resource): waiting for the peer \(s.peer) (\(s.connection), \(Int(waited)) s)")
            }
            usleep(200_000)
        }
    }
}

extension Role: HasResourceArguments {}
extension CState: HasResourceArguments {}
extension DState: HasResourceArguments {}
extension WaitConnect: HasResourceArguments {}

/// `adjust RES`: applies the resource file's changed options to the running node, as drbdadm
/// adjust does: what a running node takes (the resync controller, timeouts, split-brain
/// policies, digests, compression, congestion, handlers) is applied and named; when anything
/// needs down and up (the protocol, addresses, the disk, TLS, limits that bound what is in
/// flight) nothing changes and it is named, exit 11.
struct Adjust: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "adjust", abstract: "Apply the resource file's changed options to the running node (drbdadm adjust).")
    @OptionGroup var arguments: ResourceArguments
    func run() throws {
        let path = URL(fileURLWithPath: arguments.globals.config).standardizedFileURL.path
        let r = try arguments.client().request(ControlRequest(.adjust, config: path, node: arguments.globals.nodeName))
        print("\(arguments.resource): \(r.result ?? "done")")
    }
}

extension Adjust: HasResourceArguments {}
