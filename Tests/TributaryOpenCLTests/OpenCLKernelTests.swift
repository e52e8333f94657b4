import TributaryOpenCL
import TributaryTensor
import XCTest

/// Every OpenCL kernel, forward and backward, against `CPUKernels` on the same random
/// operands, at odd shapes (rows 7, columns 33, sequence 13, heads 3) so that no size is a
/// multiple of a work-group or a SIMD width.
///
/// Tolerances (as `maxError` measures them):
/// - 0 where the device adds the same values in the same order as the CPU (elementwise,
///   bias adds, column sums, embeddings): FP_CONTRACT is off, so the results are identical.
/// - 1e-5 for transcendental functions (the CPU's vectorised exp/tanh and OpenCL's differ
///   by a few ulp) and for row reductions (a tree sum instead of the CPU's sequential one).
/// - 1e-5 for GEMM and attention with inner dimensions of 33 or less: CLBlast and OpenBLAS
///   sum in different orders, a few ulp per product; 5e-5 for GEMM over 129 and 257.
final class OpenCLKernelTests: XCTestCase {
    let cpu = CPUKernels()

    /// A host tensor and a device tensor holding the same values.
    func pair(_ values: [Float], _ shape: [Int], on kernels: OpenCLKernels) throws -> (Tensor, DeviceTensor) {
        (try Tensor(shape: shape, values: values), try kernels.context.upload(values, shape: shape))
    }

    func download(_ tensor: DeviceTensor, _ kernels: OpenCLKernels) throws -> [Float] {
        try kernels.context.download(tensor)
    }

    // MARK: Elementwise and reductions

    func testElementwiseOperationsMatchTheCPUExactly() throws {
        let gpu = try OpenCLTestDevice.kernels()
        var r = Operands(seed: 1)
        // Tensors longer than `count`: the tail must be left alone.
        let n = 7 * 33, length = n + 5
        let (aH, aD) = try pair(r.values(length), [length], on: gpu)
        let (bH, bD) = try pair(r.values(length), [length], on: gpu)
        let (oH, oD) = try pair(r.values(length), [length], on: gpu)

        cpu.add(out: oH, aH, bH, count: n)
        try gpu.add(out: oD, aD, bD, count: n)
        assertClose(try download(oD, gpu), oH.toArray(), tolerance: 0, "add")

        cpu.accumulate(aH, bH, count: n)
        try gpu.accumulate(aD, bD, count: n)
        assertClose(try download(aD, gpu), aH.toArray(), tolerance: 0, "accumulate")

        cpu.multiply(aH, by: bH, count: n)
        try gpu.multiply(aD, by: bD, count: n)
        assertClose(try download(aD, gpu), aH.toArray(), tolerance: 0, "multiply")

        cpu.scale(aH, by: -0.37, count: n)
        try gpu.scale(aD, by: -0.37, count: n)
        assertClose(try download(aD, gpu), aH.toArray(), tolerance: 0, "scale")
    }

    func testSumOfSquaresMatchesTheCPUOverSeveralBlocks() throws {
        let gpu = try OpenCLTestDevice.kernels()
        var r = Operands(seed: 2)
        // 10,001 values: two full blocks of 4096 and a partial one.
        let values = r.values(10_001, scale: 3)
        let (xH, xD) = try pair(values, [values.count], on: gpu)
        let expected = cpu.sumOfSquares(xH, count: values.count)
        let actual = try gpu.sumOfSquares(xD, count: values.count)
        let error = abs(actual - expected) / expected
        print("max error sumOfSquares: \(error)")
        // A float tree sum over each 4096-value block against the CPU's sequential one.
        XCTAssertLessThan(error, 1e-5, "\(actual) against \(expected)")
        XCTAssertEqual(try gpu.sumOfSquares(xD, count: 3), Double(values[0] * values[0] + values[1] * values[1])
                        + Double(values[2] * values[2]), accuracy: 1e-5)
    }

    func testAllFiniteFindsANaNOrAnInfinityAnywhere() throws {
        let gpu = try OpenCLTestDevice.kernels()
        var r = Operands(seed: 3)
        var values = r.values(231)
        XCTAssertTrue(try gpu.allFinite(try gpu.context.upload(values, shape: [231]), count: 231))
        for (position, bad) in [(0, Float.nan), (230, Float.infinity), (117, -Float.infinity)] {
            let saved = values[position]
            values[position] = bad
            let x = try gpu.context.upload(values, shape: [231])
            XCTAssertFalse(try gpu.allFinite(x, count: 231), "\(bad) at \(position)")
            XCTAssertTrue(try gpu.allFinite(x, count: min(position, 230)), "only the first \(position) values count")
            values[position] = saved
        }
    }

