import Foundation
import TributaryCompression
import TributaryModels
import TributaryProtocol
import TributaryTraining
import XCTest
@testable import TributaryCoordinator

/// The replication tolerances, measured: two workers with different error-feedback histories
/// encode the same unit's gradient; under every codec their decoded updates must agree within
/// the codec's default tolerance, and a sign-flipped one must not.
final class ReplicaToleranceTests: XCTestCase {
    func testHonestReplicasAgreeUnderEveryCodecAndASignFlippedOneDoesNot() throws {
        let raw = try DatasetSource.load("builtin:arithmetic")
        let data = try DatasetSource.prepare(raw, name: "arithmetic", blockSize: 16, validationFraction: 0.1, seed: 1)
        guard case let .tokens(_, _, vocab) = raw else { return XCTFail("token data expected") }
        let spec = ModelSpec.gpt(GPTConfig(vocabSize: vocab, blockSize: 16, nLayer: 1, nHead: 2, nEmbd: 32))
        let model = try spec.build(seed: 1)
        let layout = ShardLayout(spec: spec)
        func gradient(_ batch: Int) throws -> [String: [Float]] {
            model.parameters.zeroGradients()
            _ = try model.forwardBackward(data.train.batch(Array((batch * 8)..<(batch * 8 + 8))), lossScale: 1)
            var out: [String: [Float]] = [:]
            for shard in layout.shards {
                var flat = [Float](repeating: 0, count: shard.elementCount)
                flat.withUnsafeMutableBufferPointer { p in
                    if let base = p.baseAddress { layout.gather(shard, from: model.parameters, gradients: true, into: base) }
                }
                out[shard.name] = flat
            }
            return out
        }
        let target = try gradient(40)
        let flipped = target.mapValues { $0.map { -$0 } }
        // Each worker sent five other units before this one: its residual is its own.
        let histories = try [[1, 2, 3, 4, 5], [11, 12, 13, 14, 15]].map { try $0.map(gradient) }
        var report: [String] = []
        for codec in ["fp32", "fp16", "bf16", "int8", "int4", "topk:0.05", "topk:0.01", "lowrank:4"] {
            let parsed = try UpdateCodecSpec(parsing: codec)
            func encode(history: [[String: [Float]]], last: [String: [Float]]) throws -> [String: [UInt8]] {
                var bodies: [String: [UInt8]] = [:]
                for shard in layout.shards {
                    let shapes = shard.tensors.map { MatrixShape(shape: $0.shape) }
                    var encoder = ErrorFeedbackEncoder(spec: parsed, elementCount: shard.elementCount,
                                                       shapes: parsed.needsShapes ? shapes : nil)
                    for g in history { _ = try encoder.encode(g[shard.name] ?? [], zstdLevel: nil) }
                    bodies[shard.name] = try encoder.encode(last[shard.name] ?? [], zstdLevel: nil)
                }
                return bodies
            }
            func result(_ id: String, _ bodies: [String: [UInt8]]) -> ReplicaResult {
                ReplicaResult(leaseID: id, workerID: id, bodies: bodies, loss: 2, samples: 8, weight: 8, baseVersion: 0)
            }
            let a = result("a", try encode(history: histories[0], last: target))
            let b = result("b", try encode(history: histories[1], last: target))
            let liar = result("c", try encode(history: histories[1], last: flipped))
            var comparison = ReplicaComparison()
            let honest = comparison.compare(a, b, layout: layout)
            let lie = comparison.compare(a, liar, layout: layout)
            let tolerance = ReplicaTolerance.forCodec(parsed.kind)
            report.append(String(format: "%@: honest distance %.4f, norm ratio %.3f; sign flip %.3f (tolerance %.2f)",
                                 codec, honest.distance, honest.normRatio, lie.distance, tolerance.update))
            XCTAssertTrue(honest.agree(within: tolerance), "\(codec): honest replicas disagree: \(honest)")
            XCTAssertFalse(lie.agree(within: tolerance), "\(codec): a sign flip agrees: \(lie)")
        }
        print("replica tolerance:\n" + report.joined(separator: "\n"))
    }
}
