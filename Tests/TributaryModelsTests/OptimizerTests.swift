import Foundation
import XCTest
import TributaryOptim
import TributaryTensor

/// The optimizers, clipping and schedule against values worked out here in Double from
/// PyTorch's formulas (torch.optim.AdamW / SGD, clip_grad_norm_, nanoGPT's get_lr).
final class OptimizerTests: XCTestCase {
    override func setUp() {
        super.setUp()
        ComputeThreads.set(2)
    }

    /// A parameter holding `values`, with `gradients`.
    func parameter(_ name: String, _ values: [Float], gradients: [Float], decays: Bool) throws -> Parameter {
        let p = try Parameter(name: name, shape: [values.count], decays: decays, allocator: .shared)
        for i in values.indices {
            p.value.data[i] = values[i]
            p.gradient.data[i] = gradients[i]
        }
        return p
    }

    func setGradients(_ p: Parameter, _ g: [Float]) {
        for i in g.indices { p.gradient.data[i] = g[i] }
    }

    func assertClose(_ actual: [Float], _ expected: [Double], tolerance: Double = 2e-6, _ label: String,
                     file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(actual.count, expected.count, label, file: file, line: line)
        for (a, e) in zip(actual, expected) {
            XCTAssertEqual(Double(a), e, accuracy: tolerance * max(1, abs(e)), "\(label): \(actual) vs \(expected)", file: file, line: line)
        }
    }

    // MARK: AdamW

    /// PyTorch's AdamW, one element, in Double.
    struct AdamReference {
        var m = 0.0, v = 0.0, t = 0
        let beta1: Double, beta2: Double, eps: Double, wd: Double

        mutating func step(_ p: Double, _ g: Double, lr: Double, decays: Bool) -> Double {
            t += 1
            var p = p
            if decays { p *= 1 - lr * wd }
            m = beta1 * m + (1 - beta1) * g
            v = beta2 * v + (1 - beta2) * g * g
            let bc1 = 1 - pow(beta1, Double(t)), bc2 = 1 - pow(beta2, Double(t))
            return p - lr / bc1 * m / (v.squareRoot() / bc2.squareRoot() + eps)
        }
    }

