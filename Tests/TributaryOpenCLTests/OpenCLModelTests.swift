import Foundation
import TributaryModels
@testable import TributaryOpenCL
import TributaryTensor
import XCTest

/// Whole GPT and MLP steps on the OpenCL device (POCL in CI) against the CPU's: the
/// models are unchanged, only their device differs.
final class OpenCLModelTests: XCTestCase {
    /// A fresh device (its own VRAM accounting) on the test machine's first OpenCL device.
    private func openCL(vram: Int? = nil) throws -> OpenCLDevice {
        try OpenCLDevice(info: OpenCLTestDevice.device(), vramBudgetBytes: vram, memoryBudgetBytes: nil,
                         cache: OpenCLProgramCache(directory: nil))
    }

    private func tokens(vocab: Int, b: Int, t: Int, seed: UInt64) -> ModelBatch {
        var r = SeededRandom(seed: seed)
        let x = (0..<(b * t)).map { _ in Int32(r.nextIndex(below: vocab)) }
        let y = (0..<(b * t)).map { _ in Int32(r.nextIndex(below: vocab)) }
        return .tokens(inputs: x, targets: y, batch: b, sequence: t)
    }

    /// Loss within 1e-5 relative and every gradient within `tolerance` (maxError: relative
    /// above magnitude 1, absolute below).
    private func assertSameStep(_ device: any TrainableModel, _ cpu: any TrainableModel, lossDevice: Float, lossCPU: Float,
                                tolerance: Float, _ what: String) {
        XCTAssertEqual(Double(lossDevice), Double(lossCPU), accuracy: 1e-5 * max(1, Double(abs(lossCPU))), "\(what): loss")
        XCTAssertEqual(device.parameters.parameters.map(\.name), cpu.parameters.parameters.map(\.name))
        for (p, q) in zip(device.parameters.parameters, cpu.parameters.parameters) {
            assertClose(p.gradient.toArray(), q.gradient.toArray(), tolerance: tolerance, "\(what) \(p.name)")
        }
    }

    /// Two optimizer steps: the second sees weights the host changed (an SGD update written
    /// through `Tensor.data`), so the device must pick the host's new values up.
    func testAGPTStepOnOpenCLEqualsTheCPUsAndSeesWeightsTheHostChanged() throws {
        for bias in [true, false] {
            let cfg = GPTConfig(vocabSize: 29, blockSize: 12, nLayer: 2, nHead: 2, nEmbd: 24, bias: bias)
            let device = try openCL()
            let gpu = try GPT(config: cfg, seed: 7, device: device)
            let cpu = try GPT(config: cfg, seed: 7)
            for step in 0..<2 {
                let batch = tokens(vocab: 29, b: 3, t: 11, seed: UInt64(20 + step))
                gpu.parameters.zeroGradients()
                cpu.parameters.zeroGradients()
                // Two micro-batches accumulate, as a worker's do.
                var lossGPU: Float = 0, lossCPU: Float = 0
                for half in [(0, 2), (2, 3)] {
                    let slice = batch.samples(half.0, half.1)
                    lossGPU += try gpu.forwardBackward(slice, lossScale: 0.5)
                    lossCPU += try cpu.forwardBackward(slice, lossScale: 0.5)
                }
                assertSameStep(gpu, cpu, lossDevice: lossGPU, lossCPU: lossCPU, tolerance: 1e-6, "GPT bias \(bias) step \(step)")
                for model in [gpu, cpu] as [any TrainableModel] {
                    for p in model.parameters.parameters {
                        let w = p.value.data, g = p.gradient.data
                        for i in 0..<p.count { w[i] -= 0.5 * g[i] }
                    }
                }
            }
            let evalGPU = try gpu.evaluate(tokens(vocab: 29, b: 2, t: 12, seed: 3))
            let evalCPU = try cpu.evaluate(tokens(vocab: 29, b: 2, t: 12, seed: 3))
            XCTAssertEqual(evalGPU.loss, evalCPU.loss, accuracy: 1e-5 * max(1, abs(evalCPU.loss)))
            XCTAssertEqual(evalGPU.correct, evalCPU.correct)
            try device.checkHealthy()
        }
    }

    func testAnMLPStepOnOpenCLEqualsTheCPUs() throws {
        let cfg = MLPConfig(inputFeatures: 37, hidden: [53, 19], classes: 10)
        let device = try openCL()
        let gpu = try MLPClassifier(config: cfg, seed: 5, device: device)
        let cpu = try MLPClassifier(config: cfg, seed: 5)
        var r = SeededRandom(seed: 6)
        let b = 17
        let batch = ModelBatch.features(inputs: (0..<(b * 37)).map { _ in r.nextGaussian() },
                                        targets: (0..<b).map { _ in Int32(r.nextIndex(below: 10)) }, batch: b)
        gpu.parameters.zeroGradients()
        cpu.parameters.zeroGradients()
        let lossGPU = try gpu.forwardBackward(batch, lossScale: 1)
        let lossCPU = try cpu.forwardBackward(batch, lossScale: 1)
        assertSameStep(gpu, cpu, lossDevice: lossGPU, lossCPU: lossCPU, tolerance: 1e-6, "MLP")
    }

