/// Parses DRBD 8.4 resource files (drbdadm-84's grammar) into a `DRBDConfig`, checking option
/// names, values and ranges as drbdadm does and applying its canonical forms, so a file
/// drbdadm accepts means the same here and a file it refuses is refused with file:line:column.
///
/// Reading included files is I/O, which codecs do not do: the caller passes a loader that
/// expands an include pattern (relative to the including file) into files and their text.
public struct ConfigParser {
    /// Four decimal numbers 0..255 joined by dots.
    static func isIPv4<S: StringProtocol>(_ h: S) -> Bool {
        let parts = h.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4 && parts.allSatisfy { p in
            !p.isEmpty && p.count <= 3 && p.allSatisfy { $0.isASCII && $0.isNumber } && Int(p)! <= 255
        }
    }

    /// Groups of up to four hex digits joined by colons, at most one `::`, optionally ending
    /// in an IPv4 address.
    static func isIPv6<S: StringProtocol>(_ h: S) -> Bool {
        var text = String(h)
        var groupsAllowed = 8
        if let lastColon = text.lastIndex(of: ":"), text[text.index(after: lastColon)...].contains(".") {
            guard isIPv4(text[text.index(after: lastColon)...]) else { return false }
            text = String(text[...lastColon]) + "0"
            groupsAllowed = 7
        }
        let chars = Array(text)
        let doubleColons = chars.indices.dropLast().filter { chars[$0] == ":" && chars[$0 + 1] == ":" }.count
        guard text.contains(":"), doubleColons <= 1, !text.contains(":::") else { return false }
        let groups = text.split(separator: ":", omittingEmptySubsequences: true)
        let compressed = doubleColons == 1
        guard groups.allSatisfy({ g in g.count <= 4 && g.allSatisfy(\.isHexDigit) }) else { return false }
        return compressed ? groups.count < groupsAllowed : groups.count == groupsAllowed
    }

    /// Expands `include PATTERN;` seen in `fromFile` to the files it names, with their text.
    public typealias IncludeLoader = (_ pattern: String, _ fromFile: String) throws -> [(path: String, text: String)]

    /// Parses `text` (the contents of `file`).
    public static func parse(text: String, file: String, include: IncludeLoader? = nil) throws(ConfigError) -> DRBDConfig {
        var state = State(include: include)
        try state.parseFile(text: text, file: file, depth: 0)
        return state.config
    }

    private struct State {
        var config = DRBDConfig()
        let include: IncludeLoader?

        mutating func parseFile(text: String, file: String, depth: Int) throws(ConfigError) {
            guard depth < 16 else { throw ConfigError(nil, "\(file): includes nested too deeply (a cycle?)") }
            config.files.append(file)
            var lexer = ConfigLexer(text: text, file: file)
            var stream = TokenStream(tokens: try lexer.tokenize())
            while true {
                let t = stream.peek
                switch t.kind {
                case .end: return
                case .word("global"):
                    stream.skip()
                    config.global += try parseSection("global", &stream)
                case .word("common"):
                    stream.skip()
                    guard config.common == nil else { throw ConfigError(t.location, "a second 'common' section") }
                    config.common = try parseCommon(&stream)
                case .word("resource"):
                    stream.skip()
                    let r = try parseResource(&stream, at: t.location)
                    if config.resources.contains(where: { $0.name == r.name }) {
                        throw ConfigError(t.location, "resource '\(r.name)' defined twice")
                    }
                    config.resources.append(r)
                case .word("include"):
                    stream.skip()
                    let pattern = try stream.value("an include pattern")
                    try stream.expect(.semicolon, "';'")
                    guard let include else { throw ConfigError(t.location, "include is not available here") }
                    let files: [(path: String, text: String)]
                    do { files = try include(pattern, file) } catch { throw ConfigError(t.location, "include \"\(pattern)\": \(error)") }
                    for f in files { try parseFile(text: f.text, file: f.path, depth: depth + 1) }
                case .word("skip"):
                    stream.skip()
                    try stream.skipBlock()
                default:
                    throw ConfigError(t.location, "expected 'global', 'common', 'resource', 'include' or 'skip', got \(t.shown)")
                }
            }
        }

