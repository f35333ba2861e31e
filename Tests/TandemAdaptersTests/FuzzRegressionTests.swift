import Foundation
import Testing
import TandemFuzzChecks

/// Every input of the fuzz seed corpora (Fuzz/Corpus/TARGET) and every input a fuzzer crashed on
/// (Fuzz/Regressions/TARGET, kept once fixed) passes its target's check: the fuzzers' findings
/// stay fixed without libFuzzer in the run.
@Suite struct FuzzRegressionTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fuzz")

    static func inputs(_ folder: String, _ target: String) -> [URL] {
        let dir = root.appendingPathComponent(folder).appendingPathComponent(target)
        return ((try? FileManager.default.contentsOfDirectory(at: dir, includingPropertiesForKeys: nil)) ?? [])
            .filter { !$0.lastPathComponent.hasPrefix(".") }.sorted { $0.path < $1.path }
    }

    @Test(arguments: FuzzChecks.targets.map(\.name))
    func corpusAndRegressionsPass(target: String) throws {
        let check = try #require(FuzzChecks.targets.first { $0.name == target }).check
        let seeds = Self.inputs("Corpus", target)
        #expect(seeds.count >= 3, "the \(target) seed corpus has \(seeds.count) inputs")
        for url in seeds + Self.inputs("Regressions", target) {
            check([UInt8](try Data(contentsOf: url)))
        }
    }
}
