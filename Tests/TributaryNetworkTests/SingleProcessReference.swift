import TributaryCoordinator
import TributaryModels
import TributaryTraining
import XCTest

/// The single-process run a synchronous job with the mean rule must equal: the same
/// optimizer, seed and data order, one step per round over `units_per_round × samples_per_unit`
/// samples. Used by the equivalence tests of each model family.
enum SingleProcessReference {
    /// `tributary train`'s options for `config`'s job, `rounds` steps, evaluation off.
    static func options(_ config: JobConfig, rounds: Int) -> TrainingOptions {
        var options = TrainingOptions()
        options.steps = rounds
        options.batchSize = config.rounds.unitsPerRound * config.units.samplesPerUnit
        options.microBatches = 1
        options.learningRate = config.optimizer.lr
        options.warmupSteps = config.optimizer.warmupRounds
        options.beta1 = config.optimizer.beta1
        options.beta2 = config.optimizer.beta2
        options.weightDecay = 0.1
        options.gradClip = config.optimizer.gradClip
        options.seed = config.data.seed
        options.evalInterval = 0
        return options
    }

    /// The largest difference between `trained`'s parameters and `distributed`'s, and the
    /// largest movement from the initial values of `spec` built with `seed` (for the
    /// comparison to mean anything the parameters must have moved). `including` filters names.
    static func compare(_ trained: any TrainableModel, with distributed: [String: [Float]], spec: ModelSpec, seed: UInt64,
                        including: (String) -> Bool = { _ in true },
                        file: StaticString = #filePath, line: UInt = #line) throws -> (worst: Float, moved: Float) {
        var worst: Float = 0, moved: Float = 0
        let initial = try spec.build(seed: seed)
        for p in trained.parameters.parameters where including(p.name) {
            let theirs = try XCTUnwrap(distributed[p.name], p.name, file: file, line: line)
            let mine = p.value.toArray()
            let start = try XCTUnwrap(initial.parameters[p.name], file: file, line: line).value.toArray()
            XCTAssertEqual(theirs.count, mine.count, p.name, file: file, line: line)
            for i in 0..<min(mine.count, theirs.count) {
                worst = max(worst, abs(mine[i] - theirs[i]))
                moved = max(moved, abs(mine[i] - start[i]))
            }
        }
        return (worst, moved)
    }
}
