import Foundation
import XCTest
@testable import TributaryModels
import TributaryTensor

/// The U-Net's layers against finite differences (GradientChecker) and, for the
/// convolution and GroupNorm, against direct double-precision sums.
final class ImageLayerGradientTests: XCTestCase {
    override func setUp() { ComputeThreads.set(2) }

    private var device: CPUDevice { CPUDevice(allocator: .shared) }

    /// (kernel, stride, padding, bias) on batch 2, 3→5 channels, 7×9 images.
    private let convCases: [(Int, Int, Int, Bool)] = [(3, 2, 1, true), (1, 1, 0, false), (4, 2, 1, true), (3, 1, 1, false), (1, 2, 0, true)]

    private func makeConv(kernel: Int, stride: Int, padding: Int, bias: Bool, seed: UInt64) throws -> Conv2d {
        let conv = try Conv2d(name: "conv", inChannels: 3, outChannels: 5, kernelSize: kernel, stride: stride,
                              padding: padding, bias: bias, device: device)
        randomize(conv.weight, seed: seed, scale: 0.3)
        if let b = conv.bias { randomize(b, seed: seed + 1, scale: 0.3) }
        return conv
    }

    func testConv2dGradients() throws {
        var worstOverall = 0.0
        for (k, s, p, bias) in convCases {
            let conv = try makeConv(kernel: k, stride: s, padding: p, bias: bias, seed: 100)
            let x = try randomTensor([2, 3, 7, 9], seed: 101)
            let g = try conv.geometry(height: 7, width: 9)
            let y = try Tensor(shape: [2, 5, g.outHeight, g.outWidth]), dx = try Tensor(shape: [2, 3, 7, 9])
            let scratch = try Conv2d.Scratch(for: conv, batch: 2, height: 7, width: 9)
            let probe = Probe(count: y.count, seed: 102)
            let loss = { () throws -> Double in
                try conv.forward(x, into: y, scratch: scratch)
                return probe.loss(y.data)
            }
            _ = try loss()
            let dy = try Tensor(shape: y.shape, values: probe.weights)
            dx.fill(7) // overwritten, not added to
            try conv.backward(dOut: dy, input: x, dInput: dx, scratch: scratch)
            var checker = GradientChecker()
            let label = "conv k\(k) s\(s) p\(p)"
            var worst = try checker.check("\(label).x", values: x.data, count: x.count, analytic: dx.toArray(), loss: loss)
            for param in conv.parameters {
                worst = max(worst, try checker.check("\(label).\(param.name)", values: param.value.data, count: param.count,
                                                     analytic: param.gradient.toArray(), loss: loss))
            }
            print("gradient check \(label) bias \(bias): worst error/tolerance \(worst)")
            worstOverall = max(worstOverall, worst)
        }
        print("gradient check Conv2d: worst error/tolerance over all cases \(worstOverall)")
    }

    func testConv2dAccumulatesTheInputGradientWhenAsked() throws {
        let conv = try makeConv(kernel: 3, stride: 2, padding: 1, bias: true, seed: 110)
        let x = try randomTensor([2, 3, 7, 9], seed: 111)
        let y = try Tensor(shape: [2, 5, 4, 5]), dy = try randomTensor([2, 5, 4, 5], seed: 112)
        let scratch = try Conv2d.Scratch(for: conv, batch: 2, height: 7, width: 9)
        try conv.forward(x, into: y, scratch: scratch)
        let fresh = try Tensor(shape: x.shape), added = try Tensor(shape: x.shape)
        try conv.backward(dOut: dy, input: x, dInput: fresh, scratch: scratch)
        added.fill(1)
        try conv.backward(dOut: dy, input: x, dInput: added, scratch: scratch, accumulateInput: true)
        for i in 0..<x.count { XCTAssertEqual(added.data[i], fresh.data[i] + 1, accuracy: 1e-5) }
    }

