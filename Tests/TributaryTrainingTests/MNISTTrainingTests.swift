import Foundation
import XCTest
import TributaryData
import TributaryModels
import TributaryTensor
@testable import TributaryTraining

/// End-to-end: the MLP classifier trained by `Trainer` learns real and synthetic digits.
final class MNISTTrainingTests: XCTestCase {
    override func setUp() {
        super.setUp()
        ComputeThreads.set(2)
    }

    /// 784-512-10, AdamW lr 3e-3 (cosine to 3e-4), 1,200 steps of 100 (13⅓ epochs of the 9,000
    /// training images of MNIST's t10k set), scored on all 1,000 held-out images.
    /// Measured: accuracy 0.971 (971/1000), validation loss 0.124, in ~2.6 s on 2 cores.
    /// PyTorch with the same recipe (AdamW β=(0.9, 0.99), wd 0.1 on matrices, clip 1, cosine)
    /// scores 0.94–0.955 at lr 1e-3 / 900 steps and 0.961 at 3e-3, as this code does
    /// (0.938 and 0.965). An untrained network scores ~10%.
    func testMLPReaches95PercentOnHeldOutMNIST() throws {
        let dir = try sharedData("mnist")
        let raw = try DatasetSource.load(dir)
        let data = try DatasetSource.prepare(raw, name: "mnist", blockSize: nil, validationFraction: 0.1, seed: 42)
        XCTAssertEqual(data.train.sampleCount, 9_000)
        XCTAssertEqual(data.validation.sampleCount, 1_000)

        // validate() scores floor(vCount / min(batch, vCount)) batches of `batchSize`, capped
        // at evalBatches: a batch of 100 and evalBatches ≥ 10 cover the 1,000 images exactly.
        let options = trainingOptions(steps: 1_200, batchSize: 100, learningRate: 3e-3, evalBatches: 1_000)
        let trainer = try Trainer(spec: .mlp(MLPConfig(inputFeatures: 784, hidden: [512], classes: 10)),
                                  data: data, options: options)

        let before = try XCTUnwrap(try trainer.validate())
        XCTAssertEqual(before.predictions, 1_000, "validation must cover the whole held-out split")
        XCTAssertLessThan(before.accuracy, 0.3, "an untrained network is near chance")
        XCTAssertEqual(before.loss, log(10.0), accuracy: 0.5)

        var firstLoss: Float = 0, lastLoss: Float = 0
        for s in 0..<options.steps {
            let r = try trainer.trainStep()
            XCTAssertFalse(r.skipped)
            if s == 0 { firstLoss = r.loss }
            lastLoss = r.loss
        }
        XCTAssertEqual(trainer.step, 1_200)
        let after = try XCTUnwrap(try trainer.validate())
        print(String(format: "MNIST MLP 784-512-10: held-out accuracy %.4f (%d/%d), loss %.4f (before: %.4f, %.4f); train loss %.3f -> %.3f",
                     after.accuracy, after.correct, after.predictions, after.loss, before.accuracy, before.loss, firstLoss, lastLoss))
        XCTAssertEqual(after.predictions, 1_000)
        XCTAssertGreaterThanOrEqual(after.accuracy, 0.95)
        XCTAssertLessThan(after.loss, 0.2)
    }

    /// builtin:digits (6,000 samples: class prototype + noise) runs without ../shared.
    /// Measured: 100% held-out accuracy after 60 steps of 60 (chance is 10%).
    func testMLPLearnsSyntheticDigits() throws {
        let data = try digitsData()
        XCTAssertEqual(data.train.sampleCount, 5_400)
        XCTAssertEqual(data.validation.sampleCount, 600)
        let options = trainingOptions(steps: 60, batchSize: 60, learningRate: 1e-3, evalBatches: 100)
        let trainer = try Trainer(spec: .mlp(MLPConfig(inputFeatures: 784, hidden: [64], classes: 10)),
                                  data: data, options: options)
        let before = try XCTUnwrap(try trainer.validate())
        XCTAssertEqual(before.predictions, 600)
        XCTAssertLessThan(before.accuracy, 0.4)

        var events: [TrainingEvent] = []
        try trainer.run(store: nil) { events.append($0) }
        XCTAssertEqual(trainer.step, 60)
        let steps = events.compactMap { if case let .step(r, _, _) = $0 { return r } else { return nil } }
        XCTAssertEqual(steps.map(\.step), Array(1...60))
        XCTAssertEqual(steps.first?.samples, 60)
        XCTAssertEqual(steps.first?.predictions, 60)
        // The cosine schedule reaches the floor (lr/10) only after the last step.
        XCTAssertEqual(steps.first?.learningRate ?? 0, 1e-3, accuracy: 1e-9)
        XCTAssertGreaterThan(steps.last?.learningRate ?? 0, 1e-4)

        let after = try XCTUnwrap(try trainer.validate())
        print(String(format: "builtin:digits MLP 784-64-10: held-out accuracy %.4f, loss %.4f (before %.4f, %.4f)",
                     after.accuracy, after.loss, before.accuracy, before.loss))
        XCTAssertGreaterThanOrEqual(after.accuracy, 0.9, "chance is 0.1")
        XCTAssertLessThan(after.loss, before.loss / 4)
    }
}
