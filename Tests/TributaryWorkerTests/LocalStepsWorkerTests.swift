import Foundation
import TributaryCompression
import TributaryModels
import TributaryPlanning
import TributaryProtocol
import TributaryTensor
import XCTest
@testable import TributaryWorker

/// The worker's side of local rounds (DiLoCo) and of compressed downloads.
final class LocalStepsWorkerTests: XCTestCase {
    override func setUp() { ComputeThreads.set(1) }

    let spec = ModelSpec.gpt(GPTConfig(vocabSize: 23, blockSize: 16, nLayer: 1, nHead: 2, nEmbd: 16))

    func job(steps: Int = 4) -> JobDescription {
        JobDescription(name: "local", model: spec, samplesPerUnit: 8, microBatchSize: 2, updateCodec: "fp32", zstdLevel: 1,
                       localSteps: LocalSteps(steps: steps, optimizer: "adamw", lr: 3e-3, minLr: 3e-4, warmupSteps: 2,
                                              decaySteps: 40, beta1: 0.9, beta2: 0.99, weightDecay: 0.1, momentum: 0.9,
                                              nesterov: false, gradClip: 1))
    }

    func batch(_ seed: UInt64) -> ModelBatch {
        var r = SeededRandom(seed: seed)
        let n = 8 * 16
        return .tokens(inputs: (0..<n).map { _ in Int32(r.nextIndex(below: 23)) },
                       targets: (0..<n).map { _ in Int32(r.nextIndex(below: 23)) }, batch: 8, sequence: 16)
    }

    /// The inner AdamW state persists across units and across a restart of the worker: a
    /// runner restarted between two units sends exactly the update of one that kept running;
    /// a unit whose commit was refused leaves the state as it was.
    func testInnerOptimizerStateSurvivesARestartAndAFailedUnit() async throws {
        let base = NSTemporaryDirectory() + "tributary-local-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: base) }
        let model = try spec.build(seed: 3)

        let steady = try OfflineUnitRunner(job: job(), directory: "\(base)/steady", budgetBytes: nil)
        try steady.publish(model.parameters)
        _ = try await steady.run(batch(1), version: 0)
        let (steadyLoss, expected) = try await steady.run(batch(2), version: 1)

        let first = try OfflineUnitRunner(job: job(), directory: "\(base)/restarted", budgetBytes: nil)
        try first.publish(model.parameters)
        _ = try await first.run(batch(1), version: 0)
        XCTAssertTrue(FileManager.default.fileExists(atPath: "\(base)/restarted/inner-optimizer.safetensors"))
        let restarted = try OfflineUnitRunner(job: job(), directory: "\(base)/restarted", budgetBytes: nil)
        try restarted.publish(model.parameters)
        let (loss, updates) = try await restarted.run(batch(2), version: 1)
        XCTAssertEqual(loss, steadyLoss)
        XCTAssertEqual(updates, expected, "the restarted worker's pseudo-gradient is bit for bit the steady one's")

        // A fresh state (what a lost file would give) sends something else: the state matters.
        let fresh = try OfflineUnitRunner(job: job(), directory: "\(base)/fresh", budgetBytes: nil)
        try fresh.publish(model.parameters)
        let (_, other) = try await fresh.run(batch(2), version: 1)
        XCTAssertNotEqual(other, expected)

        // Inner steps of a unit that was not accepted (its commit refused) are undone.
        for discard in [true, false] {
            let rolled = try OfflineUnitRunner(job: job(), directory: "\(base)/rolled-\(discard)", budgetBytes: nil)
            try rolled.publish(model.parameters)
            _ = try await rolled.run(batch(1), version: 0)
            let local = try XCTUnwrap(rolled.compute.local)
            _ = try local.run(try spec.build(seed: 8), batch: batch(3), version: 1, microBatch: 2)
            if discard { rolled.compute.discardStaged() }
            let (_, again) = try await rolled.run(batch(2), version: 1)
            XCTAssertEqual(again == expected, discard, discard ? "rolled back" : "the extra steps changed the state")
        }
    }

