import XCTest
@testable import TributaryModels
import TributaryTensor

/// Central finite differences against the hand-written backward passes.
///
/// Tolerance, and why it suits fp32: with step h = 1e-2 the truncation error of the
/// central difference is O(h²·f‴) ≈ 1e-5 for these smooth, O(1)-scaled functions, and
/// the rounding noise of an fp32 forward pass (relative 6e-8 per operation, a few hundred
/// operations deep, summed in double) divided by 2h is of the same order. A coordinate
/// passes when |analytic − numeric| ≤ 1e-3 + 1e-2·|numeric|; a wrong backward (a missing
/// term, a transposed product, a lost scale) misses that by orders of magnitude, which
/// `testCheckerRejectsAWrongGradient` confirms.
struct GradientChecker {
    var h: Float = 1e-2
    var absoluteTolerance: Double = 1e-3
    var relativeTolerance: Double = 1e-2
    var samplesPerTensor = 24
    var rng = SeededRandom(seed: 99)

    /// Compares `analytic` with finite differences of `loss` with respect to `values`,
    /// on a sample of coordinates. Returns the worst (error, tolerance) ratio.
    @discardableResult
    mutating func check(_ label: String, values: UnsafeMutablePointer<Float>, count: Int, analytic: [Float],
                        skip: (Int) -> Bool = { _ in false }, assert: Bool = true, loss: () throws -> Double,
                        file: StaticString = #filePath, line: UInt = #line) rethrows -> Double {
        XCTAssertEqual(analytic.count, count, "\(label): gradient size", file: file, line: line)
        let indices = count <= samplesPerTensor ? Array(0..<count) : (0..<samplesPerTensor).map { _ in rng.nextIndex(below: count) }
        var worst = 0.0
        var checked = 0
        for i in indices where !skip(i) {
            let saved = values[i]
            values[i] = saved + h
            let up = try loss()
            values[i] = saved - h
            let down = try loss()
            values[i] = saved
            let numeric = (up - down) / Double(2 * h)
            let a = Double(analytic[i])
            let tol = absoluteTolerance + relativeTolerance * abs(numeric)
            worst = max(worst, abs(a - numeric) / tol)
            checked += 1
            if assert {
                XCTAssertLessThanOrEqual(abs(a - numeric), tol,
                                         "\(label)[\(i)]: analytic \(a) vs numeric \(numeric)", file: file, line: line)
            }
        }
        XCTAssertGreaterThan(checked, 0, "\(label): no coordinate checked", file: file, line: line)
        return worst
    }
}

/// A fixed random linear functional L = Σ wᵢ·yᵢ, whose gradient with respect to y is w.
struct Probe {
    let weights: [Float]
    init(count: Int, seed: UInt64) {
        var r = SeededRandom(seed: seed)
        weights = (0..<count).map { _ in r.nextGaussian() }
    }
    func loss(_ y: UnsafePointer<Float>) -> Double {
        var s = 0.0
        for i in 0..<weights.count { s += Double(weights[i]) * Double(y[i]) }
        return s
    }
}

func randomTensor(_ shape: [Int], seed: UInt64, scale: Float = 1, offset: Float = 0) throws -> Tensor {
    let t = try Tensor(shape: shape)
    var r = SeededRandom(seed: seed)
    for i in 0..<t.count { t.data[i] = offset + scale * r.nextGaussian() }
    return t
}

func randomize(_ p: Parameter, seed: UInt64, scale: Float, offset: Float = 0) {
    var r = SeededRandom(seed: seed)
    for i in 0..<p.count { p.value.data[i] = offset + scale * r.nextGaussian() }
}
