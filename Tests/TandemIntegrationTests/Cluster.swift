import Foundation
import Testing

/// Two real Tandem daemons (alpha and beta) on loopback with file-backed disks, each with its
/// own runtime folder, as an operator would run them on two machines.
final class Cluster {
    let dir: String
    let ports: (Int, Int)
    let size: Int
    var nodes: [String] { ["alpha", "beta"] }

    struct Options {
        var wireProtocol = "C"
        var size = 256 << 20
        var secrets: (String, String)?
        var protocols: (String, String)?
        /// Export over TCP (nbd://127.0.0.1:PORT/r0) instead of a Unix socket.
        var tcpExport = false
        /// More options for the resource's `net` and `disk` sections.
        var net = ""
        /// More net options for one node only (its own resource file), by node name.
        var nodeNet: [String: String] = [:]
        /// The port at which a node reaches its peer, when not the peer's own (a relay between
        /// them), by node name: that node's file gives the peer this port.
        var peerPort: [String: Int] = [:]
        /// More environment for every `tandem` run (a daemon started by `up` inherits it).
        var environment: [String: String] = [:]
        var disk = ""
        var startup = ""
        var handlers = ""
        /// A node's backing device instead of a file in the cluster's folder (a loop device).
        var alphaDevice: String?
        var betaDevice: String?
        /// Each node in a network namespace of its own, joined by a veth pair (two hosts).
        var namespaces = false
        /// More statements in beta's `on` section (an `ebs { }` section).
        var betaHostExtra = ""
        /// Skip create-md (a test runs it itself).
        var createMetaData = true
    }

    /// The two hosts' namespaces and their ends of the veth pair, when the cluster has them.
    let hosts: (alpha: String, beta: String, alphaLink: String, betaLink: String)?
    let addresses: (String, String)
    let tcpExport: Bool
    let devices: [String: String]
    let environment: [String: String]

    init(_ o: Options = Options()) throws {
        dir = NSTemporaryDirectory() + "tandem-cluster-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let base = Cluster.reservePorts()  // base..base+3: replication, then exports
        ports = (base, base + 1)
        size = o.size
        tcpExport = o.tcpExport
        environment = o.environment
        if o.namespaces {
            let tag = String(format: "%04x", Int.random(in: 0..<0x10000))
            let h = (alpha: "tnd-a-\(tag)", beta: "tnd-b-\(tag)", alphaLink: "tva\(tag)", betaLink: "tvb\(tag)")
            let subnet = "10.251.\(Int.random(in: 0..<256))"
            let steps: [[String]] = [
                ["netns", "add", h.alpha], ["netns", "add", h.beta],
                ["link", "add", h.alphaLink, "netns", h.alpha, "type", "veth", "peer", "name", h.betaLink, "netns", h.beta],
                ["-n", h.alpha, "addr", "add", "\(subnet).1/30", "dev", h.alphaLink],
                ["-n", h.beta, "addr", "add", "\(subnet).2/30", "dev", h.betaLink],
                ["-n", h.alpha, "link", "set", h.alphaLink, "up"], ["-n", h.beta, "link", "set", h.betaLink, "up"],
                ["-n", h.alpha, "link", "set", "lo", "up"], ["-n", h.beta, "link", "set", "lo", "up"],
            ]
            hosts = h
            for step in steps {
                let r = try Tools.run("/usr/sbin/ip", step)
                guard r.status == 0 else {
                    _ = try? Tools.run("/usr/sbin/ip", ["netns", "del", h.alpha]); _ = try? Tools.run("/usr/sbin/ip", ["netns", "del", h.beta])
                    throw TestFailure("ip \(step.joined(separator: " ")): \(r.err)")
                }
            }
            addresses = ("\(subnet).1", "\(subnet).2")
        } else {
            hosts = nil
            addresses = ("127.0.0.1", "127.0.0.1")
        }
        var devices: [String: String] = [:]
        devices["alpha"] = o.alphaDevice
        devices["beta"] = o.betaDevice
        self.devices = devices
        for n in ["alpha", "beta"] where devices[n] == nil {
            FileManager.default.createFile(atPath: "\(dir)/\(n).img", contents: nil)
            truncate("\(dir)/\(n).img", off_t(o.size))
        }
        func resourceFile(_ node: String, _ proto: String, _ secret: String?) -> String {
            let auth = secret.map { " cram-hmac-alg sha256; shared-secret \"\($0)\";" } ?? ""
            let net = "net { protocol \(proto);\(auth) \(o.net) \(o.nodeNet[node] ?? "") }" + (o.disk.isEmpty ? "" : "\n  disk { \(o.disk) }")
                + (o.startup.isEmpty ? "" : "\n  startup { \(o.startup) }") + (o.handlers.isEmpty ? "" : "\n  handlers { \(o.handlers) }")
            return """
                resource r0 {
                  \(net)
                  on alpha { device "\(o.tcpExport ? "nbd://127.0.0.1:\(base + 2)/r0" : "nbd+unix:///r0?socket=\(dir)/alpha.nbd")"; disk \(devices["alpha"] ?? "\(dir)/alpha.img"); address \(addresses.0):\(node == "beta" ? o.peerPort["beta"] ?? ports.0 : ports.0); meta-disk internal; }
                  on beta { device "\(o.tcpExport ? "nbd://127.0.0.1:\(base + 3)/r0" : "nbd+unix:///r0?socket=\(dir)/beta.nbd")"; disk \(devices["beta"] ?? "\(dir)/beta.img"); address \(addresses.1):\(node == "alpha" ? o.peerPort["alpha"] ?? ports.1 : ports.1); meta-disk internal; \(o.betaHostExtra) }
                }
                """
        }
        // One file per node, so tests can give the two nodes different settings.
        for (i, n) in ["alpha", "beta"].enumerated() {
            let proto = o.protocols.map { i == 0 ? $0.0 : $0.1 } ?? o.wireProtocol
            let secret = o.secrets.map { i == 0 ? $0.0 : $0.1 }
            FileManager.default.createFile(atPath: "\(dir)/\(n).conf", contents: Data(resourceFile(n, proto, secret).utf8))
        }
        for n in nodes where o.createMetaData {
            let r = try tandem(n, "create-md", "--force", "r0")
            guard r.status == 0 else { throw TestFailure("create-md \(n): \(r.err)") }
        }
    }

