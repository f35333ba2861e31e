import Foundation
import TandemCodecs

/// Reads a resource file from disk, following `include` globs relative to the including file,
/// and finds the part of it that concerns this node.
public enum ConfigLoader {
    /// Default configuration file.
    public static let defaultPath = "/etc/tandem/tandem.conf"

    /// Parses the file at `path` with its includes.
    public static func load(path: String) throws -> DRBDConfig {
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw ConfigError(nil, "\(path): cannot read configuration file")
        }
        return try ConfigParser.parse(text: text, file: path) { pattern, from in
            let base = (from as NSString).deletingLastPathComponent
            let full = pattern.hasPrefix("/") ? pattern : (base as NSString).appendingPathComponent(pattern)
            return try expand(full).map { p in
                guard let t = try? String(contentsOfFile: p, encoding: .utf8) else {
                    throw ConfigError(nil, "\(p): cannot read included file")
                }
                return (p, t)
            }
        }
    }

    /// Glob expansion, sorted; a pattern without wildcards must name an existing file.
    static func expand(_ pattern: String) throws -> [String] {
        var g = glob_t()
        defer { globfree(&g) }
        let rc = glob(pattern, 0, nil, &g)
        if rc == GLOB_NOMATCH {
            if pattern.contains("*") || pattern.contains("?") || pattern.contains("[") { return [] }
            throw ConfigError(nil, "\(pattern): no such file")
        }
        guard rc == 0 else { throw ConfigError(nil, "\(pattern): glob failed") }
        var out: [String] = []
        for i in 0..<Int(g.gl_pathc) { if let p = g.gl_pathv[i] { out.append(String(cString: p)) } }
        return out.sorted()
    }
}

/// The node this process acts as: `--node`, else the host name (as drbdadm matches `on HOST`).
public enum NodeIdentity {
    public static func resolve(_ explicit: String?) -> String {
        if let explicit, !explicit.isEmpty { return explicit }
        var buf = [CChar](repeating: 0, count: 256)
        gethostname(&buf, buf.count)
        let full = String(cString: buf)
        return full
    }
}

/// Where control sockets and pid files live: `$TANDEM_RUN_DIR`, default /run/tandem.
public enum RuntimePaths {
    public static var runDirectory: String {
        ProcessInfo.processInfo.environment["TANDEM_RUN_DIR"].flatMap { $0.isEmpty ? nil : $0 } ?? "/run/tandem"
    }
}

/// The parts of a resource that one node uses: its own volume(s) and its peers.
public struct LocalResource {
    public let config: DRBDConfig
    public let resource: ResourceConfig
    public let node: String
    public let host: ConfigHost

    /// Finds resource `name` for `node`, with drbdadm's error when the node has no part in it.
    /// `opensDisks`: the caller will open or replicate the volumes, so more than one is
    /// refused (`dump` only prints them).
    public init(config: DRBDConfig, name: String, node: String, opensDisks: Bool = true) throws {
        guard let r = config.resource(name), let h = r.host(named: node) else {
            if let r = config.resource(name), r.hosts.contains(where: \.floating) {
                throw ConfigError(r.hosts.first(where: \.floating)?.location,
                                  "'\(name)' has floating sections, which drbdadm matches by this host's addresses; Tandem does not: write `on \(node) { ... }` instead")
            }
            throw ConfigError(nil, "'\(name)' not defined in your config (for this host \(node))")
        }
        // One volume a resource until consistency groups work: a second volume would pass
        // unreplicated with no word, so it is refused, named, on every verb that opens a disk.
        for host in opensDisks ? [h] + r.peers(of: node) : [] {
            let who = host.names.first.map { "on \($0)" } ?? "floating"
            if let extra = host.volumes.first(where: { $0.number != 0 }) {
                let disk = extra.disk.map { " (disk \($0))" } ?? ""
                let why = host.volumes.count > 1
                    ? "Tandem replicates one volume per resource for now (volume 0); put volume \(extra.number) in a resource of its own"
                    : "Tandem replicates volume 0 only for now; number the resource's volume 0"
                throw ConfigError(extra.location, "resource \(name), \(who): volume \(extra.number)\(disk) is refused: \(why)")
            }
        }
        self.config = config
        self.resource = r
        self.node = node
        self.host = h
    }

    /// The single volume Tandem supports per resource today.
    public var volume: ConfigVolume { host.volumes[0] }

    /// The backing disk path.
    public var diskPath: String { volume.disk ?? "" }
}
