import Foundation
import XCTest
@testable import TributaryTensor

/// The C kernels (`CKernels`) against double-precision references, for every variant this
/// CPU supports, on odd sizes that exercise the 16-lane tails; and the variants against
/// each other, which must agree bit for bit.
///
/// Tolerances: float32 kernels with a polynomial exp (relative error < 2e-7) on inputs of
/// magnitude ≤ 4: values within 2e-6 absolute, derivatives and LayerNorm within 1e-5,
/// LayerNorm backward (sums over the row) within 1e-4.
final class VectorKernelsTests: XCTestCase {
    static let sizes = [1, 7, 33, 1000]

    func values(_ n: Int, seed: UInt64, scale: Float = 4) -> [Float] {
        var rng = SeededRandom(seed: seed)
        return (0..<n).map { _ in (rng.nextUnitFloat() * 2 - 1) * scale }
    }

    /// Runs `body` under each supported variant and checks the variants' outputs are identical.
    func forEachVariant(_ name: String, _ body: (VectorKernels.Variant) -> [Float]) {
        var first: (VectorKernels.Variant, [Float])?
        for variant in VectorKernels.Variant.allCases where variant.isSupported {
            var out: [Float] = []
            XCTAssertTrue(VectorKernels.withVariant(variant) { out = body(variant) })
            if let (v0, o0) = first {
                XCTAssertEqual(o0.map(\.bitPattern), out.map(\.bitPattern), "\(name): \(variant) differs from \(v0)")
            } else {
                first = (variant, out)
            }
        }
        XCTAssertNotNil(first, "the baseline variant is always supported")
    }

    static func geluReference(_ x: Double) -> (value: Double, derivative: Double) {
        let s = (2 / Double.pi).squareRoot(), k = 0.044715
        let t = Foundation.tanh(s * (x + k * x * x * x))
        return (0.5 * x * (1 + t), 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * s * (1 + 3 * k * x * x))
    }

    func testTheWidestSupportedVariantIsActive() {
        let widest = VectorKernels.Variant.allCases.last { $0.isSupported }
        XCTAssertEqual(VectorKernels.active, widest)
        XCTAssertTrue(VectorKernels.Variant.baseline.isSupported)
    }

    func testGELUForwardWithBiasAndSavedDerivative() {
        for n in Self.sizes {
            let rows = 3, x = values(rows * n, seed: UInt64(n)), bias = values(n, seed: 99, scale: 0.5)
            forEachVariant("gelu \(n)") { variant in
                var pre = x, out = [Float](repeating: 0, count: rows * n)
                var preD = x, outD = out
                ActivationKernels.biasGELUForward(pre: &pre, out: &out, bias: bias, rows: rows, columns: n)
                ActivationKernels.biasGELUForwardSavingDerivative(preToDerivative: &preD, out: &outD, bias: bias,
                                                                  rows: rows, columns: n)
                for i in 0..<(rows * n) {
                    let biased = x[i] + bias[i % n]
                    XCTAssertEqual(pre[i], biased, "\(variant) n=\(n): the biased pre-activation is kept")
                    let ref = Self.geluReference(Double(biased))
                    XCTAssertEqual(Double(out[i]), ref.value, accuracy: 2e-6, "\(variant) n=\(n) i=\(i)")
                    // The two kernels round differently (0.5x·(1+t) against x·(0.5(1+t))).
                    XCTAssertEqual(Double(outD[i]), ref.value, accuracy: 2e-6, "\(variant) n=\(n) i=\(i)")
                    XCTAssertEqual(Double(preD[i]), ref.derivative, accuracy: 1e-5, "\(variant) n=\(n) i=\(i)")
                }
                return out + preD
            }
        }
    }

    func testGELUBackward() {
        for n in Self.sizes {
            let pre = values(n, seed: UInt64(n) + 7), dOut = values(n, seed: UInt64(n) + 8, scale: 1)
            forEachVariant("gelu backward \(n)") { variant in
                var dPre = [Float](repeating: 0, count: n)
                ActivationKernels.geluBackward(dPre: &dPre, dOut: dOut, pre: pre, count: n)
                for i in 0..<n {
                    let ref = Self.geluReference(Double(pre[i])).derivative * Double(dOut[i])
                    XCTAssertEqual(Double(dPre[i]), ref, accuracy: 1e-5, "\(variant) n=\(n) i=\(i)")
                }
                return dPre
            }
        }
    }

