import Foundation

/// Where and how to reach the PostgreSQL database that holds a ledger. Made by
/// `LedgerLocation.parse` from a `postgres://` URL; the password never comes from the URL itself.
///
/// Every textual form (`description`, `debugDescription`, `dump`, `redacted`) leaves the password
/// out, so the settings can be logged as they are.
public struct PostgresLedgerSettings: Sendable, Equatable {
    public enum Endpoint: Sendable, Equatable {
        case tcp(host: String, port: Int)
        /// The server's socket in `directory` (its `unix_socket_directories`), named `.s.PGSQL.<port>`.
        case unixSocket(directory: String, port: Int)
    }

    /// `prefer` tries TLS and falls back to plain TCP (libpq's default); `require` refuses a
    /// server without TLS and verifies its certificate and name against the system's trust store.
    /// A Unix socket never uses TLS.
    public enum TLSMode: String, Sendable, Equatable, CaseIterable {
        case disable, prefer, require
    }

    public var endpoint: Endpoint
    public var user: String
    public var database: String
    /// From `password_file`, `TRIBUTARY_LEDGER_PASSWORD` or `PGPASSWORD`; nil for trust or peer login.
    public var password: String?
    public var tls: TLSMode

    public init(endpoint: Endpoint, user: String, database: String, password: String? = nil, tls: TLSMode = .prefer) {
        self.endpoint = endpoint
        self.user = user
        self.database = database
        self.password = password
        self.tls = tls
    }

    /// The socket file PostgreSQL creates in its socket directory.
    var socketPath: String? {
        guard case let .unixSocket(directory, port) = endpoint else { return nil }
        let separator = directory.hasSuffix("/") ? "" : "/"
        return "\(directory)\(separator).s.PGSQL.\(port)"
    }

    /// A URL for logs and error messages: everything but the password.
    public var redacted: String {
        let user = Self.escape(self.user, .urlUserAllowed)
        let database = Self.escape(self.database, .urlPathAllowed.subtracting(CharacterSet(charactersIn: "/")))
        switch endpoint {
        case let .tcp(host, port):
            let shownHost = host.contains(":") ? "[\(host)]" : host
            let mode = tls == .prefer ? "" : "?sslmode=\(tls.rawValue)"
            return "postgres://\(user)@\(shownHost):\(port)/\(database)\(mode)"
        case let .unixSocket(directory, port):
            let shownPort = port == 5432 ? "" : ":\(port)"
            return "postgres://\(user)@\(shownPort)/\(database)?host=\(Self.escape(directory, .urlQueryAllowed))"
        }
    }

    private static func escape(_ text: String, _ allowed: CharacterSet) -> String {
        // `&` and `=` would end a query parameter early.
        text.addingPercentEncoding(withAllowedCharacters: allowed.subtracting(CharacterSet(charactersIn: "&=?#@"))) ?? text
    }
}

extension PostgresLedgerSettings: CustomStringConvertible, CustomDebugStringConvertible, CustomReflectable {
    public var description: String { redacted }
    public var debugDescription: String {
        "PostgresLedgerSettings(\(redacted), password: \(password == nil ? "none" : "set"))"
    }
    /// `dump` and the debugger would otherwise print every stored property, the password included.
    public var customMirror: Mirror {
        Mirror(self, children: ["url": redacted, "password": password == nil ? "none" : "set"])
    }
}
