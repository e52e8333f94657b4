import XCTest
@testable import TributaryModels
import TributaryTensor

final class LayerGradientTests: XCTestCase {
    override func setUp() { ComputeThreads.set(2) }

    func testCheckerRejectsAWrongGradient() throws {
        // f(x) = Σ x², true gradient 2x; a gradient of x (a lost factor) must fail.
        let x = try randomTensor([16], seed: 1)
        let f = { (0..<16).reduce(0.0) { $0 + Double(x.data[$1]) * Double(x.data[$1]) } }
        var checker = GradientChecker()
        let right = checker.check("x", values: x.data, count: 16, analytic: x.toArray().map { 2 * $0 }, loss: f)
        let wrong = checker.check("x", values: x.data, count: 16, analytic: x.toArray(), assert: false, loss: f)
        XCTAssertLessThan(right, 1)
        XCTAssertGreaterThan(wrong, 10, "a halved gradient must miss the tolerance by far")
    }

    func testLinearWithAndWithoutBias() throws {
        for bias in [true, false] {
            let n = 5, k = 7, m = 6
            let layer = try Linear(name: "fc", inFeatures: k, outFeatures: m, bias: bias, allocator: .shared)
            randomize(layer.weight, seed: 2, scale: 0.5)
            if let b = layer.bias { randomize(b, seed: 3, scale: 0.5) }
            let x = try randomTensor([n, k], seed: 4)
            let y = try Tensor(shape: [n, m]), dx = try Tensor(shape: [n, k])
            let probe = Probe(count: n * m, seed: 5)
            let loss = { () -> Double in layer.forward(x, into: y, rows: n); return probe.loss(y.data) }
            _ = loss()
            let dy = try Tensor(shape: [n, m], values: probe.weights)
            layer.backward(dOut: dy, input: x, dInput: dx, rows: n)
            var checker = GradientChecker()
            checker.check("linear.x", values: x.data, count: x.count, analytic: dx.toArray(), loss: loss)
            checker.check("linear.W", values: layer.weight.value.data, count: layer.weight.count,
                          analytic: layer.weight.gradient.toArray(), loss: loss)
            if let b = layer.bias {
                checker.check("linear.b", values: b.value.data, count: b.count, analytic: b.gradient.toArray(), loss: loss)
            }
        }
    }

    func testLayerNorm() throws {
        for bias in [true, false] {
            let n = 4, c = 12
            let ln = try LayerNorm(name: "ln", features: c, bias: bias, allocator: .shared)
            randomize(ln.weight, seed: 6, scale: 0.3, offset: 1)
            if let b = ln.bias { randomize(b, seed: 7, scale: 0.3) }
            let x = try randomTensor([n, c], seed: 8, scale: 2, offset: 0.5)
            let y = try Tensor(shape: [n, c]), mean = try Tensor(shape: [n]), rstd = try Tensor(shape: [n])
            let dx = try Tensor(shape: [n, c])
            let probe = Probe(count: n * c, seed: 9)
            let loss = { () -> Double in
                ln.forward(x, into: y, mean: mean, rstd: rstd, rows: n)
                return probe.loss(y.data)
            }
            _ = loss()
            let dy = try Tensor(shape: [n, c], values: probe.weights)
            ln.backward(dOut: dy, input: x, mean: mean, rstd: rstd, dInput: dx, rows: n)
            var checker = GradientChecker()
            checker.check("ln.x", values: x.data, count: x.count, analytic: dx.toArray(), loss: loss)
            checker.check("ln.w", values: ln.weight.value.data, count: c, analytic: ln.weight.gradient.toArray(), loss: loss)
            if let b = ln.bias {
                checker.check("ln.b", values: b.value.data, count: c, analytic: b.gradient.toArray(), loss: loss)
            }
        }
    }

