import Foundation

/// Which store holds the ledger, as the job configuration names it:
/// - `sqlite`: `<data directory>/ledger.sqlite` (the default);
/// - `sqlite:/path/to/file` (a relative path is taken inside the data directory);
/// - `postgres://user@host:port/database` or `postgresql://…`, with optional query parameters
///   `sslmode=disable|prefer|require`, `host=/socket/directory` (a Unix socket) and
///   `password_file=/path`. The password comes from that file, else `TRIBUTARY_LEDGER_PASSWORD`,
///   else `PGPASSWORD`; a password inside the URL is refused so that it never lands in a job file
///   or a log.
public enum LedgerLocation: Sendable, Equatable {
    case sqlite(path: String)
    case postgres(PostgresLedgerSettings)

    public static let passwordVariable = "TRIBUTARY_LEDGER_PASSWORD"

    public static func parse(
        _ text: String, dataDirectory: String,
        environment: [String: String] = ProcessInfo.processInfo.environment,
        readFile: (String) throws -> String = { try String(contentsOfFile: $0, encoding: .utf8) }
    ) throws(LedgerError) -> LedgerLocation {
        let text = text.trimmingCharacters(in: .whitespacesAndNewlines)
        if text == "sqlite" {
            return .sqlite(path: join(dataDirectory, "ledger.sqlite"))
        }
        if text.hasPrefix("sqlite:") {
            let path = String(text.dropFirst("sqlite:".count))
            if path.isEmpty {
                throw .invalidLocation("'sqlite:' names no file; write 'sqlite' for <data directory>/ledger.sqlite or 'sqlite:/path/to/file'")
            }
            return .sqlite(path: path.hasPrefix("/") ? path : join(dataDirectory, path))
        }
        if text.hasPrefix("postgres://") || text.hasPrefix("postgresql://") {
            return .postgres(try PostgresURL.settings(text, environment: environment, readFile: readFile))
        }
        // The text is not echoed: it may be another database's URL with a password in it.
        let scheme = text.split(separator: ":", maxSplits: 1).first.map(String.init) ?? ""
        let shown = scheme.count <= 20 && scheme.allSatisfy({ $0.isLetter || $0.isNumber }) ? " '\(scheme)'" : ""
        throw .invalidLocation("unknown kind of ledger\(shown); write 'sqlite', 'sqlite:/path/to/file' "
                               + "or 'postgres://user@host:port/database'")
    }

    private static func join(_ directory: String, _ name: String) -> String {
        directory.hasSuffix("/") ? directory + name : "\(directory)/\(name)"
    }
}

extension LedgerLocation: CustomStringConvertible {
    /// For logs: the file path, or the database URL without its password.
    public var description: String {
        switch self {
        case let .sqlite(path): return "sqlite:\(path)"
        case let .postgres(settings): return settings.redacted
        }
    }
}
