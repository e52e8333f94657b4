import XCTest
@testable import TributaryModels
import TributaryTensor

final class ModelGradientTests: XCTestCase {
    override func setUp() { ComputeThreads.set(2) }

    private func tokenBatch(vocab: Int, b: Int, t: Int, seed: UInt64) -> ModelBatch {
        var r = SeededRandom(seed: seed)
        let x = (0..<(b * t)).map { _ in Int32(r.nextIndex(below: vocab)) }
        let y = (0..<(b * t)).map { _ in Int32(r.nextIndex(below: vocab)) }
        return .tokens(inputs: x, targets: y, batch: b, sequence: t)
    }

    func testWholeGPTGradient() throws {
        for bias in [true, false] {
            let cfg = GPTConfig(vocabSize: 11, blockSize: 6, nLayer: 2, nHead: 2, nEmbd: 8, bias: bias)
            let model = try GPT(config: cfg, seed: 3)
            // Larger than GPT-2's 0.02 so that every parameter's gradient is well above fp32 noise.
            for (i, p) in model.parameters.parameters.enumerated() {
                let isGain = p.name.contains(".ln_") && p.name.hasSuffix("weight")
                randomize(p, seed: 100 + UInt64(i), scale: isGain ? 0.2 : 0.3, offset: isGain ? 1 : 0)
            }
            let batch = tokenBatch(vocab: 11, b: 2, t: 5, seed: 7)
            model.parameters.zeroGradients()
            _ = try model.forwardBackward(batch, lossScale: 1)
            var checker = GradientChecker()
            checker.samplesPerTensor = 12
            for p in model.parameters.parameters {
                try checker.check(p.name, values: p.value.data, count: p.count, analytic: p.gradient.toArray()) {
                    try model.evaluate(batch).loss
                }
            }
        }
    }

    func testWholeMLPGradient() throws {
        let model = try MLPClassifier(config: MLPConfig(inputFeatures: 6, hidden: [9, 7], classes: 4), seed: 5)
        let b = 5
        let y: [Int32] = [0, 3, 1, 2, 3]
        // ReLU has kinks: pick (deterministically) inputs whose hidden pre-activations all
        // stay at least 0.02 from zero, so that no ±h step below crosses one.
        var batch: ModelBatch?
        for seed in UInt64(8)..<200 {
            var r = SeededRandom(seed: seed)
            let candidate = ModelBatch.features(inputs: (0..<(b * 6)).map { _ in r.nextGaussian() }, targets: y, batch: b)
            _ = try model.evaluate(candidate)
            let cache = try XCTUnwrap(model.cache)
            let margin = cache.pre.dropLast().flatMap { $0.toArray() }.map(abs).min() ?? 0
            if margin > 0.02 { batch = candidate; break }
        }
        let chosen = try XCTUnwrap(batch, "no input batch clear of the ReLU kinks")
        model.parameters.zeroGradients()
        _ = try model.forwardBackward(chosen, lossScale: 1)
        var checker = GradientChecker()
        checker.h = 1e-3
        for p in model.parameters.parameters {
            try checker.check(p.name, values: p.value.data, count: p.count, analytic: p.gradient.toArray()) {
                try model.evaluate(chosen).loss
            }
        }
    }

    func testLossScaleAndAccumulation() throws {
        // Two half-batches with lossScale ½ accumulate to the full batch's gradient.
        let cfg = GPTConfig(vocabSize: 9, blockSize: 4, nLayer: 1, nHead: 2, nEmbd: 8)
        let model = try GPT(config: cfg, seed: 4)
        let full = tokenBatch(vocab: 9, b: 4, t: 4, seed: 9)
        guard case let .tokens(x, y, _, _) = full else { return XCTFail() }
        model.parameters.zeroGradients()
        _ = try model.forwardBackward(full, lossScale: 1)
        let reference = model.parameters.parameters.map { $0.gradient.toArray() }
        model.parameters.zeroGradients()
        for half in 0..<2 {
            let r = (half * 8)..<(half * 8 + 8)
            _ = try model.forwardBackward(.tokens(inputs: Array(x[r]), targets: Array(y[r]), batch: 2, sequence: 4), lossScale: 0.5)
        }
        for (p, ref) in zip(model.parameters.parameters, reference) {
            let g = p.gradient.toArray()
            for i in 0..<g.count { XCTAssertEqual(g[i], ref[i], accuracy: 1e-6 + 1e-4 * abs(ref[i]), p.name) }
        }
    }

