import XCTest
@testable import TributaryModels
import TributaryTensor

/// The U-Net's residual block and channel concatenation against finite differences (GradientChecker).
final class UNetLayerTests: XCTestCase {
    override func setUp() { ComputeThreads.set(2) }

    private var device: CPUDevice { CPUDevice(allocator: .shared) }

    // MARK: Residual block

    /// 4→6 channels (1×1 shortcut) and 4→4 (identity), batch 2, 5×7 images, time width 3.
    func testResidualBlockGradients() throws {
        var worstOverall = 0.0
        for outChannels in [6, 4] {
            let block = try ResidualBlock(name: "res", inChannels: 4, outChannels: outChannels, timeFeatures: 3, groups: 2,
                                          parameters: .allocating(.shared), device: device)
            XCTAssertEqual(block.parameters.map(\.name),
                           ResidualBlock.parameterSpecs(name: "res", inChannels: 4, outChannels: outChannels, timeFeatures: 3).map(\.name))
            for (i, p) in block.parameters.enumerated() {
                // Gains near 1, everything else small and random (biases too, so their gradients are exercised).
                randomize(p, seed: 200 + UInt64(i), scale: 0.3, offset: p.name.hasSuffix("norm1.weight") || p.name.hasSuffix("norm2.weight") ? 1 : 0)
            }
            let x = try randomTensor([2, 4, 5, 7], seed: 210), time = try randomTensor([2, 3], seed: 211)
            let y = try Tensor(shape: [2, outChannels, 5, 7])
            let saved = try ResidualBlock.Activations(for: block, batch: 2, height: 5, width: 7)
            let probe = Probe(count: y.count, seed: 212)
            let loss = { () throws -> Double in
                try block.forward(x, time: time, into: y, saving: saved)
                return probe.loss(y.data)
            }
            _ = try loss()
            let dy = try Tensor(shape: y.shape, values: probe.weights)
            let dx = try Tensor(shape: x.shape), dTime = try Tensor(shape: time.shape)
            dx.fill(5) // overwritten without accumulateInput
            try block.backward(dOut: dy, input: x, time: time, saved: saved, dInput: dx, dTime: dTime)
            var checker = GradientChecker()
            let label = "res 4→\(outChannels)"
            var worst = try checker.check("\(label).x", values: x.data, count: x.count, analytic: dx.toArray(), loss: loss)
            worst = max(worst, try checker.check("\(label).time", values: time.data, count: time.count, analytic: dTime.toArray(), loss: loss))
            for p in block.parameters {
                worst = max(worst, try checker.check("\(label).\(p.name)", values: p.value.data, count: p.count,
                                                     analytic: p.gradient.toArray(), loss: loss))
            }
            print("gradient check residual block \(label): worst error/tolerance \(worst)")
            worstOverall = max(worstOverall, worst)

            // Accumulating: dInput gains exactly what a fresh pass writes; dTime always accumulates.
            let added = try Tensor(shape: x.shape)
            added.fill(1)
            dTime.zero()
            try block.backward(dOut: dy, input: x, time: time, saved: saved, dInput: added, dTime: dTime, accumulateInput: true)
            for i in 0..<x.count { XCTAssertEqual(added.data[i], dx.data[i] + 1, accuracy: 1e-5) }
        }
        print("gradient check ResidualBlock: worst error/tolerance over both cases \(worstOverall)")
    }

    func testResidualBlockRefusesShapesThatDoNotFit() throws {
        let block = try ResidualBlock(name: "res", inChannels: 4, outChannels: 6, timeFeatures: 3, groups: 2,
                                      parameters: .allocating(.shared), device: device)
        let saved = try ResidualBlock.Activations(for: block, batch: 2, height: 5, width: 7)
        let x = try Tensor(shape: [2, 4, 5, 7]), y = try Tensor(shape: [2, 6, 5, 7])
        XCTAssertThrowsError(try block.forward(x, time: try Tensor(shape: [2, 4]), into: y, saving: saved))
        XCTAssertThrowsError(try block.forward(try Tensor(shape: [2, 4, 5, 6]), time: try Tensor(shape: [2, 3]), into: y, saving: saved))
        XCTAssertThrowsError(try ResidualBlock(name: "res", inChannels: 4, outChannels: 6, timeFeatures: 3, groups: 4,
                                               parameters: .allocating(.shared), device: device), "4 groups do not divide 6 channels")
    }

    // MARK: Channel concatenation

