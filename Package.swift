// swift-tools-version:6.0
import PackageDescription

// The hot loops live in TributaryTensor and TributaryModels; they are compiled with
// optimisation even in debug builds so that `swift test` exercises realistic code
// in reasonable time (a -Onone elementwise loop is ~30x slower).
let optimizedInDebug: [SwiftSetting] = [.unsafeFlags(["-O"], .when(configuration: .debug))]

let package = Package(
    name: "Tributary",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "tributary", targets: ["tributary"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/groue/GRDB.swift", from: "7.10.0"),
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1"),
        .package(url: "https://github.com/swift-server/async-http-client", from: "1.37.0"),
        .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl", from: "2.37.6"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.2"),
    ],
    targets: [
        // System shims.
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd",
                       providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib",
                       providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CPNG", pkgConfig: "libpng",
                       providers: [.apt(["libpng-dev"])]),
        .systemLibrary(name: "CJPEG", pkgConfig: "libjpeg",
                       providers: [.apt(["libjpeg-dev"])]),
        .systemLibrary(name: "CMalloc"),
        // OpenCL (the ICD loader, which finds the installed drivers) and CLBlast's SGEMM.
        .systemLibrary(name: "COpenCL", pkgConfig: "OpenCL",
                       providers: [.apt(["ocl-icd-opencl-dev"])]),
        .systemLibrary(name: "CCLBlast", pkgConfig: "clblast",
                       providers: [.apt(["libclblast-dev"])]),

        // The hot elementwise and row kernels in C, compiled for baseline x86-64, AVX2 and
        // AVX-512 and chosen once at start-up by what the CPU supports (Dispatch.c).
        // Optimised in debug builds too, for the same reason as the Swift kernels.
        .target(name: "CKernels", cSettings: [.unsafeFlags(["-O2"], .when(configuration: .debug))]),

        // Tensors and kernels.
        .target(name: "TributaryTensor", dependencies: ["COpenBLAS", "CMalloc", "CKernels"],
                swiftSettings: optimizedInDebug),

        // GPU workers through OpenCL (issue 15): devices, buffers under a VRAM budget, the
        // kernels of ComputeKernels over device buffers. Not yet wired into the models.
        .target(name: "TributaryOpenCL",
                dependencies: ["COpenCL", "CCLBlast", "TributaryTensor",
                               .product(name: "Crypto", package: "swift-crypto")]),

        // Models, data and optimizers.
        .target(name: "TributaryModels", dependencies: ["TributaryTensor"],
                swiftSettings: optimizedInDebug),
        .target(name: "TributaryOptim", dependencies: ["TributaryTensor"],
                swiftSettings: optimizedInDebug),
        .target(name: "TributaryData", dependencies: ["TributaryTensor", "CZlib", "CPNG", "CJPEG"],
                swiftSettings: optimizedInDebug),
        .target(name: "TributaryCheckpoint",
                dependencies: ["TributaryTensor", "TributaryModels", "TributaryOptim", "TributaryData",
                               .product(name: "Crypto", package: "swift-crypto")]),

        // Compression: tensor frames (header, checksum, zstd) and update codecs.
        .target(name: "TributaryCompression", dependencies: ["TributaryTensor", "CZstd", "CZlib"],
                swiftSettings: optimizedInDebug),

        // Protocol types: the JSON messages and binary bodies of the HTTP API.
        .target(name: "TributaryProtocol",
                dependencies: ["TributaryModels", "TributaryTensor"]),

        // The durable ledger (SQLite through GRDB, or PostgreSQL through PostgresNIO): workers,
        // units, leases, updates, rounds.
        .target(name: "TributaryLedger",
                dependencies: [.product(name: "GRDB", package: "GRDB.swift"),
                               .product(name: "PostgresNIO", package: "postgres-nio"),
                               .product(name: "Logging", package: "swift-log")]),

        // Single-process training loop, shared by `tributary train` and the benchmarks.
        .target(name: "TributaryTraining",
                dependencies: ["TributaryTensor", "TributaryModels", "TributaryOptim", "TributaryData",
                               "TributaryCheckpoint", .product(name: "Logging", package: "swift-log")]),

        // The coordinator daemon: owns a job, serves the HTTP API.
        .target(name: "TributaryCoordinator",
                dependencies: ["TributaryTraining", "TributaryTensor", "TributaryProtocol", "TributaryCompression", "TributaryLedger",
                               "TributaryPlanning",
                               .product(name: "Hummingbird", package: "hummingbird"),
                               .product(name: "HummingbirdCore", package: "hummingbird"),
                               .product(name: "HummingbirdHTTP2", package: "hummingbird"),
                               .product(name: "Crypto", package: "swift-crypto"),
                               .product(name: "Yams", package: "Yams"),
                               .product(name: "NIOSSL", package: "swift-nio-ssl"),
                               .product(name: "NIOTLS", package: "swift-nio"),
                               .product(name: "NIOCore", package: "swift-nio"),
                               .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                               .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                               .product(name: "Metrics", package: "swift-metrics"),
                               .product(name: "Prometheus", package: "swift-prometheus"),
                               .product(name: "Logging", package: "swift-log")]),

        // The worker daemon: leases units, computes gradients, pushes updates.
        // How a unit of a job fits a worker's memory: the worker plans with it, the
        // coordinator estimates the smallest worker a job needs.
        .target(name: "TributaryPlanning", dependencies: ["TributaryModels", "TributaryCompression", "TributaryTensor"]),

        .target(name: "TributaryWorker",
                dependencies: ["TributaryCheckpoint", "TributaryCompression", "TributaryProtocol", "TributaryPlanning",
                               .product(name: "AsyncHTTPClient", package: "async-http-client"),
                               .product(name: "NIOCore", package: "swift-nio"),
                               .product(name: "NIOHTTP1", package: "swift-nio"),
                               .product(name: "Crypto", package: "swift-crypto"),
                               .product(name: "Logging", package: "swift-log")]),

        // The command-line program.
        .executableTarget(name: "tributary",
                          dependencies: ["TributaryTraining", "TributaryCoordinator", "TributaryWorker", "TributaryOpenCL",
                                         .product(name: "AsyncHTTPClient", package: "async-http-client"),
                                         .product(name: "Hummingbird", package: "hummingbird"),
                                         .product(name: "NIOCore", package: "swift-nio"),
                                         .product(name: "NIOHTTP1", package: "swift-nio"),
                                         .product(name: "NIOSSL", package: "swift-nio-ssl"),
                                         .product(name: "ArgumentParser", package: "swift-argument-parser"),
                                         .product(name: "Logging", package: "swift-log")]),

        .testTarget(name: "TributaryTensorTests", dependencies: ["TributaryTensor"]),
        .testTarget(name: "TributaryOpenCLTests", dependencies: ["TributaryOpenCL", "TributaryTensor", "TributaryModels"]),
        .testTarget(name: "TributaryModelsTests", dependencies: ["TributaryModels", "TributaryOptim"]),
        .testTarget(name: "TributaryDataTests", dependencies: ["TributaryData"]),
        .testTarget(name: "TributaryCheckpointTests", dependencies: ["TributaryCheckpoint"]),
        .testTarget(name: "TributaryTrainingTests", dependencies: ["TributaryTraining"]),
        .testTarget(name: "TributaryCompressionTests", dependencies: ["TributaryCompression"]),
        // PostgresNIO directly too: the tests create and drop a database per test.
        .testTarget(name: "TributaryLedgerTests",
                    dependencies: ["TributaryLedger", .product(name: "PostgresNIO", package: "postgres-nio"),
                                   .product(name: "Logging", package: "swift-log")]),
        // Hummingbird: a hostile coordinator on loopback for the attack tests (issue 12).
        .testTarget(name: "TributaryWorkerTests",
                    dependencies: ["TributaryWorker", .product(name: "Hummingbird", package: "hummingbird")]),
        // Helpers more than one test target uses (a log a test can read).
        .target(name: "TributaryTestSupport", dependencies: [.product(name: "Logging", package: "swift-log")],
                path: "Tests/TributaryTestSupport"),
        .testTarget(name: "TributaryCoordinatorTests", dependencies: ["TributaryCoordinator", "TributaryTestSupport"]),
        .testTarget(name: "TributaryNetworkTests",
                    dependencies: ["TributaryCoordinator", "TributaryWorker", "TributaryProtocol", "tributary", "TributaryTestSupport",
                                   "TributaryOpenCL",
                                   .product(name: "HummingbirdTesting", package: "hummingbird"),
                                   .product(name: "AsyncHTTPClient", package: "async-http-client")],
                    swiftSettings: [.define("TRIBUTARY_CLI_TESTS")]),
    ]
)