        func parseCommon(_ s: inout TokenStream) throws(ConfigError) -> ConfigSections {
            try s.expect(.openBrace, "'{'")
            var sections = ConfigSections()
            var seen = Set<String>()
            while true {
                let t = s.next()
                switch t.kind {
                case .closeBrace: return sections
                case .word(let w) where ["options", "net", "disk", "startup", "handlers"].contains(w):
                    guard seen.insert(w).inserted else { throw ConfigError(t.location, "conflicting use of \(w) section in common") }
                    try append(&sections, w, try parseSection(w, &s))
                case .word("syncer"):
                    try applySyncer(&sections, &s)
                case .word("protocol"):
                    try appendProtocol(&sections, &s, t)
                default:
                    throw ConfigError(t.location, "expected 'options', 'net', 'disk', 'startup', 'handlers' or '}', got \(t.shown)")
                }
            }
        }

        func append(_ sections: inout ConfigSections, _ name: String, _ options: [ConfigOption]) throws(ConfigError) {
            switch name {
            case "options": sections.options += options
            case "net": sections.net += options
            case "disk": sections.disk += options
            case "startup": sections.startup += options
            case "handlers": sections.handlers += options
            default: break
            }
        }

        func appendProtocol(_ sections: inout ConfigSections, _ s: inout TokenStream, _ t: ConfigToken) throws(ConfigError) {
            let v = try s.value("a protocol (A, B or C)")
            try s.expect(.semicolon, "';'")
            guard ["A", "B", "C"].contains(v) else { throw ConfigError(t.location, "protocol must be A, B or C, not '\(v)'") }
            sections.net.append(ConfigOption(name: "protocol", value: v, location: t.location))
        }

        /// DRBD 8.3's `syncer` section: its options moved to disk, net and options in 8.4.
        func applySyncer(_ sections: inout ConfigSections, _ s: inout TokenStream) throws(ConfigError) {
            try s.expect(.openBrace, "'{'")
            let renames = ["rate": "resync-rate", "after": "resync-after"]
            while true {
                let t = s.next()
                if t.kind == .closeBrace { return }
                guard case .word(let raw) = t.kind else { throw ConfigError(t.location, "expected an option name or '}', got \(t.shown)") }
                let name = renames[raw] ?? raw
                let target = ["disk", "net", "options"].first { OptionCatalog.spec(name, in: $0) != nil }
                guard let target else { throw ConfigError(t.location, "unknown option '\(raw)' in syncer section") }
                let o = try parseOption(name: name, at: t.location, section: target, &s)
                try append(&sections, target, [o])
            }
        }

        /// `{ name value; ... }` of an option section.
        func parseSection(_ section: String, _ s: inout TokenStream) throws(ConfigError) -> [ConfigOption] {
            try s.expect(.openBrace, "'{'")
            var out: [ConfigOption] = []
            var primaryOn: ConfigOption?
            var stacked: ConfigOption?
            while true {
                let t = s.next()
                if t.kind == .closeBrace { break }
                guard case .word(let name) = t.kind else {
                    throw ConfigError(t.location, "expected an option name or '}' in \(section) section, got \(t.shown)")
                }
                let o = try parseOption(name: name, at: t.location, section: section, &s)
                if section == "startup" && o.name == "become-primary-on" { primaryOn = o; continue }
                if section == "startup" && o.name == "stacked-timeouts" { stacked = o; continue }
                out.append(o)
            }
            // drbdadm keeps these two apart and prints them last.
            if let stacked { out.append(stacked) }
            if let primaryOn { out.append(primaryOn) }
            return out
        }