    /// Values stay on the device between kernels: after a step the weights are on both
    /// sides (uploaded once), the activations only on the device, and reading a gradient
    /// brings it down without invalidating the device's copy of anything else.
    func testValuesCrossTheBusOnlyWhenTheOtherSideChangedThem() throws {
        let cfg = MLPConfig(inputFeatures: 8, hidden: [16], classes: 4)
        let device = try openCL()
        let model = try MLPClassifier(config: cfg, seed: 1, device: device)
        let batch = ModelBatch.features(inputs: (0..<32).map { Float($0) / 32 }, targets: [0, 1, 2, 3], batch: 4)
        model.parameters.zeroGradients()
        _ = try model.forwardBackward(batch, lossScale: 1)
        let weight = try XCTUnwrap(model.parameters.parameters.first)
        XCTAssertEqual(weight.value.storage.residency?.newest, .both, "weights: uploaded, unchanged by the step")
        XCTAssertEqual(weight.gradient.storage.residency?.newest, .device, "gradients: written on the device")
        _ = weight.gradient.toArray()
        XCTAssertEqual(weight.gradient.storage.residency?.newest, .both, "a read leaves the device's copy in use, and equal")
        weight.gradient.zero()
        XCTAssertEqual(weight.gradient.storage.residency?.newest, .device, "zeroing happens on the device")
        XCTAssertEqual(weight.gradient.toArray(), [Float](repeating: 0, count: weight.count))
        weight.value.data[0] = 42
        XCTAssertEqual(weight.value.storage.residency?.newest, .host, "a host write makes the host's copy the newest")
    }

    /// In bytes: once warm, a step moves nothing to the device but what the host changed,
    /// and nothing back but the losses; reading the gradients brings exactly them down.
    func testAWarmStepMovesOnlyTheLossesAndReadingGradientsMovesOnlyThem() throws {
        let cfg = GPTConfig(vocabSize: 29, blockSize: 12, nLayer: 2, nHead: 2, nEmbd: 24, bias: true)
        let device = try openCL()
        let model = try GPT(config: cfg, seed: 7, device: device)
        let b = 3, t = 12
        model.parameters.zeroGradients()
        _ = try model.forwardBackward(tokens(vocab: 29, b: b, t: t, seed: 1), lossScale: 1)
        let first = device.transferredBytes
        let modelBytes = model.parameters.parameters.reduce(0) { $0 + 4 * $1.count }
        XCTAssertGreaterThanOrEqual(first.toDevice, modelBytes, "the first step uploads the weights")

        model.parameters.zeroGradients()  // on the device
        _ = try model.forwardBackward(tokens(vocab: 29, b: b, t: t, seed: 2), lossScale: 1)
        let second = device.transferredBytes
        XCTAssertEqual(second.toDevice - first.toDevice, 0, "a warm step uploads nothing")
        XCTAssertEqual(second.toHost - first.toHost, 4 * b * t, "and downloads the losses only")

        var gradientBytes = 0
        for p in model.parameters.parameters {
            _ = p.gradient.toArray()
            gradientBytes += 4 * p.count
        }
        let read = device.transferredBytes
        XCTAssertEqual(read.toHost - second.toHost, gradientBytes, "reading the gradients brings them down, once")
        for p in model.parameters.parameters { _ = p.gradient.toArray() }
        XCTAssertEqual(device.transferredBytes.toHost, read.toHost, "a second read of unchanged values moves nothing")
        print("GPT \(model.parameters.scalarCount) parameters: first step \(first.toDevice) B up, \(first.toHost) B down; "
              + "warm step 0 B up, \(4 * b * t) B down; gradients \(gradientBytes) B down")
    }

    /// Uploads do not block the host: a host write to a block whose upload may still be in
    /// flight waits for it, so the device sees the old values for the kernels enqueued
    /// before the write and the new ones after (16 M values: an upload long enough that a
    /// missing wait would let the new values leak into the first sum).
    func testAHostWriteWaitsForTheUploadStillReadingTheBlock() throws {
        let device = try openCL()
        let n = 1 << 24
        let x = try Tensor(shape: [n], allocator: device.allocator)
        let y = try Tensor(shape: [n], allocator: device.allocator)
        x.fill(1)  // no device copy yet: on the host
        device.kernels.accumulate(y, x, count: n)  // x goes up on the transfer queue; y += 1 waits for it
        let values = x.data  // must wait until the upload has read x
        for i in 0..<n { values[i] = 2 }
        device.kernels.accumulate(y, x, count: n)  // x goes up again: y += 2
        try device.checkHealthy()
        let sums = Set(y.toArray())
        XCTAssertEqual(sums, [3], "y = 1 + 2 everywhere")
        XCTAssertEqual(device.transferredBytes.toDevice, 3 * 4 * n, "y (zeros) once, x twice")
    }

