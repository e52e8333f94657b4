import Synchronization
import XCTest
@testable import TributaryModels
import TributaryTensor

/// Counts kernel calls by operation name.
final class KernelCallLog: Sendable {
    private let counts = Mutex<[String: Int]>([:])

    func record(_ function: String) {
        // "linearForward(out:input:…)" → "linearForward"
        let name = String(function.prefix { $0 != "(" })
        counts.withLock { $0[name, default: 0] += 1 }
    }

    var snapshot: [String: Int] { counts.withLock { $0 } }
    func reset() { counts.withLock { $0 = [:] } }
}

/// The CPU's kernels, recording each call: a model that bypassed its device (calling a
/// kernel enum or BLAS itself) would leave a gap in the log.
struct RecordingKernels: ComputeKernels {
    let log: KernelCallLog
    let cpu = CPUKernels()

    func linearForward(out: Tensor, input: Tensor, weight: Tensor, bias: Tensor?, rows: Int, inFeatures: Int, outFeatures: Int) {
        log.record(#function)
        cpu.linearForward(out: out, input: input, weight: weight, bias: bias, rows: rows, inFeatures: inFeatures, outFeatures: outFeatures)
    }
    func linearBackward(dInput: Tensor?, dWeight: Tensor, dBias: Tensor?, dOut: Tensor, input: Tensor, weight: Tensor,
                        rows: Int, inFeatures: Int, outFeatures: Int, accumulateInput: Bool) {
        log.record(#function)
        cpu.linearBackward(dInput: dInput, dWeight: dWeight, dBias: dBias, dOut: dOut, input: input, weight: weight,
                           rows: rows, inFeatures: inFeatures, outFeatures: outFeatures, accumulateInput: accumulateInput)
    }
    func layerNormForward(out: Tensor, mean: Tensor, rstd: Tensor, input: Tensor, weight: Tensor, bias: Tensor?, rows: Int, columns: Int) {
        log.record(#function)
        cpu.layerNormForward(out: out, mean: mean, rstd: rstd, input: input, weight: weight, bias: bias, rows: rows, columns: columns)
    }
    func layerNormBackward(dInput: Tensor, dWeight: Tensor, dBias: Tensor?, dOut: Tensor, input: Tensor, weight: Tensor,
                           mean: Tensor, rstd: Tensor, rows: Int, columns: Int) {
        log.record(#function)
        cpu.layerNormBackward(dInput: dInput, dWeight: dWeight, dBias: dBias, dOut: dOut, input: input, weight: weight,
                              mean: mean, rstd: rstd, rows: rows, columns: columns)
    }
    func biasGELUForward(pre: Tensor, out: Tensor, bias: Tensor?, rows: Int, columns: Int) {
        log.record(#function)
        cpu.biasGELUForward(pre: pre, out: out, bias: bias, rows: rows, columns: columns)
    }
    func biasGELUForwardSavingDerivative(preToDerivative: Tensor, out: Tensor, bias: Tensor?, rows: Int, columns: Int) {
        log.record(#function)
        cpu.biasGELUForwardSavingDerivative(preToDerivative: preToDerivative, out: out, bias: bias, rows: rows, columns: columns)
    }
    func geluBackward(dPre: Tensor, dOut: Tensor, pre: Tensor, count: Int) {
        log.record(#function)
        cpu.geluBackward(dPre: dPre, dOut: dOut, pre: pre, count: count)
    }
    func biasReLUForward(pre: Tensor, out: Tensor, bias: Tensor?, rows: Int, columns: Int) {
        log.record(#function)
        cpu.biasReLUForward(pre: pre, out: out, bias: bias, rows: rows, columns: columns)
    }
    func reluBackward(dPre: Tensor, dOut: Tensor, pre: Tensor, count: Int) {
        log.record(#function)
        cpu.reluBackward(dPre: dPre, dOut: dOut, pre: pre, count: count)
    }
    func softmaxCrossEntropyForward(logits: Tensor, targets: ArraySlice<Int32>, losses: Tensor, rows: Int, classes: Int) {
        log.record(#function)
        cpu.softmaxCrossEntropyForward(logits: logits, targets: targets, losses: losses, rows: rows, classes: classes)
    }
    func softmaxCrossEntropyBackward(probabilities: Tensor, targets: ArraySlice<Int32>, rows: Int, classes: Int, scale: Float) {
        log.record(#function)
        cpu.softmaxCrossEntropyBackward(probabilities: probabilities, targets: targets, rows: rows, classes: classes, scale: scale)
    }
    func attentionScratchShape(sequence: Int) -> [Int] {
        log.record(#function)
        return cpu.attentionScratchShape(sequence: sequence)
    }
    func attentionForward(out: Tensor, probs: Tensor, qkv: Tensor, batch: Int, sequence: Int, heads: Int, channels: Int) {
        log.record(#function)
        cpu.attentionForward(out: out, probs: probs, qkv: qkv, batch: batch, sequence: sequence, heads: heads, channels: channels)
    }
    func attentionBackward(dQKV: Tensor, dOut: Tensor, qkv: Tensor, probs: Tensor, scratch: Tensor,
                           batch: Int, sequence: Int, heads: Int, channels: Int) {
        log.record(#function)
        cpu.attentionBackward(dQKV: dQKV, dOut: dOut, qkv: qkv, probs: probs, scratch: scratch,
                              batch: batch, sequence: sequence, heads: heads, channels: channels)
    }
    func embeddingForward(out: Tensor, tokens: ArraySlice<Int32>, wte: Tensor, wpe: Tensor, batch: Int, sequence: Int, channels: Int) {
        log.record(#function)
        cpu.embeddingForward(out: out, tokens: tokens, wte: wte, wpe: wpe, batch: batch, sequence: sequence, channels: channels)
    }
    func embeddingBackward(dWTE: Tensor, dWPE: Tensor, dOut: Tensor, tokens: ArraySlice<Int32>, batch: Int, sequence: Int, channels: Int) {
        log.record(#function)
        cpu.embeddingBackward(dWTE: dWTE, dWPE: dWPE, dOut: dOut, tokens: tokens, batch: batch, sequence: sequence, channels: channels)
    }
    func add(out: Tensor, _ a: Tensor, _ b: Tensor, count: Int) {
        log.record(#function)
        cpu.add(out: out, a, b, count: count)
    }
    func accumulate(_ y: Tensor, _ x: Tensor, count: Int) {
        log.record(#function)
        cpu.accumulate(y, x, count: count)
    }
    func multiply(_ y: Tensor, by x: Tensor, count: Int) {
        log.record(#function)
        cpu.multiply(y, by: x, count: count)
    }
    func scale(_ y: Tensor, by s: Float, count: Int) {
        log.record(#function)
        cpu.scale(y, by: s, count: count)
    }
    func sumOfSquares(_ x: Tensor, count: Int) -> Double {
        log.record(#function)
        return cpu.sumOfSquares(x, count: count)
    }
    func allFinite(_ x: Tensor, count: Int) -> Bool {
        log.record(#function)
        return cpu.allFinite(x, count: count)
    }
}

/// A CPU that logs its kernel calls: a stand-in for a second device.
struct RecordingDevice: ComputeDevice {
    let allocator = TensorAllocator(budgetBytes: nil)
    let log = KernelCallLog()
    var kind: ComputeDeviceKind { .cpu }
    var name: String { "recording CPU" }
    var kernels: any ComputeKernels { RecordingKernels(log: log) }
}

/// Every operation of the GPT and MLP goes through the model's device: a device that logs
/// its calls sees each one, the expected number of times, and its results are the plain
/// CPU device's, bit for bit.
final class DeviceRoutingTests: XCTestCase {
    override func setUp() { ComputeThreads.set(2) }

    private func tokens(vocab: Int, b: Int, t: Int, seed: UInt64) -> ModelBatch {
        var r = SeededRandom(seed: seed)
        let x = (0..<(b * t)).map { _ in Int32(r.nextIndex(below: vocab)) }
        let y = (0..<(b * t)).map { _ in Int32(r.nextIndex(below: vocab)) }
        return .tokens(inputs: x, targets: y, batch: b, sequence: t)
    }

    private func assertSameGradients(_ a: ParameterSet, _ b: ParameterSet, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.parameters.map(\.name), b.parameters.map(\.name), file: file, line: line)
        for (p, q) in zip(a.parameters, b.parameters) {
            XCTAssertEqual(p.gradient.toArray(), q.gradient.toArray(), "\(p.name): gradients differ", file: file, line: line)
        }
    }

    func testGPTRunsEveryKernelOnItsDevice() throws {
        for bias in [true, false] {
            let layers = 2
            let cfg = GPTConfig(vocabSize: 13, blockSize: 8, nLayer: layers, nHead: 2, nEmbd: 16, bias: bias)
            let device = RecordingDevice()
            let recorded = try GPT(config: cfg, seed: 3, device: device)
            let reference = try GPT(config: cfg, seed: 3, device: CPUDevice(allocator: TensorAllocator(budgetBytes: nil)))
            XCTAssertTrue(device.log.snapshot.isEmpty, "building a model runs no kernel")
            let batch = tokens(vocab: 13, b: 3, t: 8, seed: 11)

            let loss = try recorded.forwardBackward(batch, lossScale: 1)
            XCTAssertEqual(loss, try reference.forwardBackward(batch, lossScale: 1))
            assertSameGradients(recorded.parameters, reference.parameters)
            // Per step: each block runs two LayerNorms, four linear layers, attention, a
            // fused bias+GELU, two residual additions and gelu′'s multiply in backward;
            // then ln_f, the tied head, the loss and the embeddings. The attention
            // scratch is sized once, when the activation buffers are made.
            let step = ["embeddingForward": 1, "layerNormForward": 2 * layers + 1, "linearForward": 4 * layers + 1,
                        "attentionForward": layers, "biasGELUForwardSavingDerivative": layers, "accumulate": 2 * layers,
                        "softmaxCrossEntropyForward": 1, "softmaxCrossEntropyBackward": 1,
                        "linearBackward": 4 * layers + 1, "layerNormBackward": 2 * layers + 1, "multiply": layers,
                        "attentionBackward": layers, "embeddingBackward": 1]
            XCTAssertEqual(device.log.snapshot, step.merging(["attentionScratchShape": 1]) { $0 + $1 })

            // Evaluation and sampling run the forward half only.
            device.log.reset()
            XCTAssertEqual(try recorded.evaluate(batch), try reference.evaluate(batch))
            let forward = step.filter { $0.key.hasSuffix("Forward") || $0.key.hasSuffix("Derivative") || $0.key == "accumulate" }
            XCTAssertEqual(device.log.snapshot, forward)
            device.log.reset()
            XCTAssertEqual(try recorded.nextTokenLogits(context: [1, 2, 3]), try reference.nextTokenLogits(context: [1, 2, 3]))
            XCTAssertEqual(device.log.snapshot["attentionForward"], layers)
            XCTAssertNil(device.log.snapshot["softmaxCrossEntropyForward"], "sampling computes no loss")
        }
    }

    func testMLPRunsEveryKernelOnItsDevice() throws {
        let cfg = MLPConfig(inputFeatures: 6, hidden: [9, 7], classes: 4)
        let device = RecordingDevice()
        let recorded = try MLPClassifier(config: cfg, seed: 5, device: device)
        let reference = try MLPClassifier(config: cfg, seed: 5)
        var r = SeededRandom(seed: 6)
        let b = 5
        let batch = ModelBatch.features(inputs: (0..<(b * 6)).map { _ in r.nextGaussian() },
                                        targets: (0..<b).map { _ in Int32(r.nextIndex(below: 4)) }, batch: b)
        XCTAssertEqual(try recorded.forwardBackward(batch, lossScale: 0.5), try reference.forwardBackward(batch, lossScale: 0.5))
        assertSameGradients(recorded.parameters, reference.parameters)
        XCTAssertEqual(device.log.snapshot, ["linearForward": 3, "biasReLUForward": 2, "softmaxCrossEntropyForward": 1,
                                             "softmaxCrossEntropyBackward": 1, "linearBackward": 3, "reluBackward": 2])
    }

    /// The streamed (FSDP) step builds its blocks on the device it was given, in both
    /// schedules, and its gradients equal the plain CPU device's bit for bit.
    func testStreamedGPTRunsEveryKernelOnItsDevice() async throws {
        let cfg = GPTConfig(vocabSize: 13, blockSize: 8, nLayer: 2, nHead: 2, nEmbd: 16, bias: true)
        let model = try GPT(config: cfg, seed: 5)
        let batch = tokens(vocab: 13, b: 4, t: 8, seed: 12)
        for schedule in [GPTExecutionPlan.Schedule.blocksOuter, .microBatchesOuter] {
            for activations in [GPTExecutionPlan.ActivationPolicy.kept, .recomputed] {
                let plan = GPTExecutionPlan(microBatch: 3, activations: activations, residentBlocks: 1, schedule: schedule)
                let device = RecordingDevice()
                let recordedSource = ReferenceShardSource(model: model, allocator: device.allocator, transientPerElement: 0)
                let recordedLoss = try await StreamedGPT(config: cfg, plan: plan, device: device)
                    .step(batch, delegate: recordedSource)
                let cpu = CPUDevice(memoryBudgetBytes: nil)
                let cpuSource = ReferenceShardSource(model: model, allocator: cpu.allocator, transientPerElement: 0)
                let cpuLoss = try await StreamedGPT(config: cfg, plan: plan, device: cpu).step(batch, delegate: cpuSource)
                XCTAssertEqual(recordedLoss, cpuLoss, "\(plan)")
                XCTAssertEqual(recordedSource.gradients, cpuSource.gradients, "\(plan)")
                let calls = device.log.snapshot
                for op in ["embeddingForward", "embeddingBackward", "layerNormForward", "layerNormBackward", "linearForward",
                           "linearBackward", "attentionScratchShape", "attentionForward", "attentionBackward",
                           "biasGELUForwardSavingDerivative", "multiply", "accumulate",
                           "softmaxCrossEntropyForward", "softmaxCrossEntropyBackward"] {
                    XCTAssertGreaterThan(calls[op] ?? 0, 0, "\(op) under \(plan)")
                }
                // Two micro-batches (3 + 1 sequences): the tied head runs once per micro-batch.
                XCTAssertEqual(calls["softmaxCrossEntropyForward"], 2, "\(plan)")
                XCTAssertEqual(calls["attentionBackward"], 2 * cfg.nLayer, "\(plan)")
            }
        }
    }

    /// The kernels no model calls yet still forward to the CPU loops unchanged.
    func testCPUKernelsMatchTheKernelLoops() throws {
        let k = CPUKernels()
        let x = try randomTensor([3, 11], seed: 1), y = try randomTensor([3, 11], seed: 2)
        let bias = try randomTensor([11], seed: 3)
        let n = x.count
        let out = try Tensor(shape: [3, 11]), expected = try Tensor(shape: [3, 11])
        k.add(out: out, x, y, count: n)
        ElementwiseKernels.add(expected.data, x.data, y.data, count: n)
        XCTAssertEqual(out.toArray(), expected.toArray())
        k.scale(out, by: 0.37, count: n)
        ElementwiseKernels.scale(expected.data, by: 0.37, count: n)
        XCTAssertEqual(out.toArray(), expected.toArray())
        XCTAssertEqual(k.sumOfSquares(out, count: n), ElementwiseKernels.sumOfSquares(expected.data, count: n))
        XCTAssertTrue(k.allFinite(out, count: n))
        out.data[4] = .infinity
        XCTAssertFalse(k.allFinite(out, count: n))
        XCTAssertTrue(k.allFinite(out, count: 4), "only the first `count` elements are read")

        let pre = try Tensor(shape: [3, 11]), expectedPre = try Tensor(shape: [3, 11])
        pre.copy(from: x)
        expectedPre.copy(from: x)
        k.biasGELUForward(pre: pre, out: out, bias: bias, rows: 3, columns: 11)
        ActivationKernels.biasGELUForward(pre: expectedPre.data, out: expected.data, bias: bias.data, rows: 3, columns: 11)
        XCTAssertEqual(out.toArray(), expected.toArray())
        XCTAssertEqual(pre.toArray(), expectedPre.toArray())
        k.geluBackward(dPre: out, dOut: y, pre: pre, count: n)
        ActivationKernels.geluBackward(dPre: expected.data, dOut: y.data, pre: expectedPre.data, count: n)
        XCTAssertEqual(out.toArray(), expected.toArray())
    }
}