        func parseOption(name raw: String, at loc: SourceLocation, section: String, _ s: inout TokenStream) throws(ConfigError) -> ConfigOption {
            var values = try s.valuesUntilSemicolon(after: raw)
            var name = raw
            var spec = OptionCatalog.spec(raw, in: section)
            if spec == nil, raw.hasPrefix("no-"), let base = OptionCatalog.spec(String(raw.dropFirst(3)), in: section),
               base.kind == .boolean {
                guard values.isEmpty else { throw ConfigError(loc, "'\(raw)' takes no value") }
                name = base.name
                spec = base
                values = ["no"]
            }
            guard let spec else {
                if section == "handlers" { throw ConfigError(loc, "unknown handler '\(raw)'") }
                throw ConfigError(loc, "unknown option '\(raw)' in \(section) section")
            }
            switch spec.kind {
            case .flag:
                // Written alone or with yes/no, as drbdadm takes it (and prints wait-after-sb as
                // `yes`, so a dump parses again).
                guard values.isEmpty || (values.count == 1 && ["yes", "no"].contains(values[0])) else {
                    throw ConfigError(loc, "'\(name)' takes yes, no or nothing, got '\(values.joined(separator: " "))'")
                }
                if values.first == "no" { return ConfigOption(name: name, value: "no", location: loc) }
                return ConfigOption(name: name, value: section == "startup" && name == "wait-after-sb" ? "yes" : nil, location: loc)
            case .boolean:
                if values.isEmpty { values = ["yes"] }
                guard values.count == 1, ["yes", "no"].contains(values[0]) else {
                    throw ConfigError(loc, "'\(name)' expects yes or no, got '\(values.joined(separator: " "))'")
                }
            case .names:
                guard !values.isEmpty else { throw ConfigError(loc, "'\(name)' needs at least one host name") }
                return ConfigOption(name: name, value: values.joined(separator: " "), location: loc)
            case .numeric(let lo, let hi, let unit):
                guard values.count == 1 else { throw ConfigError(loc, "'\(name)' expects one number") }
                guard let n = OptionCatalog.numericValue(values[0], unitPrefix: unit) else {
                    throw ConfigError(loc, "'\(name)' expects a number (optionally with K, M or G), got '\(values[0])'")
                }
                guard n >= lo && n <= hi else {
                    let u = unit == "1" ? "" : unit
                    throw ConfigError(loc, "\(name) \(values[0]) => \(n)\(u) out of range [\(lo)..\(hi)]\(u).")
                }
            case .choice(let allowed):
                // drbdadm's discard-node-NAME (discard-local on NAME, discard-remote on its peer).
                let nodeName = name == "after-sb-0pri" && values.count == 1 && values[0].hasPrefix("discard-node-")
                    && values[0].count > "discard-node-".count
                guard values.count == 1, allowed.contains(values[0]) || nodeName else {
                    throw ConfigError(loc, "'\(name)' must be one of \(allowed.joined(separator: ", ")); got '\(values.joined(separator: " "))'")
                }
            case .string:
                guard values.count == 1 else { throw ConfigError(loc, "'\(name)' expects one value (quote values with spaces)") }
            }
            return ConfigOption(name: name, value: values[0], location: loc)
        }

        func parseResource(_ s: inout TokenStream, at loc: SourceLocation) throws(ConfigError) -> ResourceConfig {
            let nameToken = s.next()
            // A name may be quoted, as drbdadm takes it (and as dump prints a name that needs it).
            let name: String
            switch nameToken.kind {
            case .word(let w): name = w
            case .string(let q) where !q.isEmpty: name = q
            default: throw ConfigError(nameToken.location, "expected a resource name, got \(nameToken.shown)")
            }
            try s.expect(.openBrace, "'{'")
            var sections = ConfigSections()
            var seen = Set<String>()
            var hosts: [ConfigHost] = []
            var defaults = ConfigVolume(number: 0, implicit: true, location: loc)
            var hasDefaults = false
            var volumes: [ConfigVolume] = []
            while true {
                let t = s.next()
                switch t.kind {
                case .closeBrace:
                    return try finishResource(name: name, loc: loc, sections: sections, hosts: hosts,
                                              defaults: hasDefaults ? defaults : nil, volumes: volumes)
                case .word("protocol"):
                    try appendProtocol(&sections, &s, t)
                case .word("syncer"):
                    try applySyncer(&sections, &s)
                case .word("disk") where s.peek.kind == .openBrace, .word("options"), .word("net"), .word("startup"), .word("handlers"):
                    guard case .word(let w) = t.kind else { break }
                    guard seen.insert(w).inserted else { throw ConfigError(t.location, "conflicting use of \(w) section '\(name):\(w)'") }
                    try append(&sections, w, try parseSection(w, &s))
                case .word("device"), .word("disk"), .word("meta-disk"), .word("flexible-meta-disk"):
                    hasDefaults = true
                    try parseVolumeStatement(t, &defaults, &s)
                case .word("volume"):
                    volumes.append(try parseVolume(&s, at: t.location))
                case .word("on"):
                    hosts.append(try parseHost(&s, at: t.location, floating: false))
                case .word("floating"):
                    hosts.append(try parseHost(&s, at: t.location, floating: true))
                case .word("stacked-on-top-of"), .word("proxy"):
                    throw ConfigError(t.location, "'\(t.shown)' sections are not supported by Tandem")
                default:
                    throw ConfigError(t.location, "expected 'on', 'volume', 'net', 'disk', 'options', 'startup', 'handlers', 'device', 'meta-disk' or '}' in resource '\(name)', got \(t.shown)")
                }
            }
        }

