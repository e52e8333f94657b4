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

    /// A unit whose honest gradient is far above the typical norm would be refused from every
    /// worker and hold its round until the deadline; a second worker's agreeing norm lets it in.
    func testALargeNormCorroboratedByASecondWorkerIsAccepted() async throws {
        var c = config(checkpointEvery: 50)
        c.rounds.unitsPerRound = 4
        let job = try await open(c)
        let workers = try await register(job, 3)
        func push(_ grant: LeaseGrant, _ w: Int, scale: Float) async throws -> Result<CommitReceipt, any Error> {
            for shard in job.layout.shards {
                let values = (0..<shard.elementCount).map { scale * Float(($0 + grant.unitIndex) % 5 + 1) * 0.01 }
                let body = try values.withUnsafeBufferPointer { try TensorFrame.encode($0, codec: .fp32) }
                _ = try await job.receiveUpdate(lease: grant.leaseId, worker: workers[w], shard: shard.name, body: body)
            }
            do { return .success(try await job.commit(lease: grant.leaseId, worker: workers[w], CommitRequest(samples: 4, loss: 2))) }
            catch { return .failure(error) }
        }
        for w in 0..<3 {  // three typical norms
            let g = try await job.lease(worker: workers[w])
            _ = try await push(g, w, scale: 1).get()
        }
        let big = try await job.lease(worker: workers[0])
        guard case let .failure(first) = try await push(big, 0, scale: 100) else { return XCTFail("100x the typical norm is refused") }
        XCTAssertEqual((first as? JobError)?.problemCode, .updateNormOutOfRange)
        let other = try await job.lease(worker: workers[1])
        XCTAssertEqual(other.unitIndex, big.unitIndex)
        guard case .failure = try await push(other, 1, scale: 150) else { return XCTFail("a norm 50% off does not corroborate") }
        let third = try await job.lease(worker: workers[2])
        let accepted = try await push(third, 2, scale: 100).get()
        XCTAssertTrue(accepted.accepted, "a second worker's equal norm lets the unit in")
        let v = await job.version
        XCTAssertEqual(v, 1, "and the round closes")
        await job.close()
    }

    func testAWorkerCannotCorroborateItsOwnLargeNormWhileTheJobProgresses() {
        var witnesses = LargeNormWitnesses()
        XCTAssertFalse(witnesses.corroborates(unit: "0/7", worker: "a", norm: 50))
        witnesses.noteAccepted(unit: "0/1")
        XCTAssertFalse(witnesses.corroborates(unit: "0/7", worker: "a", norm: 50), "the same worker again")
        witnesses.noteAccepted(unit: "0/2")
        XCTAssertFalse(witnesses.corroborates(unit: "0/7", worker: "a", norm: 50), "and again: others' updates go in meanwhile")
        XCTAssertFalse(witnesses.corroborates(unit: "0/8", worker: "b", norm: 50), "another unit")
        XCTAssertFalse(witnesses.corroborates(unit: "0/7", worker: "b", norm: 60), "20% off")
        XCTAssertTrue(witnesses.corroborates(unit: "0/7", worker: "c", norm: 51))
    }

    /// A job whose only worker hits a genuine loss spike: its large norm is refused, the
    /// worker computes the unit again and again gets the same norm; with nothing else
    /// accepted meanwhile, the third refusal's norm goes in and the round closes (before,
    /// the job refused it forever and stalled).
    func testAStalledJobLetsARepeatedLargeNormIn() async throws {
        var c = config(checkpointEvery: 50)
        c.rounds.unitsPerRound = 4
        let job = try await open(c)
        let worker = try await register(job, 1)[0]
        func push(_ grant: LeaseGrant, scale: Float) async throws -> Result<CommitReceipt, any Error> {
            for shard in job.layout.shards {
                let values = (0..<shard.elementCount).map { scale * Float(($0 + grant.unitIndex) % 5 + 1) * 0.01 }
                let body = try values.withUnsafeBufferPointer { try TensorFrame.encode($0, codec: .fp32) }
                _ = try await job.receiveUpdate(lease: grant.leaseId, worker: worker, shard: shard.name, body: body)
            }
            do { return .success(try await job.commit(lease: grant.leaseId, worker: worker, CommitRequest(samples: 4, loss: 2))) }
            catch { return .failure(error) }
        }
        for _ in 0..<3 {  // three typical norms
            _ = try await push(try await job.lease(worker: worker), scale: 1).get()
        }
        var unit: Int?
        for attempt in 1...2 {
            let big = try await job.lease(worker: worker)
            if let unit { XCTAssertEqual(big.unitIndex, unit, "the refused unit comes back") }
            unit = big.unitIndex
            guard case let .failure(error) = try await push(big, scale: 100) else { return XCTFail("refusal \(attempt) expected") }
            XCTAssertEqual((error as? JobError)?.problemCode, .updateNormOutOfRange)
        }
        let third = try await job.lease(worker: worker)
        XCTAssertEqual(third.unitIndex, unit)
        let receipt = try await push(third, scale: 100).get()
        XCTAssertTrue(receipt.accepted, "the third agreeing refusal with the job stalled goes in")
        let v = await job.version
        XCTAssertEqual(v, 1, "and the round closes")
        XCTAssertEqual(job.status().updatesRejected["update_norm_out_of_range"], 2)
        await job.close()
    }
}
