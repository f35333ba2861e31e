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
            // Not a global option and not a verb: keep the verb's place, so the parser names
            // this word (an unknown verb) rather than the global options before it.
            return [a] + globals + args[(i + 1)...]
        }
        return args
    }
}

/// The command's exit codes: drbdadm's and drbdsetup's where they have one (a script or a
/// cluster agent written for DRBD reads them the same), LSB's 3 for "not running".
enum ExitCode: Int32 {
    case success = 0
    /// Anything else that failed (a config error, a disk that cannot be opened, a failed call).
    case failed = 1
    /// No daemon runs for the resource (LSB status "not running", which cluster agents read).
    case notRunning = 3
    /// The daemon did not answer in time (stopped or wedged).
    case timedOut = 5
    /// A state change was refused and nothing changed (drbdsetup's 11, e.g. device held open).
    case refused = 11
    /// `primary` cannot succeed by retrying: no UpToDate data here (drbdsetup's 17).
    case cannotPromote = 17
    /// Bad command line, or a command and a daemon that do not understand each other
    /// (drbdsetup's 20).
    case usage = 20

    init(_ kind: ControlError.Kind) {
        self = switch kind {
        case .refused: .refused
        case .cannotPromote: .cannotPromote
        case .failed: .failed
        case .badRequest, .versionMismatch: .usage
        }
    }
}

/// Failures a verb reports as one line and a non-zero exit.
struct VerbFailure: Error, CustomStringConvertible {
    let message: String
    let exit: ExitCode
    init(_ message: String, exit: ExitCode = .failed) {
        self.message = message
        self.exit = exit
    }
    var description: String { message }
}
