import Foundation
import Testing

/// `adjust` on a running node: changed options a running node takes are applied and named; a
/// change that needs down and up, or a file that does not load, is refused naming it, and
/// nothing changes.
@Suite(.serialized) struct AdjustTests {
    static func edit(_ c: Cluster, _ node: String, _ from: String, _ to: String) throws {
        let path = "\(c.dir)/\(node).conf"
        let text = try String(contentsOfFile: path, encoding: .utf8)
        guard text.contains(from) else { throw TestFailure("\(node).conf has no '\(from)'") }
        try text.replacingOccurrences(of: from, with: to).write(toFile: path, atomically: true, encoding: .utf8)
    }

    @Test func liveChangesApplyOthersAreRefused() throws {
        let c = try Cluster(.init(size: 16 << 20, net: "verify-alg sha1;", disk: "c-max-rate 16M;"))
        defer { c.shutdown() }
        try c.start()
        let same = try c.tandem("alpha", "adjust", "r0")
        #expect(same.status == 0 && same.out.contains("no changes"), "\(same.out) \(same.err)")

        try Self.edit(c, "alpha", "c-max-rate 16M;", "c-max-rate 40M;")
        try Self.edit(c, "alpha", "verify-alg sha1;", "verify-alg sha1; ping-timeout 10;")
        let live = try c.tandem("alpha", "adjust", "r0")
        #expect(live.status == 0 && live.out.contains("c-max-rate, ping-timeout now in force"), "\(live.out) \(live.err)")
        #expect(c.log("alpha").contains("adjust: c-max-rate, ping-timeout now in force"), "not logged")
        // Applied again, nothing is new.
        #expect(try c.tandem("alpha", "adjust", "r0").out.contains("no changes"))

        try Self.edit(c, "alpha", "protocol C;", "protocol A;")
        let refused = try c.tandem("alpha", "adjust", "r0")
        #expect(refused.status == 11 && refused.err.contains("nothing changed: protocol cannot change on a running node"), "\(refused.status) \(refused.err)")
        #expect(try c.status("alpha")["protocol"] as? String == "C", "the protocol changed")
        try Self.edit(c, "alpha", "protocol A;", "protocol C;")

        try Self.edit(c, "alpha", "resource r0 {", "resource r0 { bogus-option 1;")
        let broken = try c.tandem("alpha", "adjust", "r0")
        #expect(broken.status == 11 && broken.err.contains("does not load"), "\(broken.status) \(broken.err)")
        let s = try c.status("alpha")
        #expect(s["connection"] as? String == "Connected" && s["role"] as? String == "Primary", "\(s)")
        // The adjusted settings are the running ones: a verify still works with them.
        try Self.edit(c, "alpha", "resource r0 { bogus-option 1;", "resource r0 {")
        #expect(try c.tandem("alpha", "verify", "--wait", "r0").status == 0)
    }
}
