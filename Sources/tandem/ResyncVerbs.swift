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
        let client = try arguments.client()
        _ = try client.request(["verb": "resync"])
        if wait { try SyncProgress(arguments: arguments).waitUntilInSync() }
    }
}

struct PauseSync: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "pause-sync", abstract: "Pause a running resync (drbdadm pause-sync).")
    @OptionGroup var arguments: ResourceArguments
    func run() throws { _ = try arguments.client().request(["verb": "pause-sync"]) }
}

struct ResumeSync: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "resume-sync", abstract: "Resume a paused resync (drbdadm resume-sync).")
    @OptionGroup var arguments: ResourceArguments
    func run() throws { _ = try arguments.client().request(["verb": "resume-sync"]) }
}

/// Follows a resync through `status` until the node is Connected with nothing out of sync.
struct SyncProgress {
    let arguments: ResourceArguments
    let terminal = isatty(STDOUT_FILENO) == 1

    func waitUntilInSync() throws {
        var drew = false
        var total: Int?
        defer { if drew { print("") } }
        while true {
            var s = try arguments.client().request(["verb": "status"])
            // The total of the resync is known while it runs; the last frame keeps it.
            if let t = s["resync-total-kib"] as? Int { total = t } else if let t = total { s["resync-total-kib"] = t }
            let conn = s["connection"] as? String ?? "?"
            let oos = s["out-of-sync-kib"] as? Int ?? 0
            if conn == "Connected" && oos == 0 && s["disk"] as? String == "UpToDate" && s["peer-disk"] as? String == "UpToDate" {
                if drew { draw(s, final: true) }
                return
            }
            if conn == "StandAlone" {
                throw VerbFailure("\(arguments.resource): the resync stopped: \(s["last-error"] as? String ?? "StandAlone")")
            }
            if let e = s["disk-error"] as? String { throw VerbFailure("\(arguments.resource): \(e)") }
            if terminal { draw(s, final: false); drew = true }
            usleep(200_000)
        }
    }

    /// Follows a verify until the node is back to Connected; returns the last status.
    func waitUntilVerified() throws -> [String: Any] {
        var drew = false
        defer { if drew { print("") } }
        while true {
            let s = try arguments.client().request(["verb": "status"])
            let conn = s["connection"] as? String ?? "?"
            if conn != "VerifyS" && conn != "VerifyT" {
                if conn == "Connected" {
                    if drew { draw(s, final: true) }
                    return s
                }
                throw VerbFailure("\(arguments.resource): the verify stopped: \(s["last-error"] as? String ?? conn)")
            }
            if terminal { draw(s, final: false); drew = true }
            usleep(200_000)
        }
    }

    /// One line, redrawn in place: bar, done %, done/total, rate, ETA, state.
    func draw(_ s: [String: Any], final: Bool) {
        let done = final ? 100.0 : (s["done"] as? Double ?? 0)
        let oos = Double(s["out-of-sync-kib"] as? Int ?? 0) / 1024
        let total = Double(s["resync-total-kib"] as? Int ?? 0) / 1024
        let width = 30
        let filled = Int(done / 100 * Double(width))
        var line = "\r[" + String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled) + "]"
        if let vt = s["verify-total-kib"] as? Int, let vd = s["verify-done-kib"] as? Int, s["resync-total-kib"] == nil {
            line += String(format: " %5.1f%%  %.1f/%.1f MiB verified, %.1f MiB out of sync", done, Double(vd) / 1024,
                           Double(vt) / 1024, Double(s["verify-found-kib"] as? Int ?? 0) / 1024)
        } else if total > 0 {
            line += String(format: " %5.1f%%  %.1f/%.1f MiB", done, final ? total : max(0, total - oos), total)
        } else {
            line += String(format: " %5.1f%%  %.1f MiB left", done, final ? 0 : oos)
        }
        if let r = s["sync-rate-kib"] as? Int { line += String(format: "  %.1f MiB/s", Double(r) / 1024) }
        if let eta = s["eta-seconds"] as? Int, !final { line += "  ETA \(eta)s" }
        // What compression saved so far (resync data since the daemon started).
        if let data = s["resync-data-kib"] as? Int, let wire = s["resync-wire-kib"] as? Int, data > wire {
            line += String(format: "  saved %.1f MiB (%.0f%%)", Double(data - wire) / 1024, 100 * Double(data - wire) / Double(data))
        }
        line += "  \(s["connection"] as? String ?? "")"
        FileHandle.standardOutput.write(Data((line + "   ").utf8))
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
        _ = try arguments.client().request(["verb": "restore", "discard-my-data": discardMyData])
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
    func run() throws { _ = try arguments.client().request(["verb": "resize"]) }
}
