import Foundation

/// A seeded generator (splitmix64) for the randomized tests, so a failure replays: the seed is
/// TANDEM_TEST_SEED when set, else a fixed one, and every randomized test names it when it fails.
struct SeededRandom: RandomNumberGenerator {
    static var seed: UInt64 {
        ProcessInfo.processInfo.environment["TANDEM_TEST_SEED"].flatMap { UInt64($0) } ?? 0x7A4D_E11A
    }
    var state: UInt64
    init(_ salt: UInt64 = 0) { state = Self.seed ^ salt }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    /// For failure messages.
    static var replay: String { "replay with TANDEM_TEST_SEED=\(seed)" }
}