    func testGELUAndReLUWithFusedBias() throws {
        let rows = 3, cols = 11
        let pre = try randomTensor([rows, cols], seed: 10, scale: 1.5)
        let bias = try randomTensor([cols], seed: 11, scale: 0.5)
        let work = try Tensor(shape: [rows, cols]), out = try Tensor(shape: [rows, cols])
        let probe = Probe(count: rows * cols, seed: 12)
        for relu in [false, true] {
            let loss = { () -> Double in
                work.copy(from: pre)
                if relu {
                    ActivationKernels.biasReLUForward(pre: work.data, out: out.data, bias: bias.data, rows: rows, columns: cols)
                } else {
                    ActivationKernels.biasGELUForward(pre: work.data, out: out.data, bias: bias.data, rows: rows, columns: cols)
                }
                return probe.loss(out.data)
            }
            _ = loss()
            let dPre = try Tensor(shape: [rows, cols])
            try probe.weights.withUnsafeBufferPointer { w in
                let dy = try XCTUnwrap(w.baseAddress)
                if relu {
                    ActivationKernels.reluBackward(dPre: dPre.data, dOut: dy, pre: work.data, count: rows * cols)
                } else {
                    ActivationKernels.geluBackward(dPre: dPre.data, dOut: dy, pre: work.data, count: rows * cols)
                }
            }
            var checker = GradientChecker()
            // ReLU has a kink at 0: skip coordinates within h of it.
            checker.check(relu ? "relu" : "gelu", values: pre.data, count: pre.count, analytic: dPre.toArray(),
                          skip: { i in relu && abs(pre.data[i] + bias.data[i % cols]) < 0.02 }, loss: loss)
        }
    }

    func testGELUMatchesTheTanhFormula() throws {
        // Spot values of 0.5·x·(1 + tanh(√(2/π)(x + 0.044715x³))), computed in double.
        let xs: [Float] = [-3, -1, -0.5, 0, 0.5, 1, 2, 5]
        let pre = try Tensor(shape: [1, xs.count], values: xs), out = try Tensor(shape: [1, xs.count])
        ActivationKernels.biasGELUForward(pre: pre.data, out: out.data, bias: nil, rows: 1, columns: xs.count)
        for (i, x) in xs.enumerated() {
            let d = Double(x)
            let expected = 0.5 * d * (1 + tanh(0.7978845608028654 * (d + 0.044715 * d * d * d)))
            XCTAssertEqual(Double(out.data[i]), expected, accuracy: 1e-6, "gelu(\(x))")
        }
    }

    func testSoftmaxCrossEntropy() throws {
        let n = 4, v = 13 // 13 exercises both the 8-wide vector body and the scalar tail
        let logits = try randomTensor([n, v], seed: 13, scale: 2)
        let targets: [Int32] = [0, 12, 5, 7]
        let work = try Tensor(shape: [n, v]), losses = try Tensor(shape: [n])
        let loss = { () -> Double in
            work.copy(from: logits)
            targets.withUnsafeBufferPointer { t in
                SoftmaxCrossEntropyKernels.forward(logits: work.data, targets: t.baseAddress!, losses: losses.data, rows: n, classes: v)
            }
            return (0..<n).reduce(0.0) { $0 + Double(losses.data[$1]) } / Double(n)
        }
        let value = loss()
        // Reference loss in double precision.
        var reference = 0.0
        for r in 0..<n {
            let row = (0..<v).map { Double(logits.data[r * v + $0]) }
            let mx = row.max()!
            let lse = mx + log(row.reduce(0) { $0 + exp($1 - mx) })
            reference += lse - row[Int(targets[r])]
        }
        XCTAssertEqual(value, reference / Double(n), accuracy: 1e-5)
        targets.withUnsafeBufferPointer { t in
            SoftmaxCrossEntropyKernels.backward(probabilities: work.data, targets: t.baseAddress!, rows: n, classes: v, scale: 1 / Float(n))
        }
        let analytic = work.toArray()
        var checker = GradientChecker()
        checker.check("ce.logits", values: logits.data, count: logits.count, analytic: analytic, loss: loss)
    }

    func testCausalSelfAttention() throws {
        for (bias, t) in [(true, 5), (false, 70)] { // 70 > the kernel's 64-row block
            let b = 2, c = 8, h = 2
            let attn = try CausalSelfAttention(name: "attn", channels: c, heads: h, bias: bias, allocator: .shared)
            for (i, p) in attn.parameters.enumerated() { randomize(p, seed: 20 + UInt64(i), scale: 0.4) }
            let x = try randomTensor([b, t, c], seed: 30)
            let y = try Tensor(shape: [b, t, c]), dx = try Tensor(shape: [b, t, c])
            let saved = try CausalSelfAttention.Activations(batch: b, sequence: t, channels: c, heads: h, allocator: .shared)
            let scratch = try CausalSelfAttention.Scratch(batch: b, sequence: t, channels: c, allocator: .shared)
            let probe = Probe(count: b * t * c, seed: 31)
            let loss = { () -> Double in
                attn.forward(x, into: y, saving: saved, batch: b, sequence: t)
                return probe.loss(y.data)
            }
            _ = loss()
            let dy = try Tensor(shape: [b, t, c], values: probe.weights)
            attn.backward(dOut: dy, input: x, saved: saved, scratch: scratch,
                          dInput: dx, accumulateInput: false, batch: b, sequence: t)
            var checker = GradientChecker()
            checker.check("attn.x(T=\(t))", values: x.data, count: x.count, analytic: dx.toArray(), loss: loss)
            for p in attn.parameters {
                checker.check(p.name, values: p.value.data, count: p.count, analytic: p.gradient.toArray(), loss: loss)
            }
        }
    }

