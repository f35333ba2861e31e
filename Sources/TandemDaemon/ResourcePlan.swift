import Foundation
import TandemCodecs
import TandemEngine
import TandemAWS
import TandemAdapters

/// Where the replicated device is exported over NBD, from the `device` line of `on NODE`.
public enum ExportTarget: Equatable, Sendable {
    case unix(path: String, name: String)
    case tcp(host: String, port: Int, name: String)
    /// The kernel's NBD client on `/dev/nbdN`, attached to the daemon (like DRBD's /dev/drbdN).
    case kernel(device: String, name: String)

    public var name: String {
        switch self { case .unix(_, let n), .tcp(_, _, let n), .kernel(_, let n): n }
    }

    /// The URI an NBD client uses (qemu-io, nbdcopy, nbdinfo, fio).
    public var uri: String {
        switch self {
        case .unix(let p, let n): "nbd+unix:///\(n)?socket=\(p)"
        case .tcp(let h, let port, let n): "nbd://\(h):\(port)/\(n)"
        case .kernel(let device, _): device
        }
    }

    /// Parses an NBD URI or a DRBD device path. `/dev/drbdN` means the default export: a Unix
    /// socket `RUN/RES.nbd` named after the resource.
    public static func parse(_ device: String?, resource: String, runDir: String) throws -> ExportTarget {
        guard let d = device, !d.isEmpty, !d.hasPrefix("/dev/drbd") else {
            return .unix(path: "\(runDir)/\(resource).nbd", name: resource)
        }
        if ConfigDevice(path: d).isKernelNBD { return .kernel(device: d, name: resource) }
        guard let u = URLComponents(string: d), let scheme = u.scheme else {
            throw ConfigError(nil, "device \(d): not an NBD URI (nbd://HOST:PORT/NAME or nbd+unix:///NAME?socket=PATH)")
        }
        let name = String(u.path.drop(while: { $0 == "/" }))
        switch scheme {
        case "nbd+unix":
            guard let sock = u.queryItems?.first(where: { $0.name == "socket" })?.value, !sock.isEmpty else {
                throw ConfigError(nil, "device \(d): nbd+unix URI needs ?socket=PATH")
            }
            return .unix(path: sock, name: name.isEmpty ? resource : name)
        case "nbd":
            return .tcp(host: u.host ?? "127.0.0.1", port: u.port ?? 10809, name: name.isEmpty ? resource : name)
        default:
            throw ConfigError(nil, "device \(d): scheme \(scheme) is not supported (nbd, nbd+unix)")
        }
    }
}

/// Everything the daemon needs from the resource file for one resource on this node.
public struct ResourcePlan: Sendable {
    public var name: String
    public var node: String
    public var diskPath: String
    /// The EBS volume behind `diskPath` (`disk ebs:vol-...;`), if any.
    public var ebs: EBSVolumePlan?
    public var export: ExportTarget
    public var me: (host: String, port: Int)
    public var peer: (host: String, port: Int)
    public var peerName: String
    public var sharedSecret: String?
    public var cramHmacAlg: String?
    /// TLS on the link (net `tls yes`), loaded and checked at `up`.
    public var tls: TLSContext?
    public var settings: EngineSettings
    public var alExtents: Int
    /// net sndbuf-size and rcvbuf-size in bytes (0: the kernel tunes them).
    public var sendBufferBytes: Int
    public var receiveBufferBytes: Int
    /// net connect-int: the longest wait between connection attempts, in seconds.
    public var connectIntervalSeconds: Int
    /// The handlers the resource file configures (resource first, then common).
    public var handlers: [Handler: String] = [:]
    /// What a handler finds in its environment, as drbdadm sets it.
    public var handlerEnvironment: [String: String] = [:]
    /// The peer's node id as drbdsetup shows it for DRBD 8.4 (0: the one peer) and this
    /// volume's minor, for events2 and the exporter's labels.
    public var peerNodeID: Int
    public var minor: Int
    /// Where the daemon logs when not under systemd (options `log-file`, else DaemonLog's default).
    public var logFile: String

