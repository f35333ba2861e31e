import Foundation
import Testing

/// A write load on alpha's export whose acknowledged writes can be checked on the disks
/// afterwards (stamped-load.py writes, check-stamps.py checks). Several loads may share one
/// acknowledgement log, each numbering its writes after its own base.
final class StampedLoad {
    let process: Process
    let stopFile: String
    let ackLog: String
    let output: String

    init(_ c: Cluster, blocks: Int, ackLog: String? = nil, seqBase: Int = 0) throws {
        let tag = UUID().uuidString.prefix(6)
        stopFile = c.dir + "/load-\(tag).stop"
        self.ackLog = ackLog ?? c.dir + "/load.acks"
        output = c.dir + "/load-\(tag).out"
        process = try Tools.spawn("/bin/sh", ["-c", "exec /usr/bin/python3 \(Tools.helpers)/stamped-load.py '\(c.uri("alpha"))' \(blocks) 8 3600 \(stopFile) \(self.ackLog) \(seqBase) > \(output) 2>&1"])
    }

    /// Acknowledged writes in the log so far (of every load sharing it).
    var acks: Int { ((try? String(contentsOfFile: ackLog, encoding: .utf8)) ?? "").split(separator: "\n").filter { $0.hasSuffix(" ok") }.count }

    /// Waits until `more` further writes were acknowledged (the load goes on through a fault).
    func waitForProgress(_ more: Int, timeout: Double = 90) throws {
        let start = acks, deadline = Date().addingTimeInterval(timeout)
        while acks < start + more {
            guard Date() < deadline, process.isRunning else {
                throw TestFailure("the load made \(acks - start) of \(more) writes (running: \(process.isRunning)): \((try? String(contentsOfFile: output, encoding: .utf8)) ?? "")")
            }
            usleep(100_000)
        }
    }

    /// Asks the load to stop, waits for its writes in flight; its summary line.
    @discardableResult func stop() throws -> String {
        FileManager.default.createFile(atPath: stopFile, contents: nil)
        let deadline = Date().addingTimeInterval(120)
        while process.isRunning && Date() < deadline { usleep(100_000) }
        if process.isRunning { process.terminate(); throw TestFailure("the load did not finish its writes in flight") }
        return (try? String(contentsOfFile: output, encoding: .utf8)) ?? ""
    }

    /// Every acknowledged write of the log is on `disk`.
    func check(_ disk: String, _ name: String) throws {
        let r = try Tools.run("/usr/bin/python3", [Tools.helpers + "/check-stamps.py", disk, ackLog])
        #expect(r.status == 0, "\(name): \(r.out) \(r.err)")
    }
}
