import Foundation
import TandemCodecs

/// The seeded generator of the randomized codec tests, so a failure replays: the seed is
/// TANDEM_TEST_SEED when set, else a fixed one, and every randomized test names it when it fails.
enum SeededRandom {
    static var seed: UInt64 {
        ProcessInfo.processInfo.environment["TANDEM_TEST_SEED"].flatMap { UInt64($0) } ?? 0x7A4D_E11A
    }
    /// A generator for one test (`salt` keeps the tests' sequences apart).
    static func make(_ salt: UInt64) -> SplitMix64 { SplitMix64(seed: seed ^ salt) }
    /// For failure messages.
    static var replay: String { "replay with TANDEM_TEST_SEED=\(seed)" }
}