    // MARK: Activations

    func testBiasGELUForwardAndBackwardMatchTheCPU() throws {
        let gpu = try OpenCLTestDevice.kernels()
        var r = Operands(seed: 4)
        let rows = 7, columns = 33, n = rows * columns
        let pre = r.values(n, scale: 2), bias = r.values(columns)
        for withBias in [true, false] {
            let (preH, preD) = try pair(pre, [rows, columns], on: gpu)
            let (outH, outD) = try pair([Float](repeating: 0, count: n), [rows, columns], on: gpu)
            let (biasH, biasD) = try pair(bias, [columns], on: gpu)
            cpu.biasGELUForward(pre: preH, out: outH, bias: withBias ? biasH : nil, rows: rows, columns: columns)
            try gpu.biasGELUForward(pre: preD, out: outD, bias: withBias ? biasD : nil, rows: rows, columns: columns)
            assertClose(try download(preD, gpu), preH.toArray(), tolerance: 0, "biasGELUForward pre (bias \(withBias))")
            assertClose(try download(outD, gpu), outH.toArray(), tolerance: 1e-5, "biasGELUForward out (bias \(withBias))")

            let (derivH, derivD) = try pair(pre, [rows, columns], on: gpu)
            cpu.biasGELUForwardSavingDerivative(preToDerivative: derivH, out: outH, bias: withBias ? biasH : nil,
                                                rows: rows, columns: columns)
            try gpu.biasGELUForwardSavingDerivative(preToDerivative: derivD, out: outD, bias: withBias ? biasD : nil,
                                                    rows: rows, columns: columns)
            assertClose(try download(derivD, gpu), derivH.toArray(), tolerance: 1e-5, "gelu′ saved (bias \(withBias))")
            assertClose(try download(outD, gpu), outH.toArray(), tolerance: 1e-5, "gelu saving derivative (bias \(withBias))")
        }
        // Backward, with dPre aliasing dOut as the models call it.
        let dOut = r.values(n)
        let (preH, preD) = try pair(pre, [n], on: gpu)
        let (dH, dD) = try pair(dOut, [n], on: gpu)
        cpu.geluBackward(dPre: dH, dOut: dH, pre: preH, count: n)
        try gpu.geluBackward(dPre: dD, dOut: dD, pre: preD, count: n)
        assertClose(try download(dD, gpu), dH.toArray(), tolerance: 1e-5, "geluBackward")
    }

    func testBiasReLUForwardAndBackwardMatchTheCPU() throws {
        let gpu = try OpenCLTestDevice.kernels()
        var r = Operands(seed: 5)
        let rows = 7, columns = 33, n = rows * columns
        let (preH, preD) = try pair(r.values(n), [rows, columns], on: gpu)
        let (outH, outD) = try pair([Float](repeating: 0, count: n), [rows, columns], on: gpu)
        let (biasH, biasD) = try pair(r.values(columns), [columns], on: gpu)
        cpu.biasReLUForward(pre: preH, out: outH, bias: biasH, rows: rows, columns: columns)
        try gpu.biasReLUForward(pre: preD, out: outD, bias: biasD, rows: rows, columns: columns)
        assertClose(try download(preD, gpu), preH.toArray(), tolerance: 0, "biasReLUForward pre")
        assertClose(try download(outD, gpu), outH.toArray(), tolerance: 0, "biasReLUForward out")

        let (dH, dD) = try pair(r.values(n), [n], on: gpu)
        cpu.reluBackward(dPre: dH, dOut: dH, pre: preH, count: n)
        try gpu.reluBackward(dPre: dD, dOut: dD, pre: preD, count: n)
        let expected = dH.toArray()
        assertClose(try download(dD, gpu), expected, tolerance: 0, "reluBackward")
        XCTAssertTrue(expected.contains(0) && expected.contains { $0 != 0 }, "both sides of the kink are exercised")
    }

    // MARK: LayerNorm

