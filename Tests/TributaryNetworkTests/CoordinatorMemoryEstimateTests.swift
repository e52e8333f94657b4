import Foundation
import TributaryTensor
import XCTest

/// The coordinator's memory estimate (`JobMemoryEstimate`): logged at start, close to the
/// peak a real coordinator reaches while training, and a model this machine cannot hold is
/// refused in one line before anything is allocated or written.
final class CoordinatorMemoryEstimateTests: ProcessTestCase {
    func job(model: String, extra: String = "", rounds: Int = 3) throws -> String {
        try writeCorpus(characters: 200_000)
        let job = """
        name: memory-test
        model: \(model)
        data: {source: "corpus.txt", validation_fraction: 0.1, seed: 7}
        units: {samples_per_unit: 4}
        optimizer: {type: adamw, lr: 0.001, warmup_rounds: 2, total_rounds: \(rounds)}
        rounds: {mode: sync, units_per_round: 2, min_units: 2, deadline_seconds: 120, max_staleness: 1}
        server: {listen: "127.0.0.1:0"}
        storage: {data_directory: "coordinator", checkpoint_every_rounds: 2, validation_every_rounds: 1000}
        auth: {join_token: "process-token"}
        \(extra)
        """
        try job.write(toFile: "\(dir)/job.yaml", atomically: true, encoding: .utf8)
        return "\(dir)/job.yaml"
    }

    func testAModelTooLargeForTheMachineIsRefusedInOneLineBeforeAnythingIsWritten() async throws {
        let path = try job(model: "{type: gpt, n_layer: 96, n_head: 96, n_embd: 12288, block_size: 64}")
        let started = Date()
        let p = try launch(["coordinator", "--job", path], log: "\(dir)/big.log")
        p.waitUntilExit()
        XCTAssertLessThan(Date().timeIntervalSince(started), 20)
        XCTAssertEqual(p.terminationStatus, 1)
        let lines = ((try? String(contentsOfFile: "\(dir)/big.log", encoding: .utf8)) ?? "").split(separator: "\n")
            .filter { !$0.contains(" info ") && !$0.contains(" warning ") }
        XCTAssertEqual(lines.count, 1, "\(lines)")
        let line = String(lines.first ?? "")
        XCTAssertTrue(line.hasPrefix("Error: invalid job: this job's coordinator needs about "), line)
        XCTAssertTrue(line.contains("(173,962,481,664 parameters: "), line)
        XCTAssertTrue(line.hasSuffix("; choose a smaller model or run the coordinator on a larger machine"), line)
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(dir)/coordinator"), "nothing was written")
    }

    /// Two jobs of a 10.7M-parameter GPT (41 MiB a copy), one with the robust default rule
    /// and fp32 uploads, one with the mean and int8: the estimate is within a quarter of the
    /// coordinator's measured peak (VmHWM) after rounds, a checkpoint and downloads.
    func testTheEstimateIsCloseToTheCoordinatorsMeasuredPeak() async throws {
        for extra in ["", "aggregation: {rule: mean}\ncompression: {codec: int8}"] {
            let path = try job(model: "{type: gpt, n_layer: 6, n_head: 6, n_embd: 384, block_size: 32}", extra: extra)
            try? FileManager.default.removeItem(atPath: "\(dir)/coordinator")
            try? FileManager.default.removeItem(atPath: "\(dir)/worker-0")
            let (coordinator, port) = try await startCoordinator(path)
            _ = try startWorker(0, port: port)
            _ = try await waitFor(port, timeout: 240) { $0.complete }
            let status = try String(contentsOfFile: "/proc/\(coordinator.processIdentifier)/status", encoding: .utf8)
            let hwm = try XCTUnwrap(status.split(separator: "\n").first { $0.hasPrefix("VmHWM:") })
            let peak = Double(try XCTUnwrap(Int(hwm.split(separator: " ")[1]))) * 1024
            let log = try String(contentsOfFile: "\(dir)/coordinator-\(children.count - 2).log", encoding: .utf8)
            let logged = try XCTUnwrap(log.split(separator: "\n").first { $0.contains("memory estimate") })
            let field = try XCTUnwrap(logged.split(separator: " ").firstIndex { $0.hasPrefix("coordinator=") })
            let words = logged.split(separator: " ")
            let estimate = try XCTUnwrap(ByteCount.parse(String(words[field].dropFirst("coordinator=".count)) + words[field + 1]))
            print("memory estimate \(extra.isEmpty ? "clip fp32" : "mean int8"): estimated \(ByteCount.format(estimate)), measured peak \(ByteCount.format(Int(peak)))")
            XCTAssertEqual(Double(estimate) / peak, 1, accuracy: 0.25, "estimate \(estimate), peak \(peak)")
            for c in children where c.isRunning { kill(c.processIdentifier, SIGKILL) }
            for c in children { c.waitUntilExit() }
        }
    }
}