        func parseVolume(_ s: inout TokenStream, at loc: SourceLocation) throws(ConfigError) -> ConfigVolume {
            let n = try s.value("a volume number")
            guard let number = Int(n), number >= 0, number <= 65535 else { throw ConfigError(loc, "volume number must be 0..65535, not '\(n)'") }
            try s.expect(.openBrace, "'{'")
            var v = ConfigVolume(number: number, implicit: false, location: loc)
            while true {
                let t = s.next()
                if t.kind == .closeBrace { return v }
                if case .word("disk") = t.kind, s.peek.kind == .openBrace {
                    v.diskOptions += try parseSection("disk", &s)
                    continue
                }
                try parseVolumeStatement(t, &v, &s)
            }
        }

        /// `device ...;`, `disk PATH;`, `meta-disk ...;`, `flexible-meta-disk PATH;`
        func parseVolumeStatement(_ t: ConfigToken, _ v: inout ConfigVolume, _ s: inout TokenStream) throws(ConfigError) {
            let values = try s.valuesUntilSemicolon(after: nil)
            switch t.kind {
            case .word("device"):
                var d = ConfigDevice()
                var rest = values[...]
                if let first = rest.first, first != "minor" { d.path = first; rest = rest.dropFirst() }
                if rest.first == "minor" {
                    guard rest.count == 2, let m = Int(rest.last!), m >= 0, m <= 1048575 else {
                        throw ConfigError(t.location, "expected 'minor NUMBER' in device")
                    }
                    d.minor = m
                } else if !rest.isEmpty {
                    throw ConfigError(t.location, "unexpected '\(rest.joined(separator: " "))' in device")
                }
                // /dev/drbdN gives the minor: N is digits only (Int would take "-1" or "+1")
                // and in range, as `minor N` must be.
                if d.minor == nil, let p = d.path, p.hasPrefix("/dev/drbd") {
                    let n = p.dropFirst(9)
                    if !n.isEmpty, n.allSatisfy({ $0.isASCII && $0.isNumber }), let m = Int(n), m <= 1048575 { d.minor = m }
                }
                guard d.path != nil || d.minor != nil else { throw ConfigError(t.location, "device needs a path or 'minor N'") }
                if d.minor == nil && !d.isNBDURI && !d.isKernelNBD {
                    throw ConfigError(t.location, "cannot derive a minor number from '\(d.path!)'; write 'device \(d.path!) minor N;', an NBD URI or /dev/nbdN")
                }
                v.device = d
            case .word("disk"):
                guard values.count == 1 else { throw ConfigError(t.location, "disk expects one path") }
                v.disk = values[0]
            case .word("meta-disk"):
                guard let first = values.first else { throw ConfigError(t.location, "meta-disk expects 'internal' or a device") }
                if first == "internal" && values.count == 1 { v.metaDisk = .internal; break }
                var index: Int?
                if values.count == 2 {
                    let raw = values[1]
                    guard raw.hasPrefix("["), raw.hasSuffix("]"), let i = Int(raw.dropFirst().dropLast()) else {
                        throw ConfigError(t.location, "expected '[INDEX]' after the meta-disk device, got '\(raw)'")
                    }
                    index = i
                } else if values.count > 2 {
                    throw ConfigError(t.location, "meta-disk expects 'internal', a device, or a device and '[INDEX]'")
                }
                v.metaDisk = .external(path: first, index: index)
            case .word("flexible-meta-disk"):
                guard values.count == 1 else { throw ConfigError(t.location, "flexible-meta-disk expects one device") }
                v.metaDisk = values[0] == "internal" ? .internal : .external(path: values[0], index: nil)
            default:
                throw ConfigError(t.location, "expected 'device', 'disk', 'meta-disk' or '}', got \(t.shown)")
            }
        }

