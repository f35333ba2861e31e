/// What kind of value an option takes, and which values are valid.
public enum OptionKind: Equatable, Sendable {
    /// A number, optionally with a K/M/G suffix; `unitPrefix` is the unit the number counts in
    /// when written bare: "1" (plain), "k" (KiB), "s" (512-byte sectors), "M", "G".
    case numeric(min: Int64, max: Int64, unitPrefix: String)
    case choice([String])
    /// yes/no; written alone it means yes, and `no-NAME` means `NAME no`.
    case boolean
    /// Written alone (`wait-after-sb;`); drbdadm prints it as `yes`.
    case flag
    case string
    /// One or more host names (become-primary-on).
    case names
}

/// One option a section accepts.
public struct OptionSpec: Equatable, Sendable {
    public var name: String
    public var kind: OptionKind
    public var defaultValue: String?
    /// True for options Tandem adds to DRBD's set (documented in README.md).
    public var tandemExtension: Bool = false
}

/// The options DRBD 8.4 accepts in each section of a resource file (from drbdsetup-84's own
/// descriptions, see OptionCatalog+Generated.swift), plus the drbdadm-only `startup` and
/// `handlers` sections, plus Tandem's additions.
public enum OptionCatalog {
    /// Tandem's own net options.
    static let tandemNet: [OptionSpec] = [
        OptionSpec(name: "compression", kind: .choice(["auto", "lz4", "off"]), defaultValue: "auto", tandemExtension: true),
        // TLS 1.3 on the link (DRBD 9.2 has `tls yes` too, with its keys in the kernel's keyring;
        // Tandem names files).
        OptionSpec(name: "tls", kind: .boolean, defaultValue: "no", tandemExtension: true),
        OptionSpec(name: "tls-certificate", kind: .string, defaultValue: nil, tandemExtension: true),
        OptionSpec(name: "tls-privkey", kind: .string, defaultValue: nil, tandemExtension: true),
        OptionSpec(name: "tls-ca", kind: .string, defaultValue: nil, tandemExtension: true),
        OptionSpec(name: "tls-peer-name", kind: .string, defaultValue: nil, tandemExtension: true),
        OptionSpec(name: "tls-peer-fingerprint", kind: .string, defaultValue: nil, tandemExtension: true),
    ]

    /// Tandem's own resource options.
    static let tandemOptions: [OptionSpec] = [
        // The daemon's log file when not under systemd (default RES.log in $TANDEM_LOG_DIR,
        // $TANDEM_RUN_DIR or /var/log/tandem).
        OptionSpec(name: "log-file", kind: .string, defaultValue: nil, tandemExtension: true),
    ]

    /// The `ebs { }` section of an `on` host (Tandem's EBS target; see EBSSettings).
    static let ebs: [OptionSpec] = [
        OptionSpec(name: "region", kind: .string, defaultValue: nil, tandemExtension: true),
        OptionSpec(name: "endpoint", kind: .string, defaultValue: nil, tandemExtension: true),
        OptionSpec(name: "imds-endpoint", kind: .string, defaultValue: nil, tandemExtension: true),
        OptionSpec(name: "kms-key-id", kind: .string, defaultValue: nil, tandemExtension: true),
        OptionSpec(name: "tags", kind: .string, defaultValue: nil, tandemExtension: true),
        OptionSpec(name: "device-root", kind: .string, defaultValue: "/dev", tandemExtension: true),
        OptionSpec(name: "sysfs-root", kind: .string, defaultValue: "/sys", tandemExtension: true),
        OptionSpec(name: "snapshot-hold-limit", kind: .string, defaultValue: "30", tandemExtension: true),
        OptionSpec(name: "snapshot-after-resync", kind: .choice(["yes", "no"]), defaultValue: "no", tandemExtension: true),
        OptionSpec(name: "snapshot-every", kind: .string, defaultValue: "0", tandemExtension: true),
        OptionSpec(name: "snapshot-keep-last", kind: .string, defaultValue: "0", tandemExtension: true),
        OptionSpec(name: "snapshot-keep-days", kind: .string, defaultValue: "0", tandemExtension: true),
        OptionSpec(name: "snapshot-archive-after-days", kind: .string, defaultValue: "0", tandemExtension: true),
    ]
    static let startup: [OptionSpec] = [
        OptionSpec(name: "wfc-timeout", kind: .numeric(min: 0, max: 300000, unitPrefix: "1"), defaultValue: "0"),
        OptionSpec(name: "degr-wfc-timeout", kind: .numeric(min: 0, max: 300000, unitPrefix: "1"), defaultValue: "0"),
        OptionSpec(name: "outdated-wfc-timeout", kind: .numeric(min: 0, max: 300000, unitPrefix: "1"), defaultValue: "0"),
        OptionSpec(name: "wait-after-sb", kind: .flag, defaultValue: nil),
        OptionSpec(name: "stacked-timeouts", kind: .flag, defaultValue: nil),
        OptionSpec(name: "become-primary-on", kind: .names, defaultValue: nil),
    ]