    func testAdamWOneAndTwoStepsMatchPyTorchFormula() throws {
        let w0: [Float] = [0.5, -1.25, 2.0, 0.0]
        let b0: [Float] = [0.3, -0.7]
        let g1w: [Float] = [0.1, -0.2, 0.003, 4.0], g1b: [Float] = [-0.5, 0.25]
        let g2w: [Float] = [-0.3, -0.1, 0.5, 1.0], g2b: [Float] = [0.05, 0.0]
        let w = try parameter("w", w0, gradients: g1w, decays: true)
        let b = try parameter("b", b0, gradients: g1b, decays: false)
        let set = ParameterSet([w, b])
        let beta1 = 0.8, beta2 = 0.95, eps = 1e-6, wd = 0.5, lr1 = 0.1, lr2 = 0.05
        let adam = try AdamW(parameters: set, beta1: Float(beta1), beta2: Float(beta2), epsilon: Float(eps), weightDecay: Float(wd))
        XCTAssertEqual(adam.kind, "adamw")

        var refW = (0..<4).map { _ in AdamReference(beta1: beta1, beta2: beta2, eps: eps, wd: wd) }
        var refB = (0..<2).map { _ in AdamReference(beta1: beta1, beta2: beta2, eps: eps, wd: wd) }
        var ew = w0.map(Double.init), eb = b0.map(Double.init)
        for i in 0..<4 { ew[i] = refW[i].step(ew[i], Double(g1w[i]), lr: lr1, decays: true) }
        for i in 0..<2 { eb[i] = refB[i].step(eb[i], Double(g1b[i]), lr: lr1, decays: false) }
        adam.step(set, learningRate: Float(lr1))
        XCTAssertEqual(adam.stepCount, 1)
        assertClose(w.value.toArray(), ew, "weights after step 1")
        assertClose(b.value.toArray(), eb, "biases after step 1")
        // Spelled out for w[0]: bias-corrected, the first step is lr·g/(|g| + ε') after decay.
        // m/(1−β1) = 0.1 and √v/√(1−β2) = 0.1, so p = 0.5·(1 − 0.1·0.5) − 0.1·0.1/(0.1 + 1e-6).
        XCTAssertEqual(Double(w.value.data[0]), 0.5 * (1 - 0.1 * 0.5) - 0.1 * 0.1 / (0.1 + 1e-6), accuracy: 1e-6)
        XCTAssertEqual(Double(w.value.data[0]), 0.375, accuracy: 1e-5)
        // The gradient is only read.
        XCTAssertEqual(w.gradient.toArray(), g1w)

        setGradients(w, g2w)
        setGradients(b, g2b)
        for i in 0..<4 { ew[i] = refW[i].step(ew[i], Double(g2w[i]), lr: lr2, decays: true) }
        for i in 0..<2 { eb[i] = refB[i].step(eb[i], Double(g2b[i]), lr: lr2, decays: false) }
        adam.step(set, learningRate: Float(lr2))
        XCTAssertEqual(adam.stepCount, 2)
        assertClose(w.value.toArray(), ew, "weights after step 2")
        assertClose(b.value.toArray(), eb, "biases after step 2")
        // What torch.optim.AdamW (2.13, float64, the same two steps and per-group weight decay) prints:
        assertClose(w.value.toArray(), [0.3926795100976041, -1.014280465845202, 1.716057518943351, -0.13797680046030922], "PyTorch")
        assertClose(b.value.toArray(), [0.42771231814539584, -0.8318372130758999], "PyTorch")

        // The moments are exposed (for checkpoints) under PyTorch's state names.
        let state = Dictionary(uniqueKeysWithValues: adam.stateTensors().map { ($0.name, $0.tensor.toArray()) })
        XCTAssertEqual(Set(state.keys), ["w.exp_avg", "w.exp_avg_sq", "b.exp_avg", "b.exp_avg_sq"])
        assertClose(state["w.exp_avg"] ?? [], refW.map(\.m), "exp_avg")
        assertClose(state["b.exp_avg_sq"] ?? [], refB.map(\.v), "exp_avg_sq")
    }

    /// β₁ = 0 is what a top-k job runs (`optimizer.sparse_beta1`): a burst of error-feedback
    /// mass moves the weight in the round it arrives and not after. With β₁ = 0.9 the same
    /// burst keeps moving it for many rounds: the extra delay that sparse_beta1 = 0 removes.
    func testAdamWWithoutMomentumAppliesABurstInItsRound() throws {
        let burst: Float = 0.5, lr: Float = 0.01
        var final: [Float: Double] = [:]
        for beta1 in [Float(0), 0.9] {
            let p = try parameter("p", [1], gradients: [burst], decays: false)
            let set = ParameterSet([p])
            let adam = try AdamW(parameters: set, beta1: beta1, beta2: 0.99, epsilon: 1e-8, weightDecay: 0)
            var ref = AdamReference(beta1: Double(beta1), beta2: 0.99, eps: 1e-8, wd: 0)
            var expected = ref.step(1, Double(burst), lr: Double(lr), decays: false)
            adam.step(set, learningRate: lr)
            // First step, bias-corrected: m̂ = g and √v̂ = |g|, so exactly lr·sign(g) (up to ε).
            XCTAssertEqual(Double(p.value.data[0]), 1 - 0.01, accuracy: 1e-6, "β1 \(beta1): the burst's own round")
            setGradients(p, [0])
            for _ in 0..<30 {
                expected = ref.step(expected, 0, lr: Double(lr), decays: false)
                adam.step(set, learningRate: lr)
            }
            XCTAssertEqual(Double(p.value.data[0]), expected, accuracy: 1e-5, "β1 \(beta1): 30 silent rounds after the burst")
            final[beta1] = Double(p.value.data[0])
        }
        XCTAssertEqual(final[0] ?? .nan, 0.99, accuracy: 1e-6, "β1 = 0: nothing moves once the burst is applied")
        // β1 = 0.9: the weight drifts on by 0.0485 (about 5·lr) in the 30 rounds after the burst.
        XCTAssertEqual(final[Float(0.9)] ?? .nan, 0.99 - 0.0485, accuracy: 2e-4, "β1 = 0.9 keeps applying the burst later")
    }

