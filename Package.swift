// swift-tools-version: 6.1
// Tandem: userspace block-level replication, DRBD-compatible.
// Layers (dependencies point down only):
//   tandem (command) -> TandemDaemon -> TandemAdapters -> TandemEngine -> TandemCodecs -> C libraries
// The benchmark package lives in Benchmarks/ with its own Package.swift so the default build
// stays lean (see Benchmarks/README.md).
import PackageDescription

let package = Package(
    name: "Tandem",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "tandem", targets: ["tandem"]),
        .library(name: "TandemCodecs", targets: ["TandemCodecs"]),
        .library(name: "TandemEngine", targets: ["TandemEngine"]),
        .library(name: "TandemAdapters", targets: ["TandemAdapters"]),
        .library(name: "TandemDaemon", targets: ["TandemDaemon"]),
        .library(name: "TandemAWS", targets: ["TandemAWS"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", exact: "1.8.2"),
        .package(url: "https://github.com/apple/swift-nio", exact: "2.101.2"),
        // HTTP for the EC2 API and IMDSv2 (no AWS SDK for Swift is on the mirror).
        .package(url: "https://github.com/swift-server/async-http-client", exact: "1.37.0"),
        // Leveled logging (the daemon's one handler: journald priorities or an appended file).
        .package(url: "https://github.com/apple/swift-log", exact: "1.16.2"),
        // Metrics: the exporter's series are made through swift-metrics' API and rendered in
        // Prometheus' text format by swift-prometheus.
        .package(url: "https://github.com/apple/swift-metrics", exact: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", exact: "2.4.1"),
    ],
    targets: [
        // System C libraries, used through small shims.
        .systemLibrary(name: "CLZ4", pkgConfig: "liblz4", providers: [.apt(["liblz4-dev"])]),
        .systemLibrary(name: "COpenSSL", pkgConfig: "openssl", providers: [.apt(["libssl-dev"])]),
        // Our own CRC32C kernel using the SSE4.2 instruction where the CPU has it.
        .target(name: "CCRC32C", cSettings: [.unsafeFlags(["-O2"])]),
        // Linux block-device ioctls and fallocate, which Swift cannot call directly.
        .target(name: "CTandemSys"),

        // Pure codecs: bytes in, values out. No I/O.
        .target(name: "TandemCodecs", dependencies: ["CLZ4", "COpenSSL", "CCRC32C"]),
        // Deterministic engine: events in, actions out. No I/O, clock or threads.
        .target(name: "TandemEngine", dependencies: ["TandemCodecs"]),
        // Adapters: block devices, meta-data store on a device NIO transport, NBD server (later: EBS).
        .target(name: "TandemAdapters", dependencies: [
            "TandemCodecs", "TandemEngine", "CTandemSys", "COpenSSL",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ]),
        // AWS: SigV4 signing (ours, checked against botocore), credentials, and (next) the EC2
        // API and IMDSv2 clients the EBS target uses.
        .target(name: "TandemAWS", dependencies: [
            "TandemCodecs",
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ]),
        // The node daemon and the pieces the command shares with it (resource resolution, paths).
        .target(name: "TandemDaemon", dependencies: [
            "TandemAdapters", "TandemEngine", "TandemCodecs", "TandemAWS",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "CoreMetrics", package: "swift-metrics"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ]),
        // What the fuzz targets check on one input (Fuzz/README.md), shared with the regression tests.
        .target(name: "TandemFuzzChecks", dependencies: [
            "TandemCodecs", "TandemAdapters", .product(name: "NIOCore", package: "swift-nio"),
        ]),
        // One libFuzzer entry point for every target (scripts/fuzz builds it with
        // -sanitize=fuzzer and -D FUZZING); in a normal build it replays inputs:
        // `tandem-fuzz TARGET FILE...`.
        .executableTarget(name: "tandem-fuzz", dependencies: ["TandemFuzzChecks"],
                          swiftSettings: [.unsafeFlags(["-parse-as-library"])]),
        // The `tandem` command.
        .executableTarget(name: "tandem", dependencies: [
            "TandemDaemon", "TandemAdapters", "TandemCodecs", "TandemAWS",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
        ]),

        .testTarget(name: "TandemCodecsTests", dependencies: ["TandemCodecs"], exclude: ["Vectors"]),
        .testTarget(name: "TandemEngineTests", dependencies: ["TandemEngine", "TandemCodecs"]),
        .testTarget(name: "TandemAdaptersTests", dependencies: ["TandemAdapters", "TandemEngine", "TandemCodecs", "TandemFuzzChecks",
                                                             .product(name: "NIOEmbedded", package: "swift-nio")]),
        .testTarget(name: "TandemAWSTests", dependencies: ["TandemAWS", "TandemCodecs"], exclude: ["Helpers"]),
        .testTarget(name: "TandemIntegrationTests", dependencies: ["TandemDaemon", "TandemAdapters", "TandemEngine", "TandemCodecs", "TandemAWS"],
                    exclude: ["Fixtures", "Helpers"]),
    ]
)
