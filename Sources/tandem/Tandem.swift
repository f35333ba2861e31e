import ArgumentParser
import Foundation

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
            Up.self, Down.self, Primary.self, Secondary.self, Connect.self, Disconnect.self, Resync.self, PauseSync.self,
            ResumeSync.self, Resize.self, Snapshot.self, Snapshots.self, AttachSnapshotVerb.self, Verify.self, Invalidate.self, Outdate.self, InvalidateRemote.self, Restore.self, Status.self, Events.self,
        ]
    )

    static func main() {
        let verbs = Set(configuration.subcommands.compactMap { $0.configuration.commandName })
        let args = GlobalOptions.reorder(Array(CommandLine.arguments.dropFirst()), verbs: verbs)
        do {
            var command = try parseAsRoot(args)
            try command.run()
        } catch let failure as VerbFailure {
            FileHandle.standardError.write(Data("tandem: \(failure.message)\n".utf8))
            Foundation.exit(1)
        } catch {
            exit(withError: error)
        }
    }
}
