import Foundation
import Testing
@testable import TandemEngine

/// Seeded simulation runs of two engines (see ReplicationSimulation). TANDEM_SIM_RUNS sets the
/// number of runs (default 2000), TANDEM_SIM_SEED replays one seed.
@Suite struct ReplicationSimulationTests {
    @Test func seededRunsKeepTheInvariants() throws {
        let env = ProcessInfo.processInfo.environment
        let seeds: [UInt64]
        if let s = env["TANDEM_SIM_SEED"], let v = UInt64(s) { seeds = [v] }
        else { seeds = (1...UInt64(env["TANDEM_SIM_RUNS"].flatMap { UInt64($0) } ?? 2000)).map { $0 } }
        var failures: [String] = []
        var acks = (drain: 0, flush: 0), flushes = (drain: 0, flush: 0)
        for seed in seeds {
            var sim = ReplicationSimulation(seed: seed)
            let t0 = Date()
            defer { if env["TANDEM_SIM_TRACE"] != nil { if seeds.count == 1 { print(sim.log.joined(separator: "\n")) }; print("seed \(seed): settle \(sim.settleSteps) steps, \(sim.orderChecks) order checks, \(Date().timeIntervalSince(t0)) s, now \(sim.nowMs) ms") } }
            defer {
                // Node 1 is the secondary (node 0 is made primary): its flushes are barrier flushes
                // and the final flush of each resync.
                let a = sim.barrierAcksSent[1], f = sim.flushesIssued[1]
                if sim.drainOrdering { acks.drain += a; flushes.drain += f } else { acks.flush += a; flushes.flush += f }
            }
            do { try sim.run(steps: 800) } catch {
                failures.append("seed \(seed) (protocol \(sim.wireProtocol)): \(error)")
                if env["TANDEM_SIM_SEED"] != nil { print(sim.log.suffix(80).joined(separator: "\n")) }
                if failures.count >= 5 { break }
            }
        }
        #expect(failures.isEmpty, "replay with TANDEM_SIM_SEED=<seed>:\n\(failures.joined(separator: "\n"))")
        // no-disk-flushes acknowledges barriers without flushing; disk-flushes flushes for each.
        if seeds.count > 20 {
            #expect(acks.drain > 100 && flushes.drain * 10 < acks.drain, "drain: \(acks.drain) barrier acks, \(flushes.drain) flushes")
            #expect(flushes.flush >= acks.flush, "flush: \(acks.flush) barrier acks, \(flushes.flush) flushes")
        }
    }
}
