import Foundation
import XCTest
import TributaryCheckpoint
import TributaryData
import TributaryModels
import TributaryTensor
import TributaryTraining

/// The package root: the nearest directory above `filePath` that holds Package.swift.
func packageRoot(filePath: String = #filePath) throws -> URL {
    var dir = URL(fileURLWithPath: filePath).deletingLastPathComponent()
    while dir.path != "/" {
        if FileManager.default.fileExists(atPath: dir.appendingPathComponent("Package.swift").path) { return dir }
        dir = dir.deletingLastPathComponent()
    }
    throw XCTSkip("package root not found above \(filePath)")
}

/// `../shared/data/<relative>` beside the package root; throws XCTSkip when it is absent
/// (CI has the shared data, a user's clone does not).
func sharedData(_ relative: String, filePath: String = #filePath) throws -> String {
    let root = try packageRoot(filePath: filePath)
    let candidate = root.deletingLastPathComponent().appendingPathComponent("shared/data/\(relative)").path
    guard FileManager.default.fileExists(atPath: candidate) else {
        throw XCTSkip("shared data \(candidate) is not present")
    }
    return candidate
}

/// A fresh directory under the system temporary directory, removed by `cleanup`.
final class ScratchDirectory {
    let path: String

    init(_ label: String = "training") throws {
        path = NSTemporaryDirectory() + "tributary-\(label)-tests-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func file(_ name: String) -> String { path + "/" + name }

    func cleanup() { try? FileManager.default.removeItem(atPath: path) }
}

/// Every file under `directory` (relative path → bytes), to show that a command left it untouched.
func snapshot(_ directory: String) throws -> [String: Data] {
    let fm = FileManager.default
    var out: [String: Data] = [:]
    guard let walker = fm.enumerator(atPath: directory) else { return out }
    while let relative = walker.nextObject() as? String {
        var isDirectory: ObjCBool = false
        let full = "\(directory)/\(relative)"
        if fm.fileExists(atPath: full, isDirectory: &isDirectory) {
            out[relative + (isDirectory.boolValue ? "/" : "")] =
                isDirectory.boolValue ? Data() : try Data(contentsOf: URL(fileURLWithPath: full))
        }
    }
    return out
}

/// All parameter values, in order, as bit patterns (for bitwise comparisons).
func parameterBits(_ model: any TrainableModel) -> [[UInt32]] {
    model.parameters.parameters.map { $0.value.toArray().map(\.bitPattern) }
}

/// Options shared by the tests: no periodic validation or checkpoints unless asked.
func trainingOptions(steps: Int, batchSize: Int, learningRate: Float, optimizer: String = "adamw",
                     warmup: Int = 0, evalBatches: Int = 20, seed: UInt64 = 1337) -> TrainingOptions {
    var o = TrainingOptions()
    o.steps = steps
    o.batchSize = batchSize
    o.learningRate = learningRate
    o.optimizer = optimizer
    o.warmupSteps = warmup
    o.evalInterval = 0
    o.evalBatches = evalBatches
    o.seed = seed
    return o
}

/// The arithmetic corpus as GPT samples of `blockSize`.
func arithmeticData(blockSize: Int) throws -> PreparedDataset {
    try DatasetSource.prepare(try DatasetSource.load("builtin:arithmetic"), name: "builtin:arithmetic",
                              blockSize: blockSize, validationFraction: 0.1, seed: 1)
}

/// The synthetic digits as MLP samples.
func digitsData() throws -> PreparedDataset {
    try DatasetSource.prepare(try DatasetSource.load("builtin:digits"), name: "builtin:digits",
                              blockSize: nil, validationFraction: 0.1, seed: 1)
}
