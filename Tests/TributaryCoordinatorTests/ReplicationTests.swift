import Foundation
import TributaryCompression
import TributaryProtocol
import XCTest
@testable import TributaryCoordinator

/// Issue 13, validation by replication at the job's level: synthetic updates that depend on
/// the unit only (so honest replicas agree exactly), and hostile ones that flip their sign.
final class ReplicationTests: JobTestCase {
    func replicatedConfig(units: Int, banAfter: Int = 3, trustedAfter: Int = 5) -> JobConfig {
        var c = config(checkpointEvery: 50)
        c.rounds.unitsPerRound = units
        c.validation.replication = .adaptive
        c.validation.banAfter = banAfter
        c.validation.trustedAfter = trustedAfter
        // With one agreement and one partner enough, the small scenarios below have trusted workers.
        c.validation.trustedPartners = trustedAfter == 1 ? 1 : 2
        return c
    }

    /// Pushes the unit's honest update (× `sign`) and commits it.
    @discardableResult
    func push(_ job: TrainingJob, _ worker: String, _ grant: LeaseGrant, sign: Float = 1) async throws -> CommitReceipt {
        for shard in job.layout.shards {
            let seed = Float(grant.epoch * 1000 + grant.unitIndex) + Float(shard.name.count)
            let values = (0..<shard.elementCount).map { sign * 0.01 * sin(seed + Float($0) * 0.37) }
            let body = try values.withUnsafeBufferPointer { try TensorFrame.encode($0, codec: .fp32, zstdLevel: 1) }
            _ = try await job.receiveUpdate(lease: grant.leaseId, worker: worker, shard: shard.name, body: body)
        }
        return try await job.commit(lease: grant.leaseId, worker: worker,
                                    CommitRequest(samples: 4, loss: 2 + Double(grant.unitIndex) * 0.01))
    }

    func samples(_ job: TrainingJob) async throws -> [String: Int] {
        Dictionary(uniqueKeysWithValues: try await job.workers().workers.map { ($0.id, $0.samples) })
    }

    func testANewWorkersUnitsAreReplicatedTheRoundWaitsAndAgreeingWorkersAreBothCredited() async throws {
        let job = try await open(replicatedConfig(units: 2))
        let w = try await register(job, 2)
        let g0 = try await job.lease(worker: w[0]), g1 = try await job.lease(worker: w[1])
        try await push(job, w[0], g0)
        try await push(job, w[1], g1)
        var version = await job.version
        XCTAssertEqual(version, 0, "the round waits for its replicas")
        let r0 = try await job.lease(worker: w[0]), r1 = try await job.lease(worker: w[1])
        XCTAssertEqual(r0.unitIndex, g1.unitIndex, "each worker replicates the other's unit")
        XCTAssertEqual(r1.unitIndex, g0.unitIndex)
        let receipt = try await push(job, w[0], r0)
        XCTAssertTrue(receipt.accepted, "a replica's answer looks like any accepted commit")
        // Its answer lost, the worker commits again: the same receipt, counted once.
        let repeated = try await job.commit(lease: r0.leaseId, worker: w[0], CommitRequest(samples: 4, loss: 2))
        XCTAssertEqual(repeated, receipt)
        try await push(job, w[1], r1)
        version = await job.version
        XCTAssertEqual(version, 1)
        let figures = await job.replicationFigures
        XCTAssertEqual(figures.confirmed, 2)
        XCTAssertEqual(figures.replicas, 2)
        XCTAssertEqual(figures.replicaSamples, 8)
        XCTAssertEqual(job.status().replication?.confirmed, 2)
        let credit = try await samples(job)
        XCTAssertEqual(credit[w[0]], 8, "its own unit and its agreeing replica")
        XCTAssertEqual(credit[w[1]], 8)
        let list = try await job.workers().workers
        XCTAssertEqual(list.map { $0.reputation?.agreements }, [2, 2])
        XCTAssertEqual(list.map { $0.reputation?.trusted }, [false, false])
        await job.close()
        // Reputations are ledger metadata: a restarted coordinator knows them.
        let reopened = try await open(job.config)
        let again = try await reopened.workers().workers
        XCTAssertEqual(again.map { $0.reputation?.agreements }, [2, 2])
        await reopened.close()
    }

