import ArgumentParser
import Foundation
import TandemDaemon

/// `verify RES [--wait] [--start SECTOR]`: online verify against the peer (verify-alg), as
/// drbdadm verify. Blocks that differ are marked out of sync (never resynced by the verify);
/// `resync` mends them. Without --start it starts where the last verify was cut short, else at
/// sector 0. Without --wait it returns once the verify runs.
struct Verify: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "verify", abstract: "Online verify against the peer (verify-alg); marks the blocks that differ.")
    @OptionGroup var arguments: ResourceArguments
    @Flag(help: "Return when the verify has ended; show its progress on a terminal.") var wait = false
    @Option(name: .customLong("start"), help: "First sector to verify (default: where the last verify stopped, else 0).") var startSector: UInt64?

    func run() throws {
        try arguments.client().request(ControlRequest(.verify, startSector: startSector))
        guard wait else { return }
        let s = try SyncProgress(arguments: arguments).waitUntilVerified()
        let found = s.verifyFoundKiB ?? 0
        let total = s.verifyTotalKiB ?? 0
        if found > 0 {
            // As a failed check: a script running `verify --wait` learns the disks differ.
            throw VerbFailure("\(arguments.resource): verify found \(found) KiB out of sync in \(total) KiB (see the log for the ranges); `tandem resync \(arguments.resource)` mends them")
        } else {
            print("\(arguments.resource): verify found no block out of sync in \(total) KiB")
        }
    }
}

/// `invalidate RES`: this node's data is not to be trusted; every block resyncs from the peer.
struct Invalidate: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "invalidate", abstract: "Mark every local block out of sync; resync them from the peer.")
    @OptionGroup var arguments: ResourceArguments
    func run() throws { try arguments.client().request(ControlRequest(.invalidate)) }
}

/// `outdate RES`: this disconnected Secondary's data is older than the Primary's (what a
/// fence-peer handler runs on the peer); an Outdated disk is not promoted without --force.
struct Outdate: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "outdate", abstract: "Mark this disconnected Secondary's disk Outdated.")
    @OptionGroup var arguments: ResourceArguments
    func run() throws { try arguments.client().request(ControlRequest(.outdate)) }
}

/// `invalidate-remote RES`: the peer's data is not to be trusted; every block resyncs to it.
struct InvalidateRemote: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "invalidate-remote", abstract: "Mark every block of the peer out of sync; resync them to it.")
    @OptionGroup var arguments: ResourceArguments
    func run() throws { try arguments.client().request(ControlRequest(.invalidateRemote)) }
}
