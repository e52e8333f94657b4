import Foundation
import TributaryCompression
import TributaryModels
import TributaryProtocol
import TributaryTensor
@testable import TributaryWorker
import XCTest

/// The worker's side of the low-rank codec: shapes from the model's shard groups, the warm
/// start kept per shard beside the residual, and error feedback that loses nothing.
final class LowRankWorkerTests: XCTestCase {
    override func setUp() { ComputeThreads.set(2) }

    func testWarmStartIsKeptPerShardAndErrorFeedbackLosesNothing() async throws {
        let spec = ModelSpec.gpt(GPTConfig(vocabSize: 23, blockSize: 16, nLayer: 2, nHead: 2, nEmbd: 32))
        let samples = 4
        let job = JobDescription(name: "lowrank", model: spec, samplesPerUnit: samples, microBatchSize: samples,
                                 updateCodec: "lowrank:2", zstdLevel: 1)
        let dir = NSTemporaryDirectory() + "tributary-lowrank-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let runner = try OfflineUnitRunner(job: job, directory: dir, budgetBytes: nil)
        let model = try spec.build(seed: 5)
        try runner.publish(model.parameters)
        var r = SeededRandom(seed: 9)
        let n = samples * 16
        let batch = ModelBatch.tokens(inputs: (0..<n).map { _ in Int32(r.nextIndex(below: 23)) },
                                      targets: (0..<n).map { _ in Int32(r.nextIndex(below: 23)) }, batch: samples, sequence: 16)
        model.parameters.zeroGradients()
        _ = try model.forwardBackward(batch, lossScale: 1)
        let gradient = model.parameters.parameters.flatMap { $0.gradient.toArray() }

        // The same unit twice, on the same parameters: decoded₁ + decoded₂ + residual₂ = 2·g.
        var sums: [String: [Float]] = [:]
        for _ in 0..<2 {
            let (_, updates) = try await runner.run(batch)
            for (name, count) in runner.shards {
                let body = try XCTUnwrap(updates[name], name)
                var out = [Float](repeating: 0, count: count)
                try body.withUnsafeBytes { raw in
                    try out.withUnsafeMutableBufferPointer { try TensorFrame.decode(raw, expectedCount: count, into: $0) }
                }
                XCTAssertEqual(body[5], TensorCodec.lowRank.rawValue, name)
                sums[name] = zip(sums[name] ?? [Float](repeating: 0, count: count), out).map { $0 + $1 }
            }
        }
        let codec = try UpdateCodecSpec(parsing: "lowrank:2")
        let planner = runner.compute.planner
        var offset = 0
        var factored = 0
        for group in spec.shardGroups {
            let shapes = try XCTUnwrap(planner.shapes(ofShard: group.name))
            XCTAssertEqual(shapes, group.parameters.map { MatrixShape(shape: $0.shape) })
            // The warm start: one file per shard with matrices sent as factors, Σ 2·cols floats.
            let warm = try? Data(contentsOf: URL(fileURLWithPath: "\(dir)/residual/\(group.name).warm.f32"))
            let warmCount = codec.warmStartCount(shapes: shapes)
            XCTAssertEqual(warm?.count ?? 0, 4 * warmCount, group.name)
            if warmCount > 0 { factored += 1 }
            let residualData = try Data(contentsOf: URL(fileURLWithPath: "\(dir)/residual/\(group.name).f32"))
            let residual = residualData.withUnsafeBytes { Array($0.bindMemory(to: Float.self)) }
            let sum = try XCTUnwrap(sums[group.name])
            let g = Array(gradient[offset..<(offset + group.elementCount)])
            let scale = g.map(abs).max() ?? 1
            for i in 0..<g.count {
                XCTAssertEqual(sum[i] + residual[i], 2 * g[i], accuracy: 1e-5 * scale, "\(group.name) \(i)")
            }
            // Rank 2 of a 32-wide block is a real compression: the residual is not empty.
            if warmCount > 0 { XCTAssertGreaterThan(residual.map(abs).max() ?? 0, 1e-3 * scale, group.name) }
            offset += group.elementCount
        }
        XCTAssertEqual(offset, gradient.count)
        XCTAssertGreaterThanOrEqual(factored, 3, "embeddings and both blocks hold matrices")
    }
}
