import Foundation
import Logging
import TributaryLedger

extension JobConfig {
    /// Opens the job's ledger (`storage.ledger`).
    func openLedger(logger: Logger) async throws -> any LedgerStore {
        // TEMPORARY until the ledger branch lands: SQLite only.
        try Ledger(path: "\(storage.dataDirectory)/ledger.sqlite")
    }
}
