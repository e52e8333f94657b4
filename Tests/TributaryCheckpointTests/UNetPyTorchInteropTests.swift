import Foundation
import XCTest
import TributaryCheckpoint
import TributaryModels
import TributaryTensor

/// A U-Net checkpoint loads into an independent PyTorch U-Net laid out as diffusers'
/// UNet2DModel (`Tests/Interop/unet_reference.py`: `load_state_dict(strict=True)`, no
/// renaming), which computes the same denoising loss and the same gradient for every
/// parameter from the same clean images, timesteps and noise.
/// Needs a Python with torch and safetensors: TRIBUTARY_TORCH_PYTHON, or /tmp/torchvenv
/// (see README, Benchmarks); skipped when there is none.
final class UNetPyTorchInteropTests: XCTestCase {
    /// One configuration and the batch it is checked on.
    struct Case {
        let label: String
        let config: UNetConfig
        let timesteps: [Int]
    }

    static let cases = [
        // Two levels, attention at the bottom (4×4: both of its blocks and the mid block's).
        Case(label: "8×8×1 [1,2] cosine, attention at 4",
             config: UNetConfig(imageSize: 8, inChannels: 1, baseChannels: 4, channelMultipliers: [1, 2], blocksPerLevel: 1,
                                normGroups: 2, timesteps: 1000, schedule: .cosine, attentionResolutions: [4]),
             timesteps: [0, 517, 999]),
        // Three levels, two blocks per level, a level without attention on top, shortcuts
        // where the channels change (6 → 12 and every up block's concatenation).
        Case(label: "12×12×3 [1,1,2] linear, attention at 6 and 3",
             config: UNetConfig(imageSize: 12, inChannels: 3, baseChannels: 6, channelMultipliers: [1, 1, 2], blocksPerLevel: 2,
                                normGroups: 3, timesteps: 1000, schedule: .linear, attentionResolutions: [6, 3]),
             timesteps: [999, 31]),
    ]

    /// Gradients: the largest difference over a tensor, relative to that tensor's largest
    /// gradient. Tributary computes in fp32 (ε = 6e-8) through some 25 layers, with sums of
    /// thousands of terms (a conv weight's gradient sums over batch × pixels) and cancellations
    /// (a query bias sums rows of softmax gradients that each sum to zero), against a float64
    /// reference. Measured worst: 1.0e-5 (a query bias), 2e-6 elsewhere; PyTorch's own fp32
    /// run (`--float32`) is off its float64 by up to 5e-6 on these shapes. A wrong layer, order
    /// or convention moves gradients by percents or more.
    static let gradientTolerance = 1e-4

