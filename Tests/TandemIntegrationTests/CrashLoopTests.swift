import Foundation
import Testing
import TandemCodecs

/// kill -9 of the primary, the secondary or both, at a random moment while an application
/// writes (protocol C), during a full sync or during a resync, round after round. Each round
/// ends with both nodes Connected, nothing out of sync, identical data areas, and every write
/// the application saw acknowledged on both disks; when the primary dies, every acknowledged
/// write is on the secondary already, before any resync. TANDEM_CRASH_ROUNDS sets the number of
/// rounds (3 here; scripts/soak runs 50 and more), TANDEM_CRASH_SEED the seed (printed).
@Suite struct CrashLoopTests {
    enum Phase: String, CaseIterable { case load, fullSync, resync }
    enum Victim: String, CaseIterable { case primary, secondary, both }

    @Test func killsAtRandomMomentsLoseNothing() throws {
        let env = ProcessInfo.processInfo.environment
        let rounds = Int(env["TANDEM_CRASH_ROUNDS"] ?? "") ?? 3
        let seed = UInt64(env["TANDEM_CRASH_SEED"] ?? "") ?? UInt64.random(in: 1...UInt64(UInt32.max))
        var rng = SplitMix64(seed: seed)
        let blocks = 4096  // 16 MiB of the 24 MiB data area
        let c = try Cluster(.init(wireProtocol: "C", size: 24 << 20, net: "compression off;", disk: "c-max-rate 20M; resync-rate 20M;"))
        defer { c.shutdown() }
        try c.start()
        let ackLog = c.dir + "/acks"
        var load = try StampedLoad(c, blocks: blocks, ackLog: ackLog, seqBase: 0)
        defer { if load.process.isRunning { load.process.terminate() } }
        var tally: [String: Int] = [:]
        for round in 1...rounds {
            do {
                try self.round(c, round, rounds, seed, &rng, &load, &tally, ackLog: ackLog, blocks: blocks)
            } catch {
                // What both daemons said last, to see why.
                let tails = c.nodes.map { n in "\(n) log:\n" + c.log(n).split(separator: "\n").suffix(40).joined(separator: "\n") }
                throw TestFailure("\(error)\n" + tails.joined(separator: "\n"))
            }
        }
        try load.stop()
        print("CrashLoopTests: \(rounds) rounds, seed \(seed), \(load.acks) writes acknowledged and checked, kills \(tally.sorted { $0.key < $1.key })")
    }

    func round(_ c: Cluster, _ round: Int, _ rounds: Int, _ seed: UInt64, _ rng: inout SplitMix64, _ load: inout StampedLoad,
               _ tally: inout [String: Int], ackLog: String, blocks: Int) throws {
        func pick<T>(_ all: [T]) -> T { all[Int(rng.next() % UInt64(all.count))] }
        do {
            let phase = pick(Phase.allCases), victim = pick(Victim.allCases)
            let delayMs = 200 + Int(rng.next() % 1800)
            tally["\(phase.rawValue)/\(victim.rawValue)", default: 0] += 1
            let what = "round \(round) of \(rounds) (seed \(seed)): kill \(victim.rawValue) \(delayMs) ms into \(phase.rawValue)"
            try load.waitForProgress(50)
            switch phase {
            case .load:
                break
            case .fullSync:
                let r = try c.tandem("beta", "invalidate", "r0")
                try #require(r.status == 0, "\(what): invalidate: \(r.err)")
            case .resync:
                try #require(try c.tandem("alpha", "disconnect", "r0").status == 0, "\(what)")
                try load.waitForProgress(100)
                try #require(try c.tandem("alpha", "connect", "r0").status == 0, "\(what)")
            }
            usleep(useconds_t(delayMs * 1000))
            let victims = victim == .both ? ["alpha", "beta"] : [victim == .primary ? "alpha" : "beta"]
            // The primary goes as its host would: the link cut at the same moment, so what its
            // dead process left in socket buffers never reaches the secondary.
            if victims.contains("alpha") { try c.cutLink() }
            for n in victims {
                let pid = try #require(c.pid(n), "\(what): no pid for \(n)")
                try #require(kill(pid, SIGKILL) == 0, "\(what)")
                while kill(pid, 0) == 0 { usleep(10_000) }
            }
            // The application dies with its primary (its writes in flight unanswered).
            if victims.contains("alpha") {
                load.process.terminate()
                load.process.waitUntilExit()
                // Protocol C: every write the application saw acknowledged is already on the
                // secondary, the disk a failover would use (unless the round disconnected them
                // on purpose, when the writes since went to the primary alone).
                if phase != .resync { try load.check(c.disk("beta"), "\(what): beta right after the primary died") }
                c.healLink()
            }
            for n in victims { try c.up(n) }
            if victims.contains("alpha") {
                try c.wait("alpha", timeout: 60, "\(what): connected after the restart") { $0["connection"] as? String != "WFConnection" && $0["connection"] as? String != "StandAlone" }
                try becomePrimary(c, what)
                load = try StampedLoad(c, blocks: blocks, ackLog: ackLog, seqBase: round * 10_000_000)
            }
            try load.waitForProgress(50)
            try converge(c, what)
            // Checked with the load stopped, then a new one for the next round.
            try load.stop()
            let area = try #require(try c.status("alpha")["data-area-kib"] as? Int) * 1024
            let same = try c.dataHash("alpha", bytes: area) == (try c.dataHash("beta", bytes: area))
            #expect(same, "\(what): the disks differ")
            for n in c.nodes { try load.check(c.disk(n), "\(what): \(n)") }
            if !same { throw TestFailure("\(what): the disks differ") }
            load = try StampedLoad(c, blocks: blocks, ackLog: ackLog, seqBase: (round * 10_000_000) + 5_000_000)
        }
    }

    /// alpha back as Primary once it is connected (a crashed primary comes back Secondary).
    func becomePrimary(_ c: Cluster, _ what: String) throws {
        let deadline = Date().addingTimeInterval(60)
        var last = ""
        while Date() < deadline {
            let r = try c.tandem("alpha", "primary", "r0")
            if r.status == 0 { return }
            last = r.err
            usleep(200_000)
        }
        throw TestFailure("\(what): alpha did not become primary: \(last); status \(try c.status("alpha"))")
    }

    func converge(_ c: Cluster, _ what: String) throws {
        for n in c.nodes {
            try c.wait(n, timeout: 120, "\(what): in sync") { s in
                s["connection"] as? String == "Connected" && s["out-of-sync-kib"] as? Int == 0
                    && s["disk"] as? String == "UpToDate" && s["peer-disk"] as? String == "UpToDate"
            }
        }
    }
}