    /// Four consecutive free TCP ports, never the same twice in this test process (clusters of
    /// tests running in parallel drew colliding random ports before).
    static func reservePorts() -> Int {
        portLock.lock()
        defer { portLock.unlock() }
        while true {
            let base = nextPort
            nextPort += 4
            if nextPort > 40000 { nextPort = 20000 }
            if (base..<(base + 4)).allSatisfy(portIsFree) { return base }
        }
    }
    nonisolated(unsafe) static var nextPort = 20000 + Int.random(in: 0..<2500) * 4
    static let portLock = NSLock()

    static func portIsFree(_ port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        return withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        } == 0
    }

    func runDir(_ node: String) -> String { "\(dir)/run-\(node)" }
    func disk(_ node: String) -> String { devices[node] ?? "\(dir)/\(node).img" }
    func uri(_ node: String) -> String {
        tcpExport ? "nbd://127.0.0.1:\(ports.0 + (node == "alpha" ? 2 : 3))/r0" : "nbd+unix:///r0?socket=\(dir)/\(node).nbd"
    }

    /// Runs `tandem` for a node (inside its namespace, when the cluster has them).
    @discardableResult
    func tandem(_ node: String, _ args: String...) throws -> Tools.Result {
        let argv = ["-c", "\(dir)/\(node).conf", "--node", node] + args
        if let h = hosts {
            return try Tools.run("/usr/sbin/ip", ["netns", "exec", node == "alpha" ? h.alpha : h.beta, Tools.tandem] + argv,
                                 env: environment.merging(["TANDEM_RUN_DIR": runDir(node)]) { $1 })
        }
        return try Tools.run(Tools.tandem, argv, env: environment.merging(["TANDEM_RUN_DIR": runDir(node)]) { $1 })
    }

    /// Limits each host's sending side of the link to `mbit` Mbit/s (tc's token bucket filter).
    /// tc tbf on both ends of the veth pair; the bucket holds 5 ms of the rate (at least
    /// 32 kbit), as a smaller one keeps a fast link below its rate.
    func limitLink(mbit: Int) throws {
        guard let h = hosts else { throw TestFailure("limitLink needs namespaces") }
        for (ns, dev) in [(h.alpha, h.alphaLink), (h.beta, h.betaLink)] {
            let r = try Tools.run("/usr/sbin/ip", ["netns", "exec", ns, "/usr/sbin/tc", "qdisc", "add", "dev", dev, "root", "tbf",
                                                   "rate", "\(mbit)mbit", "burst", "\(max(32, mbit * 5))kbit", "latency", "400ms"])
            guard r.status == 0 else { throw TestFailure("tc: \(r.err)") }
        }
    }

    func status(_ node: String) throws -> [String: Any] {
        let r = try tandem(node, "status", "--json", "r0")
        guard r.status == 0, let o = try JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any] else {
            throw TestFailure("status \(node): \(r.err)")
        }
        return o
    }

    func up(_ node: String) throws {
        let r = try tandem(node, "up", "r0")
        guard r.status == 0 else { throw TestFailure("up \(node): \(r.err)") }
    }

    func down(_ node: String) { _ = try? tandem(node, "down", "r0") }

    /// Polls until `check` holds for the node's status.
    func wait(_ node: String, timeout: Double = 60, _ what: String, _ check: ([String: Any]) -> Bool) throws {
        let deadline = Date().addingTimeInterval(timeout)
        var last: [String: Any] = [:]
        while Date() < deadline {
            if let s = try? status(node) { last = s; if check(s) { return } }
            usleep(100_000)
        }
        throw TestFailure("\(node): timed out waiting for \(what); last status \(last)")
    }

    /// Pauses the running resync (pause-sync on `node`) and waits until neither node has a
    /// bitmap change that is not on disk yet: a kill -9 then finds on disk the progress the
    /// status showed, however slow the machine's fsync is.
    func pauseUntilBitmapsAreDurable(on node: String) throws {
        let r = try tandem(node, "pause-sync", "r0")
        guard r.status == 0 else { throw TestFailure("pause-sync on \(node): \(r.err)") }
        for n in nodes {
            try wait(n, timeout: 60, "the bitmap on disk") { s in
                s["connection"] as? String != "SyncSource" && s["connection"] as? String != "SyncTarget"
                    && s["bitmap-unwritten-pages"] as? Int == 0
            }
        }
    }

    func waitInSync(timeout: Double = 120) throws {
        for n in nodes {
            try wait(n, timeout: timeout, "Connected UpToDate/UpToDate") { s in
                s["connection"] as? String == "Connected" && s["disk"] as? String == "UpToDate"
                    && s["peer-disk"] as? String == "UpToDate" && (s["writes-in-flight"] as? Int ?? 1) == 0
            }
        }
    }

    /// Both daemons up, alpha forced primary, initial full sync done.
    func start() throws {
        for n in nodes { try up(n) }
        try wait("alpha", "connected", { $0["connection"] as? String == "Connected" })
        let r = try tandem("alpha", "primary", "--force", "r0")
        guard r.status == 0 else { throw TestFailure("primary --force: \(r.err)") }
        try waitInSync()
    }

    var exportSize: Int { get throws {
        let r = try Tools.run("/usr/bin/nbdinfo", ["--size", uri("alpha")])
        guard let n = Int(r.out.trimmingCharacters(in: .whitespacesAndNewlines)) else { throw TestFailure("nbdinfo: \(r.err)") }
        return n
    } }

    /// sha256 of the first `bytes` of a node's disk (its data area; meta-data excluded).
    func dataHash(_ node: String, bytes: Int) throws -> String {
        let r = try Tools.run("/bin/sh", ["-c", "head -c \(bytes) \(disk(node)) | sha256sum"])
        return String(r.out.prefix(64))
    }

    func pid(_ node: String) -> Int32? {
        (try? String(contentsOfFile: "\(runDir(node))/r0.pid", encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
    }

    func log(_ node: String) -> String { (try? String(contentsOfFile: "\(runDir(node))/r0.log", encoding: .utf8)) ?? "" }

    /// The nftables table that drops the replication link's packets while it is cut.
    var cutTable: String { "tandem_cut_\(ports.0)" }

    /// Cuts the replication link as a pulled cable would: every packet to or from either
    /// replication port is dropped (nftables), so neither side hears of it until its pings
    /// time out. `healLink` ends it.
    func cutLink() throws {
        let ports = "{ \(ports.0), \(ports.1) }"
        for cmd in [["add", "table", "inet", cutTable],
                    ["add", "chain", "inet", cutTable, "input", "{ type filter hook input priority 0; }"],
                    ["add", "rule", "inet", cutTable, "input", "tcp", "dport", ports, "drop"],
                    ["add", "rule", "inet", cutTable, "input", "tcp", "sport", ports, "drop"]] {
            let r = try Tools.run("/usr/sbin/nft", cmd)
            guard r.status == 0 else { throw TestFailure("nft \(cmd.joined(separator: " ")): \(r.err)") }
        }
    }

    func healLink() { _ = try? Tools.run("/usr/sbin/nft", ["delete", "table", "inet", cutTable]) }

    /// Waits until nothing holds the node's block device open exclusively or mounted (what
    /// `up` and `dump-md` need), and names the holders if it does not come free: a full
    /// parallel run once found a loop device busy right after `down` (#12 session 13).
    func waitForDeviceFree(_ node: String, timeout: Double = 10) throws {
        let dev = disk(node)
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            let fd = open(dev, O_RDONLY | O_EXCL)
            if fd >= 0 { close(fd); return }
            if Date() >= deadline { break }
            usleep(100_000)
        }
        let holders = try Tools.run("/bin/sh", ["-c", "for p in /proc/[0-9]*; do ls -l $p/fd 2>/dev/null | grep -q ' \(dev)$' && echo \"$(basename $p) $(tr '\\0' ' ' < $p/cmdline)\"; done; grep '^\(dev) ' /proc/mounts; true"]).out
        throw TestFailure("\(node): \(dev) stays busy after \(Int(timeout)) s; holders: \(holders)")
    }

    func shutdown() {
        healLink()
        for n in nodes { down(n) }
        for n in nodes { if let p = pid(n) { kill(p, SIGKILL) } }
        if let h = hosts {
            _ = try? Tools.run("/usr/sbin/ip", ["netns", "del", h.alpha])
            _ = try? Tools.run("/usr/sbin/ip", ["netns", "del", h.beta])
        }
        try? FileManager.default.removeItem(atPath: dir)
    }
}