    func testASignFlipperIsOutvotedItsUpdateReplacedUncreditedAndItIsBanned() async throws {
        // One agreement makes a worker trusted here, so the honest pair decides the dispute.
        let job = try await open(replicatedConfig(units: 3, banAfter: 1, trustedAfter: 1))
        let w = try await register(job, 3)
        let (h1, h2, liar) = (w[0], w[1], w[2])
        let g0 = try await job.lease(worker: h1), g1 = try await job.lease(worker: h2), g2 = try await job.lease(worker: liar)
        try await push(job, h1, g0)
        try await push(job, h2, g1)
        try await push(job, liar, g2, sign: -1)
        // Only the honest pair asks now: they check each other's units and the liar's (which
        // unit each is given varies; a dispute waits until a trusted worker can decide it).
        var version = await job.version
        for _ in 0..<10 where version == 0 {
            for worker in [h1, h2] {
                if let grant = try? await job.lease(worker: worker) { try await push(job, worker, grant) }
            }
            version = await job.version
        }
        let disputes = await job.replicationFigures.disputes
        XCTAssertEqual(disputes, 1)
        version = await job.version
        XCTAssertEqual(version, 1)
        let figures = await job.replicationFigures
        XCTAssertEqual(figures.replaced, 1)
        XCTAssertEqual(figures.banned, 1)
        XCTAssertTrue(job.registry.bannedIDs.contains(liar))
        let credit = try await samples(job)
        XCTAssertEqual(credit[liar], 0, "no credit for the hostile update")
        XCTAssertEqual(credit[h1], 12, "own unit, a confirming replica, and the replica that replaced the lie")
        XCTAssertEqual(credit[h2], 12)
        XCTAssertEqual(job.status().updatesRejected[TrainingJob.refutedReason], 1)
        let list = try await job.workers().workers
        XCTAssertEqual(list.first { $0.id == liar }?.reputation?.disagreements, 1)
        XCTAssertEqual(list.first { $0.id == liar }?.banned, true)

        // The model is exactly the one a job without the liar reaches with the same units.
        var twinConfig = config(checkpointEvery: 50)
        twinConfig.rounds.unitsPerRound = 3
        let twin = try await open(twinConfig)
        let t = try await register(twin, 2)
        for worker in [t[0], t[1], t[0]] { try await push(twin, worker, try await twin.lease(worker: worker)) }
        let twinVersion = await twin.version
        XCTAssertEqual(twinVersion, 1)
        let (mine, theirs) = (await job.parameterValues(), await twin.parameterValues())
        assertSameBits(mine, theirs)
        await twin.close()
        await job.close()
    }

    /// A restart in the middle of a round: the counted units still get their replicas.
    func testAfterARestartTheOpenRoundsCountedUnitsAreStillVerified() async throws {
        let c = replicatedConfig(units: 2)
        var job = try await open(c)
        let w = try await register(job, 2)
        try await push(job, w[0], try await job.lease(worker: w[0]))
        await job.close()
        job = try await open(c)
        try await push(job, w[1], try await job.lease(worker: w[1]))
        var version = await job.version
        XCTAssertEqual(version, 0, "both units wait for replicas, the one counted before the restart too")
        for worker in w { try await push(job, worker, try await job.lease(worker: worker)) }
        version = await job.version
        XCTAssertEqual(version, 1)
        let confirmed = await job.replicationFigures.confirmed
        XCTAssertEqual(confirmed, 2)
        await job.close()
    }

    /// Two colluders that send the same wrong update agree with each other; they must not be
    /// able to outvote an honest worker: only a trusted worker decides a dispute.
    func testColludersCannotOutvoteAnHonestWorkerBecauseOnlyATrustedWorkerDecides() async throws {
        var c = replicatedConfig(units: 2, trustedAfter: 1)
        c.validation.replication = .all  // trusted workers' units too, so honest units get replicas
        let job = try await open(c)
        let w = try await register(job, 4)
        let (h1, h2, c1, c2) = (w[0], w[1], w[2], w[3])
        // Round 1: the honest pair confirm each other and become trusted.
        let a = try await job.lease(worker: h1), b = try await job.lease(worker: h2)
        try await push(job, h1, a)
        try await push(job, h2, b)
        try await push(job, h1, try await job.lease(worker: h1))
        try await push(job, h2, try await job.lease(worker: h2))
        let afterRound1 = await job.version
        XCTAssertEqual(afterRound1, 1)
        let trusted = await job.scheduler.trustedWorkers
        XCTAssertEqual(trusted, [h1, h2])
        // Round 2: two honest units; each colluder checks one and lies about it.
        let u1 = try await job.lease(worker: h1), u2 = try await job.lease(worker: h2)
        try await push(job, h1, u1)
        try await push(job, h2, u2)
        let first = try await job.lease(worker: c2)
        try await push(job, c2, first, sign: -1)
        // The other colluder may not decide that dispute: it gets the other unit, and lies too.
        let second = try await job.lease(worker: c1)
        XCTAssertNotEqual(second.unitIndex, first.unitIndex, "a colluder was given the deciding replica")
        try await push(job, c1, second, sign: -1)
        // Each honest worker decides the dispute over the other's unit.
        for worker in [h1, h2] { try await push(job, worker, try await job.lease(worker: worker)) }
        let version = await job.version
        XCTAssertEqual(version, 2)
        let list = try await job.workers().workers
        let disagreements = Dictionary(uniqueKeysWithValues: list.map { ($0.id, $0.reputation?.disagreements ?? -1) })
        XCTAssertEqual(disagreements[h1], 0, "the honest workers were not outvoted")
        XCTAssertEqual(disagreements[h2], 0)
        XCTAssertEqual(disagreements[c1], 1, "each lying replica was refuted")
        XCTAssertEqual(disagreements[c2], 1)
        await job.close()
    }

