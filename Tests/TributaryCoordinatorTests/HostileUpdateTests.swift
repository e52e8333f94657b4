import Foundation
import TributaryCompression
import TributaryProtocol
import XCTest
@testable import TributaryCoordinator

/// Issue 13 at the job's level: a replayed update is refused without credit, and a false
/// loss cannot draw the training curve under a robust rule.
final class HostileUpdateTests: JobTestCase {
    func testAnAcceptedUpdateSentAgainForAnotherUnitIsRefusedWithoutCredit() async throws {
        let job = try await open(config(checkpointEvery: 50))
        let workers = try await register(job, 2)
        // The replayer's first unit is honest; it keeps the bytes.
        let first = try await job.lease(worker: workers[0])
        var kept: [String: [UInt8]] = [:]
        for shard in job.layout.shards {
            let values = (0..<shard.elementCount).map { Float($0 % 7) * 0.01 }
            kept[shard.name] = try values.withUnsafeBufferPointer { try TensorFrame.encode($0, codec: .fp32) }
            _ = try await job.receiveUpdate(lease: first.leaseId, worker: workers[0], shard: shard.name, body: kept[shard.name] ?? [])
        }
        _ = try await job.commit(lease: first.leaseId, worker: workers[0], CommitRequest(samples: 4, loss: 2))
        try await doUnit(job, workers[1])  // round 1 closes
        let creditBefore = try await credits(job)[workers[0]]

        let second = try await job.lease(worker: workers[0])
        XCTAssertNotEqual(second.unitIndex, first.unitIndex)
        for (name, body) in kept {
            _ = try await job.receiveUpdate(lease: second.leaseId, worker: workers[0], shard: name, body: body)
        }
        do {
            _ = try await job.commit(lease: second.leaseId, worker: workers[0], CommitRequest(samples: 4, loss: 2))
            XCTFail("a replayed update is refused")
        } catch let error as JobError {
            XCTAssertEqual(error, .replayedUpdate(unit: first.unitIndex, epoch: first.epoch))
            XCTAssertEqual(error.problemCode.status, 422)
        }
        let creditAfter = try await credits(job)[workers[0]]
        XCTAssertEqual(creditAfter, creditBefore, "no credit for a replay")
        XCTAssertEqual(job.status().updatesRejected["replayed_update"], 1)
        // The unit went back to the queue: an honest worker does it.
        let redo = try await job.lease(worker: workers[1])
        XCTAssertEqual(redo.unitIndex, second.unitIndex)
        await job.close()
    }

    func testAFalseLossCannotDrawTheTrainingCurveUnderARobustRule() async throws {
        for (rule, expected) in [(AggregationRule.centeredClip, 2.0), (.mean, 4.0 / 3.0)] {
            var c = config(checkpointEvery: 50)
            c.rounds.unitsPerRound = 3
            c.aggregation.rule = rule
            let job = try await open(c)
            let workers = try await register(job, 3)
            for (i, loss) in [2.0, 2.0, 0.0].enumerated() {
                let grant = try await job.lease(worker: workers[i])
                for shard in job.layout.shards {
                    let values = (0..<shard.elementCount).map { Float(($0 + i) % 5) * 0.01 }
                    let body = try values.withUnsafeBufferPointer { try TensorFrame.encode($0, codec: .fp32) }
                    _ = try await job.receiveUpdate(lease: grant.leaseId, worker: workers[i], shard: shard.name, body: body)
                }
                _ = try await job.commit(lease: grant.leaseId, worker: workers[i], CommitRequest(samples: 4, loss: loss))
            }
            let shown = try XCTUnwrap(job.status().trainingLoss.last?.value)
            XCTAssertEqual(shown, expected, accuracy: 1e-9, "\(rule.rawValue): the round's loss shown")
            await job.close()
        }
    }
}