        func parseAddress(_ values: [String], at loc: SourceLocation) throws(ConfigError) -> ConfigAddress {
            var family = "ipv4"
            var rest = values[...]
            if let f = rest.first, ["ipv4", "ipv6", "ssocks", "sdp", "af_inet_sock"].contains(f) {
                family = f
                rest = rest.dropFirst()
            }
            guard ["ipv4", "ipv6"].contains(family) else { throw ConfigError(loc, "address family '\(family)' is not supported by Tandem (use ipv4 or ipv6)") }
            guard rest.count == 1, let text = rest.first else { throw ConfigError(loc, "expected 'address [ipv4|ipv6] HOST:PORT;'") }
            var host: Substring
            var portText: Substring
            if family == "ipv6" {
                guard text.hasPrefix("["), let close = text.firstIndex(of: "]"),
                      text[text.index(after: close)...].hasPrefix(":") else {
                    throw ConfigError(loc, "expected an IPv6 address as [ADDRESS]:PORT, got '\(text)'")
                }
                host = text[text.index(after: text.startIndex)..<close]
                portText = text[text.index(close, offsetBy: 2)...]
            } else {
                guard let colon = text.lastIndex(of: ":") else { throw ConfigError(loc, "expected HOST:PORT, got '\(text)'") }
                host = text[..<colon]
                portText = text[text.index(after: colon)...]
            }
            guard !host.isEmpty, let port = UInt16(portText), port > 0 else { throw ConfigError(loc, "invalid address '\(text)': expected HOST:PORT with a port of 1..65535") }
            // As drbdadm: an address, not a host name.
            guard family == "ipv4" ? ConfigParser.isIPv4(host) : ConfigParser.isIPv6(host) else {
                throw ConfigError(loc, "invalid address '\(text)': '\(host)' is not an \(family == "ipv4" ? "IPv4" : "IPv6") address")
            }
            return ConfigAddress(family: family, host: String(host), port: port)
        }

        func parseHost(_ s: inout TokenStream, at loc: SourceLocation, floating: Bool) throws(ConfigError) -> ConfigHost {
            var names: [String] = []
            var address: ConfigAddress?
            if floating {
                var values: [String] = []
                while case .word(let w) = s.peek.kind { values.append(w); s.skip() }
                address = try parseAddress(values, at: loc)
            } else {
                while case .word(let w) = s.peek.kind { names.append(w); s.skip() }
                guard !names.isEmpty else { throw ConfigError(s.peek.location, "expected a host name after 'on', got \(s.peek.shown)") }
            }
            try s.expect(.openBrace, "'{'")
            var implicit = ConfigVolume(number: 0, implicit: true, location: loc)
            var hasImplicit = false
            var volumes: [ConfigVolume] = []
            var options: [ConfigOption] = []
            var ebs: [ConfigOption] = []
            while true {
                let t = s.next()
                switch t.kind {
                case .closeBrace:
                    if hasImplicit { volumes.insert(implicit, at: 0) }
                    return ConfigHost(names: names, floating: floating, address: address, volumes: volumes, options: options, ebs: ebs, location: loc)
                case .word("address"):
                    guard !floating else { throw ConfigError(t.location, "a floating section takes its address in its header") }
                    var values: [String] = []
                    while case .word(let w) = s.peek.kind { values.append(w); s.skip() }
                    try s.expect(.semicolon, "';'")
                    address = try parseAddress(values, at: t.location)
                case .word("volume"):
                    volumes.append(try parseVolume(&s, at: t.location))
                case .word("options"):
                    options += try parseSection("options", &s)
                case .word("ebs") where s.peek.kind == .openBrace:
                    ebs += try parseSection("ebs", &s)
                case .word("node-id"):
                    // DRBD 9: accepted and ignored for now.
                    _ = try s.value("a node id")
                    try s.expect(.semicolon, "';'")
                default:
                    hasImplicit = true
                    try parseVolumeStatement(t, &implicit, &s)
                }
            }
        }