    /// Two workers that disagree and nobody to decide: the counted update is held back (no
    /// credit, no verdict) and its unit computed again.
    func testWithNoThirdWorkerADisputedUpdateIsHeldBackAndItsUnitComputedAgain() async throws {
        let clock = TestClock()
        let job = try await open(replicatedConfig(units: 2, banAfter: 100), now: { clock.now })
        let w = try await register(job, 2)
        let (honest, liar) = (w[0], w[1])
        let g0 = try await job.lease(worker: honest), g1 = try await job.lease(worker: liar)
        try await push(job, honest, g0)
        try await push(job, liar, g1, sign: -1)
        let r = try await job.lease(worker: honest)
        XCTAssertEqual(r.unitIndex, g1.unitIndex)
        try await push(job, honest, r)
        var version = await job.version
        XCTAssertEqual(version, 0, "the liar could still replicate the honest unit")
        let early = try await samples(job)
        XCTAssertEqual(early[liar], 4, "credit stays until a verdict or a hold-back")
        // The liar goes quiet: nobody is left to decide, and the disputed update is held back.
        clock.advance(3)
        try await job.tick()
        let held = try await samples(job)
        XCTAssertEqual(held[liar], 0, "a held-back update's credit is taken back")
        let unresolved = await job.replicationFigures.unresolved
        XCTAssertEqual(unresolved, 1)
        let redo = try await job.lease(worker: honest)
        XCTAssertEqual(redo.unitIndex, g1.unitIndex, "the unit is computed again")
        try await push(job, honest, redo)
        version = await job.version
        XCTAssertEqual(version, 1)
        let shown = try XCTUnwrap(job.status().trainingLoss.last?.value)
        XCTAssertEqual(shown, 2 + 0.5 * Double(g0.unitIndex + g1.unitIndex) * 0.01, accuracy: 1e-9)
        let reputations = try await job.workers().workers.map { $0.reputation?.disagreements }
        XCTAssertEqual(reputations, [0, 0], "three-way silence says nothing about who lied")
        await job.close()
    }

    func testATrustedWorkerIsReplicatedAtTheTrustedRateAndTheChoiceIsUnpredictablePerUnit() {
        let policy = ReplicationPolicy(mode: .adaptive, trustedAfter: 5, trustedPartners: 2, trustedRate: 0.05,
                                       banAfter: 3, seed: 1337)
        let fresh = WorkerReputation()
        let trusted = WorkerReputation(agreements: 9, disagreements: 0, consecutiveAgreements: 9, partners: ["a", "b"])
        let colluder = WorkerReputation(agreements: 9, disagreements: 0, consecutiveAgreements: 9, partners: ["accomplice"])
        XCTAssertFalse(policy.isTrusted(colluder), "agreeing with one partner only is not trust")
        XCTAssertTrue(policy.isTrusted(trusted))
        let relapsed = WorkerReputation(agreements: 9, disagreements: 1, consecutiveAgreements: 2)
        XCTAssertTrue((0..<100).allSatisfy { policy.shouldReplicate(fresh, epoch: 0, unit: $0) })
        XCTAssertTrue((0..<100).allSatisfy { policy.shouldReplicate(relapsed, epoch: 0, unit: $0) })
        let n = 20_000
        let replicated = (0..<n).filter { policy.shouldReplicate(trusted, epoch: $0 / 1000, unit: $0 % 1000) }.count
        XCTAssertEqual(Double(replicated) / Double(n), 0.05, accuracy: 0.006)
        XCTAssertFalse(policy.shouldBan(relapsed))
        XCTAssertTrue(policy.shouldBan(WorkerReputation(agreements: 0, disagreements: 3, consecutiveAgreements: 0)))
        XCTAssertEqual(WorkerReputation(metaValue: trusted.metaValue), trusted)
        XCTAssertNil(WorkerReputation(metaValue: "1,-2,3"))
        XCTAssertNil(WorkerReputation(metaValue: "garbage"))
    }
}