    /// ReLU is exact: the kernels select values, they do not round.
    func testReLUForwardWithBiasAndBackward() {
        for n in Self.sizes {
            let rows = 3, x = values(rows * n, seed: UInt64(n) + 50), bias = values(n, seed: 51, scale: 0.5)
            let dOut = values(rows * n, seed: UInt64(n) + 52, scale: 1)
            forEachVariant("relu \(n)") { variant in
                var pre = x, out = [Float](repeating: 0, count: rows * n)
                ActivationKernels.biasReLUForward(pre: &pre, out: &out, bias: bias, rows: rows, columns: n)
                var dPre = dOut
                ActivationKernels.reluBackward(dPre: &dPre, dOut: dOut, pre: pre, count: rows * n)
                for i in 0..<(rows * n) {
                    let biased = x[i] + bias[i % n]
                    XCTAssertEqual(pre[i], biased, "\(variant) n=\(n)")
                    XCTAssertEqual(out[i], biased > 0 ? biased : 0, "\(variant) n=\(n) i=\(i)")
                    XCTAssertEqual(dPre[i], biased > 0 ? dOut[i] : 0, "\(variant) n=\(n) i=\(i)")
                }
                return out + dPre
            }
        }
    }

    func testLayerNormForwardAndBackward() {
        for n in Self.sizes {
            let rows = 5
            let x = values(rows * n, seed: UInt64(n) + 20).enumerated().map { $0.element + Float($0.offset % 3) }
            let w = values(n, seed: 21, scale: 1).map { $0 + 1 }, b = values(n, seed: 22, scale: 0.5)
            let dy = values(rows * n, seed: UInt64(n) + 23, scale: 1)
            forEachVariant("layer norm \(n)") { variant in
                var out = [Float](repeating: 0, count: rows * n), mean = [Float](repeating: 0, count: rows)
                var rstd = mean
                LayerNormKernels.forward(out: &out, mean: &mean, rstd: &rstd, input: x, weight: w, bias: b, rows: rows, columns: n)
                var dx = [Float](repeating: 0.5, count: rows * n), dw = [Float](repeating: 0.25, count: n)
                var db = [Float](repeating: -0.25, count: n)
                LayerNormKernels.backward(dInput: &dx, dWeight: &dw, dBias: &db, dOut: dy, input: x, weight: w,
                                          mean: mean, rstd: rstd, rows: rows, columns: n)
                var dwRef = [Double](repeating: 0.25, count: n), dbRef = [Double](repeating: -0.25, count: n)
                for r in 0..<rows {
                    let row = (0..<n).map { Double(x[r * n + $0]) }
                    let m = row.reduce(0, +) / Double(n)
                    let s = 1 / (row.map { ($0 - m) * ($0 - m) }.reduce(0, +) / Double(n) + Double(LayerNormKernels.epsilon)).squareRoot()
                    XCTAssertEqual(Double(mean[r]), m, accuracy: 1e-5)
                    XCTAssertEqual(Double(rstd[r]), s, accuracy: 1e-4 * s)
                    let xhat = row.map { ($0 - m) * s }
                    let g = (0..<n).map { Double(dy[r * n + $0]) }
                    let dn = (0..<n).map { g[$0] * Double(w[$0]) }
                    let meanD = dn.reduce(0, +) / Double(n)
                    let meanDN = (0..<n).map { dn[$0] * xhat[$0] }.reduce(0, +) / Double(n)
                    for i in 0..<n {
                        XCTAssertEqual(Double(out[r * n + i]), xhat[i] * Double(w[i]) + Double(b[i]), accuracy: 1e-5,
                                       "\(variant) n=\(n) forward r=\(r) i=\(i)")
                        XCTAssertEqual(Double(dx[r * n + i]), 0.5 + (dn[i] - meanD - xhat[i] * meanDN) * s, accuracy: 1e-4,
                                       "\(variant) n=\(n) dInput r=\(r) i=\(i)")
                        dwRef[i] += g[i] * xhat[i]
                        dbRef[i] += g[i]
                    }
                }
                for i in 0..<n {
                    XCTAssertEqual(Double(dw[i]), dwRef[i], accuracy: 1e-4, "\(variant) n=\(n) dWeight i=\(i)")
                    XCTAssertEqual(Double(db[i]), dbRef[i], accuracy: 1e-4, "\(variant) n=\(n) dBias i=\(i)")
                }
                return out + mean + rstd + dx + dw + db
            }
        }
    }

