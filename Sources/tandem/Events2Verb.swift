import ArgumentParser
import Foundation
import TandemDaemon

/// `events2 [--now] [--statistics] [--timestamps] RES|all`: drbdsetup events2's lines. First
/// one `exists` line per object (resource, connection, device, peer-device) and `exists -`;
/// with --now that is all. Otherwise it follows: a `change` line for each object whose fields
/// changed, `destroy` lines when the daemon goes down, `create` lines when it is up again, and
/// it keeps running across that until stopped (SIGTERM, SIGINT, or its output closed).
struct Events2: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "events2", abstract: "drbdsetup events2 lines: the state, then every change (across down and up).")
    @OptionGroup var globals: GlobalOptions
    @Argument(help: "Resource name, or 'all'.") var resource: String = "all"
    @Flag(help: "Print the current state and exit.") var now = false
    @Flag(help: "Include the counters.") var statistics = false
    @Flag(help: "Prefix each line with its time.") var timestamps = false

    func run() throws {
        unblockTerminationSignals()
        signal(SIGPIPE, SIG_DFL)
        let names = resource == "all" ? try AllResources.names(globals) : [resource]
        let out = Printer(timestamps: timestamps)
        var current: [String: StatusSnapshot] = [:]
        for n in names {
            if let c = ControlClient(resource: n), let s = try? c.status() {
                current[n] = s
                for l in DrbdsetupText.events2(s, statistics: statistics) { out.line(l) }
            }
        }
        out.line("exists -")
        if now { return }
        let group = DispatchGroup()
        for n in names {
            group.enter()
            let start = current[n]
            Thread.detachNewThread { [statistics] in
                Follower(resource: n, statistics: statistics, out: out, last: start).run()
                group.leave()
            }
        }
        group.wait()
    }
}

/// Writes whole lines from several threads, one at a time.
final class Printer: @unchecked Sendable {
    let timestamps: Bool
    private let lock = NSLock()
    private let format: ISO8601DateFormatter = {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f
    }()
    init(timestamps: Bool) { self.timestamps = timestamps }
    func line(_ l: String) {
        lock.withLock {
            let text = (timestamps ? format.string(from: Date()) + " " : "") + l + "\n"
            FileHandle.standardOutput.write(Data(text.utf8))
        }
    }
}

/// Follows one resource's daemon: its events stream while it is up, a poll for its control
/// socket while it is down.
final class Follower: @unchecked Sendable {
    let resource: String
    let statistics: Bool
    let out: Printer
    var last: StatusSnapshot?

    init(resource: String, statistics: Bool, out: Printer, last: StatusSnapshot?) {
        self.resource = resource; self.statistics = statistics; self.out = out; self.last = last
    }

    func run() {
        while true {
            guard let c = ControlClient(resource: resource) else {
                if let l = last { destroy(l) }
                usleep(500_000)
                continue
            }
            do {
                try c.send(ControlRequest(.events))
                while let line = try c.receiveLine(deadline: nil, waitingFor: "events") {
                    guard let data = line.data(using: .utf8),
                          let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
                          let type = object["type"] as? String, ["exists", "change", "progress"].contains(type),
                          let s = try? JSONDecoder().decode(StatusSnapshot.self, from: data) else { continue }
                    show(s)
                }
            } catch {}
            if let l = last { destroy(l) }
            usleep(200_000)
        }
    }

    /// Lines for what changed since the last state (every object, as `create`, after a down).
    func show(_ s: StatusSnapshot) {
        let now = DrbdsetupText.objects(s, statistics: statistics)
        guard let l = last else {
            for o in now { out.line(o.whole("create")) }
            last = s
            return
        }
        let before = DrbdsetupText.objects(l, statistics: statistics)
        for (a, b) in zip(before, now) {
            // A connection that gained or lost its name (StandAlone) is a new object.
            if a.ids != b.ids { out.line(a.destroy); out.line(b.whole("create")) }
            else if let line = b.change(from: a) { out.line(line) }
        }
        last = s
    }

    /// The daemon went down: its objects are gone, the dependent ones first (as drbdsetup).
    func destroy(_ s: StatusSnapshot) {
        for o in DrbdsetupText.objects(s).reversed() { out.line(o.destroy) }
        last = nil
    }
}
