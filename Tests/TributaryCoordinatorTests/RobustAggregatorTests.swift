import TributaryCompression
import TributaryModels
import TributaryProtocol
import XCTest
@testable import TributaryCoordinator

/// Issue 13: the robust rules against a minority of hostile updates, with exact values on
/// small cases and errors measured against the honest mean on a larger one.
final class RobustAggregatorTests: XCTestCase {
    let layout = ShardLayout(spec: .mlp(MLPConfig(inputFeatures: 6, hidden: [8], classes: 3)))

    func update(_ values: [String: [Float]], weight: Double = 4) throws -> RoundUpdate {
        var bodies: [String: [UInt8]] = [:]
        for (name, v) in values { bodies[name] = try v.withUnsafeBufferPointer { try TensorFrame.encode($0, codec: .fp32) } }
        return RoundUpdate(workerID: "w", weight: weight, samples: 4, bodies: bodies)
    }

    /// Every shard filled by `f(coordinate index)`.
    func values(_ f: (Int) -> Float) -> [String: [Float]] {
        var out: [String: [Float]] = [:]
        var offset = 0
        for shard in layout.shards {
            out[shard.name] = (0..<shard.elementCount).map { f(offset + $0) }
            offset += shard.elementCount
        }
        return out
    }

    func result(_ rule: any RoundAggregator) -> [Float] {
        layout.shards.flatMap { shard -> [Float] in
            var out = [Float](repeating: .nan, count: shard.elementCount)
            XCTAssertTrue(out.withUnsafeMutableBufferPointer { rule.gradient(of: shard, into: $0) })
            return out
        }
    }

    func testMedianAndTrimmedMeanOfKnownColumns() throws {
        let median = CoordinateWiseAggregator(rule: .median)
        let trimmed = CoordinateWiseAggregator(rule: .trimmedMean(trim: 0.2))
        // Five updates: coordinate k holds k·{1, 2, 3, 4, 1000}.
        for s: Float in [1, 2, 3, 4, 1000] {
            let u = try update(values { Float($0) * s })
            try median.add(u)
            try trimmed.add(u)
        }
        for (k, (m, t)) in zip(result(median), result(trimmed)).enumerated() {
            XCTAssertEqual(m, Float(k) * 3, accuracy: 1e-3)
            XCTAssertEqual(t, Float(k) * 3, accuracy: 1e-3, "drops 1 and 1000, the mean of 2, 3, 4")
        }
        median.reset()
        try median.add(update(values { Float($0) }))
        try median.add(update(values { Float($0) * 3 }))
        for (k, m) in result(median).enumerated() { XCTAssertEqual(m, Float(k) * 2, accuracy: 1e-3, "even n: the middle two's mean") }
    }

    /// Eight honest updates (a common gradient plus noise) and two hostile ones: the mean is
    /// dragged far off, each robust rule stays near the honest mean.
    func testAMinorityOfHostileUpdatesBarelyMovesTheRobustRules() throws {
        func noise(_ i: Int, _ k: Int) -> Float { Float(sin(Double(i * 7919 + k * 104_729))) * 0.3 }
        let honest = (0..<8).map { i in values { k in Float(cos(Double(k) * 0.1)) + noise(i, k) } }
        let flat = honest.map { u in layout.shards.flatMap { u[$0.name] ?? [] } }
        let mean = (0..<flat[0].count).map { k in flat.reduce(0) { $0 + $1[k] } / Float(flat.count) }
        let scale = sqrt(mean.reduce(0) { $0 + $1 * $1 })
        for attack in ["sign flip ×10", "scale ×100", "huge noise"] {
            let hostile: [[String: [Float]]] = (0..<2).map { h in
                switch attack {
                case "sign flip ×10": return values { k in -10 * mean[k] }
                case "scale ×100": return values { k in 100 * mean[k] }
                default: return values { k in 50 * Float(sin(Double(k * 31 + h * 17))) }
                }
            }
            let rules: [any RoundAggregator] = [try WeightedMeanAggregator(layout: layout),
                                                CoordinateWiseAggregator(rule: .median),
                                                CoordinateWiseAggregator(rule: .trimmedMean(trim: 0.2)),
                                                CenteredClipAggregator(layout: layout)]
            for rule in rules {
                for v in honest + hostile { try rule.add(update(v)) }
                let got = result(rule)
                let error = sqrt(zip(got, mean).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }) / scale
                if rule.name == "mean" {
                    XCTAssertGreaterThan(error, 1, "\(attack): the mean is dragged off")
                } else {
                    XCTAssertLessThan(error, 0.25, "\(attack): \(rule.name) stays near the honest mean")
                }
                print("robust rules: \(attack), \(rule.name): relative error \(String(format: "%.3f", error))")
            }
        }
    }

    func testOnACleanRoundCenteredClipIsCloseToTheMean() throws {
        let clip = CenteredClipAggregator(layout: layout)
        let mean = try WeightedMeanAggregator(layout: layout)
        for i in 0..<8 {
            let u = try update(values { k in Float(cos(Double(k) * 0.1)) + 0.2 * Float(sin(Double(i * 13 + k))) })
            try clip.add(u)
            try mean.add(u)
        }
        let a = result(clip), b = result(mean)
        let diff = sqrt(zip(a, b).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) })
        let norm = sqrt(b.reduce(0) { $0 + $1 * $1 })
        XCTAssertLessThan(diff / norm, 0.05, "honest updates are barely clipped")
        // Identical updates: every rule returns them exactly.
        let same = CenteredClipAggregator(layout: layout)
        for _ in 0..<5 { try same.add(update(values { Float($0) * 0.5 })) }
        for (k, x) in result(same).enumerated() { XCTAssertEqual(x, Float(k) * 0.5) }
    }
}