    func testLayerNormForwardAndBackwardMatchTheCPU() throws {
        let gpu = try OpenCLTestDevice.kernels()
        var r = Operands(seed: 6)
        // 33 columns (under one work-group of 64) and 200 (several values per item).
        for columns in [33, 200] {
            let rows = 7, n = rows * columns
            // Odd rows of small values (variance ~1e-4, centred so that x − mean does not
            // cancel): there ε = 1e-5 moves rstd by 5%, so a wrong ε shows.
            let x = r.values(n, scale: 2).enumerated().map { i, v in (i / columns) % 2 == 1 ? v * 0.005 : v + 0.5 }
            let (xH, xD) = try pair(x, [rows, columns], on: gpu)
            let (wH, wD) = try pair(r.values(columns), [columns], on: gpu)
            let (bH, bD) = try pair(r.values(columns), [columns], on: gpu)
            let (outH, outD) = try pair([Float](repeating: 0, count: n), [rows, columns], on: gpu)
            let (meanH, meanD) = try pair([Float](repeating: 0, count: rows), [rows], on: gpu)
            let (rstdH, rstdD) = try pair([Float](repeating: 0, count: rows), [rows], on: gpu)
            cpu.layerNormForward(out: outH, mean: meanH, rstd: rstdH, input: xH, weight: wH, bias: bH,
                                 rows: rows, columns: columns)
            try gpu.layerNormForward(out: outD, mean: meanD, rstd: rstdD, input: xD, weight: wD, bias: bD,
                                     rows: rows, columns: columns)
            assertClose(try download(outD, gpu), outH.toArray(), tolerance: 1e-5, "layerNormForward out (\(columns))")
            assertClose(try download(meanD, gpu), meanH.toArray(), tolerance: 1e-5, "layerNormForward mean (\(columns))")
            assertClose(try download(rstdD, gpu), rstdH.toArray(), tolerance: 1e-5, "layerNormForward rstd (\(columns))")

            // Gradients accumulate onto what is there, so they start non-zero.
            let (dOutH, dOutD) = try pair(r.values(n), [rows, columns], on: gpu)
            let (dxH, dxD) = try pair(r.values(n), [rows, columns], on: gpu)
            let (dwH, dwD) = try pair(r.values(columns), [columns], on: gpu)
            let (dbH, dbD) = try pair(r.values(columns), [columns], on: gpu)
            cpu.layerNormBackward(dInput: dxH, dWeight: dwH, dBias: dbH, dOut: dOutH, input: xH, weight: wH,
                                  mean: meanH, rstd: rstdH, rows: rows, columns: columns)
            try gpu.layerNormBackward(dInput: dxD, dWeight: dwD, dBias: dbD, dOut: dOutD, input: xD, weight: wD,
                                      mean: meanD, rstd: rstdD, rows: rows, columns: columns)
            assertClose(try download(dxD, gpu), dxH.toArray(), tolerance: 1e-5, "layerNormBackward dInput (\(columns))")
            assertClose(try download(dwD, gpu), dwH.toArray(), tolerance: 1e-5, "layerNormBackward dWeight (\(columns))")
            assertClose(try download(dbD, gpu), dbH.toArray(), tolerance: 1e-5, "layerNormBackward dBias (\(columns))")
        }
    }

    // MARK: Loss

    func testSoftmaxCrossEntropyForwardAndBackwardMatchTheCPU() throws {
        let gpu = try OpenCLTestDevice.kernels()
        var r = Operands(seed: 7)
        for classes in [33, 300] {
            let rows = 7, n = rows * classes
            let targets = r.indices(rows, below: classes)
            let (logitsH, logitsD) = try pair(r.values(n, scale: 3), [rows, classes], on: gpu)
            let (lossH, lossD) = try pair([Float](repeating: 0, count: rows), [rows], on: gpu)
            cpu.softmaxCrossEntropyForward(logits: logitsH, targets: targets[...], losses: lossH, rows: rows, classes: classes)
            try gpu.softmaxCrossEntropyForward(logits: logitsD, targets: targets[...], losses: lossD, rows: rows,
                                               classes: classes)
            assertClose(try download(logitsD, gpu), logitsH.toArray(), tolerance: 1e-5, "softmax probabilities (\(classes))")
            assertClose(try download(lossD, gpu), lossH.toArray(), tolerance: 1e-5, "cross-entropy losses (\(classes))")

            cpu.softmaxCrossEntropyBackward(probabilities: logitsH, targets: targets[...], rows: rows, classes: classes,
                                            scale: 1 / Float(rows))
            try gpu.softmaxCrossEntropyBackward(probabilities: logitsD, targets: targets[...], rows: rows,
                                                classes: classes, scale: 1 / Float(rows))
            assertClose(try download(logitsD, gpu), logitsH.toArray(), tolerance: 1e-5, "softmax cross-entropy backward (\(classes))")
        }
        // An out-of-range target is refused before anything runs.
        let logits = try gpu.context.zeros(shape: [2, 3])
        let losses = try gpu.context.zeros(shape: [2])
        XCTAssertThrowsError(try gpu.softmaxCrossEntropyForward(logits: logits, targets: [0, 3], losses: losses,
                                                                rows: 2, classes: 3))
    }

