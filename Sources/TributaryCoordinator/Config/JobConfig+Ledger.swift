import Foundation
import Logging
import TributaryLedger

extension JobConfig {
    /// Where the ledger lives (`storage.ledger`), resolved against the data directory, with a
    /// PostgreSQL password taken from its file or the environment (never from the job file).
    public func ledgerLocation() throws -> LedgerLocation {
        do {
            return try LedgerLocation.parse(storage.ledger, dataDirectory: storage.dataDirectory)
        } catch {
            throw JobConfigError.invalid("storage.ledger: \(error)")
        }
    }

    /// Opens the job's ledger.
    func openLedger(logger: Logger) async throws -> any LedgerStore {
        let location = try ledgerLocation()
        logger.info("opening ledger", metadata: ["ledger": "\(location)"])
        return try await LedgerStores.open(location, logger: logger)
    }
}
