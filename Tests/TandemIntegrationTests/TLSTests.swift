import Foundation
import Testing

/// TLS 1.3 on the replication link (net `tls yes`): two daemons replicate through it with
/// nothing in clear on the wire, and every certificate that should not pass is refused on
/// the link with the reason, never answered in clear text.
@Suite struct TLSTests {
    /// A folder of certificates for alpha and beta (make-certs.py), removed by the caller.
    static func certificates() throws -> String {
        let d = NSTemporaryDirectory() + "tandem-tls-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: d, withIntermediateDirectories: true)
        let r = try Tools.run("/usr/bin/python3", [Tools.helpers + "/make-certs.py", d, "alpha", "beta"])
        guard r.status == 0 else { throw TestFailure("make-certs.py: \(r.err)") }
        return d
    }

    /// A node's net options for TLS with a certificate from `d` (`cert`: which pair, by default
    /// the node's own from the trusted CA).
    static func net(_ d: String, _ node: String, cert: String? = nil, _ extra: String = "") -> String {
        let c = cert ?? node
        return "tls yes; tls-certificate \(d)/\(c).crt; tls-privkey \(d)/\(c).key; tls-ca \(d)/ca.crt; \(extra)"
    }

    /// The data moves under TLS 1.3 both ways (initial sync from alpha, writes through the
    /// export), status says so, and a capture of the link holds TLS records and neither a DRBD
    /// header nor the data written. With cram-hmac inside the tunnel too, neither the shared
    /// secret nor the private key shows in logs, status, events or dump.
    @Test func replicatesUnderTLSWithNothingInClear() throws {
        let d = try Self.certificates()
        defer { try? FileManager.default.removeItem(atPath: d) }
        let secret = "s3cret-\(UUID().uuidString.prefix(8))"
        let c = try Cluster(.init(size: 8 << 20, secrets: (secret, secret), net: "compression off;",
                                  nodeNet: ["alpha": Self.net(d, "alpha"), "beta": Self.net(d, "beta")],
                                  disk: "c-max-rate 4M; resync-rate 4M;"))
        defer { c.shutdown() }
        let cap = c.dir + "/cap.pcapng"
        let dump = try Tools.spawn("/usr/bin/dumpcap", ["-q", "-B", "256", "-i", "lo", "-f", "tcp port \(c.ports.0) or tcp port \(c.ports.1)", "-w", cap])
        sleep(2)
        // Recognisable data, written before the initial sync (so it crosses as resync data)
        // and after it (as replicated writes).
        let before = try Tools.run("/usr/bin/qemu-io", ["-f", "raw", "-c", "write -P 0x5a 0 256k", c.disk("alpha")])
        try #require(before.status == 0, "qemu-io: \(before.err)")
        try c.start()
        let eventsFile = c.dir + "/events.json"
        let events = try Tools.spawn("/bin/sh", ["-c", "TANDEM_RUN_DIR=\(c.runDir("alpha")) exec \(Tools.tandem) -c \(c.dir)/alpha.conf --node alpha events r0 > \(eventsFile)"])
        defer { events.terminate() }
        sleep(1)
        _ = try c.tandem("alpha", "disconnect", "r0")
        _ = try c.tandem("alpha", "connect", "r0")
        let q = try Tools.run("/usr/bin/qemu-io", ["-f", "raw", "-c", "write -P 0xa5 1M 512k", "-c", "flush", c.uri("alpha")])
        #expect(q.status == 0, "qemu-io: \(q.err)")
        try c.waitInSync()
        for n in c.nodes {
            let s = try c.status(n)
            #expect((s["tls"] as? String ?? "").hasPrefix("TLSv1.3 TLS_"), "\(n): status tls is \(s["tls"] ?? "absent")")
        }
        let text = try c.tandem("alpha", "status", "--verbose", "r0")
        #expect(text.out.contains("tls: TLSv1.3"), "status text: \(text.out)")
        #expect(try c.dataHash("alpha", bytes: 4 << 20) == (try c.dataHash("beta", bytes: 4 << 20)), "the disks differ")
        sleep(1)
        dump.terminate()
        dump.waitUntilExit()

        // No secret anywhere an operator or a log collector looks.
        events.terminate()
        events.waitUntilExit()
        let keyLines = try ["alpha", "beta"].flatMap { n in
            try String(contentsOfFile: "\(d)/\(n).key", encoding: .utf8).split(separator: "\n").filter { !$0.hasPrefix("-----") }.map(String.init)
        }
        var seen: [(String, String)] = [("events", (try? String(contentsOfFile: eventsFile, encoding: .utf8)) ?? "")]
        #expect(seen[0].1.contains("Connected"), "the events stream caught nothing: \(seen[0].1.prefix(300))")
        for n in c.nodes {
            seen.append(("\(n) log", c.log(n)))
            seen.append(("\(n) status", try c.tandem(n, "status", "--json", "r0").out + (try c.tandem(n, "status", "r0").out)))
            seen.append(("\(n) dump", try c.tandem(n, "dump", "r0").out))
        }
        #expect(seen.last!.1.contains("shared-secret") && seen.last!.1.contains("<hidden>"), "dump: \(seen.last!.1)")
        for (what, text) in seen {
            #expect(!text.contains(secret), "the shared secret is in the \(what)")
            for l in keyLines { #expect(!text.contains(l), "a line of a private key is in the \(what)") }
        }

        let decodeAs = ["-d", "tcp.port==\(c.ports.0),tls", "-d", "tcp.port==\(c.ports.1),tls"]
        let records = try Tools.run("/usr/bin/tshark", ["-r", cap] + decodeAs + ["-Y", "tls.record.opaque_type == 23", "-T", "fields", "-e", "frame.number"])
        let appData = records.out.split(separator: "\n").count
        #expect(appData > 20, "only \(appData) TLS application-data records in the capture")
        let hello = try Tools.run("/usr/bin/tshark", ["-r", cap] + decodeAs + ["-Y", "tls.handshake.type == 1", "-T", "fields", "-e", "tls.handshake.extensions_alpn_str"])
        #expect(hello.out.contains("tandem-drbd/1"), "no ClientHello offering tandem-drbd/1: \(hello.out)")
        let drbd = try Tools.run("/usr/bin/tshark", ["-r", cap, "--enable-heuristic", "drbd_tcp", "-Y", "drbd"])
        #expect(drbd.out.isEmpty, "tshark found DRBD packets: \(drbd.out.prefix(500))")
        let payload = try Tools.run("/usr/bin/tshark", ["-r", cap, "-Y", "tcp.len > 0", "-T", "fields", "-e", "tcp.payload"])
        let hex = payload.out.replacingOccurrences(of: ":", with: "")
        #expect(hex.count > 1_000_000, "the capture holds only \(hex.count / 2) payload bytes")
        for (what, needle) in [("a DRBD h80 header", "83740267"), ("a DRBD h100 header", "8620ec20"),
                               ("the data written before the sync", String(repeating: "5a", count: 64)),
                               ("the data written through the export", String(repeating: "a5", count: 64))] {
            #expect(!hex.contains(needle), "\(what) crossed the link in clear")
        }
    }

    /// Each node pins the other's self-signed certificate instead of trusting a CA.
    @Test func pinnedCertificatesConnect() throws {
        let d = try Self.certificates()
        defer { try? FileManager.default.removeItem(atPath: d) }
        func pin(_ n: String) throws -> String { try String(contentsOfFile: "\(d)/\(n)-self.sha256", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines) }
        let nets = ["alpha": "tls yes; tls-certificate \(d)/alpha-self.crt; tls-privkey \(d)/alpha-self.key; tls-peer-fingerprint \(try pin("beta"));",
                    "beta": "tls yes; tls-certificate \(d)/beta-self.crt; tls-privkey \(d)/beta-self.key; tls-peer-fingerprint \(try pin("alpha"));"]
        let c = try Cluster(.init(size: 4 << 20, nodeNet: nets))
        defer { c.shutdown() }
        try c.start()
        #expect((try c.status("beta")["tls"] as? String ?? "").hasPrefix("TLSv1.3"))
    }

    enum Refusal: String, CaseIterable, CustomTestStringConvertible {
        case untrustedCA, wrongName, expired, clearTextPeer, wrongPin
        var testDescription: String { rawValue }
    }

    /// A peer whose certificate does not pass, or that does not speak TLS, never gets a
    /// connection: both nodes keep trying, neither reaches the DRBD handshake, and status
    /// names the reason.
    @Test(arguments: Refusal.allCases)
    func badPeersAreRefused(_ refusal: Refusal) throws {
        let d = try Self.certificates()
        defer { try? FileManager.default.removeItem(atPath: d) }
        var nets = ["alpha": Self.net(d, "alpha"), "beta": Self.net(d, "beta")]
        let expected: [String]
        switch refusal {
        case .untrustedCA:
            nets["beta"] = Self.net(d, "beta", cert: "beta-other")
            expected = ["unable to get local issuer certificate", "unknown ca"]
        case .wrongName:
            nets["alpha"] = Self.net(d, "alpha", "tls-peer-name gamma;")
            nets["beta"] = Self.net(d, "beta", "tls-peer-name gamma;")
            expected = ["hostname mismatch"]
        case .expired:
            nets["beta"] = Self.net(d, "beta", cert: "beta-expired")
            expected = ["certificate has expired", "certificate expired"]
        case .clearTextPeer:
            nets["beta"] = ""
            expected = ["began a TLS handshake: tls is configured on the peer but not here", "DRBD packets in clear text"]
        case .wrongPin:
            let wrong = try String(contentsOfFile: "\(d)/alpha-self.sha256", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
            nets["alpha"] = Self.net(d, "alpha", "tls-peer-fingerprint \(wrong);")
            expected = ["not the pinned tls-peer-fingerprint"]
        }
        let c = try Cluster(.init(size: 4 << 20, nodeNet: nets))
        defer { c.shutdown() }
        for n in c.nodes { try c.up(n) }
        let deadline = Date().addingTimeInterval(60)
        var seen: [String] = []
        while Date() < deadline {
            seen = c.nodes.compactMap { try? c.status($0)["last-error"] as? String }
            if seen.contains(where: { e in expected.contains { e.contains($0) } }) { break }
            usleep(200_000)
        }
        #expect(seen.contains(where: { e in expected.contains { e.contains($0) } }), "no node names the refusal \(expected); last errors \(seen)")
        // Several attempts later the link is still down, and no DRBD packet was exchanged.
        sleep(3)
        for n in c.nodes {
            let s = try c.status(n)
            #expect(s["connection"] as? String != "Connected", "\(n) connected: \(s)")
            #expect(!c.log(n).contains("handshake: peer speaks protocol"), "\(n) reached the DRBD handshake:\n\(c.log(n))")
        }
    }

    /// `up` refuses TLS settings that cannot work or are not safe, each with one line.
    @Test func upRefusesBadTLSSettings() throws {
        let d = try Self.certificates()
        defer { try? FileManager.default.removeItem(atPath: d) }
        // A copy of alpha's key that others may read.
        try FileManager.default.copyItem(atPath: "\(d)/alpha.key", toPath: "\(d)/loose.key")
        chmod("\(d)/loose.key", 0o644)
        let cases: [(String, String)] = [
            ("tls yes; tls-certificate \(d)/alpha.crt; tls-privkey \(d)/loose.key; tls-ca \(d)/ca.crt;", "permissions 644 are too open"),
            ("tls-ca \(d)/ca.crt;", "tls-ca is set but tls is not"),
            ("tls yes; tls-certificate \(d)/alpha.crt; tls-privkey \(d)/alpha.key;", "needs tls-ca"),
            ("tls yes; tls-certificate \(d)/alpha.crt; tls-privkey \(d)/beta.key; tls-ca \(d)/ca.crt;", "is not the key of tls-certificate"),
            ("tls yes; tls-certificate \(d)/alpha.crt; tls-privkey \(d)/alpha.key; tls-peer-fingerprint sha256:12;", "not sha256: followed by 64 hex digits"),
        ]
        for (net, message) in cases {
            let c = try Cluster(.init(size: 4 << 20, nodeNet: ["alpha": net]))
            defer { c.shutdown() }
            let r = try c.tandem("alpha", "up", "r0")
            #expect(r.status != 0, "up accepted \(net)")
            #expect(r.err.contains(message), "up with \(net): \(r.err)")
            #expect(c.pid("alpha").map { kill($0, 0) != 0 } ?? true, "a daemon runs after a refused up")
        }
    }
}
