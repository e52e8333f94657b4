import TributaryModels
import TributaryOptim
import TributaryTensor
import XCTest
@testable import TributaryTraining

/// The step both loops share: clipping, skipping non-finite steps, and the skip policy.
final class ModelStateTests: XCTestCase {
    let spec = ModelSpec.mlp(MLPConfig(inputFeatures: 3, hidden: [4], classes: 2))

    func state(_ policy: SkipPolicy, clip: Float = 1) throws -> ModelState {
        try ModelState(spec: spec, seed: 7, settings: OptimizerSettings(kind: .adamw, schedule: .constant(0.01), gradClip: clip),
                       skipPolicy: policy)
    }

    func fillGradients(_ s: ModelState, _ value: Float) {
        for p in s.parameters.parameters { p.gradient.copy(from: [Float](repeating: value, count: p.count)) }
    }

    func testFiniteStepClipsThenMovesTheWeights() throws {
        let s = try state(.neverStop, clip: 0.5)
        let before = parameterBits(s.model)
        fillGradients(s, 1)
        let outcome = try s.step(at: 0)
        let count = Double(s.parameters.parameters.reduce(0) { $0 + $1.count })
        XCTAssertEqual(outcome.gradientNorm, count.squareRoot(), accuracy: 1e-4, "the norm before clipping")
        XCTAssertEqual(s.parameters.gradientNorm(), 0.5, accuracy: 1e-4, "gradients clipped to grad_clip")
        XCTAssertFalse(outcome.skipped)
        XCTAssertEqual(s.optimizer.stepCount, 1)
        XCTAssertNotEqual(parameterBits(s.model), before)
    }

    func testCoordinatorPolicyKeepsSkippingWithoutStopping() throws {
        let s = try state(.neverStop)
        let before = parameterBits(s.model)
        for step in 0..<8 {
            fillGradients(s, .nan)
            XCTAssertTrue(try s.step(at: step).skipped)
        }
        XCTAssertEqual(s.consecutiveSkips, 8)
        XCTAssertEqual(parameterBits(s.model), before, "non-finite gradients never reach the weights")
        XCTAssertEqual(s.optimizer.stepCount, 0)
        fillGradients(s, 0.1)
        XCTAssertFalse(try s.step(at: 8).skipped)
        XCTAssertEqual(s.consecutiveSkips, 0, "a good step resets the count")
    }

    func testSingleProcessPolicyStopsAtTheLimit() throws {
        let s = try state(.stopAfter(3))
        fillGradients(s, 1)
        for step in 0..<2 { XCTAssertTrue(try s.step(at: step, loss: .infinity).skipped, "a non-finite loss skips too") }
        XCTAssertThrowsError(try s.step(at: 2, loss: .nan)) { error in
            XCTAssertEqual(error as? TrainingError, .diverged(step: 2))
        }
    }
}
