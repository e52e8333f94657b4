import Foundation
import XCTest
import TributaryCheckpoint
import TributaryData
import TributaryModels
import TributaryOptim
import TributaryTensor
@testable import TributaryTraining

/// The training loop's bookkeeping: options, determinism, accumulation, skipping, events.
final class TrainerTests: XCTestCase {
    override func setUp() {
        super.setUp()
        ComputeThreads.set(2)
    }

    static let smallGPT = ModelSpec.gpt(GPTConfig(vocabSize: 13, blockSize: 16, nLayer: 1, nHead: 2, nEmbd: 32))
    static let smallMLP = ModelSpec.mlp(MLPConfig(inputFeatures: 784, hidden: [16], classes: 10))

    func testInvalidOptionsAreRefusedWithTheReason() throws {
        let data = try digitsData()
        func refused(_ edit: (inout TrainingOptions) -> Void, _ fragment: String, line: UInt = #line) {
            var o = trainingOptions(steps: 2, batchSize: 8, learningRate: 1e-3)
            edit(&o)
            XCTAssertThrowsError(try Trainer(spec: Self.smallMLP, data: data, options: o), line: line) { error in
                guard case .invalidOptions? = error as? TrainingError else { return XCTFail("\(error)", line: line) }
                XCTAssertTrue("\(error)".hasPrefix("invalid training options: "), "\(error)", line: line)
                XCTAssertTrue("\(error)".contains(fragment), "\"\(error)\" lacks \"\(fragment)\"", line: line)
            }
        }
        refused({ $0.steps = 0 }, "steps must be positive")
        refused({ $0.batchSize = 0 }, "batch size must be positive")
        refused({ $0.microBatches = 3 }, "batch size 8 must be a multiple of micro-batches 3")
        refused({ $0.microBatches = 0 }, "micro-batches 0")
        refused({ $0.learningRate = 0 }, "learning rate must be positive")
        refused({ $0.learningRate = .nan }, "learning rate must be positive")
        refused({ $0.learningRate = .infinity }, "learning rate must be positive")
        refused({ $0.optimizer = "adam" }, "optimizer must be adamw or sgd (got adam)")
        refused({ $0.evalInterval = -1 }, "intervals must not be negative")
        refused({ $0.checkpointInterval = -5 }, "intervals must not be negative")

        var big = trainingOptions(steps: 2, batchSize: 6_000, learningRate: 1e-3)
        XCTAssertThrowsError(try Trainer(spec: Self.smallMLP, data: data, options: big)) { error in
            XCTAssertEqual(error as? TrainingError, .datasetTooSmall("5400 training samples, batch size is 6000"))
        }
        big.batchSize = 5_400
        XCTAssertNoThrow(try Trainer(spec: Self.smallMLP, data: data, options: big))

        XCTAssertThrowsError(try Trainer(spec: .gpt(GPTConfig(vocabSize: 13, blockSize: 16, nLayer: 1, nHead: 3, nEmbd: 32)),
                                         data: try arithmeticData(blockSize: 16),
                                         options: trainingOptions(steps: 1, batchSize: 4, learningRate: 1e-3))) { error in
            XCTAssertEqual(error as? ModelError, .invalidConfiguration("n_embd (32) must be divisible by n_head (3)"))
        }
    }

    func testSameSeedSameRunOtherSeedOtherRun() throws {
        let data = try arithmeticData(blockSize: 16)
        let o = trainingOptions(steps: 5, batchSize: 4, learningRate: 1e-3)
        let a = try Trainer(spec: Self.smallGPT, data: data, options: o)
        let b = try Trainer(spec: Self.smallGPT, data: data, options: o)
        var other = o
        other.seed = 1338
        let c = try Trainer(spec: Self.smallGPT, data: data, options: other)
        XCTAssertEqual(parameterBits(a.model), parameterBits(b.model))
        XCTAssertNotEqual(parameterBits(a.model), parameterBits(c.model))
        for _ in 0..<5 {
            let ra = try a.trainStep(), rb = try b.trainStep()
            XCTAssertEqual(ra.loss.bitPattern, rb.loss.bitPattern)
        }
        XCTAssertEqual(parameterBits(a.model), parameterBits(b.model))
        XCTAssertEqual(a.order.batch(step: 0), b.order.batch(step: 0))
        XCTAssertNotEqual(a.order.batch(step: 0), c.order.batch(step: 0))
    }

