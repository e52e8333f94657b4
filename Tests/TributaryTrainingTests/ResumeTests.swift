import Foundation
import XCTest
import TributaryCheckpoint
import TributaryData
import TributaryModels
import TributaryOptim
import TributaryTensor
import TributaryTraining

/// Stopping at step N, checkpointing and resuming in a new Trainer must continue exactly as
/// an uninterrupted run: same data order, learning rate, optimizer state and weights, bit for bit.
final class ResumeTests: XCTestCase {
    var scratch: ScratchDirectory?

    override func setUpWithError() throws {
        ComputeThreads.set(2)
        scratch = try ScratchDirectory("resume")
    }

    override func tearDown() {
        scratch?.cleanup()
    }

    func directory(_ name: String) throws -> String { try XCTUnwrap(scratch).file(name) }

    static let smallGPT = ModelSpec.gpt(GPTConfig(vocabSize: 13, blockSize: 16, nLayer: 2, nHead: 2, nEmbd: 32))
    static let smallMLP = ModelSpec.mlp(MLPConfig(inputFeatures: 784, hidden: [32], classes: 10))

    /// Trains n+m steps straight; trains n, checkpoints, resumes a new Trainer from
    /// `LoadedCheckpoint.read` + `restore`, trains m; compares everything bitwise.
    func assertResumeIsExact(_ spec: ModelSpec, _ data: PreparedDataset, _ options: TrainingOptions, n: Int, m: Int,
                             store name: String, file: StaticString = #filePath, line: UInt = #line) throws {
        precondition(options.steps == n + m)
        let straight = try Trainer(spec: spec, data: data, options: options)
        var straightReports: [StepReport] = []
        for _ in 0..<(n + m) { straightReports.append(try straight.trainStep()) }

        let first = try Trainer(spec: spec, data: data, options: options)
        for _ in 0..<n { try first.trainStep() }
        let store = CheckpointStore(directory: try directory(name))
        let path = try first.saveCheckpoint(to: store)
        XCTAssertEqual(path, "\(store.directory)/\(CheckpointStore.stepDirectoryName(n))", file: file, line: line)

        let loaded = try LoadedCheckpoint.read(store.directory)
        XCTAssertEqual(loaded.config.step, n, file: file, line: line)
        XCTAssertEqual(loaded.config.model, spec, file: file, line: line)
        let resumed = try Trainer(spec: loaded.config.model, data: data, options: options)
        XCTAssertNotEqual(parameterBits(resumed.model), parameterBits(first.model), "fresh weights differ before restore",
                          file: file, line: line)
        try resumed.restore(from: loaded)
        XCTAssertEqual(resumed.step, n, file: file, line: line)
        XCTAssertEqual(resumed.optimizer.stepCount, n, file: file, line: line)
        XCTAssertEqual(parameterBits(resumed.model), parameterBits(first.model), file: file, line: line)

        var resumedReports: [StepReport] = []
        for _ in 0..<m { resumedReports.append(try resumed.trainStep()) }
        XCTAssertEqual(resumedReports.first?.step, n + 1, file: file, line: line)
        XCTAssertEqual(resumedReports.first?.loss.bitPattern, straightReports[n].loss.bitPattern,
                       "loss of step \(n + 1)", file: file, line: line)
        XCTAssertEqual(resumedReports.map(\.loss.bitPattern), straightReports[n...].map(\.loss.bitPattern), file: file, line: line)
        XCTAssertEqual(resumedReports.map(\.learningRate), straightReports[n...].map(\.learningRate), file: file, line: line)
        XCTAssertEqual(resumedReports.map(\.gradientNorm), straightReports[n...].map(\.gradientNorm), file: file, line: line)
        XCTAssertEqual(parameterBits(resumed.model), parameterBits(straight.model), "weights after step \(n + m)",
                       file: file, line: line)
        XCTAssertEqual(resumed.optimizer.stateTensors().map { $0.tensor.toArray().map(\.bitPattern) },
                       straight.optimizer.stateTensors().map { $0.tensor.toArray().map(\.bitPattern) },
                       "optimizer state after step \(n + m)", file: file, line: line)
        XCTAssertEqual(try resumed.validate(), try straight.validate(), file: file, line: line)
        // The run did learn something, so equal weights are not trivially equal.
        XCTAssertNotEqual(parameterBits(straight.model), parameterBits(first.model), file: file, line: line)
    }

    func testGPTAdamWResumeIsBitwiseIdentical() throws {
        var o = trainingOptions(steps: 8, batchSize: 8, learningRate: 3e-3, warmup: 3, evalBatches: 4)
        o.microBatches = 2
        try assertResumeIsExact(Self.smallGPT, try arithmeticData(blockSize: 16), o, n: 5, m: 3, store: "gpt-adamw")
    }

    func testGPTSGDNesterovResumeIsBitwiseIdentical() throws {
        var o = trainingOptions(steps: 8, batchSize: 8, learningRate: 0.05, optimizer: "sgd", warmup: 2, evalBatches: 4)
        o.nesterov = true
        o.weightDecay = 0.01
        try assertResumeIsExact(Self.smallGPT, try arithmeticData(blockSize: 16), o, n: 4, m: 4, store: "gpt-sgd")
    }

    func testMLPAdamWResumeIsBitwiseIdentical() throws {
        let o = trainingOptions(steps: 10, batchSize: 32, learningRate: 1e-3, warmup: 2, evalBatches: 4)
        try assertResumeIsExact(Self.smallMLP, try digitsData(), o, n: 6, m: 4, store: "mlp-adamw")
    }

