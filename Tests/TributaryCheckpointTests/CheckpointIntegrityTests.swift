import Foundation
import XCTest
@testable import TributaryCheckpoint
import TributaryModels
import TributaryOptim

/// Issue 14: a checkpoint proves itself. One flipped bit anywhere in any file, a truncated
/// file or a missing one is found before a weight is used; `sha256sum -c` agrees.
final class CheckpointIntegrityTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("tributary-integrity-\(UUID().uuidString)").path
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: dir) }

    func save(step: Int) throws -> String {
        let config = GPTConfig(vocabSize: 13, blockSize: 16, nLayer: 1, nHead: 2, nEmbd: 16)
        let model = try GPT(config: config, seed: 5)
        let optimizer = try AdamW(parameters: model.parameters, weightDecay: 0.1)
        return try CheckpointStore(directory: dir, keep: 5).save(step: step, spec: .gpt(config), model: model,
                                                                vocabulary: nil, optimizer: optimizer,
                                                                trainerState: Array("{}".utf8))
    }

    func testEveryFileIsHashedAndOneFlippedBitAnywhereIsFound() throws {
        let path = try save(step: 1)
        let sums = try String(contentsOfFile: "\(path)/SHA256SUMS", encoding: .utf8)
        let listed = sums.split(separator: "\n").map { String($0.split(separator: " ", maxSplits: 1)[1]).trimmingCharacters(in: .whitespaces) }
        XCTAssertEqual(listed, ["config.json", "model.safetensors", "optimizer.safetensors", "trainer_state.json"])
        XCTAssertNoThrow(try LoadedCheckpoint.read(path))
        for name in listed {
            let file = "\(path)/\(name)"
            let original = try Data(contentsOf: URL(fileURLWithPath: file))
            for position in [0, original.count / 2, original.count - 1] {
                var damaged = original
                damaged[position] ^= 0x10
                try damaged.write(to: URL(fileURLWithPath: file))
                XCTAssertThrowsError(try LoadedCheckpoint.read(path), "\(name) byte \(position)") { error in
                    XCTAssertTrue("\(error)".contains("\(name) fails its SHA-256"), "\(error)")
                }
            }
            try original.write(to: URL(fileURLWithPath: file))
        }
        try Data(contentsOf: URL(fileURLWithPath: "\(path)/model.safetensors")).prefix(100)
            .write(to: URL(fileURLWithPath: "\(path)/model.safetensors"))
        XCTAssertThrowsError(try LoadedCheckpoint.read(path))
        try FileManager.default.removeItem(atPath: "\(path)/model.safetensors")
        XCTAssertThrowsError(try LoadedCheckpoint.read(path)) { XCTAssertTrue("\($0)".contains("missing"), "\($0)") }
    }

    func testTheSumsFileIsWhatSha256sumChecks() throws {
        let path = try save(step: 2)
        let tool = "/usr/bin/sha256sum"
        guard FileManager.default.isExecutableFile(atPath: tool) else { throw XCTSkip("no sha256sum here") }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = ["--check", "--quiet", "SHA256SUMS"]
        p.currentDirectoryURL = URL(fileURLWithPath: path)
        try p.run()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationStatus, 0, "sha256sum -c accepts the checkpoint")
    }

    func testACheckpointWrittenBeforeHashesStillLoads() throws {
        let path = try save(step: 3)
        try FileManager.default.removeItem(atPath: "\(path)/SHA256SUMS")
        XCTAssertNoThrow(try LoadedCheckpoint.read(path))
    }

    func testStepDirectoriesAndQuarantine() throws {
        _ = try save(step: 1)
        let second = try save(step: 12)
        let store = CheckpointStore(directory: dir)
        XCTAssertEqual(store.stepDirectories().map(\.step), [1, 12])
        let moved = try XCTUnwrap(store.quarantine(second))
        XCTAssertTrue(moved.hasPrefix(second + ".corrupt-"))
        XCTAssertEqual(store.stepDirectories().map(\.step), [1], "a quarantined checkpoint is no candidate")
        try store.markLatest(step: 1)
        XCTAssertEqual(try store.latestDirectoryName(), "step-00000001")
    }
}