    /// A coordinate silent for 100 rounds (its second moment decayed to 0.99¹⁰⁰ of what it
    /// was) receives 100 rounds of mass at once: unbounded, β₁ 0 moves it about 9.8
    /// learning rates in that one round; bounded at 2, exactly 2. A dense gradient with
    /// momentum (β₁ 0.9, what dense jobs run), whose normalised step stays near 1, moves
    /// exactly as without the bound.
    func testAdamWUpdateBoundCapsABurstAndLeavesDenseStepsAlone() throws {
        let lr: Float = 0.01
        func run(bound: Float?, gradients: [Float], beta1: Float = 0) throws -> [Float] {
            let p = try parameter("p", [0], gradients: [0], decays: false)
            let set = ParameterSet([p])
            let adam = try AdamW(parameters: set, beta1: beta1, beta2: 0.99, epsilon: 1e-8, weightDecay: 0, updateBound: bound)
            var trace: [Float] = []
            for g in gradients {
                setGradients(p, [g])
                adam.step(set, learningRate: lr)
                trace.append(p.value.data[0])
            }
            return trace
        }
        // One ordinary round (g = 0.01), 99 silent ones, then a burst of 100 rounds' mass.
        let bursty: [Float] = [0.01] + [Float](repeating: 0, count: 99) + [1.0]
        let free = try run(bound: nil, gradients: bursty)
        let bounded = try run(bound: 2, gradients: bursty)
        let freeJump = Double(free[99] - free[100]) / Double(lr), boundedJump = Double(bounded[99] - bounded[100]) / Double(lr)
        // Unbounded: 1/√(0.99·v + 0.01) with v = 0.99⁹⁹·0.01·0.01² ≈ 0 and bias correction 1 − 0.99¹⁰¹.
        let v = 0.01 * 0.0001 * pow(0.99, 99) * 0.99 + 0.01 * 1.0
        XCTAssertEqual(freeJump, 1 / (v / (1 - pow(0.99, 101))).squareRoot(), accuracy: 1e-3)
        XCTAssertGreaterThan(freeJump, 7)
        XCTAssertEqual(boundedJump, 2, accuracy: 1e-5)
        // A steady, noisy dense gradient with momentum: the bound changes nothing.
        var r = SeededRandom(seed: 3)
        let dense = (0..<200).map { _ in 0.01 + 0.02 * r.nextGaussian() }
        XCTAssertEqual(try run(bound: 2, gradients: dense, beta1: 0.9), try run(bound: nil, gradients: dense, beta1: 0.9))
        XCTAssertNotEqual(try run(bound: 0.5, gradients: dense, beta1: 0.9), try run(bound: nil, gradients: dense, beta1: 0.9),
                          "a tight enough bound does act on it")
        XCTAssertThrowsError(try AdamW(parameters: ParameterSet([]), updateBound: 0))
    }

    func testAdamWDecaysOnlyParametersMarkedDecays() throws {
        // With zero gradients the moments stay zero and the update is pure decay.
        let w = try parameter("w", [2, -4], gradients: [0, 0], decays: true)
        let ln = try parameter("ln.weight", [2, -4], gradients: [0, 0], decays: false)
        let set = ParameterSet([w, ln])
        let adam = try AdamW(parameters: set, weightDecay: 0.1)
        adam.step(set, learningRate: 0.5)
        assertClose(w.value.toArray(), [2 * 0.95, -4 * 0.95], tolerance: 1e-7, "p·(1 − lr·wd)")
        XCTAssertEqual(ln.value.toArray(), [2, -4])
        adam.step(set, learningRate: 0.5)
        assertClose(w.value.toArray(), [2 * 0.95 * 0.95, -4 * 0.95 * 0.95], "decay compounds")
        XCTAssertEqual(ln.value.toArray(), [2, -4])
    }

