import ArgumentParser
import Foundation
import TandemDaemon

/// The `tandem` command: DRBD's verbs for Tandem nodes.
@main
struct Tandem: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tandem",
        abstract: "Block-level replication compatible with DRBD 8.4.",
        discussion: """
            Usage: tandem [-c FILE] [--node NAME] VERB [RES]
            The resource file uses DRBD's syntax (default /etc/tandem/tandem.conf). Control
            sockets and pid files live in $TANDEM_RUN_DIR (default /run/tandem).
            """,
        subcommands: [
            CreateMD.self, DumpMD.self, GetGI.self, ShowGI.self, WipeMD.self, ApplyAL.self, Dump.self,
            Up.self, Down.self, Exporter.self, Role.self, CState.self, DState.self, WaitConnect.self, Events2.self, Adjust.self, Primary.self, Secondary.self, Connect.self, Disconnect.self, Resync.self, PauseSync.self,
            ResumeSync.self, Resize.self, Snapshot.self, ShResources.self, Snapshots.self, AttachSnapshotVerb.self, Verify.self, Invalidate.self, Outdate.self, InvalidateRemote.self, Restore.self, Status.self, Events.self,
        ]
    )

    static func main() {
        let verbs = Set(configuration.subcommands.compactMap { $0.configuration.commandName })
        var args = GlobalOptions.reorder(Array(CommandLine.arguments.dropFirst()), verbs: verbs)
        if args.first == "--version" || args.first == "-V" {
            print(TandemVersion.text)
            Foundation.exit(0)
        }
        if let first = args.first, !first.hasPrefix("-"), !verbs.contains(first), first != "help" {
            fail("unknown verb '\(first)'; `tandem --help` lists the verbs", .usage)
        }
        // `status` with no resource is every resource, as drbdadm's.
        if statusLike.contains(args.first ?? ""), AllResources.resourceIndex(args, valued: valuedOptions) == nil { args.append("all") }
        do {
            var command = try parseAsRoot(args)
            if let verb = command as? ResourceVerb, verb.resourceName == "all",
               let index = AllResources.resourceIndex(args, valued: valuedOptions) {
                Foundation.exit(AllResources.run(verb, args: args, index: index))
            }
            try command.run()
        } catch let failure as VerbFailure {
            fail(failure.message, failure.exit)
        } catch {
            let code = exitCode(for: error)
            // Help and --version (exit 0) print as the parser prints them.
            if code == .success { exit(withError: error) }
            // A usage error exits 20, as drbdadm's and drbdsetup's do.
            let usage = code == .validationFailure
            fail(fullMessage(for: error), usage ? .usage : .failed)
        }
    }

    /// Verbs whose resource may be left out (then: every resource).
    static let statusLike: Set = ["status", "role", "cstate", "dstate"]
    /// Options that take a value (so the value is not taken for the resource).
    static let valuedOptions: Set = ["-c", "--config", "--node", "--start", "--restore-archive", "--listen", "--wfc-timeout"]

    static func fail(_ message: String, _ code: ExitCode) -> Never {
        let text = message.hasPrefix("Error: ") ? String(message.dropFirst(7)) : message
        FileHandle.standardError.write(Data("tandem: \(text)\n".utf8))
        Foundation.exit(code.rawValue)
    }
}