    func testConv2dGivesTheSameResultsOnOneThreadAndOnMany() throws {
        // One thread runs each image's products split across the pool; several run images
        // side by side with per-thread weight-gradient partials. Batch 3 splits unevenly.
        let conv = try makeConv(kernel: 3, stride: 2, padding: 1, bias: true, seed: 115)
        let x = try randomTensor([3, 3, 7, 9], seed: 116), dy = try randomTensor([3, 5, 4, 5], seed: 117)
        var results: [[Float]] = []
        for threads in [1, 2] {
            ComputeThreads.set(threads)
            let scratch = try Conv2d.Scratch(for: conv, batch: 3, height: 7, width: 9)
            XCTAssertEqual(scratch.slots, threads)
            let y = try Tensor(shape: [3, 5, 4, 5]), dx = try Tensor(shape: x.shape)
            for p in conv.parameters { p.gradient.zero() }
            try conv.forward(x, into: y, scratch: scratch)
            try conv.backward(dOut: dy, input: x, dInput: dx, scratch: scratch)
            results.append(y.toArray() + dx.toArray() + conv.parameters.flatMap { $0.gradient.toArray() })
        }
        for (one, many) in zip(results[0], results[1]) { XCTAssertEqual(one, many, accuracy: 1e-4 * max(1, abs(one))) }
    }

    func testImageLayersLiveInAShardsStorage() throws {
        // Built over views of one storage block, in `parameterSpecs` order, as a shard is decoded.
        let convSpecs = Conv2d.parameterSpecs(name: "down.conv", inChannels: 3, outChannels: 5, kernelSize: 3, bias: true).all
        let normSpecs = GroupNorm.parameterSpecs(name: "down.norm", channels: 6).all
        let total = (convSpecs + normSpecs).reduce(0) { $0 + $1.shape.reduce(1, *) }
        XCTAssertEqual(total, 5 * 3 * 9 + 5 + 6 + 6)
        let values = try TensorStorage(count: total, allocator: .shared), gradients = try TensorStorage(count: total, allocator: .shared)
        for i in 0..<total { values.base[i] = Float(i) }
        let factory = ParameterFactory.views(values: values, gradients: gradients)
        let conv = try Conv2d(name: "down.conv", inChannels: 3, outChannels: 5, kernelSize: 3, padding: 1, bias: true,
                              parameters: factory, device: device)
        let norm = try GroupNorm(name: "down.norm", channels: 6, groups: 3, parameters: factory, device: device)
        XCTAssertEqual(factory.consumed, total)
        XCTAssertEqual((conv.parameters + norm.parameters).map(\.name), (convSpecs + normSpecs).map(\.name))
        XCTAssertEqual(conv.weight.shape, [5, 3, 3, 3])
        XCTAssertEqual(norm.weight.value.data[0], Float(5 * 3 * 9 + 5), "a shard's gain is kept, not reset to 1")
    }

    func testGroupNormAccumulatesTheInputGradientWhenAsked() throws {
        let gn = try GroupNorm(name: "gn", channels: 6, groups: 3, device: device)
        let x = try randomTensor([2, 6, 7, 9], seed: 118), dy = try randomTensor([2, 6, 7, 9], seed: 119)
        let y = try Tensor(shape: x.shape), saved = try GroupNorm.Activations(batch: 2, groups: 3, allocator: .shared)
        try gn.forward(x, into: y, saving: saved)
        let fresh = try Tensor(shape: x.shape), added = try Tensor(shape: x.shape)
        try gn.backward(dOut: dy, input: x, saved: saved, dInput: fresh)
        added.fill(1)
        try gn.backward(dOut: dy, input: x, saved: saved, dInput: added, accumulateInput: true)
        for i in 0..<x.count { XCTAssertEqual(added.data[i], fresh.data[i] + 1, accuracy: 1e-5) }
    }

    func testConv2dForwardMatchesADirectSum() throws {
        var worst = 0.0
        for (k, s, p, bias) in convCases {
            let conv = try makeConv(kernel: k, stride: s, padding: p, bias: bias, seed: 120)
            let x = try randomTensor([2, 3, 7, 9], seed: 121)
            let g = try conv.geometry(height: 7, width: 9)
            let y = try Tensor(shape: [2, 5, g.outHeight, g.outWidth])
            try conv.forward(x, into: y, scratch: try Conv2d.Scratch(for: conv, batch: 2, height: 7, width: 9))
            let reference = directConvolution(conv, x, g)
            let error = relativeMaxError(y, reference)
            print("Conv2d k\(k) s\(s) p\(p) forward: max |error| / max |reference| = \(error)")
            XCTAssertLessThan(error, 1e-5, "k\(k) s\(s) p\(p)")
            worst = max(worst, error)
        }
        print("Conv2d forward: worst relative max error \(worst)")
    }

