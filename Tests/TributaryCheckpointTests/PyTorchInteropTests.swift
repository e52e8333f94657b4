import Foundation
import XCTest
import TributaryCheckpoint
import TributaryModels
import TributaryTensor

/// A GPT checkpoint loads into a PyTorch module with nanoGPT's layout
/// (`load_state_dict(strict=True)`, no renaming) and computes the same loss.
/// Needs a Python with torch and safetensors: TRIBUTARY_TORCH_PYTHON, or /tmp/torchvenv
/// (see README, Benchmarks); skipped when there is none.
final class PyTorchInteropTests: XCTestCase {
    func testNanoGPTLoadsTheCheckpointAndAgreesOnTheLoss() throws {
        let fm = FileManager.default
        let python = ProcessInfo.processInfo.environment["TRIBUTARY_TORCH_PYTHON"] ?? "/tmp/torchvenv/bin/python"
        guard fm.isExecutableFile(atPath: python) else { throw XCTSkip("no Python with torch at \(python)") }
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Interop/nanogpt_reference.py").path
        for bias in [true, false] {
            let cfg = GPTConfig(vocabSize: 17, blockSize: 12, nLayer: 2, nHead: 2, nEmbd: 16, bias: bias)
            let model = try GPT(config: cfg, seed: 5)
            // Move every parameter off its initial value so that a swapped or transposed
            // tensor (LayerNorm gains of 1, zero biases) cannot go unnoticed.
            var rng = SeededRandom(seed: 6)
            for p in model.parameters.parameters {
                for i in 0..<p.count { p.value.data[i] += 0.1 * rng.nextGaussian() }
            }
            let b = 3, t = 10
            let x = (0..<(b * t)).map { _ in Int32(rng.nextIndex(below: 17)) }
            let y = (0..<(b * t)).map { _ in Int32(rng.nextIndex(below: 17)) }
            let ours = try model.evaluate(.tokens(inputs: x, targets: y, batch: b, sequence: t)).loss

            let dir = fm.temporaryDirectory.appendingPathComponent("tributary-interop-\(UUID().uuidString)").path
            defer { try? fm.removeItem(atPath: dir) }
            let stepDir = try CheckpointStore(directory: dir).save(step: 1, spec: .gpt(cfg), model: model, vocabulary: nil,
                                                                    optimizer: nil, trainerState: nil)
            let batchPath = "\(dir)/batch.json"
            let batchJSON = try JSONSerialization.data(withJSONObject: ["batch": b, "sequence": t, "inputs": x, "targets": y])
            try batchJSON.write(to: URL(fileURLWithPath: batchPath))

            let process = Process()
            process.executableURL = URL(fileURLWithPath: python)
            process.arguments = [script, stepDir, batchPath]
            let out = Pipe(), err = Pipe()
            process.standardOutput = out
            process.standardError = err
            try process.run()
            let output = out.fileHandleForReading.readDataToEndOfFile()
            let errors = err.fileHandleForReading.readDataToEndOfFile()
            process.waitUntilExit()
            if process.terminationStatus != 0, String(decoding: errors, as: UTF8.self).contains("ModuleNotFoundError") {
                throw XCTSkip("torch or safetensors missing for \(python)")
            }
            XCTAssertEqual(process.terminationStatus, 0, String(decoding: errors, as: UTF8.self))
            let reply = try XCTUnwrap(JSONSerialization.jsonObject(with: output) as? [String: Double])
            let theirs = try XCTUnwrap(reply["loss"])
            print("bias=\(bias): Tributary loss \(ours), PyTorch nanoGPT loss \(theirs)")
            // Same fp32 arithmetic in a different order: agreement to ~1e-6 relative.
            XCTAssertEqual(theirs, ours, accuracy: 1e-5 * max(1, abs(ours)), "bias=\(bias)")
        }
    }
}