    public init(_ local: LocalResource, runDir: String) throws {
        let r = local.resource, c = local.config
        name = r.name
        node = local.node
        guard local.volume.metaDisk == .internal else { throw ConfigError(nil, "\(r.name): only 'meta-disk internal' is supported") }
        export = try ExportTarget.parse(local.volume.device?.path, resource: r.name, runDir: runDir)
        guard let myAddr = local.host.address else { throw ConfigError(nil, "\(r.name): no address for \(local.node)") }
        let peers = r.peers(of: local.node)
        guard peers.count == 1, let p = peers.first, let peerAddr = p.address else {
            throw ConfigError(nil, "\(r.name): exactly one peer with an address is needed (found \(peers.count))")
        }
        me = (myAddr.host, Int(myAddr.port))
        peer = (peerAddr.host, Int(peerAddr.port))
        peerName = p.names.first ?? "peer"
        // DRBD 8.4 has one peer, shown as peer-node-id 0 (drbdsetup events2 over an 8.4 kernel).
        peerNodeID = 0
        minor = local.volume.device?.minor ?? 0
        func v(_ n: String, _ s: String) -> String? { c.effectiveValue(n, in: s, resource: r) }
        var st = EngineSettings()
        switch v("protocol", "net")?.uppercased() ?? "C" {
        case "A": st.wireProtocol = 1
        case "B": st.wireProtocol = 2
        default: st.wireProtocol = 3
        }
        sharedSecret = v("shared-secret", "net")
        cramHmacAlg = v("cram-hmac-alg", "net")
        if (sharedSecret == nil) != (cramHmacAlg == nil) {
            throw ConfigError(nil, "\(r.name): cram-hmac-alg and shared-secret must be set together")
        }
        if let alg = cramHmacAlg { _ = try DigestAlgorithm(named: alg) }
        tls = try Self.tls(v, resource: r.name, peerName: peerName)
        try OptionSupport.check(v, resource: r.name)
        try OptionSupport.checkStartupAndHandlers(resource: r.sections, common: c.common, name: r.name)
        func policy(_ n: String, _ allowed: Set<AfterSplitBrain>) throws -> UInt32 {
            var val = v(n, "net") ?? "disconnect"
            // discard-node-NAME, as drbdadm turns it: discard-local on NAME, discard-remote on its peer.
            if val.hasPrefix("discard-node-") {
                let named = String(val.dropFirst("discard-node-".count))
                if local.host.names.contains(named) { val = "discard-local" }
                else if p.names.contains(named) { val = "discard-remote" }
                else { throw ConfigError(nil, "\(r.name): \(n) \(val): \(named) is not a host of this resource") }
            }
            guard let i = AfterSplitBrain.names.firstIndex(of: val), let a = AfterSplitBrain(rawValue: UInt32(i)), allowed.contains(a) else {
                throw ConfigError(nil, "\(r.name): \(val) is not a policy for \(n)")
            }
            return a.rawValue
        }
        st.afterSB0p = try policy("after-sb-0pri", AfterSplitBrain.zeroPrimaries)
        st.afterSB1p = try policy("after-sb-1pri", AfterSplitBrain.onePrimary)
        st.afterSB2p = try policy("after-sb-2pri", AfterSplitBrain.twoPrimaries)
        st.alwaysAsbp = v("always-asbp", "net") == "yes"
        st.fencing = v("fencing", "disk") == "resource-only" ? .resourceOnly : .dontCare
        for o in r.sections.handlers + (c.common?.handlers ?? []) {
            if let h = Handler(rawValue: o.name), handlers[h] == nil, let cmd = o.value { handlers[h] = cmd }
        }
        switch v("on-io-error", "disk") {
        case "pass_on": st.onIOError = .passOn
        case "call-local-io-error": st.onIOError = .callLocalIOError
        default: st.onIOError = .detach
        }
        if st.onIOError == .callLocalIOError && handlers[.localIOError] == nil {
            throw ConfigError(nil, "\(r.name): on-io-error call-local-io-error needs a local-io-error handler (it is what it calls)")
        }
        if st.fencing != .dontCare && handlers[.fencePeer] == nil {
            throw ConfigError(nil, "\(r.name): fencing resource-only needs a fence-peer handler (it is what outdates the peer)")
        }
        if handlers[.afterSnapshot] != nil && handlers[.beforeSnapshot] == nil {
            throw ConfigError(nil, "\(r.name): an after-snapshot handler needs a before-snapshot handler (it undoes what before-snapshot does)")
        }
        st.beforeSnapshotHandler = handlers[.beforeSnapshot] != nil
        handlerEnvironment = [
            "DRBD_RESOURCE": r.name, "DRBD_VOLUME": "0", "DRBD_MINOR": "\(local.volume.device?.minor ?? 0)",
            "DRBD_BACKING_DEV": local.diskPath, "DRBD_PEER": peerName, "DRBD_PEERS": peerName,
            "DRBD_PEER_ADDRESS": peerAddr.host, "DRBD_PEER_AF": "ipv4",
            "DRBD_MY_ADDRESS": myAddr.host, "DRBD_MY_AF": "ipv4", "DRBD_NODE_NAME": local.node,
        ]
        st.discardMyData = v("discard-my-data", "net") == "yes"
        st.verifyAlg = v("verify-alg", "net") ?? ""
        st.csumsAlg = v("csums-alg", "net") ?? ""
        for (name, alg) in [("verify-alg", st.verifyAlg), ("csums-alg", st.csumsAlg)] where !alg.isEmpty {
            do { _ = try DigestAlgorithm(named: alg) } catch { throw ConfigError(nil, "\(r.name): \(name) \(alg): \(error)") }
        }
        st.csumsAfterCrashOnly = v("csums-after-crash-only", "net") == "yes"
        // restore waits this long for the peer (DRBD's wfc-timeout; 0 there means forever,
        // here the default bound of 60 s).
        if let w = v("wfc-timeout", "startup").flatMap({ UInt64($0) }), w > 0 { st.restoreWaitMs = w * 1000 }
        st.resyncRateKiB = UInt32(Self.kib(v("resync-rate", "disk")) ?? 250)
        st.cPlanAhead = UInt32(v("c-plan-ahead", "disk").flatMap { UInt32($0) } ?? 20)
        st.cDelayTarget = UInt32(v("c-delay-target", "disk").flatMap { UInt32($0) } ?? 10)
        // Tandem's one departure from DRBD's defaults: c-fill-target is 0 (the delay-target
        // mode) unless the file sets it. DRBD's 100 sectors keep 50 KiB in flight per 100 ms
        // step, which ramps a fast link's resync up slowly (the kernel in ../shared/drbd-vm takes
        // 13-15 s for 64 MiB); with 0 the controller reaches c-max-rate within about a second.
        let fill = r.sections.value("c-fill-target", in: "disk") ?? c.common?.value("c-fill-target", in: "disk") ?? "0"
        st.cFillTarget = UInt32(Self.sectors(fill) ?? 0)
        st.maxBuffers = Int(v("max-buffers", "net") ?? "") ?? 2048
        st.diskFlushes = v("disk-flushes", "disk") != "no"
        guard let userSize = Self.sectors(v("size", "disk") ?? "0") else {
            throw ConfigError(nil, "\(r.name): size \(v("size", "disk") ?? ""): not a size (sectors, or a number with K, M or G)")
        }
        st.userSizeSectors = userSize
        st.cMaxRateKiB = UInt32(Self.kib(v("c-max-rate", "disk")) ?? 102_400)
        st.cMinRateKiB = UInt32(Self.kib(v("c-min-rate", "disk")) ?? 250)
        st.maxEpochSize = Int(v("max-epoch-size", "net") ?? "") ?? 2048
        switch v("on-congestion", "net") ?? "block" {
        case "pull-ahead": st.onCongestion = .pullAhead
        case "disconnect": st.onCongestion = .disconnect
        default: st.onCongestion = .block
        }
        st.congestionFillBytes = (Self.sectors(v("congestion-fill", "net")) ?? 0) * 512
        st.congestionExtents = Int(v("congestion-extents", "net") ?? "") ?? 1237
        switch v("compression", "net") ?? "auto" {
        case "lz4": st.compression = .lz4
        case "off": st.compression = .off
        default: st.compression = .auto
        }
        st.pingIntervalMs = UInt64(v("ping-int", "net").flatMap { UInt64($0) } ?? 10) * 1000
        st.pingTimeoutMs = UInt64(v("ping-timeout", "net").flatMap { UInt64($0) } ?? 5) * 100
        let timeout = UInt64(v("timeout", "net").flatMap { UInt64($0) } ?? 60) * 100
        let ko = UInt64(v("ko-count", "net").flatMap { UInt64($0) } ?? 7)
        st.requestTimeoutMs = max(timeout * max(ko, 1), 1000)
        sendBufferBytes = Int(Self.bytes(v("sndbuf-size", "net")) ?? 0)
        receiveBufferBytes = Int(Self.bytes(v("rcvbuf-size", "net")) ?? 0)
        connectIntervalSeconds = Int(v("connect-int", "net") ?? "") ?? 10
        alExtents = Int(v("al-extents", "disk") ?? "") ?? 1237
        guard alExtents <= ActivityLog.maximumSlots else {
            throw ConfigError(nil, "\(r.name): al-extents \(alExtents) is more than Tandem's activity log supports (\(ActivityLog.maximumSlots))")
        }
        st.alExtents = alExtents
        settings = st
        if let f = v("log-file", "options") {
            guard f.hasPrefix("/") else { throw ConfigError(nil, "\(r.name): log-file must be an absolute path, not '\(f)'") }
            logFile = f
        } else {
            logFile = DaemonLog.defaultPath(resource: r.name)
        }
        // Last, after every check of the file alone: an EBS volume is looked up in AWS.
        (diskPath, ebs) = try BackingDisk.resolve(local)
        if let e = ebs { settings.snapshotHoldMs = UInt64(e.settings.snapshotHoldSeconds * 1000) }
    }

