import Foundation
import XCTest
import TributaryModels
import TributaryTensor
@testable import TributaryTraining

/// `bench compute`'s U-Net configuration: the MNIST job's architecture, its FLOPs counted by
/// hand, a step that trains, and its PyTorch peer (Deploy/bench/pytorch_unet_peer.py).
final class ComputeBenchmarkTests: XCTestCase {
    override func setUp() { ComputeThreads.set(2) }

    /// One forward pass of one 28×28 image, in multiply-adds (block = P·(9·i·o + 9·o² + i·o
    /// if i ≠ o) + 64·o for its time projection, P its level's pixels): time MLP 16·64 + 64·64;
    /// conv_in and conv_out 2·784·9·16; down 16→16 @784, 16→32 @196, 32→32 @49; mid 2 × 32→32
    /// @49; up 64→32, 64→32 @49, 64→32, 48→32 @196, 48→16, 32→16 @784 (input = previous + skip).
    static let multiplyAddsPerImage = 36_577_792.0

    func testUNetMNISTIsTheMNISTJobsUNetAndCountsItsFLOPsByHand() throws {
        let cfg = try XCTUnwrap(ComputeBenchmark.Configuration.named("unet-mnist"))
        let unet = try XCTUnwrap(cfg.spec.family as? UNetConfig)
        // Deploy/jobs/mnist-unet.yaml: base 16, [1, 2, 2], 1 block per level, 8 groups, 1000 linear steps, 32 images a unit.
        XCTAssertEqual(unet, UNetConfig(imageSize: 28, inChannels: 1, baseChannels: 16, channelMultipliers: [1, 2, 2],
                                        blocksPerLevel: 1, normGroups: 8, timesteps: 1000, schedule: .linear))
        XCTAssertEqual(cfg.batch, 32)
        XCTAssertTrue(cfg.isImageModel)
        XCTAssertEqual(unet.multiplyAddsPerSample, Self.multiplyAddsPerImage)
        XCTAssertEqual(unet.parameterCount, 232_961) // what PyTorch's module of the same architecture counts

        var rng = SeededRandom(seed: 3)
        guard case let .features(pixels, _, b) = ComputeBenchmark.randomBatch(cfg, &rng) else { return XCTFail("image rows expected") }
        XCTAssertEqual(b, 32)
        XCTAssertEqual(pixels.count, 32 * 784)
        XCTAssertTrue(pixels.allSatisfy { (0...1).contains($0) }, "pixels lie in [0, 1]")
        XCTAssertEqual(Double(pixels.reduce(0, +)) / Double(pixels.count), 0.5, accuracy: 0.01, "uniform pixels, not Gaussian features")
    }

    /// Two steps of four images (the configuration's model, a smaller batch to stay fast).
    func testUNetMNISTStepsRunWithAFiniteDenoisingLoss() throws {
        let full = try XCTUnwrap(ComputeBenchmark.Configuration.named("unet-mnist"))
        let cfg = ComputeBenchmark.Configuration(name: full.name, spec: full.spec, batch: 4)
        for optimizer in ["adamw", "sgd"] {
            let r = try ComputeBenchmark.run(cfg, optimizer: optimizer, warmup: 0, steps: 2)
            XCTAssertEqual(r.milliseconds.count, 2)
            XCTAssertEqual(r.flopsPerStep, 6 * Self.multiplyAddsPerImage * 4)
            XCTAssertEqual(r.unitsPerStep, 4)
            XCTAssertEqual(r.unitName, "images/s")
            XCTAssertEqual(r.parameters, 232_961)
            // ε̂ starts near 0 against unit Gaussian noise: a mean square near 1.
            XCTAssertTrue(r.finalLoss.isFinite)
            XCTAssertEqual(r.finalLoss, 1, accuracy: 0.5, optimizer)
        }
    }

    /// The PyTorch peer prints the JSON line `bench compute` reads, for the same model: the
    /// parameter count and FLOPs (counted there with forward hooks) equal ours.
    func testUNetPeerScriptPrintsAJSONLineForTheSameModel() throws {
        let python = ProcessInfo.processInfo.environment["TRIBUTARY_TORCH_PYTHON"] ?? "/tmp/torchvenv/bin/python"
        guard FileManager.default.isExecutableFile(atPath: python) else { throw XCTSkip("no Python with torch at \(python)") }
        let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let script = root.appendingPathComponent("Deploy/bench/pytorch_unet_peer.py").path
        let outPath = FileManager.default.temporaryDirectory.appendingPathComponent("unet-peer-\(UUID().uuidString).out").path
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: outPath) }
        let out = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = [script, "--threads", "1", "--warmup", "0", "--steps", "1", "--models", "unet-mnist", "--opts", "adamw"]
        process.standardOutput = out
        try process.run()
        let deadline = Date().addingTimeInterval(120)
        while process.isRunning, Date() < deadline { Thread.sleep(forTimeInterval: 0.05) }
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
            XCTFail("the U-Net peer ran past 120 s")
        }
        try out.close()
        let text = String(decoding: try Data(contentsOf: URL(fileURLWithPath: outPath)), as: UTF8.self)
        if process.terminationStatus != 0, !text.contains("# torch") { throw XCTSkip("torch missing for \(python)") }
        XCTAssertEqual(process.terminationStatus, 0, text)
        let line = try XCTUnwrap(text.split(separator: "\n").first { $0.hasPrefix("{") }, text)
        let row = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        XCTAssertEqual(row["model"] as? String, "unet-mnist")
        XCTAssertEqual(row["attn"] as? String, "explicit")
        XCTAssertEqual(row["opt"] as? String, "adamw")
        XCTAssertEqual((row["params"] as? NSNumber)?.intValue, 232_961)
        XCTAssertEqual((row["flops_per_step"] as? NSNumber)?.doubleValue, 6 * Self.multiplyAddsPerImage * 32)
        XCTAssertGreaterThan(row["ms_med"] as? Double ?? 0, 0)
    }
}