    func testPyTorchUNetLoadsTheCheckpointAndAgreesOnLossAndEveryGradient() throws {
        let fm = FileManager.default
        let python = ProcessInfo.processInfo.environment["TRIBUTARY_TORCH_PYTHON"] ?? "/tmp/torchvenv/bin/python"
        guard fm.isExecutableFile(atPath: python) else { throw XCTSkip("no Python with torch at \(python)") }
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Interop/unet_reference.py").path
        for (index, testCase) in Self.cases.enumerated() {
            let cfg = testCase.config
            let model = try UNet(config: cfg, seed: 11 + UInt64(index), device: CPUDevice(memoryBudgetBytes: nil))
            // Move every parameter off its initial value so that a swapped or transposed
            // tensor (GroupNorm gains of 1, zero biases, equal-shaped q/k/v) cannot go unnoticed.
            var rng = SeededRandom(seed: 21 + UInt64(index))
            for p in model.parameters.parameters {
                for i in 0..<p.count { p.value.data[i] += 0.1 * rng.nextGaussian() }
                p.gradient.zero()
            }
            let b = testCase.timesteps.count, n = cfg.pixelsPerSample
            let clean = (0..<(b * n)).map { _ in rng.nextUnitFloat() * 2 - 1 }
            let noise = (0..<(b * n)).map { _ in rng.nextGaussian() }
            let ours = Double(try model.denoisingForwardBackward(cleanImages: clean, timesteps: testCase.timesteps,
                                                                   noise: noise, batch: b))

            let dir = fm.temporaryDirectory.appendingPathComponent("tributary-unet-interop-\(UUID().uuidString)").path
            defer { try? fm.removeItem(atPath: dir) }
            let stepDir = try CheckpointStore(directory: dir).save(step: 1, spec: ModelSpec(cfg), model: model, vocabulary: nil,
                                                                    optimizer: nil, trainerState: nil)
            let batchPath = "\(dir)/batch.json"
            let batchJSON = try JSONSerialization.data(withJSONObject: [
                "batch": b, "timesteps": testCase.timesteps, "clean_images": clean.map(Double.init), "noise": noise.map(Double.init),
            ])
            try batchJSON.write(to: URL(fileURLWithPath: batchPath))

            let reply = try runReference(python: python, script: script, arguments: [stepDir, batchPath], directory: dir)
            let theirs = try XCTUnwrap(reply["loss"] as? Double)
            let gradients = try XCTUnwrap(reply["gradients"] as? [String: [Double]])
            print("\(testCase.label): Tributary loss \(ours), PyTorch loss \(theirs), relative difference \(abs(ours - theirs) / abs(theirs))")
            // The fp32 forward against float64: agreement to ~1e-7 relative (measured 4.5e-8).
            XCTAssertEqual(ours, theirs, accuracy: 1e-5 * abs(theirs), testCase.label)

            // The same parameters by name (strict loading already refused any other set).
            XCTAssertEqual(Set(gradients.keys), Set(model.parameters.parameters.map(\.name)), testCase.label)
            var worst = (relative: 0.0, name: "")
            for p in model.parameters.parameters {
                guard let reference = gradients[p.name], reference.count == p.count else {
                    XCTFail("\(testCase.label): no PyTorch gradient of \(p.count) values for \(p.name)")
                    continue
                }
                var difference = 0.0
                for i in 0..<p.count { difference = max(difference, abs(Double(p.gradient.data[i]) - reference[i])) }
                var scale = Self.largestMagnitude(reference)
                if p.name.hasSuffix(".k.bias") {
                    // A key bias adds the same q·b to every score of a query, which the softmax
                    // ignores: its true gradient is exactly 0 and both sides return rounding noise.
                    // Measured against the gradient of the same layer's key weights instead.
                    let weights = try XCTUnwrap(gradients[String(p.name.dropLast("bias".count)) + "weight"])
                    XCTAssertLessThanOrEqual(scale, 1e-9 * Self.largestMagnitude(weights), "\(testCase.label): \(p.name) should have no gradient")
                    scale = Self.largestMagnitude(weights)
                }
                // Every parameter takes part: a zero gradient would make the check vacuous.
                XCTAssertGreaterThan(scale, 0, "\(testCase.label): \(p.name) has no gradient")
                let relative = difference / max(scale, .leastNormalMagnitude)
                if relative > worst.relative { worst = (relative, p.name) }
                XCTAssertLessThanOrEqual(relative, Self.gradientTolerance,
                                         "\(testCase.label): \(p.name) differs by \(difference) at gradient scale \(scale)")
            }
            print("\(testCase.label): \(model.parameters.parameters.count) gradients, worst max |Δ| / max |g| = \(worst.relative) (\(worst.name))")
        }
    }

    static func largestMagnitude(_ values: [Double]) -> Double { values.reduce(0) { max($0, abs($1)) } }

    /// Runs the reference script with its output in files (no pipe to fill), under a
    /// deadline, and decodes the JSON it prints.
    private func runReference(python: String, script: String, arguments: [String], directory: String) throws -> [String: Any] {
        let outPath = "\(directory)/reference.out", errPath = "\(directory)/reference.err"
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        let out = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
        let err = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        defer {
            try? out.close()
            try? err.close()
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [script] + arguments
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let deadline = Date().addingTimeInterval(300)
        while process.isRunning, Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
            XCTFail("the PyTorch reference ran past 300 s")
        }
        let errors = String(decoding: (try? Data(contentsOf: URL(fileURLWithPath: errPath))) ?? Data(), as: UTF8.self)
        if process.terminationStatus != 0, errors.contains("ModuleNotFoundError") {
            throw XCTSkip("torch or safetensors missing for \(python)")
        }
        XCTAssertEqual(process.terminationStatus, 0, errors)
        let output = try Data(contentsOf: URL(fileURLWithPath: outPath))
        return try XCTUnwrap(JSONSerialization.jsonObject(with: output) as? [String: Any], errors)
    }
}