    /// The link's TLS from the net section: `tls yes` needs a certificate, its key, and a way
    /// to check the peer (tls-ca, whose certificates must name the peer as tls-peer-name, by
    /// default its host name in this file; or tls-peer-fingerprint). tls-* options without
    /// `tls yes` are refused rather than ignored.
    static func tls(_ v: (String, String) -> String?, resource: String, peerName: String) throws -> TLSContext? {
        let names = ["tls-certificate", "tls-privkey", "tls-ca", "tls-peer-name", "tls-peer-fingerprint"]
        guard v("tls", "net") == "yes" else {
            if let set = names.first(where: { v($0, "net") != nil }) {
                throw ConfigError(nil, "\(resource): \(set) is set but tls is not: add `tls yes;` to net, or remove the tls options")
            }
            return nil
        }
        guard let cert = v("tls-certificate", "net"), let key = v("tls-privkey", "net") else {
            throw ConfigError(nil, "\(resource): tls yes needs tls-certificate and tls-privkey (this node's certificate and key, PEM files)")
        }
        var pin: [UInt8]?
        if let f = v("tls-peer-fingerprint", "net") {
            guard let p = TLSSettings.parseFingerprint(f) else {
                throw ConfigError(nil, "\(resource): tls-peer-fingerprint \(f): not sha256: followed by 64 hex digits")
            }
            pin = p
        }
        let ca = v("tls-ca", "net")
        guard ca != nil || pin != nil else {
            throw ConfigError(nil, "\(resource): tls yes needs tls-ca (the CA that signed the peer's certificate) or tls-peer-fingerprint")
        }
        let settings = TLSSettings(certificateFile: cert, privateKeyFile: key, caFile: ca,
                                   peerName: v("tls-peer-name", "net") ?? peerName, peerFingerprint: pin)
        do { return try TLSContext(settings) } catch { throw ConfigError(nil, "\(resource): \(error)") }
    }