    // MARK: Embeddings

    func testEmbeddingForwardAndBackwardMatchTheCPUBitForBit() throws {
        let gpu = try OpenCLTestDevice.kernels()
        var r = Operands(seed: 8)
        let batch = 2, sequence = 13, channels = 33, vocabulary = 17
        // 26 tokens over 17 ids: most ids repeat, which is what makes backward's sums interesting.
        let tokens = r.indices(batch * sequence, below: vocabulary)
        let n = batch * sequence * channels
        let (wteH, wteD) = try pair(r.values(vocabulary * channels), [vocabulary, channels], on: gpu)
        let (wpeH, wpeD) = try pair(r.values(sequence * channels), [sequence, channels], on: gpu)
        let (outH, outD) = try pair([Float](repeating: 0, count: n), [batch * sequence, channels], on: gpu)
        cpu.embeddingForward(out: outH, tokens: tokens[...], wte: wteH, wpe: wpeH, batch: batch, sequence: sequence,
                             channels: channels)
        try gpu.embeddingForward(out: outD, tokens: tokens[...], wte: wteD, wpe: wpeD, batch: batch, sequence: sequence,
                                 channels: channels)
        assertClose(try download(outD, gpu), outH.toArray(), tolerance: 0, "embeddingForward")

        let (dOutH, dOutD) = try pair(r.values(n), [batch * sequence, channels], on: gpu)
        let (dWTEH, dWTED) = try pair(r.values(vocabulary * channels), [vocabulary, channels], on: gpu)
        let (dWPEH, dWPED) = try pair(r.values(sequence * channels), [sequence, channels], on: gpu)
        cpu.embeddingBackward(dWTE: dWTEH, dWPE: dWPEH, dOut: dOutH, tokens: tokens[...], batch: batch,
                              sequence: sequence, channels: channels)
        try gpu.embeddingBackward(dWTE: dWTED, dWPE: dWPED, dOut: dOutD, tokens: tokens[...], batch: batch,
                                  sequence: sequence, channels: channels)
        // Same additions in the same order: identical, not merely close (deterministic).
        XCTAssertEqual(try download(dWTED, gpu), dWTEH.toArray(), "embeddingBackward dWTE")
        XCTAssertEqual(try download(dWPED, gpu), dWPEH.toArray(), "embeddingBackward dWPE")
    }

    // MARK: Attention

    func testAttentionForwardAndBackwardMatchTheCPU() throws {
        let gpu = try OpenCLTestDevice.kernels()
        var r = Operands(seed: 9)
        let batch = 2, sequence = 13, heads = 3, channels = 33
        let rows = batch * sequence
        let (qkvH, qkvD) = try pair(r.values(rows * 3 * channels), [rows, 3 * channels], on: gpu)
        let (outH, outD) = try pair([Float](repeating: 0, count: rows * channels), [rows, channels], on: gpu)
        let probsCount = batch * heads * sequence * sequence
        let (probsH, probsD) = try pair([Float](repeating: 0, count: probsCount), [probsCount], on: gpu)
        cpu.attentionForward(out: outH, probs: probsH, qkv: qkvH, batch: batch, sequence: sequence, heads: heads,
                             channels: channels)
        try gpu.attentionForward(out: outD, probs: probsD, qkv: qkvD, batch: batch, sequence: sequence, heads: heads,
                                 channels: channels)
        assertClose(try download(outD, gpu), outH.toArray(), tolerance: 1e-5, "attentionForward out")
        let probs = try download(probsD, gpu)
        assertClose(probs, probsH.toArray(), tolerance: 1e-5, "attentionForward probs")
        XCTAssertEqual(probs[1], 0, "row 0 attends to position 0 only")
        XCTAssertEqual(probs[0], 1, accuracy: 1e-6)

        let (dOutH, dOutD) = try pair(r.values(rows * channels), [rows, channels], on: gpu)
        // dQKV is overwritten: start it with garbage on both sides.
        let (dQKVH, dQKVD) = try pair(r.values(rows * 3 * channels), [rows, 3 * channels], on: gpu)
        let scratchH = try Tensor(shape: cpu.attentionScratchShape(sequence: sequence))
        let scratchD = try gpu.context.zeros(shape: gpu.attentionScratchShape(sequence: sequence))
        cpu.attentionBackward(dQKV: dQKVH, dOut: dOutH, qkv: qkvH, probs: probsH, scratch: scratchH, batch: batch,
                              sequence: sequence, heads: heads, channels: channels)
        try gpu.attentionBackward(dQKV: dQKVD, dOut: dOutD, qkv: qkvD, probs: probsD, scratch: scratchD, batch: batch,
                                  sequence: sequence, heads: heads, channels: channels)
        assertClose(try download(dQKVD, gpu), dQKVH.toArray(), tolerance: 1e-5, "attentionBackward dQKV")
    }

