import Foundation
import Testing

/// Split brain (#10 item 4) made on purpose, for each after-sb policy: alpha is Primary, the
/// link is cut, both nodes write (beta promoted with a plain `primary`), the roles are set
/// for the case's number of primaries, and they reconnect. The configured outcome happens;
/// what no policy resolves drops the connection and loses nothing on either side; the
/// handlers run with DRBD's environment.
@Suite struct SplitBrainTests {
    struct Case: CustomStringConvertible, Sendable {
        var name: String
        var net: String
        /// Primaries when they reconnect: "" (none), "alpha", "beta" or "both".
        var primaries: String
        /// Blocks (4 KiB) each side writes while apart.
        var alphaBlocks = 8, betaBlocks = 3
        /// Whose data both hold afterwards; nil: unresolved (StandAlone, each keeps its own).
        var winner: String?
        var description: String { name }
    }

    static let cases: [Case] = [
        Case(name: "default-0pri-unresolved", net: "", primaries: "", winner: nil),
        Case(name: "0pri-discard-younger-primary", net: "after-sb-0pri discard-younger-primary;", primaries: "", winner: "alpha"),
        Case(name: "0pri-discard-older-primary", net: "after-sb-0pri discard-older-primary;", primaries: "", winner: "beta"),
        Case(name: "0pri-discard-zero-changes", net: "after-sb-0pri discard-zero-changes;", primaries: "", betaBlocks: 0, winner: "alpha"),
        Case(name: "0pri-discard-zero-changes-both-changed", net: "after-sb-0pri discard-zero-changes;", primaries: "", winner: nil),
        Case(name: "0pri-discard-least-changes", net: "after-sb-0pri discard-least-changes;", primaries: "", winner: "alpha"),
        Case(name: "0pri-discard-node-alpha", net: "after-sb-0pri discard-node-alpha;", primaries: "", winner: "beta"),
        Case(name: "1pri-discard-secondary", net: "after-sb-1pri discard-secondary;", primaries: "beta", winner: "beta"),
        Case(name: "1pri-consensus", net: "after-sb-0pri discard-least-changes; after-sb-1pri consensus;", primaries: "alpha",
             winner: "alpha"),
        Case(name: "1pri-consensus-refuses", net: "after-sb-0pri discard-least-changes; after-sb-1pri consensus;", primaries: "beta",
             winner: nil),
        Case(name: "1pri-call-pri-lost-after-sb", net: "after-sb-0pri discard-least-changes; after-sb-1pri call-pri-lost-after-sb;",
             primaries: "beta", winner: "alpha"),
        Case(name: "1pri-violently-as0p", net: "after-sb-0pri discard-older-primary; after-sb-1pri violently-as0p;",
             primaries: "beta", winner: "beta"),
        Case(name: "2pri-default-unresolved", net: "", primaries: "both", winner: nil),
        Case(name: "2pri-call-pri-lost-after-sb", net: "after-sb-0pri discard-younger-primary; after-sb-2pri call-pri-lost-after-sb;",
             primaries: "both", winner: "alpha"),
    ]