    func testCheckerRejectsAWrongConvGradient() throws {
        // A classic bug: the backward reading the kernel with rows and columns swapped.
        let conv = try makeConv(kernel: 3, stride: 1, padding: 1, bias: false, seed: 130)
        let x = try randomTensor([2, 3, 7, 9], seed: 131)
        let y = try Tensor(shape: [2, 5, 7, 9]), dx = try Tensor(shape: x.shape), wrongDx = try Tensor(shape: x.shape)
        let scratch = try Conv2d.Scratch(for: conv, batch: 2, height: 7, width: 9)
        let probe = Probe(count: y.count, seed: 132)
        let loss = { () throws -> Double in
            try conv.forward(x, into: y, scratch: scratch)
            return probe.loss(y.data)
        }
        _ = try loss()
        let dy = try Tensor(shape: y.shape, values: probe.weights)
        try conv.backward(dOut: dy, input: x, dInput: dx, scratch: scratch)
        let transposed = try Tensor(shape: conv.weight.shape), ignored = try Tensor(shape: conv.weight.shape)
        for oc in 0..<(5 * 3) {
            for i in 0..<3 { for j in 0..<3 { transposed.data[oc * 9 + j * 3 + i] = conv.weight.value.data[oc * 9 + i * 3 + j] } }
        }
        ConvolutionKernels.backward(dInput: wrongDx.data, dWeight: ignored.data, dBias: nil, dOut: dy.data, input: x.data,
                                    weight: transposed.data, batch: 2, geometry: scratch.geometry, accumulateInput: false,
                                    columns: scratch.columns.data, weightPartials: scratch.weightPartials.data, slots: scratch.slots)
        var checker = GradientChecker()
        let right = try checker.check("conv.x", values: x.data, count: x.count, analytic: dx.toArray(), loss: loss)
        let wrong = try checker.check("conv.x", values: x.data, count: x.count, analytic: wrongDx.toArray(), assert: false, loss: loss)
        print("checker on conv dInput: right \(right), transposed kernel \(wrong)")
        XCTAssertLessThan(right, 1)
        XCTAssertGreaterThan(wrong, 10, "a transposed kernel in backward must miss the tolerance by far")
    }

    func testConv2dRefusesShapesThatDoNotFit() throws {
        XCTAssertThrowsError(try Conv2d(name: "c", inChannels: 3, outChannels: 0, kernelSize: 3, bias: true, device: device))
        XCTAssertThrowsError(try Conv2d(name: "c", inChannels: 3, outChannels: 4, kernelSize: 3, stride: 0, bias: true, device: device))
        let conv = try Conv2d(name: "c", inChannels: 3, outChannels: 4, kernelSize: 5, bias: true, device: device)
        XCTAssertThrowsError(try conv.geometry(height: 3, width: 9))
        let scratch = try Conv2d.Scratch(for: conv, batch: 2, height: 7, width: 9)
        let x = try Tensor(shape: [2, 3, 7, 9])
        XCTAssertThrowsError(try conv.forward(x, into: try Tensor(shape: [2, 4, 3, 4]), scratch: scratch))
        XCTAssertThrowsError(try conv.forward(try Tensor(shape: [2, 2, 7, 9]), into: try Tensor(shape: [2, 4, 3, 5]), scratch: scratch))
        XCTAssertThrowsError(try conv.forward(try Tensor(shape: [2, 3, 9, 9]), into: try Tensor(shape: [2, 4, 5, 5]), scratch: scratch))
        XCTAssertNoThrow(try conv.forward(x, into: try Tensor(shape: [2, 4, 3, 5]), scratch: scratch))
        XCTAssertThrowsError(try GroupNorm(name: "g", channels: 6, groups: 4, device: device))
        XCTAssertThrowsError(try TimestepEmbedding(dimension: 2, frequencyShift: 1))
    }

