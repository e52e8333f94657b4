import Foundation

// TEMPORARY stand-in until the ledger branch lands (replaced by its LedgerStore.swift).
public protocol LedgerStore: Sendable {
    var location: String { get }
    func setMeta(_ key: String, _ value: String) async throws(LedgerError)
    func meta(_ key: String) async throws(LedgerError) -> String?
    func insertWorker(_ worker: WorkerRecord) async throws(LedgerError)
    func workers() async throws(LedgerError) -> [WorkerRecord]
    func insertUnits(_ units: [UnitRecord]) async throws(LedgerError)
    func unit(epoch: Int, index: Int) async throws(LedgerError) -> UnitRecord?
    func units(epoch: Int, state: UnitState?) async throws(LedgerError) -> [UnitRecord]
    func insertLease(_ lease: LeaseRecord) async throws(LedgerError)
    func lease(id: String) async throws(LedgerError) -> LeaseRecord?
    func setLeaseState(id: String, _ state: LeaseState, deadline: Date?) async throws(LedgerError)
    func recordAcceptedUpdate(_ update: UpdateRecord) async throws(LedgerError)
    func recordRejectedUpdate(workerId: String?, reason: String, at date: Date) async throws(LedgerError)
    func recordRound(_ round: RoundRecord) async throws(LedgerError)
    func rounds(limit: Int) async throws(LedgerError) -> [RoundRecord]
    func recordCheckpoint(_ checkpoint: CheckpointRecord) async throws(LedgerError)
    func latestCheckpoint() async throws(LedgerError) -> CheckpointRecord?
    func recoverAfterRestart(checkpointedRound: Int) async throws(LedgerError) -> RecoveryReport
    func close() async
}

extension Ledger: LedgerStore {
    public func close() async {}
}