    /// A rate in KiB/s from DRBD's unit syntax (plain numbers are KiB; k, M, G suffixes).
    static func kib(_ s: String?) -> UInt64? {
        guard let s, !s.isEmpty else { return nil }
        let last = s.last!
        let mult: UInt64 = switch last { case "k", "K": 1; case "m", "M": 1024; case "g", "G": 1024 * 1024; default: 1 }
        let digits = last.isLetter ? String(s.dropLast()) : s
        return UInt64(digits).map { $0 * mult }
    }

    /// A size in bytes (plain numbers are bytes; k, M, G suffixes).
    static func bytes(_ s: String?) -> UInt64? {
        guard let s, !s.isEmpty else { return nil }
        let last = s.last!
        guard last.isLetter else { return UInt64(s) }
        let mult: UInt64 = switch last { case "k", "K": 1024; case "m", "M": 1 << 20; case "g", "G": 1 << 30; default: 1 }
        return UInt64(s.dropLast()).map { $0 * mult }
    }

    /// A size in sectors (plain numbers are sectors; k, M, G suffixes are bytes).
    static func sectors(_ s: String?) -> UInt64? {
        guard let s, !s.isEmpty else { return nil }
        let last = s.last!
        guard last.isLetter else { return UInt64(s) }
        let mult: UInt64 = switch last { case "k", "K": 2; case "m", "M": 2048; case "g", "G": 2048 * 1024; default: 1 }
        return UInt64(s.dropLast()).map { $0 * mult }
    }
}
