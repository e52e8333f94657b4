import Foundation
import Logging
import TributaryTestSupport
import XCTest
@testable import TributaryCoordinator

/// A finished job says so once, with where its model is and how to try it — when its last
/// round closes, and again when a coordinator is started on it.
final class CompletionTests: JobTestCase {
    func testAFinishedJobSaysWhereItsModelIsAndHowToTryIt() async throws {
        let c = config(checkpointEvery: 100, rounds: 2)
        let log = CapturedLog()
        var job = try await TrainingJob.open(config: c, logger: log.logger("test.completion"))
        let workers = try await register(job, 2)
        try await run(job, workers, units: 3)
        XCTAssertTrue(log.all.filter { $0.message.hasPrefix("job complete") }.isEmpty, "not before the last round")
        try await run(job, workers, units: 1, from: 3)
        let checkpoints = URL(fileURLWithPath: "\(c.storage.dataDirectory)/checkpoints").standardizedFileURL.path
        func announcements() -> [CapturedLog.Record] { log.all.filter { $0.message.hasPrefix("job complete") } }
        XCTAssertEqual(announcements().count, 1)
        XCTAssertEqual(announcements().first?.metadata["checkpoint"]?.description, checkpoints)
        XCTAssertEqual(announcements().first?.metadata["try"]?.description, "tributary sample --checkpoint \(checkpoints)")
        XCTAssertTrue(FileManager.default.fileExists(atPath: "\(checkpoints)/latest"), "the checkpoint it names exists")
        await job.close()

        job = try await TrainingJob.open(config: c, logger: log.logger("test.completion"))
        XCTAssertEqual(announcements().count, 2, "a coordinator started on a finished job says so at once")
        await job.close()
    }
}
