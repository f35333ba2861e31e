import Testing
@testable import TandemEngine

/// DRBD 8.4's resync controller, driven over a model link that delivers at most `capacity`
/// sectors per 100 ms step (everything requested arrives in the next step when unlimited).
@Suite struct ResyncControllerTests {
    struct Run { var requests: [Int] = []; var inFlight: [Int] = []; var delivered = 0 }

    func drive(_ p: ResyncController.Parameters, capacity: Int = .max, steps: Int, until total: Int = .max) -> Run {
        var c = ResyncController(p)
        var run = Run()
        var queued = 0, arrived = 0
        for _ in 0..<steps {
            let want = c.step(arrived: arrived)
            let sectors = want / 8 * 8                 // whole 4 KiB blocks, as the engine asks
            c.requested(sectors)
            run.requests.append(want)
            run.inFlight.append(c.inFlightSectors)
            run.delivered += arrived
            if run.delivered >= total { break }
            queued += sectors
            arrived = min(queued, capacity)
            queued -= arrived
        }
        return run
    }

    let defaults = ResyncController.Parameters(resyncRateKiB: 250, planAhead: 20, delayTarget: 10, fillTarget: 100, maxRateKiB: 102_400)

    @Test func planAheadZeroIsTheFixedResyncRate() {
        var p = defaults
        p.planAhead = 0
        p.resyncRateKiB = 40_000
        let run = drive(p, steps: 50)
        #expect(run.requests.allSatisfy { $0 == 8000 })  // 40000 KiB/s × 0.1 s = 8000 sectors
    }

    @Test func delayModeReachesCMaxRateWithinTwoSecondsAndNeverPassesIt() {
        var p = defaults
        p.fillTarget = 0
        let run = drive(p, steps: 100)
        let cap = 102_400 * 2 / 10
        #expect(run.requests.allSatisfy { $0 <= cap })
        let first = run.requests.firstIndex(of: cap)
        #expect(first != nil && first! <= 20, "reached c-max-rate at step \(String(describing: first))")
        #expect(run.requests.suffix(50).allSatisfy { $0 == cap })
    }

    @Test func delayModeOnASlowLinkKeepsAboutTheDelayTargetInFlight() {
        var p = defaults
        p.fillTarget = 0
        let run = drive(p, capacity: 1000, steps: 300)
        // c-delay-target 1 s at 1000 sectors per 0.1 s: about 10000 sectors in flight.
        let tail = run.inFlight.suffix(150)
        #expect(tail.allSatisfy { $0 > 8000 && $0 < 14000 }, "\(tail.min()!)...\(tail.max()!)")
        let mean = Double(run.requests.suffix(100).reduce(0, +)) / 100
        #expect(abs(mean - 1000) < 50, "mean request \(mean)")
    }

    @Test func fillTargetModeRampsAsSlowlyAsTheKernel() {
        // DRBD's defaults keep 50 KiB in flight; the kernel in ../shared/drbd-vm syncs 64 MiB
        // in 13-15 s with them. The model link here is instant, so this is the ramp alone.
        let run = drive(defaults, steps: 1000, until: 64 << 11)
        let seconds = Double(run.requests.count) / 10
        #expect(seconds > 10 && seconds < 25, "64 MiB took \(seconds) s")
        #expect(run.requests[0] == 50, "the start asks for resync-rate × 0.1 s: \(run.requests.prefix(5))")
    }

    @Test func aStepNeverAsksForANegativeAmount() {
        var c = ResyncController(defaults)
        _ = c.step(arrived: 0)
        c.requested(1_000_000)                        // far more in flight than wanted
        for _ in 0..<50 { #expect(c.step(arrived: 8) >= 0) }
    }

    @Test func cMinRateYieldsToApplicationWritesButNotBelowIt() {
        var t = ResyncThrottle(minRateKiB: 250)
        // Resync at 1000 sectors per step (5000 KiB/s), no application I/O: never slowed.
        for _ in 0..<30 { let slowed = t.shouldSlowDown(arrived: 1000); #expect(!slowed) }
        // Application writes (more than 64 sectors): this step requests nothing.
        t.noteOtherIO(sectors: 128)
        let busy = t.shouldSlowDown(arrived: 1000); #expect(busy)
        // 64 sectors or fewer are noise, as in DRBD.
        t.noteOtherIO(sectors: 64)
        let noise = t.shouldSlowDown(arrived: 1000); #expect(!noise)
        // Below c-min-rate (3 s averaging 40 sectors per step = 200 KiB/s) the resync goes on.
        var slow = ResyncThrottle(minRateKiB: 250)
        for _ in 0..<30 { _ = slow.shouldSlowDown(arrived: 40) }
        slow.noteOtherIO(sectors: 4096)
        let belowMin = slow.shouldSlowDown(arrived: 40); #expect(!belowMin)
        // c-min-rate 0: never slowed.
        var off = ResyncThrottle(minRateKiB: 0)
        off.noteOtherIO(sectors: 4096)
        let disabled = off.shouldSlowDown(arrived: 100_000); #expect(!disabled)
    }
}