    func testAdamWRestoresStateAndRefusesBadSettings() throws {
        let w = try parameter("w", [1, 2], gradients: [0.5, -0.5], decays: true)
        let set = ParameterSet([w])
        let a = try AdamW(parameters: set)
        a.step(set, learningRate: 0.01)
        let b = try AdamW(parameters: ParameterSet([try parameter("w", [1, 2], gradients: [0, 0], decays: true)]))
        let saved = Dictionary(uniqueKeysWithValues: a.stateTensors().map { ($0.name, $0.tensor.toArray()) })
        try b.restore(stepCount: a.stepCount) { name in try XCTUnwrap(saved[name]) }
        XCTAssertEqual(b.stepCount, 1)
        XCTAssertEqual(b.stateTensors().map { $0.tensor.toArray() }, a.stateTensors().map { $0.tensor.toArray() })
        XCTAssertThrowsError(try b.restore(stepCount: 1) { _ in [1, 2, 3] }) { error in
            XCTAssertEqual(error as? OptimizerError, .stateShape(name: "w.exp_avg", expected: 2, got: 3))
        }
        XCTAssertThrowsError(try AdamW(parameters: set, beta1: 1)) { XCTAssertTrue("\($0)".contains("betas")) }
        XCTAssertThrowsError(try AdamW(parameters: set, weightDecay: -1))
        XCTAssertThrowsError(try AdamW(parameters: set, epsilon: 0))
    }

    // MARK: SGD

    func testSGDMomentumMatchesPyTorch() throws {
        // PyTorch (dampening 0): buf = g on the first step, then μ·buf + g; p ← p − lr·buf.
        let p0: [Float] = [1.0, -2.0, 0.5]
        let g1: [Float] = [0.5, 0.25, -1.0], g2: [Float] = [-0.5, 1.0, 2.0], g3: [Float] = [0.1, 0.1, 0.1]
        let w = try parameter("w", p0, gradients: g1, decays: true)
        let set = ParameterSet([w])
        let mu = 0.9, lr = 0.1
        let sgd = try SGD(parameters: set, momentum: Float(mu))
        XCTAssertEqual(sgd.kind, "sgd")
        var p = p0.map(Double.init), buf = g1.map(Double.init)
        for i in 0..<3 { p[i] -= lr * buf[i] }
        sgd.step(set, learningRate: Float(lr))
        assertClose(w.value.toArray(), p, "step 1")
        assertClose(w.value.toArray(), [0.95, -2.025, 0.6], "step 1 by hand")

        for g in [g2, g3] {
            setGradients(w, g)
            for i in 0..<3 {
                buf[i] = mu * buf[i] + Double(g[i])
                p[i] -= lr * buf[i]
            }
            sgd.step(set, learningRate: Float(lr))
            assertClose(w.value.toArray(), p, "later steps")
            if g == g2 {
                // By hand for w[0]: buf = 0.9·0.5 − 0.5 = −0.05; p = 0.95 + 0.005 = 0.955.
                XCTAssertEqual(Double(w.value.data[0]), 0.955, accuracy: 1e-6)
            }
        }
        assertClose(w.value.toArray(), [0.9495, -2.26775, 0.381], "torch.optim.SGD(momentum=0.9) after 3 steps")
        assertClose(sgd.stateTensors().first?.tensor.toArray() ?? [], buf, "momentum buffer")
        XCTAssertEqual(sgd.stateTensors().map(\.name), ["w.momentum_buffer"])
        XCTAssertEqual(sgd.stepCount, 3)
    }

