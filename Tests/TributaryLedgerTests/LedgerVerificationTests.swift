import Foundation
import XCTest
import TributaryLedger

/// `recordVerification`: what replication decides lands in one transaction, on both stores.
final class LedgerVerificationTests: LedgerStoreTestCase {
    func testAVoidTakesBackCreditReopensTheUnitAndReplicasAreCredited() async {
        await forEachStore { fixture in
            let ledger = try await fixture.openStore()
            for w in ["honest", "liar", "checker"] { try await ledger.insertWorker(makeWorker(w)) }
            try await ledger.insertUnits(makeUnits(epoch: 0, count: 2))
            let lied = makeLease("L1", unit: 0, worker: "liar")
            let fine = makeLease("L2", unit: 1, worker: "honest")
            try await ledger.insertLease(lied)
            try await ledger.insertLease(fine)
            try await ledger.recordAcceptedUpdate(makeUpdate(lease: lied, round: 1, samples: 64, flops: 2e9))
            try await ledger.recordAcceptedUpdate(makeUpdate(lease: fine, round: 1, samples: 64, flops: 2e9))

            try await ledger.recordVerification(VerificationRecord(
                voidedLeaseIds: ["L1", "no-such-lease"],
                credits: [.init(workerId: "checker", samples: 64, flops: 2e9)],
                rejections: [(workerId: "liar", reason: "refuted_by_replication")],
                meta: [(key: "reputation:liar", value: "0,1,0"), (key: "banned:liar", value: "now")],
                at: at(9_000)))

            let liar = try unwrap(await ledger.worker(id: "liar"))
            XCTAssertEqual(liar.samples, 0, "the voided update's credit is taken back")
            XCTAssertEqual(liar.flops, 0)
            XCTAssertEqual(liar.acceptedUpdates, 0)
            XCTAssertEqual(liar.rejectedUpdates, 1)
            let checker = try unwrap(await ledger.worker(id: "checker"))
            XCTAssertEqual(checker.samples, 64)
            XCTAssertEqual(checker.flops, 2e9)
            await expectEqual(try await ledger.worker(id: "honest")?.samples, 64)
            await expectEqual(try await ledger.updates(round: 1).map(\.leaseId), ["L2"])
            await expectEqual(try await ledger.unit(epoch: 0, index: 0)?.state, .pending)
            await expectEqual(try await ledger.lease(id: "L1")?.state, .released)
            await expectEqual(try await ledger.rejectionCounts()["refuted_by_replication"], 1)
            await expectEqual(try await ledger.meta("reputation:liar"), "0,1,0")
            await expectEqual(try await ledger.meta("banned:liar"), "now")

            // The unit can be leased and counted again, once; voiding twice changes nothing.
            let redo = makeLease("L3", unit: 0, worker: "checker", issuedAt: 10_000)
            try await ledger.insertLease(redo)
            try await ledger.recordAcceptedUpdate(makeUpdate(lease: redo, round: 1, samples: 64, flops: 2e9))
            try await ledger.recordVerification(VerificationRecord(voidedLeaseIds: ["L1"], at: at(11_000)))
            await expectEqual(try await ledger.worker(id: "checker")?.samples, 128)
            await expectEqual(try await ledger.updates(round: 1).map(\.leaseId), ["L2", "L3"])

            // A credit for an unknown worker refuses the whole record.
            await expectLedgerError(try await ledger.recordVerification(VerificationRecord(
                voidedLeaseIds: ["L2"], credits: [.init(workerId: "ghost", samples: 1, flops: 1)], at: at(12_000))),
                .unknownWorker(id: "ghost"))
            await expectEqual(try await ledger.updates(round: 1).map(\.leaseId), ["L2", "L3"])
            await expectEqual(try await ledger.worker(id: "honest")?.samples, 64)

            // A banned worker's whole credit is revoked; what it did stays on record.
            var revoke = VerificationRecord(at: at(13_000))
            revoke.revokedCreditWorkerIds = ["checker"]
            try await ledger.recordVerification(revoke)
            let revoked = try unwrap(await ledger.worker(id: "checker"))
            XCTAssertEqual([revoked.samples, revoked.acceptedUpdates], [0, 1])
            XCTAssertEqual(revoked.flops, 0)
        }
    }
}
