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
    ],
    targets: [
        // System shims.
        .systemLibrary(name: "COpenBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd",
                       providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib",
                       providers: [.apt(["zlib1g-dev"])]),

        // Tensors and kernels.
        .target(name: "TributaryTensor", dependencies: ["COpenBLAS"],
                swiftSettings: optimizedInDebug),

        // Models, data and optimizers.
        .target(name: "TributaryModels", dependencies: ["TributaryTensor"],
                swiftSettings: optimizedInDebug),
        .target(name: "TributaryOptim", dependencies: ["TributaryTensor"],
                swiftSettings: optimizedInDebug),
        .target(name: "TributaryData", dependencies: ["TributaryTensor", "CZlib"],
                swiftSettings: optimizedInDebug),
        .target(name: "TributaryCheckpoint",
                dependencies: ["TributaryTensor", "TributaryModels", "TributaryOptim", "TributaryData"]),

        // Single-process training loop, shared by `tributary train` and the benchmarks.
        .target(name: "TributaryTraining",
                dependencies: ["TributaryTensor", "TributaryModels", "TributaryOptim", "TributaryData",
                               "TributaryCheckpoint", .product(name: "Logging", package: "swift-log")]),

        // The command-line program.
        .executableTarget(name: "tributary",
                          dependencies: ["TributaryTraining",
                                         .product(name: "ArgumentParser", package: "swift-argument-parser"),
                                         .product(name: "Logging", package: "swift-log")]),

        .testTarget(name: "TributaryTensorTests", dependencies: ["TributaryTensor"]),
        .testTarget(name: "TributaryModelsTests", dependencies: ["TributaryModels", "TributaryOptim"]),
        .testTarget(name: "TributaryDataTests", dependencies: ["TributaryData"]),
        .testTarget(name: "TributaryCheckpointTests", dependencies: ["TributaryCheckpoint"]),
        .testTarget(name: "TributaryTrainingTests", dependencies: ["TributaryTraining"]),
    ]
)