    /// A step of 16 in 4 accumulated micro-batches computes the same mean loss and gradient as
    /// one batch of 16: with plain SGD the weights after the step agree to float rounding.
    func testMicroBatchesAccumulateToTheFullBatch() throws {
        let data = try arithmeticData(blockSize: 16)
        var o = trainingOptions(steps: 1, batchSize: 16, learningRate: 0.5, optimizer: "sgd")
        o.momentum = 0
        o.weightDecay = 0
        o.gradClip = 0
        let whole = try Trainer(spec: Self.smallGPT, data: data, options: o)
        o.microBatches = 4
        let split = try Trainer(spec: Self.smallGPT, data: data, options: o)
        let before = whole.model.parameters.parameters.map { $0.value.toArray() }
        let rw = try whole.trainStep(), rs = try split.trainStep()
        XCTAssertEqual(rw.loss, rs.loss, accuracy: 1e-5)
        XCTAssertEqual(rw.gradientNorm, rs.gradientNorm, accuracy: 1e-5 * rw.gradientNorm)
        XCTAssertEqual(rw.predictions, 256)
        XCTAssertEqual(rs.predictions, 256)
        var maxDiff: Float = 0, maxMove: Float = 0
        for (i, (p, q)) in zip(whole.model.parameters.parameters, split.model.parameters.parameters).enumerated() {
            let a = p.value.toArray(), b = q.value.toArray()
            for j in a.indices {
                maxDiff = max(maxDiff, abs(a[j] - b[j]))
                maxMove = max(maxMove, abs(a[j] - before[i][j]))
            }
        }
        XCTAssertGreaterThan(maxMove, 1e-3, "the step moved the weights")
        XCTAssertLessThan(maxDiff, 1e-6)
    }

    /// Non-finite losses skip the update (weights and optimizer untouched); five in a row abort.
    func testNonFiniteLossesAreSkippedThenDiverge() throws {
        let count = 64
        var pixels = [Float](repeating: 0.5, count: count * 4)
        pixels[0] = .nan  // one poisoned row in the training set; batches of 64 always include it
        let labels = (0..<count).map { Int32($0 % 3) }
        let train = try LabeledImages(count: count, featureCount: 4, classCount: 3, pixels: pixels, labels: labels)
        let data = PreparedDataset(name: "poisoned", train: .images(train), validation: .images(train), vocabulary: nil)
        let o = trainingOptions(steps: 10, batchSize: 64, learningRate: 1e-2)
        let trainer = try Trainer(spec: .mlp(MLPConfig(inputFeatures: 4, hidden: [8], classes: 3)), data: data, options: o)
        let initial = parameterBits(trainer.model)
        for s in 1...4 {
            let r = try trainer.trainStep()
            XCTAssertTrue(r.skipped)
            XCTAssertTrue(!r.loss.isFinite || !r.gradientNorm.isFinite)
            XCTAssertEqual(r.step, s)
        }
        XCTAssertEqual(parameterBits(trainer.model), initial)
        XCTAssertEqual(trainer.optimizer.stepCount, 0)
        XCTAssertTrue(trainer.optimizer.stateTensors().allSatisfy { $0.tensor.toArray().allSatisfy { $0 == 0 } })
        XCTAssertThrowsError(try trainer.trainStep()) { error in
            XCTAssertEqual(error as? TrainingError, .diverged(step: 4))
            XCTAssertTrue("\(error)".contains("lower the learning rate"))
        }
        XCTAssertEqual(parameterBits(trainer.model), initial)
    }

