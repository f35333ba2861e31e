import Foundation
import NIOCore
import TandemEngine

/// Runs the resource file's handlers (DRBD's helpers: split-brain, initial-split-brain,
/// pri-lost-after-sb) as drbdadm runs them: `/bin/sh -c COMMAND` with the DRBD_* variables a
/// handler script reads. The daemon never waits for one: the exit status is logged when it
/// ends. At most `limit` run at once; a call beyond that is logged and not run. Used on the
/// daemon's loop only (the exit status hops back to it).
final class HandlerRunner: @unchecked Sendable {
    let commands: [Handler: String]
    let environment: [String: String]
    let loop: EventLoop
    let log: (String) -> Void
    /// The exit status of every handler that ran or could not (-1), on the loop.
    let done: (Handler, Int32) -> Void
    private var running = 0
    static let limit = 4

    init(commands: [Handler: String], environment: [String: String], loop: EventLoop, log: @escaping (String) -> Void,
         done: @escaping (Handler, Int32) -> Void) {
        self.commands = commands; self.environment = environment; self.loop = loop; self.log = log; self.done = done
    }

    /// On the loop, from the engine's actions: a result is reported later, never from inside.
    func run(_ handler: Handler) {
        loop.preconditionInEventLoop()
        guard let command = commands[handler] else { notRun(handler); return }
        guard running < Self.limit else {
            log("handler \(handler.rawValue) not run: \(Self.limit) handlers are still running")
            notRun(handler)
            return
        }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/sh")
        p.arguments = ["-c", command]
        p.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        p.standardInput = FileHandle.nullDevice
        let loop = self.loop
        p.terminationHandler = { proc in
            let status = proc.terminationStatus
            loop.execute {
                self.running -= 1
                self.log("handler \(handler.rawValue) (\(command)) exited with \(status)")
                self.done(handler, status)
            }
        }
        do {
            try p.run()
            running += 1
            log("calling handler \(handler.rawValue): \(command)")
        } catch {
            log("handler \(handler.rawValue) (\(command)) could not start: \(error)")
            notRun(handler)
        }
    }

    private func notRun(_ handler: Handler) {
        loop.execute { self.done(handler, -1) }
    }
}