    /// Handler names drbdadm 8.4 knows; each takes a command string.
    static let handlerNames = [
        "pri-on-incon-degr", "pri-lost-after-sb", "pri-lost", "fence-peer", "unfence-peer",
        "local-io-error", "split-brain", "before-resync-target", "after-resync-target",
        "before-resync-source", "out-of-sync", "initial-split-brain",
    ]
    /// Tandem's own handlers (around a snapshot's mark on the Primary).
    static let tandemHandlerNames = ["before-snapshot", "after-snapshot"]

    static let global: [OptionSpec] = [
        OptionSpec(name: "usage-count", kind: .choice(["yes", "no", "ask"]), defaultValue: nil),
        OptionSpec(name: "minor-count", kind: .numeric(min: 1, max: 1048576, unitPrefix: "1"), defaultValue: nil),
        OptionSpec(name: "dialog-refresh", kind: .numeric(min: 0, max: 600, unitPrefix: "1"), defaultValue: nil),
        OptionSpec(name: "disable-ip-verification", kind: .flag, defaultValue: nil),
        OptionSpec(name: "udev-always-use-vnr", kind: .flag, defaultValue: nil),
        OptionSpec(name: "cmd-timeout-short", kind: .numeric(min: 0, max: 1000000, unitPrefix: "1"), defaultValue: nil),
        OptionSpec(name: "cmd-timeout-medium", kind: .numeric(min: 0, max: 1000000, unitPrefix: "1"), defaultValue: nil),
        OptionSpec(name: "cmd-timeout-long", kind: .numeric(min: 0, max: 1000000, unitPrefix: "1"), defaultValue: nil),
    ]

    /// The options of a section: "net", "disk", "options", "startup", "global".
    public static func specs(for section: String) -> [OptionSpec] {
        switch section {
        case "net": return generated_net + tandemNet
        case "disk": return generated_disk
        case "options": return generated_options + tandemOptions
        case "startup": return startup
        case "ebs": return ebs
        case "global": return global
        case "handlers":
            return handlerNames.map { OptionSpec(name: $0, kind: .string, defaultValue: nil) }
                + tandemHandlerNames.map { OptionSpec(name: $0, kind: .string, defaultValue: nil, tandemExtension: true) }
        default: return []
        }
    }

    /// The spec of one option, if the section knows it.
    public static func spec(_ name: String, in section: String) -> OptionSpec? {
        specs(for: section).first { $0.name == name }
    }

    /// The number an option value stands for, in the option's own unit, or nil if it is not a
    /// number. `10M` for a KiB option is 10240; a bare `100` is 100.
    public static func numericValue(_ text: String, unitPrefix: String) -> Int64? {
        var digits = text
        var multiplier: Int64 = 1
        if let last = text.last, !last.isNumber {
            digits = String(text.dropLast())
            switch last {
            case "k", "K": multiplier = 1 << 10
            case "m", "M": multiplier = 1 << 20
            case "g", "G": multiplier = 1 << 30
            case "s", "S": multiplier = 512
            default: return nil
            }
        }
        guard !digits.isEmpty, let n = Int64(digits) else { return nil }
        if multiplier == 1 { return n }
        let base: Int64
        switch unitPrefix {
        case "k": base = 1 << 10
        case "s": base = 512
        case "M": base = 1 << 20
        case "G": base = 1 << 30
        default: base = 1
        }
        let (bytes, overflow) = n.multipliedReportingOverflow(by: multiplier)
        if overflow { return Int64.max }
        return bytes / base
    }
}
