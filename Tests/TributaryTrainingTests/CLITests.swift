import Foundation
import TributaryCheckpoint
import XCTest

/// The `tributary` executable, run as a subprocess: bad inputs fail with one clear line and
/// touch nothing; a tiny run trains, checkpoints, resumes and samples.
final class CLITests: XCTestCase {
    var scratch: ScratchDirectory?

    override func setUpWithError() throws {
        scratch = try ScratchDirectory("cli")
    }

    override func tearDown() {
        scratch?.cleanup()
    }

    func path(_ name: String) throws -> String { try XCTUnwrap(scratch).file(name) }

    /// The built `tributary` beside this test bundle (same build products directory).
    static func executable() throws -> URL {
        var candidates: [URL] = []
        let argument0 = URL(fileURLWithPath: CommandLine.arguments.first ?? "")
        candidates.append(argument0.deletingLastPathComponent())
        candidates.append(Bundle.main.bundleURL)
        candidates.append(Bundle.main.bundleURL.deletingLastPathComponent())
        candidates.append(Bundle(for: CLITests.self).bundleURL.deletingLastPathComponent())
        // Inside an .xctest bundle on Darwin: Contents/MacOS/<binary>.
        candidates.append(argument0.deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent())
        for dir in candidates {
            let tool = dir.appendingPathComponent("tributary")
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: tool.path, isDirectory: &isDirectory), !isDirectory.boolValue,
               FileManager.default.isExecutableFile(atPath: tool.path) {
                return tool
            }
        }
        throw XCTSkip("the tributary executable was not found beside the test bundle (looked in \(candidates.map(\.path)))")
    }

    struct Result {
        let status: Int32
        let stdout: String
        let stderr: String

        /// stderr without its trailing newline.
        var errorLine: String { stderr.trimmingCharacters(in: .whitespacesAndNewlines) }
    }

    /// Runs `tributary args…` with output in files (no pipe can fill up), killed after `timeout`.
    func tributary(_ args: [String], timeout: TimeInterval = 120) throws -> Result {
        let process = Process()
        process.executableURL = try Self.executable()
        process.arguments = args
        let out = try path("stdout-\(UUID().uuidString)"), err = try path("stderr-\(UUID().uuidString)")
        _ = FileManager.default.createFile(atPath: out, contents: nil)
        _ = FileManager.default.createFile(atPath: err, contents: nil)
        let outHandle = try FileHandle(forWritingTo: URL(fileURLWithPath: out))
        let errHandle = try FileHandle(forWritingTo: URL(fileURLWithPath: err))
        process.standardOutput = outHandle
        process.standardError = errHandle
        process.standardInput = FileHandle.nullDevice
        try process.run()
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning && Date() < deadline { usleep(10_000) }
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
            XCTFail("tributary \(args.joined(separator: " ")) ran longer than \(timeout) s")
        }
        process.waitUntilExit()
        try outHandle.close()
        try errHandle.close()
        let result = Result(status: process.terminationStatus,
                            stdout: String(decoding: try Data(contentsOf: URL(fileURLWithPath: out)), as: UTF8.self),
                            stderr: String(decoding: try Data(contentsOf: URL(fileURLWithPath: err)), as: UTF8.self))
        try? FileManager.default.removeItem(atPath: out)
        try? FileManager.default.removeItem(atPath: err)
        return result
    }

    /// Asserts a non-zero exit with exactly one line on stderr containing every fragment.
    func assertFails(_ args: [String], _ fragments: [String], file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try tributary(args)
        XCTAssertNotEqual(r.status, 0, "tributary \(args.joined(separator: " ")) must fail; stdout: \(r.stdout)", file: file, line: line)
        XCTAssertFalse(r.errorLine.isEmpty, "an error message on stderr", file: file, line: line)
        XCTAssertFalse(r.errorLine.contains("\n"), "one line, got:\n\(r.stderr)", file: file, line: line)
        for f in fragments {
            XCTAssertTrue(r.errorLine.contains(f), "\"\(r.errorLine)\" lacks \"\(f)\"", file: file, line: line)
        }
    }

    /// A tiny GPT run's arguments: 1 layer, 2 heads, 32 wide, context 16, on builtin:arithmetic.
    static func tinyTrain(out: String, steps: Int = 3, extra: [String] = []) -> [String] {
        ["train", "--data", "builtin:arithmetic", "--steps", String(steps), "--eval-interval", "0", "--out", out,
         "--threads", "1", "--n-layer", "1", "--n-embd", "32", "--n-head", "2", "--block-size", "16",
         "--batch-size", "8", "--warmup", "0"] + extra
    }

    /// A good checkpoint store made by the CLI itself.
    func makeGoodCheckpoint() throws -> String {
        let dir = try path("good")
        let r = try tributary(Self.tinyTrain(out: dir))
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(FileManager.default.fileExists(atPath: "\(dir)/step-00000003/model.safetensors"))
        return dir
    }

    // MARK: Bad inputs

    func testMissingDatasetPath() throws {
        let missing = try path("no-such-corpus.txt")
        try assertFails(["train", "--data", missing, "--threads", "1"], ["dataset not found", missing])
    }

    func testHeadsMustDivideTheWidth() throws {
        try assertFails(["train", "--n-embd", "10", "--n-head", "3", "--threads", "1", "--steps", "1"],
                        ["n_embd (10) must be divisible by n_head (3)"])
    }

    func testBlockSizeLargerThanTheData() throws {
        let tiny = try path("tiny.txt")
        try Data("hello world\n".utf8).write(to: URL(fileURLWithPath: tiny))
        try assertFails(["train", "--data", tiny, "--block-size", "64", "--threads", "1", "--steps", "1"],
                        ["block_size 64 is larger than the data", "holds 10 tokens", "block_size + 1"])
    }

    func testResumeWithoutACheckpoint() throws {
        let empty = try path("empty")
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: false)
        try assertFails(Self.tinyTrain(out: empty, extra: ["--resume"]), ["--resume", "no checkpoint in \(empty)"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: empty), [], "nothing written")

        let missing = try path("missing")
        try assertFails(Self.tinyTrain(out: missing, extra: ["--resume"]), ["no checkpoint in \(missing)"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: missing), "nothing created")
    }

    func testSampleFromACorruptCheckpoint() throws {
        let good = try makeGoodCheckpoint()
        let before = try snapshot(good)
        let fm = FileManager.default

        let truncated = try path("truncated")
        try fm.copyItem(atPath: good, toPath: truncated)
        let model = "\(truncated)/step-00000003/model.safetensors"
        let bytes = try Data(contentsOf: URL(fileURLWithPath: model))
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: model))
        try assertFails(["sample", "--checkpoint", truncated, "--tokens", "5", "--threads", "1"],
                        ["unusable", "model.safetensors", "fails its SHA-256"])
        // A checkpoint from before hashes existed: the file's own checks still refuse it.
        let sums = { (dir: String) in "\(dir)/step-00000003/\(CheckpointIntegrity.sumsFile)" }
        try fm.removeItem(atPath: sums(truncated))
        try assertFails(["sample", "--checkpoint", truncated, "--tokens", "5", "--threads", "1"],
                        ["unusable", "model.safetensors", "outside the"])

        let garbage = try path("garbage")
        try fm.copyItem(atPath: good, toPath: garbage)
        try Data("{ not json".utf8).write(to: URL(fileURLWithPath: "\(garbage)/step-00000003/config.json"))
        try assertFails(["sample", "--checkpoint", garbage, "--tokens", "5", "--threads", "1"],
                        ["unusable", "config.json fails its SHA-256"])
        try fm.removeItem(atPath: sums(garbage))
        try assertFails(["sample", "--checkpoint", garbage, "--tokens", "5", "--threads", "1"],
                        ["unusable", "config.json is not a valid checkpoint config"])

        let nan = try path("nan")
        try fm.copyItem(atPath: good, toPath: nan)
        let nanModel = "\(nan)/step-00000003/model.safetensors"
        var nanBytes = try Data(contentsOf: URL(fileURLWithPath: nanModel))
        // The last 4 bytes are the last float of the last tensor in name order (transformer.wte.weight).
        nanBytes.replaceSubrange((nanBytes.count - 4)..<nanBytes.count, with: [0x00, 0x00, 0xC0, 0x7F])
        try nanBytes.write(to: URL(fileURLWithPath: nanModel))
        try fm.removeItem(atPath: sums(nan))
        try assertFails(["sample", "--checkpoint", nan, "--tokens", "5", "--threads", "1"],
                        ["transformer.wte.weight", "NaN or infinity"])

        try assertFails(["sample", "--checkpoint", try path("nowhere"), "--tokens", "5", "--threads", "1"],
                        ["no checkpoint at"])

        XCTAssertEqual(try snapshot(good), before, "the good checkpoint is untouched")
    }

    /// Commands that fail against a good checkpoint directory leave it byte-identical.
    func testFailingCommandsLeaveAGoodCheckpointUntouched() throws {
        let good = try makeGoodCheckpoint()
        let before = try snapshot(good)
        XCTAssertEqual(Set(before.keys), ["latest", "step-00000003/", "step-00000003/config.json",
                                          "step-00000003/model.safetensors", "step-00000003/optimizer.safetensors",
                                          "step-00000003/trainer_state.json", "step-00000003/SHA256SUMS"])

        // Resuming with another model shape.
        try assertFails(Self.tinyTrain(out: good, steps: 6, extra: ["--resume", "--n-embd", "64"]),
                        ["does not fit this run", "32 wide", "64 wide"])
        // Resuming with another seed or optimizer.
        try assertFails(Self.tinyTrain(out: good, steps: 6, extra: ["--resume", "--seed", "5"]),
                        ["same seed and batch size"])
        try assertFails(Self.tinyTrain(out: good, steps: 6, extra: ["--resume", "--optimizer", "sgd"]),
                        ["optimizer is sgd but the checkpoint holds adamw state"])
        // Bad options with --out naming it.
        try assertFails(Self.tinyTrain(out: good, extra: ["--n-head", "3"]), ["must be divisible by n_head (3)"])
        // A fresh run (no --resume) into a store that holds a run is refused before training.
        try assertFails(Self.tinyTrain(out: good), ["already holds a run", "--resume"])
        // Sampling with a prompt outside the vocabulary.
        let r = try tributary(["sample", "--checkpoint", good, "--prompt", "abc", "--tokens", "3", "--threads", "1"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertFalse(r.errorLine.contains("\n"), r.stderr)
        XCTAssertTrue(r.errorLine.contains(#"character "a" (U+0061) at position 0 is not in the vocabulary of 13 symbols"#), r.stderr)

        XCTAssertEqual(try snapshot(good), before)
    }

    func testSampleRefusesAnMLPCheckpoint() throws {
        let dir = try path("mlp")
        let r = try tributary(["train", "--data", "builtin:digits", "--hidden", "8", "--steps", "1", "--batch-size", "8",
                               "--eval-interval", "0", "--out", dir, "--threads", "1"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("model: MLP 784-8-10"), r.stdout)
        try assertFails(["sample", "--checkpoint", dir, "--threads", "1"], ["holds an MLP", "only GPT checkpoints generate text"])
    }

    func testTrainsAUNetOnDigitsAndSampleAsksForAnImageFile() throws {
        let dir = try path("unet")
        let r = try tributary(["train", "--data", "builtin:digits", "--model", "unet", "--base-channels", "4", "--channel-multipliers", "1,2",
                               "--norm-groups", "2", "--attention-resolutions", "14", "--steps", "2", "--batch-size", "4",
                               "--eval-interval", "0", "--out", dir, "--threads", "1"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("model: U-Net 28×28×1, base 4 × [1, 2]"), r.stdout)
        XCTAssertTrue(r.stdout.contains("step 2 checkpoint \(dir)/step-00000002"), r.stdout)
        XCTAssertTrue(r.stdout.contains("step 2 validation loss "), r.stdout)
        XCTAssertFalse(r.stdout.contains("accuracy"), "a denoising model has no accuracy: \(r.stdout)")
        try assertFails(["sample", "--checkpoint", dir, "--threads", "1"], ["holds a U-Net, which draws images", "give --out FILE.png"])
        try assertFails(["train", "--data", "builtin:digits", "--model", "unet", "--channel-multipliers", "1,x", "--steps", "1"],
                        ["--channel-multipliers takes comma-separated whole numbers"])
        try assertFails(["train", "--data", "builtin:digits", "--model", "unet", "--channel-multipliers", "1,2,2,2", "--steps", "1"],
                        ["divisible by"])
    }

    // MARK: Happy path

    func testTrainCheckpointAndSample() throws {
        let dir = try path("run")
        let train = try tributary(Self.tinyTrain(out: dir))
        XCTAssertEqual(train.status, 0, train.stderr)
        XCTAssertEqual(train.stderr, "")
        XCTAssertTrue(train.stdout.contains("model: GPT 1 layers × 2 heads × 32 wide, context 16, vocabulary 13"), train.stdout)
        XCTAssertTrue(train.stdout.contains("step 3 checkpoint \(dir)/step-00000003"), train.stdout)
        XCTAssertTrue(train.stdout.contains("step 3 validation loss"), "--eval-interval 0 validates once, at the end")
        XCTAssertEqual(String(decoding: try Data(contentsOf: URL(fileURLWithPath: "\(dir)/latest")), as: UTF8.self), "step-00000003\n")
        XCTAssertTrue(FileManager.default.fileExists(atPath: "\(dir)/step-00000003/model.safetensors"))
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir).sorted(), ["latest", "step-00000003"])

        let vocabulary = Set("0123456789+=\n".unicodeScalars)
        let greedy = try tributary(["sample", "--checkpoint", dir, "--tokens", "20", "--temperature", "0", "--threads", "1"])
        XCTAssertEqual(greedy.status, 0, greedy.stderr)
        // The prompt ("\n"), 20 generated characters, and a final newline.
        XCTAssertEqual(greedy.stdout.unicodeScalars.count, 22, "\(Array(greedy.stdout.unicodeScalars))")
        XCTAssertTrue(greedy.stdout.unicodeScalars.allSatisfy(vocabulary.contains), greedy.stdout)

        // Sampling at temperature 1 is reproducible from its seed and stays in the vocabulary.
        let args = ["sample", "--checkpoint", "\(dir)/step-00000003", "--prompt", "12+", "--tokens", "30",
                    "--temperature", "1", "--seed", "3", "--threads", "1"]
        let s1 = try tributary(args), s2 = try tributary(args)
        XCTAssertEqual(s1.status, 0, s1.stderr)
        XCTAssertEqual(s1.stdout, s2.stdout)
        XCTAssertTrue(s1.stdout.hasPrefix("12+"))
        XCTAssertEqual(s1.stdout.unicodeScalars.count, 3 + 30 + 1)
        XCTAssertTrue(s1.stdout.unicodeScalars.allSatisfy(vocabulary.contains), s1.stdout)
    }

    /// `--resume` continues exactly: a run checkpointed at step 3 and resumed to 5 writes the
    /// same step-5 weights, byte for byte, as a run straight to 5.
    func testResumeReproducesTheUninterruptedRun() throws {
        let straight = try path("straight")
        let a = try tributary(Self.tinyTrain(out: straight, steps: 5, extra: ["--checkpoint-interval", "3"]))
        XCTAssertEqual(a.status, 0, a.stderr)
        XCTAssertTrue(a.stdout.contains("step 3 checkpoint"), a.stdout)

        let resumed = try path("resumed")
        try FileManager.default.createDirectory(atPath: resumed, withIntermediateDirectories: false)
        try FileManager.default.copyItem(atPath: "\(straight)/step-00000003", toPath: "\(resumed)/step-00000003")
        try Data("step-00000003\n".utf8).write(to: URL(fileURLWithPath: "\(resumed)/latest"))
        let b = try tributary(Self.tinyTrain(out: resumed, steps: 5, extra: ["--checkpoint-interval", "3", "--resume"]))
        XCTAssertEqual(b.status, 0, b.stderr)
        XCTAssertTrue(b.stdout.contains("resumed from \(resumed)/step-00000003 at step 3"), b.stdout)
        for file in ["model.safetensors", "optimizer.safetensors", "config.json"] {
            XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: "\(straight)/step-00000005/\(file)")),
                           try Data(contentsOf: URL(fileURLWithPath: "\(resumed)/step-00000005/\(file)")), file)
        }
        // trainer_state.json's key order is not fixed (JSONEncoder without .sortedKeys): compare values.
        func state(_ dir: String) throws -> NSDictionary? {
            try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(dir)/step-00000005/trainer_state.json"))) as? NSDictionary
        }
        XCTAssertEqual(try state(straight), try state(resumed))
        XCTAssertEqual(try state(resumed), ["step": 5, "seed": 1337, "batchSize": 8] as NSDictionary)
    }
}