    func testSGDNesterovAndWeightDecayMatchPyTorch() throws {
        // PyTorch: g ← g + wd·p (decaying parameters only); buf as above; d = g + μ·buf.
        let w0: [Float] = [1.0, -3.0], b0: [Float] = [2.0]
        let gw: [[Float]] = [[0.2, -0.4], [1.0, 0.5]], gb: [[Float]] = [[0.3], [-0.6]]
        let w = try parameter("w", w0, gradients: gw[0], decays: true)
        let b = try parameter("b", b0, gradients: gb[0], decays: false)
        let set = ParameterSet([w, b])
        let mu = 0.5, wd = 0.1, lr = 0.2
        let sgd = try SGD(parameters: set, momentum: Float(mu), nesterov: true, weightDecay: Float(wd))
        var pw = w0.map(Double.init), pb = b0.map(Double.init)
        var bw = [0.0, 0.0], bb = [0.0]
        for step in 0..<2 {
            setGradients(w, gw[step])
            setGradients(b, gb[step])
            for i in 0..<2 {
                let g = Double(gw[step][i]) + wd * pw[i]
                bw[i] = step == 0 ? g : mu * bw[i] + g
                pw[i] -= lr * (g + mu * bw[i])
            }
            let g = Double(gb[step][0])
            bb[0] = step == 0 ? g : mu * bb[0] + g
            pb[0] -= lr * (g + mu * bb[0])
            sgd.step(set, learningRate: Float(lr))
            assertClose(w.value.toArray(), pw, "nesterov weights, step \(step + 1)")
            assertClose(b.value.toArray(), pb, "nesterov bias (no decay), step \(step + 1)")
        }
        assertClose(w.value.toArray(), [0.5677, -2.8213], "torch.optim.SGD(nesterov=True) after 2 steps")
        assertClose(b.value.toArray(), [2.075], "torch.optim.SGD(nesterov=True), weight_decay 0 group")
        // Step 1 by hand for w[0]: g = 0.2 + 0.1 = 0.3, buf = 0.3, d = 0.45, p = 1 − 0.09 = 0.91.
        // Step 1 for b: g = 0.3, d = 0.45, p = 2 − 0.09 = 1.91 (a decayed bias would be 1.87).
        let oneStep = try SGD(parameters: ParameterSet([try parameter("w", w0, gradients: gw[0], decays: true),
                                                        try parameter("b", b0, gradients: gb[0], decays: false)]),
                              momentum: 0.5, nesterov: true, weightDecay: 0.1)
        let fresh = ParameterSet([try parameter("w", w0, gradients: gw[0], decays: true),
                                  try parameter("b", b0, gradients: gb[0], decays: false)])
        oneStep.step(fresh, learningRate: 0.2)
        XCTAssertEqual(Double(fresh.parameters[0].value.data[0]), 0.91, accuracy: 1e-6)
        XCTAssertEqual(Double(fresh.parameters[1].value.data[0]), 1.91, accuracy: 1e-6)
    }

    func testPlainSGDAndBadSettings() throws {
        let w = try parameter("w", [1, 2], gradients: [0.5, -1], decays: true)
        let set = ParameterSet([w])
        let sgd = try SGD(parameters: set, momentum: 0)
        sgd.step(set, learningRate: 0.1)
        sgd.step(set, learningRate: 0.1)
        assertClose(w.value.toArray(), [0.9, 2.2], "p − 2·lr·g without momentum")
        XCTAssertThrowsError(try SGD(parameters: set, momentum: 0, nesterov: true)) { XCTAssertTrue("\($0)".contains("Nesterov")) }
        XCTAssertThrowsError(try SGD(parameters: set, momentum: 1))
        XCTAssertThrowsError(try SGD(parameters: set, weightDecay: -0.1))
    }

    // MARK: Gradient clipping

    func testClippingScalesToMaxNorm() throws {
        let a = try parameter("a", [0, 0], gradients: [3, 4], decays: true)
        let b = try parameter("b", [0], gradients: [12], decays: false)
        let set = ParameterSet([a, b])
        XCTAssertEqual(set.gradientNorm(), 13, accuracy: 1e-12)
        let norm = GradientClipping.clipGlobalNorm(set, maxNorm: 1)
        XCTAssertEqual(norm, 13, accuracy: 1e-12, "the norm before clipping is returned")
        let after = set.gradientNorm()
        XCTAssertEqual(after, 1, accuracy: 1e-5)
        XCTAssertEqual((after - 1) / 1, 0, accuracy: 1e-5)
        assertClose(a.gradient.toArray() + b.gradient.toArray(), [3.0 / 13, 4.0 / 13, 12.0 / 13], tolerance: 1e-6, "direction kept")

        // Another max norm on fresh gradients.
        setGradients(a, [3, 4])
        setGradients(b, [12])
        XCTAssertEqual(GradientClipping.clipGlobalNorm(set, maxNorm: 6.5), 13, accuracy: 1e-12)
        XCTAssertEqual(set.gradientNorm() / 6.5, 1, accuracy: 1e-5)
        assertClose(a.gradient.toArray(), [1.5, 2.0], tolerance: 1e-6, "halved")
    }

