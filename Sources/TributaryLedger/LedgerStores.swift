import Foundation
public import Logging

/// Opens the store a `LedgerLocation` names.
public enum LedgerStores {
    /// SQLite opens synchronously; PostgreSQL connects, checks and migrates the database first.
    /// `logger` receives PostgresNIO's background messages (connection failures, retries);
    /// nothing it logs contains the password.
    public static func open(_ location: LedgerLocation, logger: Logger?) async throws(LedgerError) -> any LedgerStore {
        switch location {
        case let .sqlite(path):
            return try SQLiteLedger(path: path)
        case let .postgres(settings):
            return try await PostgresLedger.open(settings, logger: logger)
        }
    }
}