    func testGroupNormGradients() throws {
        var worstOverall = 0.0
        for (channels, groups) in [(3, 1), (6, 3), (6, 6)] {
            let gn = try GroupNorm(name: "gn", channels: channels, groups: groups, device: device)
            randomize(gn.weight, seed: 140, scale: 0.3, offset: 1)
            randomize(gn.bias, seed: 141, scale: 0.3)
            let x = try randomTensor([2, channels, 7, 9], seed: 142, scale: 2, offset: 0.5)
            let y = try Tensor(shape: x.shape), dx = try Tensor(shape: x.shape)
            let saved = try GroupNorm.Activations(batch: 2, groups: groups, allocator: .shared)
            let probe = Probe(count: y.count, seed: 143)
            let loss = { () throws -> Double in
                try gn.forward(x, into: y, saving: saved)
                return probe.loss(y.data)
            }
            _ = try loss()
            let dy = try Tensor(shape: y.shape, values: probe.weights)
            dx.fill(3) // overwritten
            try gn.backward(dOut: dy, input: x, saved: saved, dInput: dx)
            var checker = GradientChecker()
            let label = "groupnorm C\(channels) G\(groups)"
            var worst = try checker.check("\(label).x", values: x.data, count: x.count, analytic: dx.toArray(), loss: loss)
            for p in gn.parameters {
                worst = max(worst, try checker.check("\(label).\(p.name)", values: p.value.data, count: p.count,
                                                     analytic: p.gradient.toArray(), loss: loss))
            }
            print("gradient check \(label): worst error/tolerance \(worst)")
            worstOverall = max(worstOverall, worst)
        }
        print("gradient check GroupNorm: worst error/tolerance over all cases \(worstOverall)")
    }

    func testGroupNormForwardMatchesADirectSum() throws {
        var worst = 0.0
        for (channels, groups) in [(3, 1), (6, 3)] {
            let gn = try GroupNorm(name: "gn", channels: channels, groups: groups, device: device)
            randomize(gn.weight, seed: 150, scale: 0.3, offset: 1)
            randomize(gn.bias, seed: 151, scale: 0.3)
            let x = try randomTensor([2, channels, 7, 9], seed: 152, scale: 2, offset: 0.5)
            let y = try Tensor(shape: x.shape)
            try gn.forward(x, into: y, saving: try GroupNorm.Activations(batch: 2, groups: groups, allocator: .shared))
            let perGroup = channels / groups, pixels = 63, n = perGroup * pixels
            var reference = [Double](repeating: 0, count: x.count)
            for item in 0..<(2 * groups) {
                let values = (0..<n).map { Double(x.data[item * n + $0]) }
                let mean = values.reduce(0, +) / Double(n)
                let variance = values.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Double(n)
                for i in 0..<n {
                    let channel = (item % groups) * perGroup + i / pixels
                    reference[item * n + i] = (values[i] - mean) / (variance + 1e-5).squareRoot()
                        * Double(gn.weight.value.data[channel]) + Double(gn.bias.value.data[channel])
                }
            }
            let error = relativeMaxError(y, reference)
            print("GroupNorm C\(channels) G\(groups) forward: max |error| / max |reference| = \(error)")
            XCTAssertLessThan(error, 1e-5)
            worst = max(worst, error)
        }
        print("GroupNorm forward: worst relative max error \(worst)")
    }

    func testSiLUGradientAndValues() throws {
        let x = try randomTensor([2, 3, 7, 9], seed: 160, scale: 3) // 378 values: vector body and tail
        let y = try Tensor(shape: x.shape), dx = try Tensor(shape: x.shape)
        try SiLU.forward(x, into: y)
        for i in 0..<x.count {
            let v = Double(x.data[i])
            XCTAssertEqual(Double(y.data[i]), v / (1 + Foundation.exp(-v)), accuracy: 1e-6 * max(1, abs(v)))
        }
        let probe = Probe(count: y.count, seed: 161)
        let loss = { () throws -> Double in try SiLU.forward(x, into: y); return probe.loss(y.data) }
        try SiLU.backward(dOut: try Tensor(shape: y.shape, values: probe.weights), input: x, dInput: dx)
        var checker = GradientChecker()
        let worst = try checker.check("silu.x", values: x.data, count: x.count, analytic: dx.toArray(), loss: loss)
        print("gradient check SiLU: worst error/tolerance \(worst)")
    }