    /// Local steps hold the whole model and the inner state: a budget below the plan is refused
    /// in one line before any unit, naming local steps.
    func testLocalStepsRefuseABudgetTooSmallForTheInnerState() throws {
        let dir = NSTemporaryDirectory() + "tributary-local-budget-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let planner = MemoryPlanner(model: spec, unitSamples: 2, suggestedMicroBatch: 2, codec: .fp32)
        let plan = try planner.planLocal(budgetBytes: nil, stateFloatsPerParameter: 2)
        XCTAssertGreaterThan(plan.predictedPeakBytes, 4 * 4 * spec.parameterCount, "values, gradients and two moments")
        XCTAssertThrowsError(try OfflineUnitRunner(job: job(), directory: dir, budgetBytes: 4 * spec.parameterCount)) { error in
            XCTAssertTrue("\(error)".contains("local steps"), "\(error)")
        }
    }

    /// A delta chain that was tampered with, names other versions or rebuilds other values is
    /// refused (then the worker fetches the whole shard); a good one rebuilds the shard.
    func testBadDeltaChainsAreRefused() throws {
        let dir = NSTemporaryDirectory() + "tributary-chain-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let cache = ShardCache(directory: dir)
        let n = 300
        var r = SeededRandom(seed: 4)
        let start = (0..<n).map { _ in r.nextGaussian() }
        let startBody = try start.withUnsafeBufferPointer { try TensorFrame.encode($0, codec: .fp32, zstdLevel: nil) }
        let startHash = ShardCache.contentHash(of: startBody)
        try cache.store(startBody, hash: startHash)
        let step = (0..<n).map { _ in 0.01 * r.nextGaussian() }
        let delta = try step.withUnsafeBufferPointer { try TensorFrame.encode($0, codec: .int8Block, zstdLevel: 1) }
        var target = start
        try delta.withUnsafeBytes { raw in
            var scratch = [Float](repeating: 0, count: n)
            try target.withUnsafeMutableBufferPointer { t in
                try scratch.withUnsafeMutableBufferPointer { try ParameterDelta.apply(raw, to: t, scratch: $0) }
            }
        }
        let targetBody = try target.withUnsafeBufferPointer { try TensorFrame.encode($0, codec: .fp32, zstdLevel: nil) }
        let targetHash = ShardCache.contentHash(of: targetBody)
        let allocator = TensorAllocator(budgetBytes: nil)
        func rebuild(_ chain: [UInt8], from: Int = 4, to: Int = 5, expected: String? = nil) throws -> [UInt8] {
            try DeltaReconstruction.rebuild(cache: cache, baseHash: startHash, chain: chain, from: from, to: to, elements: n,
                                            expectedHash: expected ?? targetHash, allocator: allocator)
        }
        let good = DeltaChain.encode(from: 4, to: 5, deltas: [delta])
        XCTAssertEqual(try rebuild(good), targetBody)

        var flipped = good
        flipped[flipped.count - 3] ^= 0x10
        XCTAssertThrowsError(try rebuild(flipped)) { XCTAssertTrue("\($0)".contains("delta 1"), "\($0)") }
        XCTAssertThrowsError(try rebuild(good, from: 3, to: 5)) { XCTAssertTrue("\($0)".contains("not 3 to 5"), "\($0)") }
        XCTAssertThrowsError(try rebuild(Array(good.dropLast()))) { XCTAssertTrue("\($0)".contains("remain"), "\($0)") }
        XCTAssertThrowsError(try rebuild(good + [0])) { XCTAssertTrue("\($0)".contains("after its last delta"), "\($0)") }
        // A well-formed delta that does not give the published values (a hostile coordinator).
        let other = try step.map { $0 * 2 }.withUnsafeBufferPointer { try TensorFrame.encode($0, codec: .int8Block, zstdLevel: 1) }
        XCTAssertThrowsError(try rebuild(DeltaChain.encode(from: 4, to: 5, deltas: [other]))) {
            XCTAssertTrue("\($0)".contains("content hash differs"), "\($0)")
        }
        // A delta that makes values non-finite.
        let huge = [Float](repeating: 3e38, count: n)
        let bomb = try huge.withUnsafeBufferPointer { try TensorFrame.encode($0, codec: .fp32, zstdLevel: 1) }
        XCTAssertThrowsError(try rebuild(DeltaChain.encode(from: 4, to: 6, deltas: [bomb, bomb]), to: 6)) {
            XCTAssertTrue("\($0)".contains("non-finite"), "\($0)")
        }
    }
}
