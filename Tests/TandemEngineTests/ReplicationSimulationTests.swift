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
        for seed in seeds {
            var sim = ReplicationSimulation(seed: seed)
            let t0 = Date()
            defer { if env["TANDEM_SIM_TRACE"] != nil { if seeds.count == 1 { print(sim.log.joined(separator: "\n")) }; print("seed \(seed): settle \(sim.settleSteps) steps, \(sim.orderChecks) order checks, \(Date().timeIntervalSince(t0)) s, now \(sim.nowMs) ms") } }
            do { try sim.run(steps: 800) } catch {
                failures.append("seed \(seed) (protocol \(sim.wireProtocol)): \(error)")
                if env["TANDEM_SIM_SEED"] != nil { print(sim.log.suffix(80).joined(separator: "\n")) }
                if failures.count >= 5 { break }
            }
        }
        #expect(failures.isEmpty, "replay with TANDEM_SIM_SEED=<seed>:\n\(failures.joined(separator: "\n"))")
    }
}
