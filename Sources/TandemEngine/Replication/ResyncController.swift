/// How much a SyncTarget asks for, step by step: DRBD 8.4's resync controller, so that
/// resync-rate, c-plan-ahead, c-delay-target, c-fill-target and c-max-rate mean what they mean
/// to a DRBD operator (reference §5.4).
///
/// Every step (`stepMs`, 100 ms) the target learns how many sectors arrived since the last
/// step. With c-plan-ahead 0 it asks for a fixed resync-rate. Otherwise it keeps a plan of
/// c-plan-ahead steps: the amount it wants in flight (c-fill-target sectors, or, when that is 0,
/// what arrived in the last step times c-delay-target) minus what is in flight and already
/// planned is spread evenly over the plan; each step asks for what arrived plus the step's share
/// of the plan, never more than c-max-rate allows.
public struct ResyncController: Sendable, Equatable {
    /// The controller's parameters, as carried in P_SYNC_PARAM (95+).
    public struct Parameters: Sendable, Equatable {
        /// KiB/s: the fixed rate (c-plan-ahead 0), and the start of a planned resync.
        public var resyncRateKiB: UInt32
        /// Steps of 0.1 s to plan ahead; 0 turns the controller off.
        public var planAhead: UInt32
        /// 0.1 s: how long the data in flight should take to arrive (when fillTarget is 0).
        public var delayTarget: UInt32
        /// Sectors to keep in flight; 0 means "use delayTarget".
        public var fillTarget: UInt32
        /// KiB/s: the most a step may ask for.
        public var maxRateKiB: UInt32

        public init(resyncRateKiB: UInt32, planAhead: UInt32, delayTarget: UInt32, fillTarget: UInt32, maxRateKiB: UInt32) {
            self.resyncRateKiB = resyncRateKiB; self.planAhead = planAhead; self.delayTarget = delayTarget
            self.fillTarget = fillTarget; self.maxRateKiB = maxRateKiB
        }
    }

    public static let stepMs: UInt64 = 100

    public let parameters: Parameters
    /// Sectors requested and not yet arrived.
    public private(set) var inFlightSectors = 0
    private var plan: [Int]
    private var head = 0
    private var planned = 0

    public init(_ parameters: Parameters) {
        self.parameters = parameters
        plan = Array(repeating: 0, count: Int(parameters.planAhead))
    }

    /// Sectors a step at `rateKiB` carries: KiB/s × 2 sectors/KiB × 0.1 s.
    static func sectorsPerStep(_ rateKiB: UInt32) -> Int { Int(rateKiB) * 2 / 10 }

    /// One step: `arrived` sectors came in since the last one. Returns the sectors to request
    /// now; the caller reports what it really requested with `requested(_:)`.
    public mutating func step(arrived: Int) -> Int {
        inFlightSectors = max(0, inFlightSectors - arrived)
        guard !plan.isEmpty else { return Self.sectorsPerStep(parameters.resyncRateKiB) }
        let steps = plan.count
        let want: Int
        if inFlightSectors + arrived == 0 {
            want = Self.sectorsPerStep(parameters.resyncRateKiB) * steps      // the start of a resync
        } else if parameters.fillTarget > 0 {
            want = Int(parameters.fillTarget)
        } else {
            want = arrived * Int(parameters.delayTarget)                     // delayTarget × 0.1 s / 0.1 s step
        }
        let correction = want - inFlightSectors - planned
        let perStep = correction / steps                                      // truncates toward zero, as DRBD's
        for i in plan.indices { plan[i] += perStep }
        planned += perStep * steps
        let now = plan[head]
        plan[head] = 0
        head = (head + 1) % steps
        planned -= now
        return min(max(0, arrived + now), Self.sectorsPerStep(parameters.maxRateKiB))
    }

    /// Sectors actually requested after a step (possibly fewer than it allowed).
    public mutating func requested(_ sectors: Int) { inFlightSectors += sectors }
}

/// c-min-rate: while the application writes, the resync yields to it, but never below
/// c-min-rate. As DRBD's check before each resync request: when more than 64 sectors of other
/// I/O happened since the last look and the resync ran faster than c-min-rate over the last
/// 3 seconds, this step requests nothing. c-min-rate 0 turns it off.
public struct ResyncThrottle: Sendable, Equatable {
    public let minRateKiB: UInt32
    /// Sectors that arrived in each of the last 30 steps (3 s).
    private var window: [Int] = []
    private var otherSectors = 0

    public init(minRateKiB: UInt32) { self.minRateKiB = minRateKiB }

    /// Application (non-resync) I/O of `sectors` on this disk.
    public mutating func noteOtherIO(sectors: Int) { otherSectors += sectors }

    /// Called once per controller step with the resync sectors that arrived in it; true when
    /// this step should request nothing.
    public mutating func shouldSlowDown(arrived: Int) -> Bool {
        window.append(arrived)
        if window.count > 30 { window.removeFirst(window.count - 30) }
        defer { otherSectors = 0 }
        guard minRateKiB > 0, otherSectors > 64 else { return false }
        let kibPerSecond = window.reduce(0, +) / 2 * 10 / window.count
        return kibPerSecond > Int(minRateKiB)
    }
}
