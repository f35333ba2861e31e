import ArgumentParser
import Foundation
import TandemDaemon

/// `resync RES [--wait]`: resync every block marked out of sync now, connecting first when
/// disconnected. Without --wait it returns once the resync runs; with --wait it returns when the
/// resync has ended (non-zero with the reason if it failed), drawing a progress bar on a
/// terminal and printing nothing otherwise.
struct Resync: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "resync", abstract: "Resync every block marked out of sync now (connects first when disconnected).")
    @OptionGroup var arguments: ResourceArguments
    @Flag(help: "Return when the resync has ended; show its progress on a terminal.") var wait = false

    func run() throws {
        try arguments.client().request(ControlRequest(.resync))
        if wait { try SyncProgress(arguments: arguments).waitUntilInSync() }
    }
}

struct PauseSync: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "pause-sync", abstract: "Pause a running resync (drbdadm pause-sync).")
    @OptionGroup var arguments: ResourceArguments
    func run() throws { try arguments.client().request(ControlRequest(.pauseSync)) }
}

struct ResumeSync: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "resume-sync", abstract: "Resume a paused resync (drbdadm resume-sync).")
    @OptionGroup var arguments: ResourceArguments
    func run() throws { try arguments.client().request(ControlRequest(.resumeSync)) }
}

/// Follows a resync or a verify through `status` until it ends. On a terminal it redraws one
/// progress line in place; otherwise (cron, Ansible, a unit's journal) it prints a line every
/// 10 s, so a long operation never looks hung. Figures count this operation only: what
/// compression saved is measured from the status when the wait began.
struct SyncProgress {
    let arguments: ResourceArguments
    let terminal = isatty(STDOUT_FILENO) == 1
    /// Seconds between lines when not on a terminal.
    static let lineEvery: TimeInterval = 10

    /// Whether to draw now: every poll on a terminal, every `lineEvery` otherwise.
    private final class Pacer {
        var last: Date?
        func due(_ terminal: Bool) -> Bool {
            if terminal { return true }
            if let l = last, Date().timeIntervalSince(l) < SyncProgress.lineEvery { return false }
            last = Date()
            return true
        }
    }

    func waitUntilInSync() throws {
        var drew = false
        var total: UInt64?
        let pacer = Pacer()
        var base: StatusSnapshot?
        defer { if drew && terminal { print("") } }
        while true {
            var s = try arguments.client().status()
            if base == nil { base = s }
            // The total of the resync is known while it runs; the last frame keeps it.
            if let t = s.resyncTotalKiB { total = t } else if let t = total { s.resyncTotalKiB = t }
            if s.inSync {
                if drew { draw(s, since: base!, final: true) }
                return
            }
            if s.connection == "StandAlone" {
                throw VerbFailure("\(arguments.resource): the resync stopped: \(s.lastError ?? "StandAlone")")
            }
            if let e = s.diskError { throw VerbFailure("\(arguments.resource): \(e)") }
            if pacer.due(terminal) { draw(s, since: base!, final: false); drew = true }
            usleep(200_000)
        }
    }

    /// Follows a verify until the node is back to Connected; returns the last status.
    func waitUntilVerified() throws -> StatusSnapshot {
        var drew = false
        let pacer = Pacer()
        var base: StatusSnapshot?
        defer { if drew && terminal { print("") } }
        while true {
            let s = try arguments.client().status()
            if base == nil { base = s }
            if s.connection != "VerifyS" && s.connection != "VerifyT" {
                if s.connection == "Connected" {
                    if drew { draw(s, since: base!, final: true) }
                    return s
                }
                throw VerbFailure("\(arguments.resource): the verify stopped: \(s.lastError ?? s.connection)")
            }
            if pacer.due(terminal) { draw(s, since: base!, final: false); drew = true }
            usleep(200_000)
        }
    }

    /// One line: bar, done %, done/total, rate, ETA, state. Redrawn in place on a terminal,
    /// a line of its own otherwise.
    func draw(_ s: StatusSnapshot, since base: StatusSnapshot, final: Bool) {
        let line = Self.line(s, since: base, final: final)
        FileHandle.standardOutput.write(Data((terminal ? "\r" + line + "   " : line + "\n").utf8))
    }

    static func line(_ s: StatusSnapshot, since base: StatusSnapshot, final: Bool) -> String {
        let done = final ? 100.0 : (s.done ?? 0)
        let oos = Double(s.outOfSyncKiB) / 1024
        let total = Double(s.resyncTotalKiB ?? 0) / 1024
        let width = 30
        let filled = Int(done / 100 * Double(width))
        var line = "[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "]"
        if let vt = s.verifyTotalKiB, let vd = s.verifyDoneKiB, s.resyncTotalKiB == nil {
            line += String(format: " %5.1f%%  %.1f/%.1f MiB verified, %.1f MiB out of sync", done, Double(vd) / 1024,
                           Double(vt) / 1024, Double(s.verifyFoundKiB ?? 0) / 1024)
        } else if total > 0 {
            line += String(format: " %5.1f%%  %.1f/%.1f MiB", done, final ? total : max(0, total - oos), total)
        } else {
            line += String(format: " %5.1f%%  %.1f MiB left", done, final ? 0 : oos)
        }
        if let r = s.syncRateKiB { line += String(format: "  %.1f MiB/s", Double(r) / 1024) }
        if let eta = s.etaSeconds, !final { line += "  ETA \(eta)s" }
        // What compression saved in this operation (the counters are the daemon's since it started).
        let data = s.resyncDataKiB &- min(base.resyncDataKiB, s.resyncDataKiB)
        let wire = s.resyncWireKiB &- min(base.resyncWireKiB, s.resyncWireKiB)
        if data > wire {
            line += String(format: "  saved %.1f MiB (%.0f%%)", Double(data - wire) / 1024, 100 * Double(data - wire) / Double(data))
        }
        line += "  \(s.connection)"
        return line
    }
}

/// `restore RES [--wait] [--discard-my-data]`: on the node whose data is lost or stale, pull it
/// back from the peer: joins a resync from the peer, pulls every block when both hold the same
/// data generation (a wiped or replaced disk), or connects and lets the UUIDs decide; refuses,
/// with the reason, when the peer is not UpToDate or this node holds data the peer lacks
/// (unless --discard-my-data). Returns once the node is SyncTarget; --wait follows it to the end.
struct Restore: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "restore", abstract: "Pull this node's data back from the peer (it becomes the sync target).")
    @OptionGroup var arguments: ResourceArguments
    @Flag(help: "Return when the restore has ended; show its progress on a terminal.") var wait = false
    @Flag(name: .customLong("discard-my-data"), help: "Throw away data only this node has.") var discardMyData = false

    func run() throws {
        try arguments.client().request(ControlRequest(.restore, discardMyData: discardMyData), limit: nil)
        if wait { try SyncProgress(arguments: arguments).waitUntilInSync() }
    }
}

/// `resize RES`: after both backing devices grew, grow the replicated device to the smaller of
/// the two (DRBD's resize). Each node moves its meta-data to the new end of its device; the
/// grown part resyncs from the Primary. Run it on either node (the peer looks at its own device
/// when told).
struct Resize: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "resize", abstract: "Grow the device after both backing devices grew (drbdadm resize).")
    @OptionGroup var arguments: ResourceArguments
    func run() throws { try arguments.client().request(ControlRequest(.resize)) }
}
