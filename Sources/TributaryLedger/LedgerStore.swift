import Foundation

/// The coordinator's durable record: workers, work units, leases, accepted updates, rounds and
/// checkpoints. Two implementations keep the same invariants: `SQLiteLedger` (one file, the
/// default) and `PostgresLedger` (a PostgreSQL database, for coordinators that must not keep
/// their state on local disk). Open one from configuration with `LedgerStores.open`.
///
/// Every write is one transaction: it either happens whole or not at all, and concurrent calls
/// behave as if they ran one after another. Errors are `LedgerError`s whose descriptions are one
/// line and never contain a password.
public protocol LedgerStore: Sendable {
    /// Where the ledger lives, for logs: a file path, ":memory:", or a URL without a password.
    var location: String { get }

    /// Releases the connection(s). Later calls fail; calling it twice is harmless.
    func close() async

    // MARK: Job metadata
    func setMeta(_ key: String, _ value: String) async throws(LedgerError)
    func meta(_ key: String) async throws(LedgerError) -> String?
    /// All metadata, for status pages and dumps.
    func allMeta() async throws(LedgerError) -> [String: String]

    // MARK: Workers
    /// Registers a worker. Throws `.duplicate` if its id or token hash is already registered.
    func insertWorker(_ worker: WorkerRecord) async throws(LedgerError)
    func worker(id: String) async throws(LedgerError) -> WorkerRecord?
    /// The worker a bearer token belongs to (the caller hashes the presented token).
    func worker(tokenHash: String) async throws(LedgerError) -> WorkerRecord?
    /// All workers, oldest registration first (ties in registration order).
    func workers() async throws(LedgerError) -> [WorkerRecord]
    /// Moves `lastSeenAt` forward to `at`; an older time (a delayed request) leaves it unchanged.
    func noteWorkerSeen(id: String, at date: Date) async throws(LedgerError)

    // MARK: Work units
    /// Inserts all units in one transaction. Throws `.duplicate` (and inserts none) if any
    /// (epoch, index) is already recorded or repeated in `units`.
    func insertUnits(_ units: [UnitRecord]) async throws(LedgerError)
    func unit(epoch: Int, index: Int) async throws(LedgerError) -> UnitRecord?
    /// The epoch's units in `state` (all units when nil), by index.
    func units(epoch: Int, state: UnitState?) async throws(LedgerError) -> [UnitRecord]
    /// Units of the epoch per state; every state is present, 0 when it has none.
    func unitCounts(epoch: Int) async throws(LedgerError) -> [UnitState: Int]

    // MARK: Leases
    /// Records a lease and, if it is active, marks its unit leased. Refuses a lease on a done unit
    /// (`.unitAlreadyDone`), an unknown unit or worker, or a reused id.
    func insertLease(_ lease: LeaseRecord) async throws(LedgerError)
    func lease(id: String) async throws(LedgerError) -> LeaseRecord?
    /// The leases of one unit, oldest first.
    func leases(epoch: Int, unitIndex: Int) async throws(LedgerError) -> [LeaseRecord]
    /// All active leases, by deadline.
    func activeLeases() async throws(LedgerError) -> [LeaseRecord]
    /// Changes an active lease's state and, when given, its deadline. `.expired` and `.released`
    /// put the unit back to pending unless it is done or another lease on it is still active.
    /// An ended lease cannot change state (`.leaseNotActive`); setting its own state is a no-op.
    /// (No default for `deadline` here: a protocol-extension overload without it would outrank
    /// `SQLiteLedger`'s synchronous method in async code and break its existing callers.)
    func setLeaseState(id: String, _ state: LeaseState, deadline: Date?) async throws(LedgerError)

    // MARK: Updates
    /// Accepts an update: lease committed, unit done, update row inserted, worker credited.
    /// Throws `.unitAlreadyDone` (changing nothing) if the unit already is done.
    func recordAcceptedUpdate(_ update: UpdateRecord) async throws(LedgerError)
    /// Counts a refused update under `reason`, and against the worker when it is known.
    func recordRejectedUpdate(workerId: String?, reason: String, at date: Date) async throws(LedgerError)
    /// Rejected updates per reason.
    func rejectionCounts() async throws(LedgerError) -> [String: Int]
    /// The updates folded into `round`, in the order they were accepted.
    func updates(round: Int) async throws(LedgerError) -> [UpdateRecord]
    /// The accepted update of a unit, if it is done.
    func update(epoch: Int, unitIndex: Int) async throws(LedgerError) -> UpdateRecord?
    /// Applies what validation by replication decided (voids, replica credit, refusals,
    /// reputations), in one transaction.
    func recordVerification(_ record: VerificationRecord) async throws(LedgerError)

    // MARK: Rounds and checkpoints
    /// Records a closed round. Throws `.duplicate` if that round number is already recorded.
    func recordRound(_ round: RoundRecord) async throws(LedgerError)
    /// The most recent `limit` rounds, in ascending round order.
    func rounds(limit: Int) async throws(LedgerError) -> [RoundRecord]
    func lastRound() async throws(LedgerError) -> RoundRecord?
    func recordCheckpoint(_ checkpoint: CheckpointRecord) async throws(LedgerError)
    /// The checkpoint of the highest round (the newest version, then the last recorded, on ties).
    func latestCheckpoint() async throws(LedgerError) -> CheckpointRecord?

    // MARK: Crash recovery
    /// Rolls the ledger back to a checkpoint taken after round `checkpointedRound` (0: none), in one
    /// transaction; see `SQLiteLedger.recoverAfterRestart(checkpointedRound:)` for what it undoes.
    func recoverAfterRestart(checkpointedRound: Int) async throws(LedgerError) -> RecoveryReport
}
