/// Prints a resource in DRBD syntax the way `drbdadm-84 dump RES` does (same order, same
/// column layout, same quoting), so the two can be compared line by line.
public enum ConfigDumper {
    /// Quotes a value unless it is only ASCII letters, digits and `-_./`, as drbdadm does (a
    /// `;`, `{` or `#` left bare would end the value when the dump is read again); inside the
    /// quotes `"` and `\` are escaped.
    public static func escape(_ s: String) -> String {
        if s.isEmpty { return "\"\"" }
        let plain = s.unicodeScalars.allSatisfy { c in
            ("a"..."z").contains(c) || ("A"..."Z").contains(c) || ("0"..."9").contains(c) || c == "-" || c == "_" || c == "." || c == "/"
        }
        guard !plain else { return s }
        var out = "\""
        for c in s {
            if c == "\"" || c == "\\" { out.append("\\") }
            out.append(c)
        }
        return out + "\""
    }

    /// Options whose values are secrets: `dump` prints them as `<hidden>` unless asked.
    public static let secretOptions: Set<String> = ["shared-secret"]

    private struct Printer {
        var out = ""
        var indent = 0
        var showSecrets = false
        var pad: String { String(repeating: " ", count: 4 * indent) }

        mutating func line(_ s: String) { out += pad + s + "\n" }

        /// drbdadm's printA: name left-aligned in (24 - 4 * indent) columns, value right-aligned in 3.
        mutating func pair(_ name: String, _ value: String) {
            let width = 24 - 4 * indent
            let n = name.count < width ? name + String(repeating: " ", count: width - name.count) : name
            let v = value.count < 3 ? String(repeating: " ", count: 3 - value.count) + value : value
            out += pad + n + " " + v + ";\n"
        }

        mutating func section(_ name: String, _ options: [ConfigOption]) {
            guard !options.isEmpty else { return }
            line("\(name) {")
            indent += 1
            for o in options {
                if o.value != nil, !showSecrets && ConfigDumper.secretOptions.contains(o.name) {
                    pair(o.name, "<hidden>")
                } else if let v = o.value {
                    // drbdadm prints become-primary-on's host list unquoted.
                    pair(o.name, name == "startup" && o.name == "become-primary-on" ? v : ConfigDumper.escape(v))
                } else {
                    line("\(o.name);")
                }
            }
            indent -= 1
            line("}")
        }

        mutating func volume(_ v: ConfigVolume) {
            if !v.implicit { line("volume \(v.number) {"); indent += 1 }
            section("disk", v.diskOptions)
            var dev = pad + "device" + String(repeating: " ", count: max(0, 19 - 4 * indent))
            if let d = v.device {
                if let p = d.path { dev += ConfigDumper.escape(p) + (d.minor == nil ? ";" : " ") }
                if let m = d.minor { dev += "minor \(m);" }
            }
            out += dev + "\n"
            if let disk = v.disk { pair("disk", ConfigDumper.escape(disk)) }
            switch v.metaDisk {
            case .internal: pair("meta-disk", "internal")
            case .external(let p, nil): out += pad + padded("meta-disk", 16) + " " + ConfigDumper.escape(p) + ";\n"
            case .external(let p, let i?): out += pad + padded("meta-disk", 16) + " " + ConfigDumper.escape(p) + " [\(i)];\n"
            case nil: break
            }
            if !v.implicit { indent -= 1; line("}") }
        }

        func padded(_ s: String, _ w: Int) -> String { s.count < w ? s + String(repeating: " ", count: w - s.count) : s }

        mutating func host(_ h: ConfigHost) {
            if h.floating, let a = h.address {
                line(a.family == "ipv6" ? "floating ipv6 [\(a.host)]:\(a.port) {" : "floating \(a.family) \(a.host):\(a.port) {")
            } else {
                line("on \(h.names.joined(separator: " ")) {")
            }
            indent += 1
            section("options", h.options)
            for v in h.volumes { volume(v) }
            section("ebs", h.ebs)
            if !h.floating, let a = h.address {
                let addr = a.family == "ipv6" ? "[\(a.host)]:\(a.port)" : "\(a.host):\(a.port)"
                out += pad + padded("address", 16) + " \(a.family) \(addr);\n"
            }
            indent -= 1
            line("}")
        }
    }

    /// The resource as `drbdadm-84 dump RES` prints it when run on `node`; with `showSecrets`
    /// false the shared secret is printed as `<hidden>` (drbdadm prints it).
    public static func dump(_ r: ResourceConfig, node: String, showSecrets: Bool = true) -> String {
        var p = Printer()
        p.showSecrets = showSecrets
        p.line("# resource \(escape(r.name)) on \(node): not ignored, not stacked")
        p.line("# defined at \(r.location.file):\(r.location.line)")
        p.line("resource \(escape(r.name)) {")
        p.indent = 1
        for h in r.hosts { p.host(h) }
        p.section("options", r.sections.options)
        p.section("net", r.sections.net)
        p.section("disk", r.sections.disk)
        p.section("startup", r.sections.startup)
        p.section("handlers", r.sections.handlers)
        p.indent = 0
        p.out += "}\n\n"
        return p.out
    }
}