    func testNoClippingBelowMaxNormOrWhenDisabled() throws {
        let a = try parameter("a", [0, 0], gradients: [3, 4], decays: true)
        let set = ParameterSet([a])
        XCTAssertEqual(GradientClipping.clipGlobalNorm(set, maxNorm: 5.5), 5, accuracy: 1e-12)
        XCTAssertEqual(a.gradient.toArray(), [3, 4])
        XCTAssertEqual(GradientClipping.clipGlobalNorm(set, maxNorm: 5), 5, accuracy: 1e-12)
        XCTAssertEqual(a.gradient.toArray(), [3, 4], "exactly at the limit: untouched")
        XCTAssertEqual(GradientClipping.clipGlobalNorm(set, maxNorm: 0), 5, accuracy: 1e-12)
        XCTAssertEqual(a.gradient.toArray(), [3, 4], "maxNorm 0 disables clipping")
    }

    func testNonFiniteNormLeavesGradientsUntouched() throws {
        for bad in [Float.nan, .infinity] {
            let a = try parameter("a", [0, 0], gradients: [3, bad], decays: true)
            let b = try parameter("b", [0], gradients: [100], decays: false)
            let set = ParameterSet([a, b])
            let norm = GradientClipping.clipGlobalNorm(set, maxNorm: 1)
            XCTAssertFalse(norm.isFinite)
            XCTAssertEqual(a.gradient.data[0], 3)
            XCTAssertEqual(b.gradient.toArray(), [100], "finite gradients are not scaled either")
            XCTAssertEqual(a.gradient.data[1].isNaN, bad.isNaN)
        }
    }

    // MARK: Learning-rate schedule

    func testScheduleWarmupCosineAndFloor() {
        let peak: Float = 1e-3, floor: Float = 1e-4
        let s = LearningRateSchedule(peak: peak, minimum: floor, warmupSteps: 10, decaySteps: 110)
        // Warm-up: peak·(s+1)/(w+1).
        XCTAssertEqual(s.rate(at: 0), peak * 1 / 11, accuracy: 1e-10)
        XCTAssertEqual(s.rate(at: 4), peak * 5 / 11, accuracy: 1e-10)
        XCTAssertEqual(s.rate(at: 9), peak * 10 / 11, accuracy: 1e-10)
        // Cosine from the peak at the end of warm-up ...
        XCTAssertEqual(s.rate(at: 10), peak, accuracy: 1e-10)
        // ... through the midpoint (peak+min)/2 ...
        XCTAssertEqual(s.rate(at: 60), (peak + floor) / 2, accuracy: 1e-9)
        // ... a quarter of the way: min + (1 + cos(π/4))/2·(peak − min).
        XCTAssertEqual(Double(s.rate(at: 35)), 1e-4 + (1 + cos(Double.pi / 4)) / 2 * 9e-4, accuracy: 1e-9)
        XCTAssertGreaterThan(s.rate(at: 59), s.rate(at: 61))
        // ... to the floor at the end, and it stays there.
        XCTAssertEqual(s.rate(at: 110), floor)
        XCTAssertEqual(s.rate(at: 111), floor)
        XCTAssertEqual(s.rate(at: 10_000), floor)
        XCTAssertGreaterThan(s.rate(at: 109), floor)
        XCTAssertLessThan(s.rate(at: 109), floor + 3e-7)

        // Defaults: floor = peak/10, no warm-up.
        let d = LearningRateSchedule(peak: 0.5, decaySteps: 100)
        XCTAssertEqual(d.minimum, 0.05)
        XCTAssertEqual(d.rate(at: 0), 0.5)
        XCTAssertEqual(d.rate(at: 50), 0.275, accuracy: 1e-7)
        XCTAssertEqual(d.rate(at: 100), 0.05)

        let c = LearningRateSchedule.constant(0.01)
        XCTAssertEqual([0, 1, 1000].map { c.rate(at: $0) }, [0.01, 0.01, 0.01])
    }
}
