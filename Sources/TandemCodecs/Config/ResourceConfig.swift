/// One `name value;` line of a section, value as written (after drbdadm's canonical forms:
/// `no-disk-flushes` becomes `disk-flushes no`, a bare boolean becomes `yes`).
public struct ConfigOption: Equatable, Sendable {
    public var name: String
    public var value: String?
    public var location: SourceLocation
    public init(name: String, value: String?, location: SourceLocation) {
        self.name = name; self.value = value; self.location = location
    }
}

/// The option sections a resource or `common` may hold, each in the order written.
public struct ConfigSections: Equatable, Sendable {
    public var options: [ConfigOption] = []
    public var net: [ConfigOption] = []
    public var disk: [ConfigOption] = []
    public var startup: [ConfigOption] = []
    public var handlers: [ConfigOption] = []
    public init() {}

    /// The last value given for `name` in `section`.
    public func value(_ name: String, in section: String) -> String? {
        list(section).last { $0.name == name }?.value
    }

    func list(_ section: String) -> [ConfigOption] {
        switch section {
        case "options": return options
        case "net": return net
        case "disk": return disk
        case "startup": return startup
        case "handlers": return handlers
        default: return []
        }
    }
}

/// A network address of a host section: `address [ipv4|ipv6] HOST:PORT;`.
public struct ConfigAddress: Equatable, Sendable, CustomStringConvertible {
    public var family: String
    public var host: String
    public var port: UInt16
    public var description: String { family == "ipv6" ? "\(family) [\(host)]:\(port)" : "\(family) \(host):\(port)" }
}

/// Where a volume's meta-data lives.
public enum ConfigMetaDisk: Equatable, Sendable {
    case `internal`
    /// An external device; with an index, DRBD's old fixed 128 MiB slots, without, flexible.
    case external(path: String, index: Int?)
}

/// The `device` of a volume: DRBD's `/dev/drbdN` and/or `minor N`, or Tandem's NBD export URI.
public struct ConfigDevice: Equatable, Sendable {
    public var path: String?
    public var minor: Int?
    public init(path: String? = nil, minor: Int? = nil) { self.path = path; self.minor = minor }
    /// True when `path` is an NBD URI (`nbd://...`, `nbd+unix://...`): a Tandem addition.
    public var isNBDURI: Bool { path.map { $0.hasPrefix("nbd://") || $0.hasPrefix("nbd+unix://") || $0.hasPrefix("nbds://") } ?? false }
    /// True when `path` is a kernel NBD device (`/dev/nbdN`) the daemon attaches: a Tandem
    /// addition that, like a URI, needs no DRBD minor.
    public var isKernelNBD: Bool {
        guard let p = path, p.hasPrefix("/dev/nbd"), p.count > 8 else { return false }
        return p.dropFirst(8).allSatisfy(\.isNumber)
    }
}

/// One volume of a host: DRBD 8.4 resources may have several (`volume N { ... }`); a resource
/// without volume sections has one implicit volume 0.
public struct ConfigVolume: Equatable, Sendable {
    public var number: Int
    public var implicit: Bool
    public var device: ConfigDevice?
    public var disk: String?
    public var metaDisk: ConfigMetaDisk?
    public var diskOptions: [ConfigOption] = []
    public var location: SourceLocation
}

/// An `on HOST { ... }` or `floating ADDRESS { ... }` section.
public struct ConfigHost: Equatable, Sendable {
    /// Host names of an `on` section; empty for `floating`.
    public var names: [String]
    public var floating: Bool
    public var address: ConfigAddress?
    public var volumes: [ConfigVolume]
    public var options: [ConfigOption] = []
    /// `ebs { ... }`: the EBS target's settings for this host (a Tandem addition).
    public var ebs: [ConfigOption] = []
    public var location: SourceLocation
}

/// A `resource NAME { ... }` section.
public struct ResourceConfig: Equatable, Sendable {
    public var name: String
    public var location: SourceLocation
    public var hosts: [ConfigHost]
    public var sections: ConfigSections

    /// The host section for a node name, if any.
    public func host(named node: String) -> ConfigHost? {
        hosts.first { $0.names.contains(node) }
    }

    /// The other hosts (the peers) as seen from `node`.
    public func peers(of node: String) -> [ConfigHost] {
        hosts.filter { !$0.names.contains(node) }
    }
}

/// A whole configuration: global options, `common` and the resources, after includes.
public struct DRBDConfig: Equatable, Sendable {
    public var global: [ConfigOption] = []
    public var common: ConfigSections?
    public var resources: [ResourceConfig] = []
    /// Files read, in order.
    public var files: [String] = []

    /// A resource by name.
    public func resource(_ name: String) -> ResourceConfig? { resources.first { $0.name == name } }

    /// The value an option has for a resource: the resource's own, else `common`'s, else
    /// DRBD's default (nil when there is none).
    public func effectiveValue(_ name: String, in section: String, resource: ResourceConfig) -> String? {
        resource.sections.value(name, in: section) ?? common?.value(name, in: section)
            ?? OptionCatalog.spec(name, in: section)?.defaultValue
    }
}