    // MARK: Linear (CLBlast SGEMM)

    func testLinearForwardAndBackwardMatchTheCPU() throws {
        // Small products take CLBlast's direct kernel; these take its padded, tiled one.
        try checkLinear(rows: 7, inFeatures: 33, outFeatures: 19, seed: 10, tolerance: 1e-5)
        // Sums of 129 and 257 products, tiled differently from OpenBLAS's panels: the
        // rounding difference grows with √k (measured 1.7e-5 for dWeight's 257).
        try checkLinear(rows: 257, inFeatures: 129, outFeatures: 65, seed: 11, tolerance: 5e-5)
    }

    func checkLinear(rows: Int, inFeatures: Int, outFeatures: Int, seed: UInt64, tolerance: Float) throws {
        let gpu = try OpenCLTestDevice.kernels()
        var r = Operands(seed: seed)
        let shape = "\(rows)×\(inFeatures)→\(outFeatures)"
        let (xH, xD) = try pair(r.values(rows * inFeatures), [rows, inFeatures], on: gpu)
        let (wH, wD) = try pair(r.values(outFeatures * inFeatures), [outFeatures, inFeatures], on: gpu)
        let (bH, bD) = try pair(r.values(outFeatures), [outFeatures], on: gpu)
        // The output starts as NaN: a forward pass must overwrite, not scale, what is there.
        let nan = [Float](repeating: .nan, count: rows * outFeatures)
        let (outH, outD) = try pair(nan, [rows, outFeatures], on: gpu)
        cpu.linearForward(out: outH, input: xH, weight: wH, bias: bH, rows: rows, inFeatures: inFeatures,
                          outFeatures: outFeatures)
        try gpu.linearForward(out: outD, input: xD, weight: wD, bias: bD, rows: rows, inFeatures: inFeatures,
                              outFeatures: outFeatures)
        assertClose(try download(outD, gpu), outH.toArray(), tolerance: tolerance, "linearForward \(shape) (bias)")
        try gpu.linearForward(out: outD, input: xD, weight: wD, bias: nil, rows: rows, inFeatures: inFeatures,
                              outFeatures: outFeatures)
        cpu.linearForward(out: outH, input: xH, weight: wH, bias: nil, rows: rows, inFeatures: inFeatures,
                          outFeatures: outFeatures)
        assertClose(try download(outD, gpu), outH.toArray(), tolerance: tolerance, "linearForward \(shape) (no bias)")

        for accumulateInput in [false, true] {
            let (dOutH, dOutD) = try pair(r.values(rows * outFeatures), [rows, outFeatures], on: gpu)
            let (dxH, dxD) = try pair(r.values(rows * inFeatures), [rows, inFeatures], on: gpu)
            let (dwH, dwD) = try pair(r.values(outFeatures * inFeatures), [outFeatures, inFeatures], on: gpu)
            let (dbH, dbD) = try pair(r.values(outFeatures), [outFeatures], on: gpu)
            cpu.linearBackward(dInput: dxH, dWeight: dwH, dBias: dbH, dOut: dOutH, input: xH, weight: wH, rows: rows,
                               inFeatures: inFeatures, outFeatures: outFeatures, accumulateInput: accumulateInput)
            try gpu.linearBackward(dInput: dxD, dWeight: dwD, dBias: dbD, dOut: dOutD, input: xD, weight: wD, rows: rows,
                                   inFeatures: inFeatures, outFeatures: outFeatures, accumulateInput: accumulateInput)
            assertClose(try download(dxD, gpu), dxH.toArray(), tolerance: tolerance, "linearBackward \(shape) dInput (accumulate \(accumulateInput))")
            assertClose(try download(dwD, gpu), dwH.toArray(), tolerance: tolerance, "linearBackward \(shape) dWeight")
            assertClose(try download(dbD, gpu), dbH.toArray(), tolerance: 0, "linearBackward \(shape) dBias")
        }
    }
}