    func testSoftmaxRowForwardAndBackward() {
        for n in Self.sizes {
            let x = values(n, seed: UInt64(n) + 30, scale: 8), d = values(n, seed: UInt64(n) + 31, scale: 1)
            forEachVariant("softmax \(n)") { variant in
                var p = x
                let lse = SoftmaxCrossEntropyKernels.softmaxInPlace(&p, n)
                let mx = Double(x.max() ?? 0)
                let sum = x.map { Foundation.exp(Double($0) - mx) }.reduce(0, +)
                XCTAssertEqual(Double(lse), mx + Foundation.log(sum), accuracy: 1e-5, "\(variant) n=\(n)")
                for i in 0..<n {
                    XCTAssertEqual(Double(p[i]), Foundation.exp(Double(x[i]) - mx) / sum, accuracy: 1e-6, "\(variant) n=\(n) i=\(i)")
                }
                var g = d
                SoftmaxCrossEntropyKernels.softmaxBackwardInPlace(probabilities: p, gradient: &g, n, scale: 0.5)
                let dot = (0..<n).map { Double(p[$0]) * Double(d[$0]) }.reduce(0, +)
                for i in 0..<n {
                    XCTAssertEqual(Double(g[i]), Double(p[i]) * (Double(d[i]) - dot) * 0.5, accuracy: 1e-6, "\(variant) n=\(n) i=\(i)")
                }
                return p + g + [lse]
            }
        }
    }

    /// AdamW runs the same float operations in the same order as the scalar Swift loop it
    /// replaced, with no fused multiply-adds, so it matches that loop exactly.
    func testAdamWMatchesTheScalarFormulaExactly() {
        for n in Self.sizes {
            let g = values(n, seed: UInt64(n) + 40, scale: 1)
            let w0 = values(n, seed: UInt64(n) + 41, scale: 1)
            let m0 = values(n, seed: UInt64(n) + 42, scale: 0.1), v0 = values(n, seed: UInt64(n) + 43, scale: 0.01).map { $0 * $0 }
            let b1: Float = 0.9, b2: Float = 0.999, eps: Float = 1e-8
            let bc2: Float = 0.05, step: Float = 3e-4, decay: Float = 0.999
            for bound: Float in [.infinity, 2] {
                var wRef = w0, mRef = m0, vRef = v0
                for i in 0..<n {
                    let mi = b1 * mRef[i] + (1 - b1) * g[i]
                    let vi = b2 * vRef[i] + (1 - b2) * g[i] * g[i]
                    mRef[i] = mi
                    vRef[i] = vi
                    let normalised = mi / (vi.squareRoot() / bc2 + eps)
                    wRef[i] = wRef[i] * decay - step * min(bound, max(-bound, normalised))
                }
                forEachVariant("adamw \(n)") { variant in
                    var w = w0, m = m0, v = v0
                    OptimizerKernels.adamW(weight: &w, gradient: g, m: &m, v: &v, count: n, beta1: b1, beta2: b2,
                                           epsilon: eps, biasCorrection2Sqrt: bc2, stepSize: step, decay: decay, bound: bound)
                    XCTAssertEqual(w, wRef, "\(variant) n=\(n) bound=\(bound)")
                    XCTAssertEqual(m, mRef, "\(variant) n=\(n)")
                    XCTAssertEqual(v, vRef, "\(variant) n=\(n)")
                    return w + m + v
                }
            }
        }
    }
}
