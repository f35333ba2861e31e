import ArgumentParser
import Foundation
import TandemCodecs
import TandemDaemon

/// A verb that names one resource, so that `all` (drbdadm's) runs it for every resource of
/// this node.
protocol ResourceVerb {
    var resourceName: String { get }
    var globalOptions: GlobalOptions { get }
}

/// drbdadm's `all`: the verb runs once for each resource this node has a part in, in the
/// file's order; each failure is reported with its resource and the others still run; the exit
/// code is the first failure's.
enum AllResources {
    /// This node's resources in the resource file.
    static func names(_ globals: GlobalOptions) throws -> [String] {
        let config: DRBDConfig
        do { config = try ConfigLoader.load(path: globals.config) } catch { throw VerbFailure("\(error)") }
        let node = globals.nodeName
        let names = config.resources.filter { $0.host(named: node) != nil }.map(\.name)
        guard !names.isEmpty else { throw VerbFailure("no resources defined for this host (\(node)) in \(globals.config)") }
        return names
    }

    /// Runs `args` (whose resource is the word `all` at `index`) for each resource.
    static func run(_ verb: ResourceVerb, args: [String], index: Int) -> Int32 {
        let names: [String]
        do { names = try Self.names(verb.globalOptions) } catch let f as VerbFailure {
            FileHandle.standardError.write(Data("tandem: \(f.message)\n".utf8))
            return f.exit.rawValue
        } catch { return ExitCode.failed.rawValue }
        var first: Int32 = 0
        for name in names {
            var one = args
            one[index] = name
            let code: Int32
            do {
                var command = try Tandem.parseAsRoot(one)
                try command.run()
                code = 0
            } catch let f as VerbFailure {
                FileHandle.standardError.write(Data("tandem: \(f.message.hasPrefix("\(name):") ? f.message : "\(name): \(f.message)")\n".utf8))
                code = f.exit.rawValue
            } catch {
                FileHandle.standardError.write(Data("tandem: \(name): \(Tandem.fullMessage(for: error))\n".utf8))
                code = ExitCode.failed.rawValue
            }
            if first == 0 { first = code }
        }
        return first
    }

    /// Where the resource argument is in `args` (the verb first, globals after it): the last
    /// word that is not an option or an option's value; nil when there is none.
    static func resourceIndex(_ args: [String], valued: Set<String>) -> Int? {
        var i = 1, found: Int?
        while i < args.count {
            let a = args[i]
            if valued.contains(a) { i += 2; continue }
            if !a.hasPrefix("-") { found = i }
            i += 1
        }
        return found
    }
}

extension ResourceArguments {
    var resourceName: String { resource }
    var globalOptions: GlobalOptions { globals }
}

/// Verbs whose resource comes in ResourceArguments.
protocol HasResourceArguments: ResourceVerb { var arguments: ResourceArguments { get } }
extension HasResourceArguments {
    var resourceName: String { arguments.resource }
    var globalOptions: GlobalOptions { arguments.globals }
}

/// The meta-data verbs: their own globals and resource.
protocol HasGlobalsAndResource: ResourceVerb {
    var globals: GlobalOptions { get }
    var resource: String { get }
}
extension HasGlobalsAndResource {
    var resourceName: String { resource }
    var globalOptions: GlobalOptions { globals }
}

extension Up: HasResourceArguments {}
extension Down: HasResourceArguments {}
extension Primary: HasResourceArguments {}
extension Secondary: HasResourceArguments {}
extension Connect: HasResourceArguments {}
extension Disconnect: HasResourceArguments {}
extension Status: HasResourceArguments {}
extension Resync: HasResourceArguments {}
extension PauseSync: HasResourceArguments {}
extension ResumeSync: HasResourceArguments {}
extension Restore: HasResourceArguments {}
extension Resize: HasResourceArguments {}
extension Snapshot: HasResourceArguments {}
extension Verify: HasResourceArguments {}
extension Invalidate: HasResourceArguments {}
extension Outdate: HasResourceArguments {}
extension InvalidateRemote: HasResourceArguments {}
extension CreateMD: HasGlobalsAndResource {}
extension DumpMD: HasGlobalsAndResource {}
extension GetGI: HasGlobalsAndResource {}
extension ShowGI: HasGlobalsAndResource {}
extension WipeMD: HasGlobalsAndResource {}
extension ApplyAL: HasGlobalsAndResource {}
