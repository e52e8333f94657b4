import Foundation
internal import PostgresNIO

/// PostgresNIO's errors to `LedgerError`s. Only the server's own message fields, error codes and
/// the names of low-level failures are used: never `String(reflecting:)` of a `PSQLError`, which
/// carries the query and its bound values.
enum PostgresErrors {
    static func map(_ error: any Error, operation: String, location: String) -> LedgerError {
        switch error {
        case let error as LedgerError:
            return error
        case let error as PostgresTransactionError:
            // The closure's error is the interesting one; BEGIN or COMMIT failing is a server problem.
            if let inner = error.closureError ?? error.beginError ?? error.commitError {
                return map(inner, operation: operation, location: location)
            }
            return .server(operation: operation, sqlState: "-----", message: "the transaction failed")
        case let error as PostgresDecodingError:
            return .corruptRow(table: operation, detail: "column \(error.columnName) of type \(error.postgresType) "
                               + "does not decode (\(error.code))")
        case let error as PSQLError:
            if error.code == .server {
                let state = error.serverInfo?[.sqlState] ?? "-----"
                let message = oneLine(error.serverInfo?[.message] ?? "no message")
                // Class 08 (connection exception) and 57P0x (server shutting down): the server went away.
                if state.hasPrefix("08") || state.hasPrefix("57P0") {
                    return .cannotConnect(location: location, message: "\(message) (\(state))")
                }
                return .server(operation: operation, sqlState: state, message: message)
            }
            if error.code == .poolClosed {
                return .server(operation: operation, sqlState: "08003", message: "the ledger was closed")
            }
            if error.code == .queryCancelled {
                return .server(operation: operation, sqlState: "57014", message: "the query was cancelled")
            }
            return .cannotConnect(location: location, message: describe(error))
        case is CancellationError:
            return .server(operation: operation, sqlState: "57014", message: "the task was cancelled")
        // The pool's own errors (e.g. no connection could be made for a minute) come from the
        // underscored _ConnectionPoolModule; matched by name rather than importing it.
        case _ where String(describing: type(of: error)) == "ConnectionPoolError":
            return .cannotConnect(location: location, message: "no connection to the server (\(oneLine(String(describing: error))))")
        default:
            return .server(operation: operation, sqlState: "-----", message: oneLine(String(describing: error)))
        }
    }

    /// Errors while connecting and logging in: the server's reason ("password authentication
    /// failed for user …", "database … does not exist") or the socket's ("Connection refused").
    static func connectFailure(_ error: any Error, location: String) -> LedgerError {
        if let error = error as? LedgerError { return error }
        if let error = error as? PSQLError {
            if error.code == .server {
                let state = error.serverInfo?[.sqlState] ?? "-----"
                return .cannotConnect(location: location,
                                      message: "\(oneLine(error.serverInfo?[.message] ?? "refused")) (\(state))")
            }
            return .cannotConnect(location: location, message: describe(error))
        }
        return .cannotConnect(location: location, message: oneLine(String(describing: error)))
    }

    /// The call ran on a pooled connection that the server had closed (it restarted, or an
    /// administrator ended the session) before anything could be committed. Not for COMMIT's own
    /// failure: whether that transaction committed is unknown.
    static func isStaleConnection(_ error: any Error) -> Bool {
        if let error = error as? PostgresTransactionError {
            if error.commitError != nil { return false }
            return (error.beginError ?? error.closureError).map(isStaleConnection) ?? false
        }
        guard let error = error as? PSQLError else { return false }
        switch error.code {
        case .serverClosedConnection, .clientClosedConnection, .connectionError, .uncleanShutdown:
            return true
        case .server:
            let state = error.serverInfo?[.sqlState] ?? ""
            return state.hasPrefix("08") || state.hasPrefix("57P0")
        default:
            return false
        }
    }

    /// Serialization failure or deadlock: the transaction lost a race and can simply run again.
    static func isRetryable(_ error: LedgerError) -> Bool {
        if case let .server(_, state, _) = error { return state == "40001" || state == "40P01" }
        return false
    }

    private static func describe(_ error: PSQLError) -> String {
        switch error.code {
        case .authMechanismRequiresPassword:
            return "the server asks for a password but none was given"
        case .sslUnsupported:
            return "the server does not support TLS (use sslmode=prefer or disable)"
        case .unsupportedAuthMechanism:
            return "the server asks for an authentication method PostgresNIO does not support"
        default:
            // A nested PSQLError's description is a generic placeholder; its code says more.
            let cause = error.underlying.map { ": " + (($0 as? PSQLError).map { "\($0.code)" } ?? oneLine(String(describing: $0))) }
            return "\(error.code)\(cause ?? "")"
        }
    }

    static func oneLine(_ text: String) -> String {
        let line = text.split(whereSeparator: \.isNewline).joined(separator: " ")
        return line.count > 500 ? String(line.prefix(500)) + "…" : line
    }
}