    func testAttentionIsCausal() throws {
        // Changing a later token's q/k/v must not change earlier outputs.
        let b = 1, t = 6, c = 4, h = 2
        let qkv = try randomTensor([b, t, 3 * c], seed: 40)
        let out1 = try Tensor(shape: [b, t, c]), out2 = try Tensor(shape: [b, t, c]), probs = try Tensor(shape: [b, h, t, t])
        AttentionKernels.forward(out: out1.data, probs: probs.data, qkv: qkv.data, batch: b, sequence: t, heads: h, channels: c)
        for j in 0..<(3 * c) { qkv.data[(t - 1) * 3 * c + j] += 1 }
        AttentionKernels.forward(out: out2.data, probs: probs.data, qkv: qkv.data, batch: b, sequence: t, heads: h, channels: c)
        for i in 0..<((t - 1) * c) { XCTAssertEqual(out1.data[i], out2.data[i]) }
        XCTAssertNotEqual(out1.data[(t - 1) * c], out2.data[(t - 1) * c])
        // Each probability row sums to one over the visible prefix.
        for row in 0..<t {
            let s = (0...row).reduce(Float(0)) { $0 + probs.data[row * t + $1] }
            XCTAssertEqual(s, 1, accuracy: 1e-5)
        }
    }

    func testEmbedding() throws {
        let v = 7, ctx = 5, c = 3, b = 2, t = 4
        let wte = try randomTensor([v, c], seed: 50), wpe = try randomTensor([ctx, c], seed: 51)
        let tokens: [Int32] = [1, 3, 3, 6, 0, 1, 2, 3]
        let out = try Tensor(shape: [b * t, c])
        let dwte = try Tensor(shape: [v, c]), dwpe = try Tensor(shape: [ctx, c])
        let probe = Probe(count: b * t * c, seed: 52)
        let loss = { () -> Double in
            tokens.withUnsafeBufferPointer { tk in
                EmbeddingKernels.forward(out: out.data, tokens: tk.baseAddress!, wte: wte.data, wpe: wpe.data, batch: b, sequence: t, channels: c)
            }
            return probe.loss(out.data)
        }
        _ = loss()
        probe.weights.withUnsafeBufferPointer { w in
            tokens.withUnsafeBufferPointer { tk in
                EmbeddingKernels.backward(dWTE: dwte.data, dWPE: dwpe.data, dOut: w.baseAddress!, tokens: tk.baseAddress!, batch: b, sequence: t, channels: c)
            }
        }
        var checker = GradientChecker()
        checker.check("wte", values: wte.data, count: wte.count, analytic: dwte.toArray(), loss: loss)
        checker.check("wpe", values: wpe.data, count: wpe.count, analytic: dwpe.toArray(), loss: loss)
    }

    func testTransformerBlock() throws {
        let b = 2, t = 4, c = 8, h = 2
        let block = try TransformerBlock(index: 0, channels: c, heads: h, bias: true, allocator: .shared)
        for (i, p) in block.parameters.enumerated() {
            randomize(p, seed: 60 + UInt64(i), scale: 0.3, offset: p.name.contains(".ln_") && p.name.hasSuffix("weight") ? 1 : 0)
        }
        let x = try randomTensor([b * t, c], seed: 70)
        let y = try Tensor(shape: [b * t, c])
        let saved = try TransformerBlock.Activations(batch: b, sequence: t, channels: c, heads: h, allocator: .shared)
        let scratch = try TransformerBlock.Scratch(batch: b, sequence: t, channels: c, allocator: .shared)
        let probe = Probe(count: b * t * c, seed: 71)
        let loss = { () -> Double in
            block.forward(x, into: y, saving: saved, batch: b, sequence: t)
            return probe.loss(y.data)
        }
        _ = loss()
        let dRes = try Tensor(shape: [b * t, c], values: probe.weights)
        block.backward(dResidual: dRes, input: x, saved: saved, scratch: scratch, batch: b, sequence: t)
        var checker = GradientChecker()
        checker.check("block.x", values: x.data, count: x.count, analytic: dRes.toArray(), loss: loss)
        for p in block.parameters {
            checker.check(p.name, values: p.value.data, count: p.count, analytic: p.gradient.toArray(), loss: loss)
        }
    }
}