    func testChannelConcatForwardAndBackward() throws {
        let a = try randomTensor([2, 3, 5, 7], seed: 220), b = try randomTensor([2, 2, 5, 7], seed: 221)
        let out = try Tensor(shape: [2, 5, 5, 7])
        try ChannelConcat.forward(a, b, into: out)
        for image in 0..<2 {
            for c in 0..<5 {
                for p in 0..<35 {
                    let expected = c < 3 ? a.data[(image * 3 + c) * 35 + p] : b.data[(image * 2 + c - 3) * 35 + p]
                    XCTAssertEqual(out.data[(image * 5 + c) * 35 + p], expected)
                }
            }
        }
        let probe = Probe(count: out.count, seed: 222)
        let loss = { () throws -> Double in
            try ChannelConcat.forward(a, b, into: out)
            return probe.loss(out.data)
        }
        let dOut = try Tensor(shape: out.shape, values: probe.weights)
        let da = try Tensor(shape: a.shape), db = try Tensor(shape: b.shape)
        try ChannelConcat.backward(dOut: dOut, dFirst: da, dSecond: db)
        var checker = GradientChecker()
        let worst = max(try checker.check("concat.first", values: a.data, count: a.count, analytic: da.toArray(), loss: loss),
                        try checker.check("concat.second", values: b.data, count: b.count, analytic: db.toArray(), loss: loss))
        print("gradient check ChannelConcat: worst error/tolerance \(worst)")
        let before = da.toArray()
        try ChannelConcat.backward(dOut: dOut, dFirst: da, dSecond: db, accumulate: true)
        for i in 0..<da.count { XCTAssertEqual(da.data[i], 2 * before[i], accuracy: 1e-6) }
        XCTAssertThrowsError(try ChannelConcat.forward(a, try Tensor(shape: [2, 2, 5, 6]), into: out))
        XCTAssertThrowsError(try ChannelConcat.forward(a, b, into: try Tensor(shape: [2, 6, 5, 7])))
    }

    // MARK: Spatial self-attention

    /// Batch 2, 4 channels in 2 groups, 3×5 pixels (15 tokens).
    func testSpatialSelfAttentionGradients() throws {
        let attention = try SpatialSelfAttention(name: "attn", channels: 4, groups: 2, parameters: .allocating(.shared), device: device)
        XCTAssertEqual(attention.parameters.map(\.name), SpatialSelfAttention.parameterSpecs(name: "attn", channels: 4).map(\.name))
        for (i, p) in attention.parameters.enumerated() {
            // Large enough query and key weights that the softmax is far from uniform.
            randomize(p, seed: 230 + UInt64(i), scale: p.name.hasSuffix("q.weight") || p.name.hasSuffix("k.weight") ? 0.8 : 0.3,
                      offset: p.name == "attn.norm.weight" ? 1 : 0)
        }
        let x = try randomTensor([2, 4, 3, 5], seed: 240), y = try Tensor(shape: [2, 4, 3, 5])
        let saved = try SpatialSelfAttention.Activations(for: attention, batch: 2, height: 3, width: 5)
        let probe = Probe(count: y.count, seed: 241)
        let loss = { () throws -> Double in
            try attention.forward(x, into: y, saving: saved)
            return probe.loss(y.data)
        }
        _ = try loss()
        var largest: Float = 0
        for i in 0..<saved.probabilities.count { largest = max(largest, saved.probabilities.data[i]) }
        XCTAssertGreaterThan(largest, 0.2, "attention weights are not uniform (1/15)")
        let dy = try Tensor(shape: y.shape, values: probe.weights), dx = try Tensor(shape: x.shape)
        dx.fill(3) // overwritten without accumulateInput
        try attention.backward(dOut: dy, input: x, saved: saved, dInput: dx)
        var checker = GradientChecker()
        var worst = try checker.check("attn.x", values: x.data, count: x.count, analytic: dx.toArray(), loss: loss)
        for p in attention.parameters {
            worst = max(worst, try checker.check(p.name, values: p.value.data, count: p.count, analytic: p.gradient.toArray(), loss: loss))
        }
        print("gradient check SpatialSelfAttention: worst error/tolerance \(worst)")
        let added = try Tensor(shape: x.shape)
        added.fill(1)
        try attention.backward(dOut: dy, input: x, saved: saved, dInput: added, accumulateInput: true)
        for i in 0..<x.count { XCTAssertEqual(added.data[i], dx.data[i] + 1, accuracy: 1e-5) }
        // byteCount is what the activations take from the layer's allocator.
        let bytes = TensorAllocator(budgetBytes: nil)
        let counted = try SpatialSelfAttention(name: "attn", channels: 4, groups: 2, parameters: .allocating(bytes),
                                               device: CPUDevice(allocator: bytes))
        let before = bytes.currentBytes
        let kept = try SpatialSelfAttention.Activations(for: counted, batch: 2, height: 3, width: 5)
        withExtendedLifetime(kept) {
            XCTAssertEqual(bytes.currentBytes - before,
                           SpatialSelfAttention.Activations.byteCount(channels: 4, groups: 2, batch: 2, height: 3, width: 5))
        }
    }
}
