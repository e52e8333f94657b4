import Foundation
import TributaryCompression
import TributaryProtocol
import XCTest
@testable import TributaryCoordinator

/// Issue 13, async mode: every update is a round of its own, clipped against a running
/// reference of the recent ones; recovery refills that reference and replays bit for bit.
final class AsyncClipTests: JobTestCase {
    func asyncConfig(rule: AggregationRule, checkpointEvery: Int = 50) -> JobConfig {
        var c = config(checkpointEvery: checkpointEvery)
        c.rounds.mode = .async
        c.rounds.maxStaleness = 0
        c.aggregation.rule = rule
        c.optimizer.type = .sgd           // the step is −lr·g: the applied gradient shows in the parameters
        c.optimizer.momentum = 0
        c.optimizer.weightDecay = 0
        c.optimizer.gradClip = 1000
        c.optimizer.warmupRounds = 1
        c.optimizer.lr = 0.1
        return c
    }

    /// One unit's update: the honest synthetic gradient of its unit, times `sign`.
    func push(_ job: TrainingJob, _ worker: String, sign: Float = 1) async throws {
        let grant = try await job.lease(worker: worker)
        for shard in job.layout.shards {
            let seed = Float(grant.unitIndex) + Float(shard.name.count)
            let values = (0..<shard.elementCount).map { sign * 0.01 * (1 + 0.3 * sin(seed + Float($0) * 0.37)) }
            let body = try values.withUnsafeBufferPointer { try TensorFrame.encode($0, codec: .fp32, zstdLevel: 1) }
            _ = try await job.receiveUpdate(lease: grant.leaseId, worker: worker, shard: shard.name, body: body)
        }
        _ = try await job.commit(lease: grant.leaseId, worker: worker, CommitRequest(samples: 4, loss: 2))
    }

    static func distance(_ a: [String: [Float]], _ b: [String: [Float]]) -> Double {
        a.reduce(0.0) { total, kv in
            guard let other = b[kv.key] else { return total }
            return total + zip(kv.value, other).reduce(0.0) { $0 + Double($1.0 - $1.1) * Double($1.0 - $1.1) }
        }.squareRoot()
    }

    func testAHostileAsyncUpdateIsPulledInToTheRunningReference() async throws {
        let clipped = try await open(asyncConfig(rule: .centeredClip))
        let trusting = try await open(asyncConfig(rule: .mean))
        let a = try await register(clipped, 1)[0], b = try await register(trusting, 1)[0]
        for _ in 0..<6 {
            try await push(clipped, a)
            try await push(trusting, b)
        }
        // With SGD and no momentum a round moves the parameters by lr·(applied gradient),
        // whatever they were: the two jobs' moves in the hostile round compare directly.
        let before = await clipped.parameterValues()
        let same = await trusting.parameterValues()
        let clippedBefore = await clipped.asyncClippedUpdates
        try await push(clipped, a, sign: -5)
        try await push(trusting, b, sign: -5)
        let moved = Self.distance(await clipped.parameterValues(), before)
        let movedUnclipped = Self.distance(await trusting.parameterValues(), same)
        let clippedAfter = await clipped.asyncClippedUpdates
        XCTAssertEqual(clippedAfter, clippedBefore + 1, "the hostile update was clipped")
        XCTAssertLessThan(moved, 0.6 * movedUnclipped, "clipped \(moved) vs \(movedUnclipped)")
        XCTAssertGreaterThan(moved, 0)
        await clipped.close()
        await trusting.close()
    }

    func testARestartReplaysClippedAsyncRoundsBitForBit() async throws {
        let c = asyncConfig(rule: .centeredClip, checkpointEvery: 8)
        var job = try await open(c)
        let w = try await register(job, 1)[0]
        for i in 0..<11 { try await push(job, w, sign: i == 9 ? -5 : 1) }
        let liveClipped = await job.asyncClippedUpdates
        XCTAssertGreaterThanOrEqual(liveClipped, 1, "round 10 was clipped")
        let live = await job.parameterValues()
        await job.close()
        job = try await open(c)  // checkpoint 8, then rounds 9–11 from the log, round 10 clipped again
        let version = await job.version
        XCTAssertEqual(version, 11)
        let replayClipped = await job.asyncClippedUpdates
        XCTAssertGreaterThanOrEqual(replayClipped, 1, "the replayed hostile round met the same reference")
        let replayed = await job.parameterValues()
        assertSameBits(live, replayed)
        await job.close()
    }
}