    /// The VRAM budget: a step's device memory peaks at exactly what it allocates; that
    /// budget trains, and one byte less fails with a typed out-of-memory from the model
    /// (never a crash, never a loss or gradient from a half-run step).
    func testAStepFitsItsMeasuredVRAMPeakAndOneByteLessIsRefused() throws {
        let cfg = GPTConfig(vocabSize: 31, blockSize: 16, nLayer: 2, nHead: 2, nEmbd: 32, bias: true)
        let batch = tokens(vocab: 31, b: 4, t: 16, seed: 9)
        let probe = try openCL()
        let model = try GPT(config: cfg, seed: 1, device: probe)
        model.parameters.zeroGradients()
        let expected = try model.forwardBackward(batch, lossScale: 1)
        let peak = probe.deviceBytesPeak
        print("GPT step VRAM peak: \(peak) bytes")
        XCTAssertGreaterThan(peak, 0)

        let fits = try openCL(vram: peak)
        let fitting = try GPT(config: cfg, seed: 1, device: fits)
        fitting.parameters.zeroGradients()
        XCTAssertEqual(try fitting.forwardBackward(batch, lossScale: 1), expected)
        XCTAssertLessThanOrEqual(fits.deviceBytesPeak, peak)

        let short = try openCL(vram: peak - 1)
        let refused = try GPT(config: cfg, seed: 1, device: short)
        refused.parameters.zeroGradients()
        XCTAssertThrowsError(try refused.forwardBackward(batch, lossScale: 1)) { error in
            guard case let .outOfDeviceMemory(_, _, budget, _)? = error as? OpenCLError else {
                return XCTFail("expected an out-of-device-memory error, got \(error)")
            }
            XCTAssertEqual(budget, peak - 1)
            XCTAssertTrue("\(error)".contains("over the VRAM budget"), "\(error)")
        }
        XCTAssertLessThanOrEqual(short.deviceBytesPeak, peak - 1, "the budget is never passed")
        XCTAssertThrowsError(try refused.evaluate(batch), "a failed device stays failed")
    }

    /// A block's device copy is made with the block: one the VRAM budget cannot hold is
    /// refused when the tensor is allocated, in the device's words, and the host memory
    /// taken for it is given back; the copies go with their blocks.
    func testABlockTheDeviceCannotHoldIsRefusedWhenAllocated() throws {
        let device = try openCL(vram: 4096)
        do {
            let small = try Tensor(shape: [512], allocator: device.allocator)
            XCTAssertEqual(device.deviceBytesPeak, 2048, "the copy exists before any kernel used it")
            XCTAssertThrowsError(try Tensor(shape: [1024], allocator: device.allocator)) { error in
                guard case let .deviceMemory(why)? = error as? TensorAllocationError else {
                    return XCTFail("expected a device-memory refusal, got \(error)")
                }
                XCTAssertTrue(why.contains("over the VRAM budget"), why)
            }
            XCTAssertEqual(device.allocator.currentBytes, 2048, "the refused block's host memory went back")
            withExtendedLifetime(small) {}
        }
        XCTAssertEqual(device.context.allocator.currentBytes, 0, "device copies are freed with their blocks")
    }

    /// The U-Net on the OpenCL device: its linear layers (time embedding, attention
    /// projections) run there, its convolutions and group norms on the host through
    /// `Tensor`, and the residency keeps the two coherent: the step equals the CPU's.
    func testAUNetStepOnOpenCLEqualsTheCPUs() throws {
        let cfg = UNetConfig(imageSize: 8, inChannels: 1, baseChannels: 4, channelMultipliers: [1, 2], blocksPerLevel: 1,
                             normGroups: 2, timesteps: 50, schedule: .cosine, attentionResolutions: [4])
        let device = try openCL()
        let gpu = try UNet(config: cfg, seed: 4, device: device)
        let cpu = try UNet(config: cfg, seed: 4, device: CPUDevice(memoryBudgetBytes: nil))
        var r = SeededRandom(seed: 8)
        let batch = ModelSpec(cfg).sampleShape.randomBatch(samples: 3, using: &r)
        for step in 0..<2 {
            gpu.trainingSeed = UInt64(step)
            cpu.trainingSeed = UInt64(step)
            gpu.parameters.zeroGradients()
            cpu.parameters.zeroGradients()
            let lossGPU = try gpu.forwardBackward(batch, lossScale: 1)
            let lossCPU = try cpu.forwardBackward(batch, lossScale: 1)
            assertSameStep(gpu, cpu, lossDevice: lossGPU, lossCPU: lossCPU, tolerance: 1e-5, "U-Net step \(step)")
        }
        let onDevice = gpu.parameters.parameters.filter { $0.value.storage.residency?.deviceCopy != nil }
        XCTAssertTrue(onDevice.contains { $0.name.hasPrefix("time_embedding.linear_1") }, "the time MLP ran on the device")
        print("U-Net parameters used by device kernels: \(onDevice.count) of \(gpu.parameters.parameters.count)")
    }
}
