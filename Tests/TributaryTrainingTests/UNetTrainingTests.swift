import Foundation
import XCTest
import TributaryData
import TributaryModels
import TributaryTensor
@testable import TributaryTraining

/// The DDPM U-Net through the single-process Trainer (what `tributary train` runs), on
/// builtin:digits: the family builds, takes image batches and learns to predict the noise.
final class UNetTrainingTests: XCTestCase {
    override func setUp() { ComputeThreads.set(2) }

    func testUNetLearnsToDenoiseSyntheticDigits() throws {
        let data = try digitsData()
        let config = UNetConfig(imageSize: 28, inChannels: 1, baseChannels: 8, channelMultipliers: [1, 2], blocksPerLevel: 1,
                                normGroups: 4, timesteps: 1000, schedule: .linear)
        let options = trainingOptions(steps: 100, batchSize: 16, learningRate: 2e-3, evalBatches: 10)
        let trainer = try Trainer(spec: ModelSpec(config), data: data, options: options)
        let before = try XCTUnwrap(try trainer.validate())
        let start = Date()
        try trainer.run(store: nil) { _ in }
        XCTAssertEqual(trainer.step, 100)
        let after = try XCTUnwrap(try trainer.validate())
        print(String(format: "builtin:digits U-Net 28×28 base 8 [1,2] (%@ parameters), 100 steps of 16 in %.0f s: held-out denoising loss %.4f → %.4f",
                     config.parameterCount.formatted(), Date().timeIntervalSince(start), before.loss, after.loss))
        XCTAssertLessThan(after.loss, 0.5 * before.loss, "the denoising loss at least halves")
    }
}
