/// A resource's status in the shapes drbd-utils print for a DRBD 8.4 kernel, so scripts and
/// eyes trained on them read Tandem the same (shapes captured from drbd-utils 9.22 over the
/// 8.4.11 kernel in the VM, Tests/.../Fixtures/drbd84-status-shapes.txt):
/// - `status`: drbdadm status (`r0 role:Primary` / `  disk:UpToDate` / `  beta role:Secondary` /
///   `    replication:Established peer-disk:UpToDate`, a blank line after), `--verbose` adding
///   every key and Tandem's own lines (`holds:`, `tls:`, `last-error:`), `--statistics` the
///   counters, long lines wrapped at 80 columns as drbdsetup wraps them;
/// - `events2`: drbdsetup events2 lines, one per object (`exists resource name:r0 ...`,
///   connection, device, peer-device), `--statistics` adding the counters.
/// DRBD 8.4's connection state splits into DRBD 9's connection (WFConnection is Connecting) and
/// replication (Established, SyncSource, ...) as drbdsetup shows them.
public enum DrbdsetupText {
    struct Parts {
        var connection: String
        var replication: String
        init(_ s: StatusSnapshot) { (connection, replication) = StatusMetrics.split(s.connection) }
    }

    static func yesNo(_ b: Bool) -> String { b ? "yes" : "no" }

    /// The counters drbdsetup prints with --statistics, in its order (KiB where it uses KiB).
    static func deviceStatistics(_ s: StatusSnapshot) -> [String] {
        ["size:\(s.sizeKiB)", "read:\((s.diskReadBytes ?? 0) / 1024)", "written:\((s.diskWrittenBytes ?? 0) / 1024)",
         "al-writes:\(s.alWrites ?? 0)", "bm-writes:\(s.bitmapWrites ?? 0)", "upper-pending:\(s.appRequestsPending ?? 0)",
         "lower-pending:\(s.diskRequestsPending ?? 0)", "al-suspended:no", "blocked:\(s.alWritesWaiting > 0 ? "upper" : "no")"]
    }

    static func peerStatistics(_ s: StatusSnapshot) -> [String] {
        ["received:\((s.receivedBytes ?? 0) / 1024)", "sent:\((s.sentBytes ?? 0) / 1024)", "out-of-sync:\(s.outOfSyncKiB)",
         "pending:\(s.peerPending ?? 0)", "unacked:\(s.peerUnacked ?? 0)"]
    }

    /// Words on a line at `indent`, wrapped at 80 columns with continuation lines 4 deeper;
    /// `statistics` start a continuation line of their own, as drbdsetup prints them.
    static func lines(indent: Int, _ words: [String], statistics: [String] = []) -> [String] {
        var out: [String] = []
        var line = String(repeating: " ", count: indent)
        var fresh = true
        func add(_ w: String, cont: Int) {
            if !fresh && line.count + 1 + w.count > 80 {
                out.append(line)
                line = String(repeating: " ", count: cont) + w
            } else {
                line += (fresh ? "" : " ") + w
            }
            fresh = false
        }
        for w in words { add(w, cont: indent + 4) }
        if !statistics.isEmpty {
            out.append(line)
            line = String(repeating: " ", count: indent + 4)
            fresh = true
            for w in statistics { add(w, cont: indent + 4) }
        }
        out.append(line)
        return out
    }

