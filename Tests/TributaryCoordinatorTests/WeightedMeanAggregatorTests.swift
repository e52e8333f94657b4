import TributaryCompression
import TributaryModels
import TributaryProtocol
import XCTest
@testable import TributaryCoordinator

final class WeightedMeanAggregatorTests: XCTestCase {
    func testRoundGradientIsTheWeightedMeanOfTheUpdates() throws {
        let spec = ModelSpec.mlp(MLPConfig(inputFeatures: 3, hidden: [4], classes: 2))
        let layout = ShardLayout(spec: spec)
        let mean = try WeightedMeanAggregator(layout: layout)
        var expected: [String: [Double]] = [:]
        var updates: [(weight: Double, values: [String: [Float]])] = []
        for (u, weight) in [8.0, 4.0, 2.0].enumerated() {
            var values: [String: [Float]] = [:]
            for shard in layout.shards {
                values[shard.name] = (0..<shard.elementCount).map { Float(($0 * 7 + u * 13) % 11) - 5 + Float(u) * 0.25 }
            }
            updates.append((weight, values))
        }
        let total = updates.reduce(0) { $0 + $1.weight }
        for shard in layout.shards {
            expected[shard.name] = (0..<shard.elementCount).map { i in
                updates.reduce(0.0) { $0 + $1.weight * Double($1.values[shard.name]?[i] ?? 0) } / total
            }
        }
        for (weight, values) in updates {
            var bodies: [String: [UInt8]] = [:]
            for (name, v) in values { bodies[name] = try v.withUnsafeBufferPointer { try TensorFrame.encode($0, codec: .fp32) } }
            try mean.add(RoundUpdate(workerID: "w", weight: weight, samples: Int(weight), bodies: bodies))
        }
        XCTAssertEqual(mean.updateCount, 3)
        for shard in layout.shards {
            var out = [Float](repeating: .nan, count: shard.elementCount)
            XCTAssertTrue(out.withUnsafeMutableBufferPointer { mean.gradient(of: shard, into: $0) })
            for (got, want) in zip(out, try XCTUnwrap(expected[shard.name])) {
                XCTAssertEqual(Double(got), want, accuracy: 1e-5)
            }
        }
        mean.reset()
        XCTAssertEqual(mean.updateCount, 0)
        var out = [Float](repeating: 0, count: layout.shards[0].elementCount)
        XCTAssertFalse(out.withUnsafeMutableBufferPointer { mean.gradient(of: layout.shards[0], into: $0) },
                       "an empty round has no gradient")
    }
}
