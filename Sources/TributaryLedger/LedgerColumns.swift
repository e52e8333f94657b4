/// The column lists both stores select, in the order the row decoders read them. PostgreSQL
/// folds the unquoted camelCase names to lower case, so the same lists serve both schemas.
extension WorkerRecord {
    static let columns = "id, name, tokenHash, createdAt, lastSeenAt, samples, flops, acceptedUpdates, rejectedUpdates"
}

extension UnitRecord {
    static let columns = "epoch, unitIndex, sampleStart, sampleCount, state"
}

extension LeaseRecord {
    static let columns = "id, epoch, unitIndex, workerId, baseVersion, issuedAt, deadline, state"
}

extension UpdateRecord {
    static let columns = "leaseId, epoch, unitIndex, workerId, baseVersion, round, samples, loss, weight, flops, bytes, acceptedAt"
}

extension RoundRecord {
    static let columns = "round, version, openedAt, closedAt, updates, samples, meanLoss"
}

extension CheckpointRecord {
    static let columns = "version, round, path, createdAt"
}

/// A stored state string back to its enum; anything else means the row was damaged or edited.
func decodeLedgerState<State: RawRepresentable<String>>(_ raw: String, table: String) throws(LedgerError) -> State {
    guard let state = State(rawValue: raw) else {
        throw .corruptRow(table: table, detail: "unknown state '\(raw)'")
    }
    return state
}
