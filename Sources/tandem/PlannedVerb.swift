import ArgumentParser

/// Verbs of the command-line contract that this build does not carry out yet. They are listed
/// in --help so operators see the whole surface, and each says plainly that it is not there.
enum PlannedVerb {
    static let all: [ParsableCommand.Type] = [
        Up.self, Down.self, Primary.self, Secondary.self, Connect.self, Disconnect.self, Status.self,
        Events.self, Invalidate.self, InvalidateRemote.self, Verify.self, Resync.self, Restore.self, Snapshot.self,
    ]

    static func refuse(_ verb: String) -> VerbFailure {
        VerbFailure("'\(verb)' is planned but not available in this build yet (replication arrives with issue #3)")
    }
}

private protocol Planned: ParsableCommand {}

struct Up: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "up", abstract: "(planned) Start the node daemon: attach, listen, connect, export.")
    @OptionGroup var globals: GlobalOptions
    @Argument var resource: String?
    func run() throws { throw PlannedVerb.refuse("up") }
}
struct Down: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "down", abstract: "(planned) Drain, mark meta-data clean, stop the daemon.")
    @OptionGroup var globals: GlobalOptions
    @Argument var resource: String?
    func run() throws { throw PlannedVerb.refuse("down") }
}
struct Primary: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "primary", abstract: "(planned) Become Primary; --force starts the initial full sync.")
    @OptionGroup var globals: GlobalOptions
    @Flag var force = false
    @Argument var resource: String?
    func run() throws { throw PlannedVerb.refuse("primary") }
}
struct Secondary: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "secondary", abstract: "(planned) Become Secondary.")
    @OptionGroup var globals: GlobalOptions
    @Argument var resource: String?
    func run() throws { throw PlannedVerb.refuse("secondary") }
}
struct Connect: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "connect", abstract: "(planned) Connect to the peer.")
    @OptionGroup var globals: GlobalOptions
    @Argument var resource: String?
    func run() throws { throw PlannedVerb.refuse("connect") }
}
struct Disconnect: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "disconnect", abstract: "(planned) Drop the connection to the peer (StandAlone).")
    @OptionGroup var globals: GlobalOptions
    @Argument var resource: String?
    func run() throws { throw PlannedVerb.refuse("disconnect") }
}
struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "(planned) Show role, disk and connection states; --json for machines.")
    @OptionGroup var globals: GlobalOptions
    @Flag var json = false
    @Argument var resource: String?
    func run() throws { throw PlannedVerb.refuse("status") }
}
struct Events: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "events", abstract: "(planned) Stream state changes, one JSON object a line.")
    @OptionGroup var globals: GlobalOptions
    @Argument var resource: String?
    func run() throws { throw PlannedVerb.refuse("events") }
}
struct Invalidate: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "invalidate", abstract: "(planned) Mark the local data out of sync; resync from the peer.")
    @OptionGroup var globals: GlobalOptions
    @Argument var resource: String?
    func run() throws { throw PlannedVerb.refuse("invalidate") }
}
struct InvalidateRemote: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "invalidate-remote", abstract: "(planned) Mark the peer's data out of sync; resync to it.")
    @OptionGroup var globals: GlobalOptions
    @Argument var resource: String?
    func run() throws { throw PlannedVerb.refuse("invalidate-remote") }
}
struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "verify", abstract: "(planned) Online verify against the peer.")
    @OptionGroup var globals: GlobalOptions
    @Argument var resource: String?
    func run() throws { throw PlannedVerb.refuse("verify") }
}
struct Resync: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "resync", abstract: "(planned) Send the blocks marked dirty while disconnected.")
    @OptionGroup var globals: GlobalOptions
    @Argument var resource: String?
    func run() throws { throw PlannedVerb.refuse("resync") }
}
struct Restore: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "restore", abstract: "(planned) Pull the data back from the peer.")
    @OptionGroup var globals: GlobalOptions
    @Argument var resource: String?
    func run() throws { throw PlannedVerb.refuse("restore") }
}
struct Snapshot: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "snapshot", abstract: "(planned) Take an EBS snapshot at a consistent point.")
    @OptionGroup var globals: GlobalOptions
    @Argument var resource: String?
    func run() throws { throw PlannedVerb.refuse("snapshot") }
}