    func testUpsampleAndPoolGradients() throws {
        var worst = 0.0
        for (h, w) in [(7, 9), (6, 8)] {
            let x = try randomTensor([2, 3, h, w], seed: 170)
            let up = try Tensor(shape: [2, 3, 2 * h, 2 * w]), down = try Tensor(shape: [2, 3, h / 2, w / 2])
            try NearestUpsample2x.forward(x, into: up)
            try AveragePool2x.forward(x, into: down)
            XCTAssertEqual(up.data[(2 * w) + 1], x.data[0]) // out[0, 0, 1, 1] = in[0, 0, 0, 0]
            XCTAssertEqual(down.data[0], 0.25 * (x.data[0] + x.data[1] + x.data[w] + x.data[w + 1]), accuracy: 1e-6)
            for (name, out) in [("upsample", up), ("pool", down)] {
                let probe = Probe(count: out.count, seed: 171)
                let loss = { () throws -> Double in
                    if name == "upsample" { try NearestUpsample2x.forward(x, into: out) } else { try AveragePool2x.forward(x, into: out) }
                    return probe.loss(out.data)
                }
                let dx = try Tensor(shape: x.shape), dy = try Tensor(shape: out.shape, values: probe.weights)
                dx.fill(5) // overwritten
                if name == "upsample" { try NearestUpsample2x.backward(dOut: dy, dInput: dx) } else { try AveragePool2x.backward(dOut: dy, dInput: dx) }
                var checker = GradientChecker()
                checker.samplesPerTensor = x.count // every coordinate, dropped odd rows included
                let ratio = try checker.check("\(name) \(h)×\(w)", values: x.data, count: x.count, analytic: dx.toArray(), loss: loss)
                print("gradient check \(name) \(h)×\(w): worst error/tolerance \(ratio)")
                worst = max(worst, ratio)
            }
        }
        print("gradient check upsample/pool: worst \(worst)")
    }

    func testTimestepEmbeddingMatchesTheFormula() throws {
        let timesteps: [Float] = [0, 1, 17, 999]
        for (dimension, shift, flip) in [(8, 1.0, false), (7, 0.0, true), (32, 1.0, false)] {
            let embedding = try TimestepEmbedding(dimension: dimension, frequencyShift: shift, flipSinToCos: flip)
            let out = try Tensor(shape: [timesteps.count, dimension])
            try embedding.forward(timesteps: timesteps, into: out)
            let half = dimension / 2
            for (n, t) in timesteps.enumerated() {
                for i in 0..<half {
                    let angle = Double(t) * Foundation.exp(-Foundation.log(10_000.0) * Double(i) / (Double(half) - shift))
                    let (first, second) = flip ? (cos(angle), sin(angle)) : (sin(angle), cos(angle))
                    XCTAssertEqual(Double(out.data[n * dimension + i]), first, accuracy: 1e-6)
                    XCTAssertEqual(Double(out.data[n * dimension + half + i]), second, accuracy: 1e-6)
                }
                if dimension % 2 == 1 { XCTAssertEqual(out.data[n * dimension + dimension - 1], 0) }
            }
            // t = 0: every sine 0, every cosine 1; the last frequency is exactly 1/maxPeriod with shift 1.
            for i in 0..<half { XCTAssertEqual(out.data[flip ? half + i : i], 0) ; XCTAssertEqual(out.data[flip ? i : half + i], 1) }
        }
    }

