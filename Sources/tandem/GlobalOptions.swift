import ArgumentParser
import TandemDaemon

/// Options every verb takes: `tandem [-c FILE] [--node NAME] VERB [RES]`.
struct GlobalOptions: ParsableArguments {
    @Option(name: [.customShort("c"), .customLong("config")], help: "Resource file (DRBD syntax).")
    var config: String = ConfigLoader.defaultPath

    @Option(name: .customLong("node"), help: "Act as this node (the `on NAME` section); default: the host name.")
    var node: String?

    var nodeName: String { NodeIdentity.resolve(node) }

    /// Moves global options written before the verb to after it, so both
    /// `tandem -c F create-md r0` and `tandem create-md -c F r0` parse.
    static func reorder(_ args: [String], verbs: Set<String>) -> [String] {
        var globals: [String] = []
        var i = 0
        while i < args.count {
            let a = args[i]
            if verbs.contains(a) { return [a] + globals + args[(i + 1)...] }
            if (a == "-c" || a == "--config" || a == "--node"), i + 1 < args.count {
                globals += [a, args[i + 1]]
                i += 2
                continue
            }
            if a.hasPrefix("--config=") || a.hasPrefix("--node=") { globals.append(a); i += 1; continue }
            return args
        }
        return args
    }
}

/// Failures a verb reports as one line and a non-zero exit.
struct VerbFailure: Error, CustomStringConvertible {
    let message: String
    init(_ message: String) { self.message = message }
    var description: String { message }
}