    @Test(arguments: cases) func policy(_ k: Case) throws {
        let handlerLog = NSTemporaryDirectory() + "tandem-sb-\(UUID().uuidString.prefix(8)).log"
        defer { try? FileManager.default.removeItem(atPath: handlerLog) }
        let record = { (h: String) in "\(h) \"echo \(h) $DRBD_RESOURCE $DRBD_PEER $DRBD_NODE_NAME >> \(handlerLog)\";" }
        let c = try Cluster(.init(size: 32 << 20, net: k.net,
                                  handlers: record("split-brain") + " " + record("initial-split-brain") + " " + record("pri-lost-after-sb")))
        defer { c.shutdown() }
        try c.start()
        let size = try c.exportSize
        // Apart: alpha (the Primary at the split) writes, beta is promoted and writes.
        for n in c.nodes { #expect(try c.tandem(n, "disconnect", "r0").status == 0) }
        try write(c, "alpha", blocks: k.alphaBlocks, pattern: 0xa1, at: 0)
        #expect(try c.tandem("beta", "primary", "r0").status == 0, "a secondary that lost its primary is promoted without --force")
        try write(c, "beta", blocks: k.betaBlocks, pattern: 0xb2, at: 16 << 20)
        for n in c.nodes where !(k.primaries == n || k.primaries == "both") {
            #expect(try c.tandem(n, "secondary", "r0").status == 0)
        }
        let before = ["alpha": try c.dataHash("alpha", bytes: size), "beta": try c.dataHash("beta", bytes: size)]
        #expect(before["alpha"] != before["beta"])
        for n in c.nodes { #expect(try c.tandem(n, "connect", "r0").status == 0) }

        if let w = k.winner {
            try c.wait("alpha", timeout: 60, "resolved and in sync") { s in
                s["connection"] as? String == "Connected" && s["disk"] as? String == "UpToDate" && s["peer-disk"] as? String == "UpToDate"
            }
            #expect(try c.dataHash("alpha", bytes: size) == before[w])
            #expect(try c.dataHash("beta", bytes: size) == before[w])
            let loser = w == "alpha" ? "beta" : "alpha"
            #expect(c.log(loser).contains("automatically solved. Sync from peer node"), "\(c.log(loser))")
            if k.name.contains("call-pri-lost") {
                #expect(c.log(loser).contains("Successfully gave up primary role."))
                #expect(try c.status(loser)["role"] as? String == "Secondary")
            }
        } else {
            // Unresolved: both StandAlone, split-brain in status, nothing changed on either side.
            for n in c.nodes {
                try c.wait(n, timeout: 30, "StandAlone after the split brain") { s in
                    s["connection"] as? String == "StandAlone" && s["split-brain"] as? Bool == true
                }
                let text = try c.tandem(n, "status", "--verbose", "r0").out
                #expect(text.contains("split-brain: unresolved") && text.contains("holds: split brain: both nodes changed the data"), "\(text)")
                #expect(c.log(n).contains("Split-Brain detected but unresolved"))
                #expect(try c.dataHash(n, bytes: size) == before[n], "\(n) lost its changes")
            }
            let handlers = (try? String(contentsOfFile: handlerLog, encoding: .utf8)) ?? ""
            #expect(handlers.contains("split-brain r0 beta alpha"), "\(handlers)")
            #expect(handlers.contains("split-brain r0 alpha beta"), "\(handlers)")
            // Resolved by hand: beta's changes go.
            for n in c.nodes { _ = try c.tandem(n, "secondary", "r0") }
            #expect(try c.tandem("beta", "connect", "--discard-my-data", "r0").status == 0)
            #expect(try c.tandem("alpha", "connect", "r0").status == 0)
            try c.waitInSync(timeout: 60)
            #expect(try c.dataHash("beta", bytes: size) == before["alpha"])
            // With no primaries the case's after-sb-0pri policy may settle it first (least
            // changes: beta's); else discard-my-data does.
            let how = k.net.contains("discard-least-changes") ? "automatically" : "manually"
            #expect(c.log("beta").contains("\(how) solved. Sync from peer node"), "\(c.log("beta"))")
            #expect(try c.status("beta")["split-brain"] == nil)
        }
        let handlers = (try? String(contentsOfFile: handlerLog, encoding: .utf8)) ?? ""
        #expect(handlers.contains("initial-split-brain r0 beta alpha") && handlers.contains("initial-split-brain r0 alpha beta"),
                "\(handlers)")
        #expect(!handlers.contains("pri-lost-after-sb"), "\(handlers)")
    }

    func write(_ c: Cluster, _ node: String, blocks: Int, pattern: Int, at offset: Int) throws {
        guard blocks > 0 else { return }
        let r = try Tools.run("/usr/bin/qemu-io", ["-f", "raw", "-c", "write -P \(pattern) \(offset) \(blocks * 4096)", c.uri(node)])
        try #require(r.status == 0, "\(r.err)")
    }
}