    func testRunReportsStepsValidationsAndCheckpointsOnSchedule() throws {
        let data = try digitsData()
        var o = trainingOptions(steps: 7, batchSize: 32, learningRate: 1e-3, evalBatches: 3)
        o.evalInterval = 3
        o.checkpointInterval = 2
        let trainer = try Trainer(spec: Self.smallMLP, data: data, options: o)
        let scratch = try ScratchDirectory("run")
        defer { scratch.cleanup() }
        let store = CheckpointStore(directory: scratch.path, keep: 2)
        var log: [String] = []
        var remaining: [Double] = []
        try trainer.run(store: store) { event in
            switch event {
            case let .step(r, elapsed, left):
                log.append("s\(r.step)")
                remaining.append(left)
                XCTAssertGreaterThanOrEqual(elapsed, 0)
            case let .validation(step, e):
                log.append("v\(step)")
                XCTAssertEqual(e.predictions, 3 * 32)
            case let .checkpoint(step, path):
                log.append("c\(step)")
                XCTAssertEqual(path, "\(scratch.path)/\(CheckpointStore.stepDirectoryName(step))")
            }
        }
        XCTAssertEqual(log, ["s1", "s2", "c2", "s3", "v3", "s4", "c4", "s5", "s6", "v6", "c6", "s7", "v7", "c7"])
        XCTAssertEqual(remaining.last, 0)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: scratch.path).sorted(),
                       ["latest", "step-00000006", "step-00000007"])
        XCTAssertEqual(try LoadedCheckpoint.read(scratch.path).config.step, 7)
        // Running again after the end does nothing.
        log.removeAll()
        try trainer.run(store: nil) { _ in log.append("event") }
        XCTAssertEqual(log, [])
    }

    /// `tributary train --help` says "--eval-interval: Validate every N steps (0: only at the
    /// end)", and `Trainer.run`'s documentation says it "validates every `evalInterval` steps
    /// and at the end". With evalInterval 0 run() never validates at all.
    func testEvalIntervalZeroStillValidatesAtTheEnd() throws {
        let data = try digitsData()
        let o = trainingOptions(steps: 3, batchSize: 32, learningRate: 1e-3, evalBatches: 2)
        XCTAssertEqual(o.evalInterval, 0)
        let trainer = try Trainer(spec: Self.smallMLP, data: data, options: o)
        var validations: [Int] = []
        try trainer.run(store: nil) { if case let .validation(step, _) = $0 { validations.append(step) } }
        XCTAssertEqual(validations, [3], "evalInterval 0 should validate once, at the end")
    }

    /// The validation subset: min(evalBatches, ⌊vCount / batch⌋) batches of `batchSize` (or of
    /// the whole split when it is smaller than a batch), the same samples at every call.
    func testValidationSubsetSizeAndStability() throws {
        let data = try digitsData()  // 600 validation samples
        func evaluation(batch: Int, evalBatches: Int) throws -> Evaluation? {
            let t = try Trainer(spec: Self.smallMLP, data: data,
                                options: trainingOptions(steps: 1, batchSize: batch, learningRate: 1e-3, evalBatches: evalBatches))
            let e = try t.validate()
            XCTAssertEqual(e, try t.validate(), "fixed subset")
            return e
        }
        XCTAssertEqual(try evaluation(batch: 100, evalBatches: 100)?.predictions, 600)
        XCTAssertEqual(try evaluation(batch: 128, evalBatches: 100)?.predictions, 512, "the remainder (88) is not scored")
        XCTAssertEqual(try evaluation(batch: 32, evalBatches: 5)?.predictions, 160)
        XCTAssertEqual(try evaluation(batch: 1_000, evalBatches: 3)?.predictions, 600, "one batch of the whole split")
        XCTAssertNil(try evaluation(batch: 32, evalBatches: 0))
        // A GPT's predictions are tokens: batches × batch × block.
        let gpt = try Trainer(spec: Self.smallGPT, data: try arithmeticData(blockSize: 16),
                              options: trainingOptions(steps: 1, batchSize: 8, learningRate: 1e-3, evalBatches: 3))
        XCTAssertEqual(try gpt.validate()?.predictions, 3 * 8 * 16)
    }
}