    func testMLPSGDMomentumResumeIsBitwiseIdentical() throws {
        let o = trainingOptions(steps: 10, batchSize: 32, learningRate: 0.05, optimizer: "sgd", evalBatches: 4)
        try assertResumeIsExact(Self.smallMLP, try digitsData(), o, n: 3, m: 7, store: "mlp-sgd")
    }

    /// Negative control: resuming with the weights but *without* the AdamW moments (zeroed in
    /// the file) does not reproduce the uninterrupted run, so the tests above would notice a
    /// checkpoint that dropped optimizer state.
    func testResumeWithoutOptimizerStateDiverges() throws {
        let data = try arithmeticData(blockSize: 16)
        let o = trainingOptions(steps: 6, batchSize: 8, learningRate: 3e-3, evalBatches: 4)
        let straight = try Trainer(spec: Self.smallGPT, data: data, options: o)
        for _ in 0..<6 { try straight.trainStep() }
        let first = try Trainer(spec: Self.smallGPT, data: data, options: o)
        for _ in 0..<3 { try first.trainStep() }
        let store = CheckpointStore(directory: try directory("zeroed"))
        let path = try first.saveCheckpoint(to: store)
        let optimizerFile = "\(path)/\(CheckpointStore.optimizerFile)"
        var state = try SafeTensorsFile.read(path: optimizerFile)
        state.entries = state.entries.map { SafeTensorsEntry(name: $0.name, shape: $0.shape, floats: [Float](repeating: 0, count: $0.bytes.count / 4)) }
        try state.write(to: optimizerFile)
        try CheckpointIntegrity.writeSums(in: path)  // an edit made on purpose, so the hashes follow it

        let resumed = try Trainer(spec: Self.smallGPT, data: data, options: o)
        try resumed.restore(from: try LoadedCheckpoint.read(store.directory))
        for _ in 0..<3 { try resumed.trainStep() }
        XCTAssertNotEqual(parameterBits(resumed.model), parameterBits(straight.model))
    }

    /// `run` with periodic checkpoints, resumed from the middle one into another store.
    func testRunResumesFromAnIntermediateCheckpoint() throws {
        let data = try digitsData()
        var o = trainingOptions(steps: 6, batchSize: 32, learningRate: 1e-3, evalBatches: 4)
        o.checkpointInterval = 3
        let straight = try Trainer(spec: Self.smallMLP, data: data, options: o)
        let storeA = CheckpointStore(directory: try directory("a"), keep: 5)
        var checkpoints: [Int] = []
        try straight.run(store: storeA) { if case let .checkpoint(step, _) = $0 { checkpoints.append(step) } }
        XCTAssertEqual(checkpoints, [3, 6])
        XCTAssertEqual(try LoadedCheckpoint.read(storeA.directory).config.step, 6)

        let middle = try LoadedCheckpoint.read("\(storeA.directory)/step-00000003")
        let resumed = try Trainer(spec: middle.config.model, data: data, options: o)
        try resumed.restore(from: middle)
        var steps: [Int] = []
        try resumed.run(store: CheckpointStore(directory: try directory("b"))) {
            if case let .step(r, _, _) = $0 { steps.append(r.step) }
        }
        XCTAssertEqual(steps, [4, 5, 6])
        XCTAssertEqual(parameterBits(resumed.model), parameterBits(straight.model))
        // Both stores' final checkpoints hold the same weights, byte for byte.
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: "\(storeA.directory)/step-00000006/model.safetensors")),
                       try Data(contentsOf: URL(fileURLWithPath: try directory("b") + "/step-00000006/model.safetensors")))
    }

    func testRestoreRefusesACheckpointOfAnotherRun() throws {
        let data = try digitsData()
        let o = trainingOptions(steps: 4, batchSize: 32, learningRate: 1e-3, evalBatches: 4)
        let first = try Trainer(spec: Self.smallMLP, data: data, options: o)
        try first.trainStep()
        let store = CheckpointStore(directory: try directory("refuse"))
        try first.saveCheckpoint(to: store)
        let loaded = try LoadedCheckpoint.read(store.directory)

        var modifiedByRefusal: [String] = []
        func assertRefused(_ spec: ModelSpec, _ options: TrainingOptions, _ fragments: [String],
                           file: StaticString = #filePath, line: UInt = #line) throws {
            let t = try Trainer(spec: spec, data: data, options: options)
            let initial = parameterBits(t.model)
            defer { if parameterBits(t.model) != initial { modifiedByRefusal.append(fragments[0]) } }
            XCTAssertThrowsError(try t.restore(from: loaded), file: file, line: line) { error in
                XCTAssertTrue(error is CheckpointError, "\(type(of: error))", file: file, line: line)
                for f in fragments {
                    XCTAssertTrue("\(error)".contains(f), "\"\(error)\" lacks \"\(f)\"", file: file, line: line)
                }
            }
            XCTAssertEqual(t.step, 0, "a refused checkpoint does not move the step", file: file, line: line)
        }
        try assertRefused(.mlp(MLPConfig(inputFeatures: 784, hidden: [33], classes: 10)), o,
                          ["differs from this run's", "MLP 784-32-10", "MLP 784-33-10"])
        var otherSeed = o
        otherSeed.seed = 7
        try assertRefused(Self.smallMLP, otherSeed, ["same seed and batch size", "seed 1337"])
        var otherBatch = o
        otherBatch.batchSize = 16
        try assertRefused(Self.smallMLP, otherBatch, ["same seed and batch size", "batch 32"])
        var sgd = o
        sgd.optimizer = "sgd"
        try assertRefused(Self.smallMLP, sgd, ["optimizer is sgd but the checkpoint holds adamw state"])
        XCTAssertFalse(modifiedByRefusal.contains("differs from this run's"), "the model check comes before any copy")
        XCTAssertEqual(modifiedByRefusal, [], "a refused restore() leaves the trainer's weights as they were")
    }
}

