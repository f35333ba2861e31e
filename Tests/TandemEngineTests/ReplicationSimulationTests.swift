import Foundation
import Testing
@testable import TandemEngine

/// Seeded simulation runs of two engines (see ReplicationSimulation). TANDEM_SIM_RUNS sets the
/// number of runs (default 2000), TANDEM_SIM_SEED replays one seed. The seeds are split into
/// two halves that run in parallel.
@Suite struct ReplicationSimulationTests {
    @Test(arguments: [0, 1]) func seededRunsKeepTheInvariants(half: Int) throws {
        let env = ProcessInfo.processInfo.environment
        let seeds: [UInt64]
        if let s = env["TANDEM_SIM_SEED"], let v = UInt64(s) { seeds = half == 0 ? [v] : [] }
        else { seeds = (1...UInt64(env["TANDEM_SIM_RUNS"].flatMap { UInt64($0) } ?? 2000)).filter { Int($0 % 2) == half } }
        guard !seeds.isEmpty else { return }
        var failures: [String] = []
        var totals = (orderChecks: 0, divergenceChecks: 0, alWaits: 0, versions: Set<Int>(), aheadResyncs: 0, readPauses: 0,
                      congestionDisconnects: 0, compressedResyncs: 0, verifies: 0, csumsInSync: 0, invalidates: 0, compressedWrites: 0, restores: 0,
                      instantPromotions: 0, readsChecked: 0, readsFailed: 0, diskFaults: 0, detaches: 0, passOns: 0)
        var unresolvable = 0
        for seed in seeds {
            var sim = ReplicationSimulation(seed: seed)
            let t0 = Date()
            defer { if env["TANDEM_SIM_TRACE"] != nil { if seeds.count == 1 { print(sim.log.joined(separator: "\n")) }; print("seed \(seed): settle \(sim.settleSteps) steps, \(sim.orderChecks) order checks, \(sim.divergenceChecks) divergence checks, \(sim.activityLogWaits) AL waits, \(Date().timeIntervalSince(t0)) s, now \(sim.nowMs) ms") } }
            do {
                try sim.run(steps: 800)
                if sim.endedUnresolvable { unresolvable += 1 }
                // Node 1 is the secondary (node 0 is made primary). With disk-flushes it flushes
                // before every barrier ack; with no-disk-flushes (drain) it never flushes for one.
                let acks = sim.barrierAcksSent[1], flushes = sim.nodes[1].earlierBarrierFlushes + sim.nodes[1].engine.barrierFlushes
                if sim.drainOrdering && flushes != 0 {
                    throw SimFailure(description: "drain ordering flushed \(flushes) times for \(acks) barrier acks")
                }
                // (A node whose disk was detached acknowledges barriers with nothing to flush.)
                if !sim.drainOrdering && flushes < acks && !sim.faulted[1] {
                    throw SimFailure(description: "flush ordering: \(acks) barrier acks but only \(flushes) barrier flushes")
                }
                if let n = sim.nodes.firstIndex(where: { $0.engine.violations > 0 }) {
                    throw SimFailure(description: "node \(n) broke \(sim.nodes[n].engine.violations) invariants")
                }
            } catch {
                failures.append("seed \(seed) (protocol \(sim.wireProtocol), version \(sim.agreedVersion)): \(error)")
                if env["TANDEM_SIM_SEED"] != nil { print(sim.log.suffix(80).joined(separator: "\n")) }
                if failures.count >= 5 { break }
            }
            totals.orderChecks += sim.orderChecks
            totals.divergenceChecks += sim.divergenceChecks
            totals.alWaits += sim.activityLogWaits
            totals.versions.insert(sim.agreedVersion)
            totals.aheadResyncs += sim.log.filter { $0.contains("resyncing what went unreplicated while Ahead") }.count
            totals.readPauses += sim.readPauses
            totals.congestionDisconnects += sim.log.filter { $0.contains("on-congestion disconnect") }.count
            if sim.nodes.contains(where: { $0.engine.status.resyncWireBytes < $0.engine.status.resyncDataBytes }) { totals.compressedResyncs += 1 }
            totals.verifies += sim.verifiesChecked
            totals.compressedWrites += sim.compressedWrites
            if sim.nodes.contains(where: { $0.engine.status.resyncSameBytes > 0 }) { totals.csumsInSync += 1 }
            totals.invalidates += sim.log.filter { $0.contains("every block out of sync, full resync") }.count
            totals.instantPromotions += sim.log.filter { $0.contains("role: Primary while the disk is restored") }.count
            totals.readsChecked += sim.readsChecked
            totals.readsFailed += sim.readsFailed
            if sim.diskFaultSeed {
                totals.diskFaults += 1
                totals.detaches += sim.detachesSeen
                totals.passOns += sim.log.contains { $0.contains("on-io-error pass_on") } ? 1 : 0
            }
            totals.restores += sim.log.filter { $0.contains("restore: the peer holds the same data generation") || $0.contains("restore --discard-my-data") }.count
        }
        #expect(failures.isEmpty, "replay with TANDEM_SIM_SEED=<seed>:\n\(failures.joined(separator: "\n"))")
        // The checks ran at all: a run that never checked write order or divergence, or in
        // which no write ever waited for the activity log, tested less than it claims.
        #expect(totals.orderChecks > 0, "no write-order check ran")
        #expect(totals.divergenceChecks > 0, "no divergence check ran")
        if seeds.count >= 25 {
            #expect(unresolvable * 10 < seeds.count, "\(unresolvable) runs ended unresolvable before protocol 91")
            #expect(totals.alWaits > 0, "no write ever waited for an activity-log slot")
            #expect(totals.versions.count == 16, "protocol versions covered: \(totals.versions.sorted())")
            #expect(totals.aheadResyncs > 0, "no run went Ahead and resynced")
            #expect(totals.readPauses > 0, "no receiver ever stopped reading (max-buffers)")
            #expect(totals.congestionDisconnects > 0, "no run disconnected on congestion")
            #expect(totals.compressedResyncs > 0, "no resync data went LZ4-compressed")
            #expect(totals.verifies > 0, "no verify ran to its end and was checked")
            #expect(totals.compressedWrites > 0, "no replicated write went LZ4-compressed")
            #expect(totals.csumsInSync > 0, "no resync found a block in sync by its digest")
            #expect(totals.invalidates > 0, "no invalidate or invalidate-remote ran")
            #expect(totals.restores > 0, "no restore pulled the data back")
            #expect(totals.instantPromotions > 0, "no node was promoted while SyncTarget (instant access)")
            #expect(totals.readsChecked > 0, "no read was checked against the writes")
            #expect(totals.detaches > 0, "no disk fault detached a disk")
            #expect(totals.passOns > 0, "no disk fault was passed on")
        }
        if env["TANDEM_SIM_TRACE"] != nil || seeds.count >= 25 {
            print("simulation half \(half): \(totals.instantPromotions) promotions during a restore, \(totals.readsChecked) reads checked, \(totals.readsFailed) failed without a good copy, \(totals.diskFaults) disk faults (\(totals.detaches) detached, \(totals.passOns) passed on)")
        }
    }
}
