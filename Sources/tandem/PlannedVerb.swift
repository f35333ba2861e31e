import ArgumentParser

/// Verbs of the command-line contract that this build does not carry out yet. They are listed
/// in --help so operators see the whole surface, and each says plainly that it is not there.
enum PlannedVerb {
    static let all: [ParsableCommand.Type] = []
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
        throw VerbFailure("'\(verb)' is planned but not available in this build yet")
    }
}