    /// drbdadm status for one resource, with the blank line after it.
    public static func status(_ s: StatusSnapshot, verbose: Bool = false, statistics: Bool = false) -> String {
        let p = Parts(s)
        var out: [String] = []
        let blocked = s.alWritesWaiting > 0 ? ["blocked:activity-log", "writes-waiting:\(s.alWritesWaiting)"] : []
        out += lines(indent: 0, ["\(s.resource)", "role:\(s.role)"] + (verbose ? ["suspended:no"] : []),
                     statistics: statistics ? ["write-ordering:flush"] : [])
        let volume = verbose ? ["volume:0", "minor:\(s.minor ?? 0)"] : []
        out += lines(indent: 2, volume + ["disk:\(s.disk)"] + (statistics ? [] : blocked), statistics: statistics ? deviceStatistics(s) : [])
        if let e = s.diskError { out.append("  disk-error: \(e)") }
        if s.connection != "StandAlone" {
            var peer = ["\(s.peer)"]
            let connected = p.connection == "Connected"
            if verbose || !connected { peer.append("connection:\(p.connection)") }
            if verbose || connected { peer.append("role:\(s.peerRole)") }
            if verbose { peer.append("congested:\(yesNo(s.connection == "Ahead"))") }
            out += lines(indent: 2, peer)
            if connected || verbose {
                var pd = (verbose ? ["volume:0"] : []) + ["replication:\(p.replication)", "peer-disk:\(s.peerDisk)"]
                if let d = s.done { pd.append(String(format: "done:%.2f", d)) }
                if verbose { pd.append("resync-suspended:\(yesNo(s.connection.hasPrefix("Paused")))") }
                out += lines(indent: 4, pd, statistics: statistics ? peerStatistics(s) : [])
            }
        }
        if s.splitBrain == true {
            out.append("  split-brain: unresolved; on the node whose changes are to be dropped: secondary, connect --discard-my-data")
        }
        if verbose {
            if let t = s.tls { out.append("  tls: \(t)") }
            out.append("  holds: \(s.holds)")
            if let e = s.lastError { out.append("  last-error: \(e)") }
        }
        return out.joined(separator: "\n") + "\n\n"
    }

    /// One object of events2: its kind, the keys that name it, and its fields.
    public struct Object: Equatable, Sendable {
        public var kind: String
        public var ids: [String]
        public var fields: [(key: String, value: String)]

        public static func == (a: Object, b: Object) -> Bool {
            a.kind == b.kind && a.ids == b.ids && a.fields.map(\.key) == b.fields.map(\.key) && a.fields.map(\.value) == b.fields.map(\.value)
        }

        func line(_ type: String, _ fields: [(key: String, value: String)]) -> String {
            (["\(type) \(kind)"] + ids + fields.map { "\($0.key):\($0.value)" }).joined(separator: " ")
        }

        /// `exists` or `create`: every field.
        public func whole(_ type: String) -> String { line(type, fields) }
        /// `change`: the fields that differ from `old`; nil when none does.
        public func change(from old: Object) -> String? {
            let changed = fields.filter { f in !old.fields.contains { $0.key == f.key && $0.value == f.value } }
            return changed.isEmpty ? nil : line("change", changed)
        }
        /// `destroy`: the naming keys only.
        public var destroy: String { line("destroy", []) }
    }

    /// The objects of one resource, in drbdsetup's order.
    public static func objects(_ s: StatusSnapshot, statistics: Bool = false) -> [Object] {
        let p = Parts(s)
        let name = "name:\(s.resource)"
        // drbdsetup names the connection only while it has one (not StandAlone).
        let peer = ["peer-node-id:\(s.peerNodeID ?? 0)"] + (s.connection == "StandAlone" ? [] : ["conn-name:\(s.peer)"])
        func kv(_ words: [String]) -> [(key: String, value: String)] {
            words.map { w in let i = w.firstIndex(of: ":")!; return (String(w[..<i]), String(w[w.index(after: i)...])) }
        }
        var resource = ["role:\(s.role)", "suspended:no"]
        var connection = ["connection:\(p.connection)", "role:\(s.peerRole)"]
        var device = ["disk:\(s.disk)"]
        var peerDevice = ["replication:\(p.replication)", "peer-disk:\(s.peerDisk)"]
        peerDevice.append("resync-suspended:\(yesNo(s.connection.hasPrefix("Paused")))")
        if statistics {
            resource.append("write-ordering:flush")
            connection.append("congested:\(yesNo(s.connection == "Ahead"))")
            device += deviceStatistics(s)
            peerDevice += peerStatistics(s)
        }
        return [
            Object(kind: "resource", ids: [name], fields: kv(resource)),
            Object(kind: "connection", ids: [name] + peer, fields: kv(connection)),
            Object(kind: "device", ids: [name, "volume:0", "minor:\(s.minor ?? 0)"], fields: kv(device)),
            Object(kind: "peer-device", ids: [name] + peer + ["volume:0"], fields: kv(peerDevice)),
        ]
    }

    /// drbdsetup events2's `exists` lines for one resource.
    public static func events2(_ s: StatusSnapshot, type: String = "exists", statistics: Bool = false) -> [String] {
        objects(s, statistics: statistics).map { $0.whole(type) }
    }
}
