import Foundation

/// Everything the ledger can throw. Each case prints as one line that says what went wrong
/// and, where the caller can act, what to do.
public enum LedgerError: Error, CustomStringConvertible, Equatable, Sendable {
    /// The file or database exists but is not a Tributary ledger (not SQLite, or another
    /// program's database). For PostgreSQL, `path` is the URL without a password.
    case notALedger(path: String, reason: String)
    /// The file is a ledger written by a newer Tributary (a schema this build does not know).
    case newerSchema(path: String, found: Int, supported: Int)
    /// The file could not be opened or created at all.
    case cannotOpen(path: String, message: String)
    /// A row with the same key is already recorded (`kind` names the key: "worker id", "lease", …).
    case duplicate(kind: String, key: String)
    case unknownWorker(id: String)
    case unknownUnit(epoch: Int, index: Int)
    case unknownLease(id: String)
    /// The unit already has an accepted update in this epoch; nothing was changed.
    case unitAlreadyDone(epoch: Int, index: Int)
    /// An update or lease refers to a lease for a different unit or worker.
    case leaseMismatch(leaseId: String, detail: String)
    /// The lease has already ended (committed, expired or released) and cannot change state again.
    case leaseNotActive(id: String, state: LeaseState)
    /// A value the caller passed cannot be stored (negative count, non-finite number, …).
    case invalidValue(String)
    /// A stored row could not be read back (the file was edited by hand or is damaged).
    case corruptRow(table: String, detail: String)
    /// SQLite refused the operation (disk full, I/O error, locked by another process, …).
    case database(operation: String, code: Int, message: String)
    /// The ledger location given in the configuration cannot be used (malformed URL, a password
    /// written inside it, an unreadable password file, …). Never contains a password.
    case invalidLocation(String)
    /// The PostgreSQL server could not be reached or refused the login. `location` has no password.
    case cannotConnect(location: String, message: String)
    /// PostgreSQL refused the operation; `sqlState` is its five-character error code.
    case server(operation: String, sqlState: String, message: String)

    public var description: String {
        switch self {
        case let .notALedger(path, reason):
            if LedgerError.isDatabaseURL(path) {
                return "\(path) is not a Tributary ledger (\(reason)); give the coordinator a database of its own (CREATE DATABASE)"
            }
            return "\(path) is not a Tributary ledger (\(reason)); give the coordinator its own data directory or move the file away"
        case let .newerSchema(path, found, supported):
            return "ledger \(path) has schema version \(found) but this build supports up to \(supported); upgrade tributary to open it"
        case let .cannotOpen(path, message):
            return "cannot open ledger \(path): \(message); check that the directory exists and is writable"
        case let .duplicate(kind, key):
            return "duplicate \(kind) '\(key)': it is already in the ledger"
        case let .unknownWorker(id):
            return "unknown worker '\(id)': it is not registered in the ledger"
        case let .unknownUnit(epoch, index):
            return "unknown work unit \(index) of epoch \(epoch): it is not in the ledger"
        case let .unknownLease(id):
            return "unknown lease '\(id)': it is not in the ledger"
        case let .unitAlreadyDone(epoch, index):
            return "work unit \(index) of epoch \(epoch) is already done; the update was not recorded"
        case let .leaseMismatch(leaseId, detail):
            return "lease '\(leaseId)' does not match: \(detail)"
        case let .leaseNotActive(id, state):
            return "lease '\(id)' is already \(state.rawValue) and cannot change state"
        case let .invalidValue(message):
            return "invalid ledger value: \(message)"
        case let .corruptRow(table, detail):
            return "ledger table \(table) holds an unreadable row (\(detail)); the file may be damaged"
        case let .database(operation, code, message):
            return "ledger \(operation) failed: SQLite error \(code): \(message)"
        case let .invalidLocation(message):
            return "invalid ledger location: \(message)"
        case let .cannotConnect(location, message):
            return "cannot connect to ledger \(location): \(message); check that the server runs and that the URL, "
                + "user and password (password_file, TRIBUTARY_LEDGER_PASSWORD or PGPASSWORD) are right"
        case let .server(operation, sqlState, message):
            return "ledger \(operation) failed: PostgreSQL error \(sqlState): \(message)"
        }
    }

    /// PostgreSQL ledgers are located by URL; the advice for a foreign database differs from a file's.
    static func isDatabaseURL(_ location: String) -> Bool {
        location.hasPrefix("postgres://") || location.hasPrefix("postgresql://")
    }
}
