import Foundation
import TandemFuzzChecks

/// libFuzzer's entry point when built by scripts/fuzz (-sanitize=fuzzer -D FUZZING): the target
/// comes from TANDEM_FUZZ_TARGET (wire, bitmap, nbd, metadata, config).
nonisolated(unsafe) private var selected: (@Sendable ([UInt8]) -> Void)?

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    if selected == nil {
        let name = ProcessInfo.processInfo.environment["TANDEM_FUZZ_TARGET"] ?? ""
        guard let t = FuzzChecks.targets.first(where: { $0.name == name }) else {
            fatalError("TANDEM_FUZZ_TARGET must be one of \(FuzzChecks.targets.map(\.name)), not '\(name)'")
        }
        selected = t.check
    }
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    selected!(bytes)
    return 0
}

#if FUZZING
/// SwiftPM links an executable with `main` renamed to MODULE_main; under libFuzzer that entry
/// hands over to libFuzzer's driver.
@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<CInt>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt) -> CInt

@_cdecl("tandem_fuzz_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var c = argc
    var v = argv
    return LLVMFuzzerRunDriver(&c, &v, fuzzOneInput)
}
#else
/// Without libFuzzer: replays inputs through a target (`tandem-fuzz wire crash-...`), as the
/// regression tests do, to debug one.
@main struct Replay {
    static func main() {
        let args = CommandLine.arguments.dropFirst()
        guard let name = args.first, let t = FuzzChecks.targets.first(where: { $0.name == name }) else {
            FileHandle.standardError.write(Data("usage: tandem-fuzz \(FuzzChecks.targets.map(\.name).joined(separator: "|")) FILE...\n".utf8))
            exit(2)
        }
        for path in args.dropFirst() {
            guard let d = FileManager.default.contents(atPath: path) else {
                FileHandle.standardError.write(Data("tandem-fuzz: cannot read \(path)\n".utf8))
                exit(1)
            }
            t.check([UInt8](d))
            print("\(path): ok")
        }
    }
}
#endif