    func testGPTParameterNamesAndCountMatchNanoGPT() throws {
        let cfg = GPTConfig(vocabSize: 65, blockSize: 128, nLayer: 4, nHead: 4, nEmbd: 128)
        let model = try GPT(config: cfg)
        // peers.md: gpt-tiny has 818,048 parameters (tied embedding counted once).
        XCTAssertEqual(model.parameters.scalarCount, 818_048)
        XCTAssertEqual(cfg.parameterCount, 818_048)
        let names = model.parameters.parameters.map(\.name)
        XCTAssertEqual(Array(names.prefix(4)), ["transformer.wte.weight", "transformer.wpe.weight",
                                                "transformer.h.0.ln_1.weight", "transformer.h.0.ln_1.bias"])
        XCTAssertEqual(model.parameters["transformer.h.0.attn.c_attn.weight"]?.shape, [384, 128])
        XCTAssertEqual(model.parameters["transformer.h.3.mlp.c_proj.weight"]?.shape, [128, 512])
        XCTAssertEqual(names.last, "transformer.ln_f.bias")
        let small = GPTConfig(vocabSize: 65, blockSize: 256, nLayer: 6, nHead: 6, nEmbd: 384)
        XCTAssertEqual(small.parameterCount, 10_770_816)
        XCTAssertEqual(try MLPClassifier(config: MLPConfig()).parameters.scalarCount, 669_706)
    }

    func testGPT2InitialisationScalesResidualProjections() throws {
        let cfg = GPTConfig(vocabSize: 65, blockSize: 64, nLayer: 8, nHead: 4, nEmbd: 128)
        let model = try GPT(config: cfg, seed: 1)
        func std(_ name: String) throws -> Double {
            let v = try XCTUnwrap(model.parameters[name]).value.toArray().map(Double.init)
            let m = v.reduce(0, +) / Double(v.count)
            return (v.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(v.count)).squareRoot()
        }
        XCTAssertEqual(try std("transformer.h.0.attn.c_attn.weight"), 0.02, accuracy: 0.001)
        XCTAssertEqual(try std("transformer.h.0.mlp.c_proj.weight"), 0.02 / 4, accuracy: 0.0003) // 1/√(2·8) = 1/4
        XCTAssertEqual(try std("transformer.h.5.attn.c_proj.weight"), 0.02 / 4, accuracy: 0.0003)
        XCTAssertEqual(model.parameters["transformer.h.0.ln_1.weight"]?.value.toArray(), Array(repeating: 1, count: 128))
    }

    func testBadInputIsRefused() throws {
        XCTAssertThrowsError(try GPT(config: GPTConfig(vocabSize: 10, blockSize: 8, nLayer: 1, nHead: 3, nEmbd: 8))) {
            XCTAssertTrue("\($0)".contains("divisible by n_head"))
        }
        let model = try GPT(config: GPTConfig(vocabSize: 10, blockSize: 4, nLayer: 1, nHead: 2, nEmbd: 4))
        XCTAssertThrowsError(try model.forwardBackward(.tokens(inputs: [1, 2, 10, 3], targets: [1, 1, 1, 1], batch: 1, sequence: 4), lossScale: 1)) {
            XCTAssertEqual($0 as? ModelError, .tokenOutOfRange(token: 10, vocabularySize: 10))
        }
        XCTAssertThrowsError(try model.evaluate(.tokens(inputs: Array(repeating: 1, count: 5), targets: Array(repeating: 1, count: 5), batch: 1, sequence: 5)))
        XCTAssertThrowsError(try model.evaluate(.tokens(inputs: [1, 2], targets: [1, -1], batch: 1, sequence: 2)))
    }

    func testAllocationOverBudgetIsRefused() throws {
        let allocator = TensorAllocator(budgetBytes: 64 * 1024)
        XCTAssertThrowsError(try GPT(config: GPTConfig(vocabSize: 65, blockSize: 64, nLayer: 2, nHead: 2, nEmbd: 64), allocator: allocator)) { error in
            guard case .overBudget = error as? TensorAllocationError else { return XCTFail("\(error)") }
        }
        XCTAssertEqual(allocator.currentBytes, 0, "a refused model gives back what it had taken")
    }
}