    /// Conv2d forward + backward on a U-Net-like layer against plain sgemm of the same
    /// multiply-adds. A figure for the record, not an assertion: the machine is shared.
    func testConv2dThroughputAgainstSgemm() throws {
        let batch = 8, channels = 64, side = 32
        let conv = try Conv2d(name: "conv", inChannels: channels, outChannels: channels, kernelSize: 3, padding: 1,
                              bias: true, device: device)
        var rng = SeededRandom(seed: 180)
        conv.initialize(&rng)
        let x = try randomTensor([batch, channels, side, side], seed: 181)
        let y = try Tensor(shape: x.shape), dx = try Tensor(shape: x.shape), dy = try randomTensor(x.shape, seed: 182)
        let scratch = try Conv2d.Scratch(for: conv, batch: batch, height: side, width: side)
        let g = scratch.geometry
        let productFlops = 2.0 * Double(batch * g.outChannels * g.patchSize * g.outPixels)
        func best(_ repeats: Int, _ body: () throws -> Void) rethrows -> Double {
            var fastest = Double.infinity
            for _ in 0..<repeats {
                let start = DispatchTime.now().uptimeNanoseconds
                try body()
                fastest = min(fastest, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
            }
            return fastest
        }
        try conv.forward(x, into: y, scratch: scratch) // warm-up
        let forward = try best(10) { try conv.forward(x, into: y, scratch: scratch) }
        let backward = try best(10) { try conv.backward(dOut: dy, input: x, dInput: dx, scratch: scratch) }
        let weightsOnly = try best(10) { try conv.backward(dOut: dy, input: x, dInput: nil, scratch: scratch) }
        // The same three products as one sgemm each over the whole batch's columns.
        let a = try randomTensor([g.outChannels, g.patchSize], seed: 183)
        let b = try randomTensor([g.patchSize, batch * g.outPixels], seed: 184)
        let c = try Tensor(shape: [g.outChannels, batch * g.outPixels])
        let gemm = best(10) {
            BLAS.sgemm(m: g.outChannels, n: batch * g.outPixels, k: g.patchSize, a: a.data, lda: g.patchSize,
                       b: b.data, ldb: batch * g.outPixels, c: c.data, ldc: batch * g.outPixels)
        }
        // The data movement around the products: im2col and col2im over the batch, one thread.
        let reshuffle = best(10) {
            for b in 0..<batch {
                ConvolutionKernels.im2col(image: x.data + b * g.inputImageCount, columns: scratch.columns.data, geometry: g)
            }
        }
        let scatter = best(10) {
            for b in 0..<batch {
                ConvolutionKernels.col2imAdding(columns: scratch.columns.data, image: dx.data + b * g.inputImageCount, geometry: g)
            }
        }
        print(String(format: "im2col over the batch %.2f ms, col2im %.2f ms (one thread each)", reshuffle * 1e3, scatter * 1e3))
        // And the machine's square-product rate, the ceiling for any of them.
        let side1024 = 1024
        let sa = try randomTensor([side1024, side1024], seed: 185), sb = try randomTensor([side1024, side1024], seed: 186)
        let sc = try Tensor(shape: [side1024, side1024])
        let square = best(10) {
            BLAS.sgemm(m: side1024, n: side1024, k: side1024, a: sa.data, lda: side1024, b: sb.data, ldb: side1024,
                       c: sc.data, ldc: side1024)
        }
        let gflops = { (flops: Double, seconds: Double) in flops / seconds / 1e9 }
        print(String(format: "conv backward without dInput (dWeight, dBias) %.1f ms %.1f GFLOP/s; sgemm 1024³ %.1f GFLOP/s",
                     weightsOnly * 1e3, gflops(productFlops, weightsOnly), gflops(2 * pow(1024, 3), square)))
        print("BLAS core \(ComputeThreads.blasCoreName): " + String(format: "Conv2d 8×64→64×32×32 k3 s1 p1 (%d threads): forward %.1f ms %.1f GFLOP/s, backward %.1f ms %.1f GFLOP/s, forward+backward %.1f GFLOP/s; sgemm 64×8192×576 %.1f GFLOP/s",
                     ComputeThreads.count, forward * 1e3, gflops(productFlops, forward),
                     backward * 1e3, gflops(2 * productFlops, backward), gflops(3 * productFlops, forward + backward),
                     gflops(productFlops, gemm)))
    }

    // MARK: references

    private func directConvolution(_ conv: Conv2d, _ x: Tensor, _ g: ConvolutionGeometry) -> [Double] {
        var out = [Double](repeating: 0, count: 2 * g.outputImageCount)
        let k = conv.kernelSize
        for b in 0..<2 {
            for o in 0..<g.outChannels {
                for oy in 0..<g.outHeight {
                    for ox in 0..<g.outWidth {
                        var sum = conv.bias.map { Double($0.value.data[o]) } ?? 0
                        for c in 0..<g.inChannels {
                            for i in 0..<k {
                                for j in 0..<k {
                                    let iy = oy * g.stride - g.padding + i, ix = ox * g.stride - g.padding + j
                                    guard iy >= 0, iy < g.height, ix >= 0, ix < g.width else { continue }
                                    sum += Double(conv.weight.value.data[((o * g.inChannels + c) * k + i) * k + j])
                                        * Double(x.data[((b * g.inChannels + c) * g.height + iy) * g.width + ix])
                                }
                            }
                        }
                        out[((b * g.outChannels + o) * g.outHeight + oy) * g.outWidth + ox] = sum
                    }
                }
            }
        }
        return out
    }

    /// max |y − reference| / max |reference|.
    private func relativeMaxError(_ y: Tensor, _ reference: [Double]) -> Double {
        XCTAssertEqual(y.count, reference.count)
        var error = 0.0, scale = 0.0
        for i in 0..<min(y.count, reference.count) {
            error = max(error, abs(Double(y.data[i]) - reference[i]))
            scale = max(scale, abs(reference[i]))
        }
        return error / max(scale, .leastNormalMagnitude)
    }
}
