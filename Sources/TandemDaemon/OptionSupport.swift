import TandemCodecs
import TandemEngine

/// Which values of DRBD's resource options Tandem honours. The file is refused at `up` when it
/// asks for anything else, with the reason, so an operator never believes an option is in force
/// when it is not. Options not listed here are honoured with every value the grammar allows
/// (protocol, on-io-error, timeouts, the resync controller, max-buffers, max-epoch-size, al-extents,
/// sndbuf-size, rcvbuf-size, connect-int, ...), or change nothing that Tandem does
/// (disable-write-same, tcp-cork, use-rle). verify-alg and csums-alg must name a digest this
/// build has and match the peer's.
enum OptionSupport {
    struct Rule: Sendable {
        var section: String
        var name: String
        /// Values Tandem honours (of the effective value: DRBD's default when the file is silent).
        var honoured: [String?]
        var reason: String
    }

    static func only(_ values: String?...) -> [String?] { values }

    static let rules: [Rule] = [
        Rule(section: "disk", name: "max-bio-bvecs", honoured: only(nil, "0"), reason: "it limits kernel bios and has no meaning here"),
        Rule(section: "disk", name: "fencing", honoured: only(nil, "dont-care", "resource-only"),
             reason: "it freezes I/O while fence-peer runs, and Tandem never suspends I/O (resource-only is supported)"),
        Rule(section: "disk", name: "disk-barrier", honoured: only(nil, "no"), reason: "barrier write ordering is not supported (flushes or drain are)"),
        Rule(section: "disk", name: "md-flushes", honoured: only(nil, "yes"), reason: "meta-data writes are always made durable"),
        Rule(section: "disk", name: "resync-after", honoured: only(nil, "-1"), reason: "resync dependencies between resources are not supported"),
        Rule(section: "disk", name: "al-updates", honoured: only(nil, "yes"), reason: "the activity log is always kept"),
        Rule(section: "disk", name: "discard-zeroes-if-aligned", honoured: only(nil, "yes"), reason: "discards are always replicated as discards"),
        Rule(section: "disk", name: "disk-timeout", honoured: only(nil, "0"), reason: "a disk timeout is not supported"),
        Rule(section: "disk", name: "read-balancing", honoured: only(nil, "prefer-local"), reason: "reads are always served from the local disk"),
        Rule(section: "disk", name: "rs-discard-granularity", honoured: only(nil, "0"), reason: "resync by discards is not supported"),
        Rule(section: "net", name: "tentative", honoured: only(nil, "no"), reason: "tentative connections are not supported"),
        Rule(section: "net", name: "alternate-address", honoured: only(nil), reason: "alternate addresses are not supported"),
        Rule(section: "net", name: "alternate-peer-address", honoured: only(nil), reason: "alternate addresses are not supported"),
        Rule(section: "net", name: "unplug-watermark", honoured: only(nil, "128"), reason: "it tunes kernel request plugging and has no meaning here"),
        Rule(section: "net", name: "allow-two-primaries", honoured: only(nil, "no"), reason: "two primaries are not supported"),
        Rule(section: "net", name: "rr-conflict", honoured: only(nil, "disconnect"),
             reason: "only disconnect is supported (a Primary never becomes a sync target under its application)"),
        Rule(section: "net", name: "data-integrity-alg", honoured: only(nil, ""), reason: "data integrity digests are not supported yet"),
        Rule(section: "net", name: "socket-check-timeout", honoured: only(nil, "0"), reason: "it is not supported"),
        Rule(section: "options", name: "cpu-mask", honoured: only(nil, ""), reason: "CPU pinning is not supported"),
        Rule(section: "options", name: "on-no-data-accessible", honoured: only(nil, "io-error"), reason: "I/O is never suspended"),
    ]

    /// `startup` and `handlers`: of startup only wfc-timeout is honoured (how long `restore`
    /// waits for the peer); the others time drbdadm's wait-connect at boot, which Tandem does
    /// not have, or promote at boot. Of the handlers Tandem calls those of split brain,
    /// fence-peer, and its own before-snapshot / after-snapshot (`Handler`). Anything else is
    /// refused at `up`.
    static func checkStartupAndHandlers(resource: ConfigSections, common: ConfigSections?, name: String) throws {
        let startup = resource.startup + (common?.startup ?? [])
        if let o = startup.first(where: { $0.name != "wfc-timeout" }) {
            throw ConfigError(nil, "\(name): startup option \(o.name) is not supported: only wfc-timeout is honoured (how long restore waits for the peer)")
        }
        if let o = (resource.handlers + (common?.handlers ?? [])).first(where: { Handler(rawValue: $0.name) == nil }) {
            let called = Handler.allCases.map(\.rawValue).joined(separator: ", ")
            throw ConfigError(nil, "\(name): handler \(o.name) is not supported: Tandem calls only \(called)")
        }
    }

    /// The first option the resource asks for that Tandem does not honour, as a one-line
    /// error naming it, the value and why (and how many more there are).
    static func check(_ value: (_ name: String, _ section: String) -> String?, resource: String) throws {
        var refused: [String] = []
        for rule in rules {
            let v = value(rule.name, rule.section)
            if !rule.honoured.contains(v) { refused.append("\(rule.name) \(v ?? "") is not supported: \(rule.reason)") }
        }
        // With disk-flushes off the secondary drains (DRBD's drain ordering); with both off
        // DRBD would order nothing, which Tandem does not do.
        if value("disk-flushes", "disk") == "no" && value("disk-drain", "disk") == "no" {
            refused.append("disk-drain no with disk-flushes no is not supported: write ordering is flush or drain")
        }
        // As drbdsetup: congestion policies are for protocol A only.
        if let oc = value("on-congestion", "net"), oc != "block", (value("protocol", "net") ?? "C").uppercased() != "A" {
            refused.append("on-congestion \(oc) is not supported with protocol \(value("protocol", "net") ?? "C"): it needs protocol A (as in DRBD)")
        }
        guard let first = refused.first else { return }
        let more = refused.count > 1 ? " (and \(refused.count - 1) more option\(refused.count > 2 ? "s" : ""))" : ""
        throw ConfigError(nil, "\(resource): \(first)\(more)")
    }
}
