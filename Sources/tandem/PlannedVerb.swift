import ArgumentParser

/// Verbs of the command-line contract that this build does not carry out yet. They are listed
/// in --help so operators see the whole surface, and each says plainly that it is not there.
enum PlannedVerb {
    static let all: [ParsableCommand.Type] = [
        Up.self, Down.self, Primary.self, Secondary.self, Connect.self, Disconnect.self, Status.self,
        Events.self, Invalidate.self, InvalidateRemote.self, Verify.self, Resync.self, Restore.self, Snapshot.self,
    ]
}

/// What every planned verb takes: the global options and an optional resource.
struct PlannedArguments: ParsableArguments {
    @OptionGroup var globals: GlobalOptions
    @Argument(help: "Resource name.") var resource: String?
}

/// A verb that refuses, naming itself, until it is built.
protocol PlannedCommand: ParsableCommand {}

extension PlannedCommand {
    func run() throws {
        let verb = Self.configuration.commandName ?? "this verb"
        throw VerbFailure("'\(verb)' is planned but not available in this build yet (replication arrives with issue #3)")
    }
}

struct Up: PlannedCommand {
    static let configuration = CommandConfiguration(commandName: "up", abstract: "(planned) Start the node daemon: attach, listen, connect, export.")
    @OptionGroup var arguments: PlannedArguments
}

struct Down: PlannedCommand {
    static let configuration = CommandConfiguration(commandName: "down", abstract: "(planned) Drain, mark meta-data clean, stop the daemon.")
    @OptionGroup var arguments: PlannedArguments
}

struct Primary: PlannedCommand {
    static let configuration = CommandConfiguration(commandName: "primary", abstract: "(planned) Become Primary; --force starts the initial full sync.")
    @OptionGroup var arguments: PlannedArguments
    @Flag var force = false
}

struct Secondary: PlannedCommand {
    static let configuration = CommandConfiguration(commandName: "secondary", abstract: "(planned) Become Secondary.")
    @OptionGroup var arguments: PlannedArguments
}

struct Connect: PlannedCommand {
    static let configuration = CommandConfiguration(commandName: "connect", abstract: "(planned) Connect to the peer.")
    @OptionGroup var arguments: PlannedArguments
}

struct Disconnect: PlannedCommand {
    static let configuration = CommandConfiguration(commandName: "disconnect", abstract: "(planned) Drop the connection to the peer (StandAlone).")
    @OptionGroup var arguments: PlannedArguments
}

struct Status: PlannedCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "(planned) Show role, disk and connection states; --json for machines.")
    @OptionGroup var arguments: PlannedArguments
    @Flag var json = false
}

struct Events: PlannedCommand {
    static let configuration = CommandConfiguration(commandName: "events", abstract: "(planned) Stream state changes, one JSON object a line.")
    @OptionGroup var arguments: PlannedArguments
}

struct Invalidate: PlannedCommand {
    static let configuration = CommandConfiguration(commandName: "invalidate", abstract: "(planned) Mark the local data out of sync; resync from the peer.")
    @OptionGroup var arguments: PlannedArguments
}

struct InvalidateRemote: PlannedCommand {
    static let configuration = CommandConfiguration(commandName: "invalidate-remote", abstract: "(planned) Mark the peer's data out of sync; resync to it.")
    @OptionGroup var arguments: PlannedArguments
}

struct Verify: PlannedCommand {
    static let configuration = CommandConfiguration(commandName: "verify", abstract: "(planned) Online verify against the peer.")
    @OptionGroup var arguments: PlannedArguments
}

struct Resync: PlannedCommand {
    static let configuration = CommandConfiguration(commandName: "resync", abstract: "(planned) Send the blocks marked dirty while disconnected.")
    @OptionGroup var arguments: PlannedArguments
}

struct Restore: PlannedCommand {
    static let configuration = CommandConfiguration(commandName: "restore", abstract: "(planned) Pull the data back from the peer.")
    @OptionGroup var arguments: PlannedArguments
}

struct Snapshot: PlannedCommand {
    static let configuration = CommandConfiguration(commandName: "snapshot", abstract: "(planned) Take an EBS snapshot at a consistent point.")
    @OptionGroup var arguments: PlannedArguments
}