        func finishResource(name: String, loc: SourceLocation, sections: ConfigSections, hosts: [ConfigHost],
                            defaults: ConfigVolume?, volumes: [ConfigVolume]) throws(ConfigError) -> ResourceConfig {
            guard !hosts.isEmpty else { throw ConfigError(loc, "resource '\(name)' has no 'on' sections") }
            var out: [ConfigHost] = []
            for var h in hosts {
                func fill(_ v: inout ConfigVolume, from d: ConfigVolume) {
                    if v.device == nil { v.device = d.device }
                    if v.disk == nil { v.disk = d.disk }
                    if v.metaDisk == nil { v.metaDisk = d.metaDisk }
                    if v.diskOptions.isEmpty { v.diskOptions = d.diskOptions }
                }
                if let d = defaults {
                    if let i = h.volumes.firstIndex(where: { $0.number == 0 }) { fill(&h.volumes[i], from: d) }
                    else { var v = d; v.location = h.location; h.volumes.insert(v, at: 0) }
                }
                for rv in volumes {
                    if let i = h.volumes.firstIndex(where: { $0.number == rv.number }) {
                        fill(&h.volumes[i], from: rv)
                        h.volumes[i].implicit = false
                    } else { h.volumes.append(rv) }
                }
                h.volumes.sort { $0.number < $1.number }
                let who = h.floating ? "floating \(h.address!)" : "on \(h.names.joined(separator: " "))"
                guard !h.volumes.isEmpty else { throw ConfigError(h.location, "in resource \(name), \(who): no device, disk or meta-disk given") }
                for v in h.volumes {
                    guard v.device != nil else { throw ConfigError(v.location, "in resource \(name), \(who): device is missing") }
                    guard v.disk != nil else { throw ConfigError(v.location, "in resource \(name), \(who): disk is missing") }
                    guard v.metaDisk != nil else { throw ConfigError(v.location, "in resource \(name), \(who): meta-disk is missing") }
                }
                guard h.address != nil else { throw ConfigError(h.location, "in resource \(name), \(who): address is missing") }
                out.append(h)
            }
            return ResourceConfig(name: name, location: loc, hosts: out, sections: sections)
        }
    }
}

/// A cursor over tokens.
struct TokenStream {
    let tokens: [ConfigToken]
    var index = 0

    var peek: ConfigToken { tokens[index] }

    mutating func next() -> ConfigToken {
        let t = tokens[index]
        if index < tokens.count - 1 { index += 1 }
        return t
    }

    mutating func skip() { _ = next() }

    mutating func expect(_ kind: ConfigToken.Kind, _ what: String) throws(ConfigError) {
        let t = next()
        guard t.kind == kind else { throw ConfigError(t.location, "expected \(what), got \(t.shown)") }
    }

    mutating func value(_ what: String) throws(ConfigError) -> String {
        let t = next()
        switch t.kind {
        case .word(let w), .string(let w): return w
        default: throw ConfigError(t.location, "expected \(what), got \(t.shown)")
        }
    }

    /// The words and strings up to the next `;` (consumed); anything else is an error.
    mutating func valuesUntilSemicolon(after name: String?) throws(ConfigError) -> [String] {
        var values: [String] = []
        while true {
            let t = next()
            switch t.kind {
            case .semicolon: return values
            case .word(let w), .string(let w): values.append(w)
            default:
                let context = name.map { " after '\($0)'" } ?? ""
                throw ConfigError(t.location, "expected a value or ';'\(context), got \(t.shown)")
            }
        }
    }

    mutating func skipBlock() throws(ConfigError) {
        try expect(.openBrace, "'{'")
        var depth = 1
        while depth > 0 {
            let t = next()
            switch t.kind {
            case .openBrace: depth += 1
            case .closeBrace: depth -= 1
            case .end: throw ConfigError(t.location, "unexpected end of file inside a skip section")
            default: break
            }
        }
    }
}
