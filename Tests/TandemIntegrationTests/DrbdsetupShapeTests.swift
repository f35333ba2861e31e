import Foundation
import TandemDaemon
import Testing

/// Tandem's status, events2, role, cstate and dstate against what drbd-utils print over the
/// DRBD 8.4 kernel (Fixtures/drbd84-status-shapes.txt, captured in the VM): the same keys in the
/// same places for the same states. Then the verbs themselves on two daemons: `all`, status
/// without a resource, wait-connect, and events2 following a daemon across down and up.
@Suite(.serialized) struct DrbdsetupShapeTests {
    struct Section {
        var title: String
        var state: [String: String] = [:]
        var blocks: [String: [String]] = [:]
    }

    static func sections() throws -> [Section] {
        let text = try String(contentsOfFile: Tools.fixtures + "/drbd84-status-shapes.txt", encoding: .utf8)
        var out: [Section] = []
        var block: String?
        for line in text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
            if line.hasPrefix("## ") { out.append(Section(title: String(line.dropFirst(3)))); block = nil; continue }
            guard !out.isEmpty, !line.hasPrefix("# ") else { continue }
            if line.hasPrefix("tandem: ") {
                for kv in line.dropFirst(8).split(separator: " ") {
                    let p = kv.split(separator: "=")
                    out[out.count - 1].state[String(p[0])] = String(p[1])
                }
            } else if line.hasPrefix("### ") {
                block = String(line.dropFirst(4))
                out[out.count - 1].blocks[block!] = []
            } else if let b = block, !line.isEmpty {
                out[out.count - 1].blocks[b]!.append(line)
            }
        }
        return out
    }

    static func snapshot(_ st: [String: String]) -> StatusSnapshot {
        var s = StatusSnapshot(resource: "r0", role: st["role"]!, disk: st["disk"]!, connection: st["connection"]!, peer: "peer",
                               peerRole: st["peer-role"]!, peerDisk: st["peer-disk"]!, outOfSyncKiB: 131032, protocol: "C",
                               export: "nbd+unix:///r0", writesInFlight: 0, alWritesWaiting: 0, alExtentsHot: 0, alExtentsHeld: 0,
                               bitmapUnwrittenPages: 0, sizeKiB: 131032, dataAreaKiB: 131032, resyncDataKiB: 0, resyncWireKiB: 0,
                               replicatedDataKiB: 0, replicatedWireKiB: 0, uuids: [], holds: "what this node holds")
        s.done = st["done"].flatMap(Double.init)
        s.peerNodeID = 0
        s.minor = 0
        return s
    }

    /// The words that are not key:value (names) and the keys, in order: the shape of a text.
    static func shape(_ lines: [String]) -> [String] {
        lines.flatMap { $0.split(separator: " ").map { w in w.firstIndex(of: ":").map { String(w[..<$0]) + ":" } ?? String(w) } }
    }

    @Test func theSameKeysAsDrbdUtilsInEachState() throws {
        let sections = try Self.sections()
        #expect(sections.count == 6)
        for sec in sections {
            let s = Self.snapshot(sec.state)
            // drbdadm status: line for line, the same indents, names and keys.
            let ours = DrbdsetupText.status(s).split(separator: "\n").map(String.init)
            let theirs = sec.blocks["status"] ?? []
            #expect(ours.count == theirs.count, "\(sec.title): status\n\(ours.joined(separator: "\n"))\nvs\n\(theirs.joined(separator: "\n"))")
            for (a, b) in zip(ours, theirs) {
                #expect(a.prefix { $0 == " " }.count == b.prefix { $0 == " " }.count && Self.shape([a]) == Self.shape([b]),
                        "\(sec.title): status line '\(a)' vs '\(b)'")
            }
            // --verbose --statistics: the same names and keys in the same order (Tandem's own
            // lines aside; wrapping may differ with the values' widths).
            let verbose = DrbdsetupText.status(s, verbose: true, statistics: true).split(separator: "\n").map(String.init)
                .filter { !$0.hasPrefix("  holds:") && !$0.hasPrefix("  tls:") && !$0.hasPrefix("  last-error:") }
            #expect(Self.shape(verbose) == Self.shape(sec.blocks["status --verbose --statistics"] ?? []),
                    "\(sec.title): status --verbose --statistics\n\(verbose.joined(separator: "\n"))")
            // events2: each object's line, with and without the counters.
            for (name, statistics) in [("events2 --now", false), ("events2 --now --statistics", true)] {
                let ours = DrbdsetupText.events2(s, statistics: statistics) + ["exists -"]
                let theirs = sec.blocks[name] ?? []
                #expect(ours.map { Self.shape([$0]) } == theirs.map { Self.shape([$0]) },
                        "\(sec.title): \(name)\n\(ours.joined(separator: "\n"))\nvs\n\(theirs.joined(separator: "\n"))")
            }
            // role, cstate, dstate (exact: these are the values scripts compare).
            if let role = sec.blocks["role"] {
                #expect(["\(s.role)/\(s.peerRole)"] == role && [s.connection] == sec.blocks["cstate"] && ["\(s.disk)/\(s.peerDisk)"] == sec.blocks["dstate"],
                        "\(sec.title)")
            }
        }
    }

    /// On two daemons: role, cstate and dstate; `all` and status without a resource; events2
    /// --now as the pure form says; wait-connect; events2 following alpha across down and up.
    @Test func theVerbsOnRunningDaemons() throws {
        let c = try Cluster(.init(size: 16 << 20))
        defer { c.shutdown() }
        try c.start()
        #expect(try c.tandem("alpha", "role", "r0").out == "Primary/Secondary\n")
        #expect(try c.tandem("alpha", "cstate", "r0").out == "Connected\n")
        #expect(try c.tandem("beta", "dstate", "r0").out == "UpToDate/UpToDate\n")
        let status = try c.tandem("alpha", "status")
        #expect(status.status == 0 && status.out == "r0 role:Primary\n  disk:UpToDate\n  beta role:Secondary\n    replication:Established peer-disk:UpToDate\n\n",
                "\(status.out)")
        let verbose = try c.tandem("alpha", "status", "--verbose", "r0").out
        #expect(verbose.contains("  holds: in sync with the peer (both UpToDate)") && verbose.contains("suspended:no"), "\(verbose)")
        let all = try c.tandem("alpha", "role", "all")
        #expect(all.status == 0 && all.out == "Primary/Secondary\n", "\(all.out) \(all.err)")
        let e = try c.tandem("beta", "events2", "--now", "r0")
        #expect(e.out.split(separator: "\n") == ["exists resource name:r0 role:Secondary suspended:no",
                                                  "exists connection name:r0 peer-node-id:0 conn-name:alpha connection:Connected role:Primary",
                                                  "exists device name:r0 volume:0 minor:0 disk:UpToDate",
                                                  "exists peer-device name:r0 peer-node-id:0 conn-name:alpha volume:0 replication:Established peer-disk:UpToDate resync-suspended:no",
                                                  "exists -"], "\(e.out)")
        #expect(try c.tandem("alpha", "wait-connect", "r0").status == 0)

        // events2 following beta: alpha disconnects, beta goes down and comes up again.
        let out = c.dir + "/events2.out"
        let follow = try Tools.spawn("/bin/sh", ["-c", "TANDEM_RUN_DIR=\(c.runDir("beta")) exec \(Tools.tandem) -c \(c.dir)/beta.conf --node beta events2 r0 > \(out)"])
        defer { if follow.isRunning { follow.terminate() } }
        usleep(500_000)
        #expect(try c.tandem("alpha", "disconnect", "r0").status == 0)
        try c.wait("beta", "WFConnection") { $0["connection"] as? String == "WFConnection" }
        // wait-connect gives up after its timeout (exit 5) while the peer stays away.
        let timedOut = try c.tandem("beta", "wait-connect", "--wfc-timeout", "1", "r0")
        #expect(timedOut.status == 5 && timedOut.err.contains("not connected within 1 s"), "\(timedOut.status) \(timedOut.err)")
        c.down("beta")
        usleep(1_000_000)
        try c.up("beta")
        #expect(try c.tandem("alpha", "connect", "r0").status == 0)
        try c.wait("beta", "Connected") { $0["connection"] as? String == "Connected" }
        usleep(1_000_000)
        follow.terminate()
        follow.waitUntilExit()
        let lines = ((try? String(contentsOfFile: out, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
        func has(_ prefix: String) -> Bool { lines.contains { $0.hasPrefix(prefix) } }
        #expect(has("exists resource name:r0") && lines.contains("exists -"), "\(lines)")
        #expect(has("change connection name:r0 peer-node-id:0 conn-name:alpha connection:Connecting role:Unknown"), "\(lines)")
        #expect(has("destroy resource name:r0") && has("create resource name:r0 role:Secondary"), "\(lines)")
        #expect(lines.last { $0.contains(" connection name:r0") }?.contains("connection:Connected") == true, "\(lines)")
    }
}
