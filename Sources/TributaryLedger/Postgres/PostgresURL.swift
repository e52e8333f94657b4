import Foundation

/// Parses `postgres://user@host:port/database?params` by hand: Foundation's URL parsing differs
/// between platforms on empty hosts and odd characters, and error messages here must never echo
/// the URL (it may hold a password the user should not have written there).
enum PostgresURL {
    static let supportedParameters = ["sslmode", "host", "password_file"]

    static func settings(_ text: String, environment: [String: String],
                         readFile: (String) throws -> String) throws(LedgerError) -> PostgresLedgerSettings {
        guard let schemeEnd = text.range(of: "://") else { throw .invalidLocation("a PostgreSQL URL starts with postgres://") }
        var rest = Substring(text[schemeEnd.upperBound...])
        if rest.contains("#") { throw .invalidLocation("a PostgreSQL URL cannot have a '#fragment'") }

        var query: Substring = ""
        if let mark = rest.firstIndex(of: "?") {
            query = rest[rest.index(after: mark)...]
            rest = rest[..<mark]
        }
        let authority = rest.firstIndex(of: "/").map { rest[..<$0] } ?? rest
        let databasePart = rest.firstIndex(of: "/").map { rest[rest.index(after: $0)...] } ?? ""

        // The last '@' ends the user part: a password (refused below) may itself contain '@'.
        guard let at = authority.lastIndex(of: "@") else {
            throw .invalidLocation("name the database user in the URL: postgres://USER@host:port/database")
        }
        let userInfo = authority[..<at]
        if userInfo.contains(":") { throw inlinePassword }
        let user = try decode(userInfo, "user name")
        if user.isEmpty { throw .invalidLocation("name the database user in the URL: postgres://USER@host:port/database") }
        let (urlHost, port) = try hostAndPort(authority[authority.index(after: at)...])

        let database = try decode(databasePart, "database name")
        if database.isEmpty || database.contains("/") {
            throw .invalidLocation("name one database in the URL: postgres://user@host:port/DATABASE")
        }

        var parameters: [String: String] = [:]
        for pair in query.split(separator: "&", omittingEmptySubsequences: true) {
            let parts = pair.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let name = try decode(parts[0], "query parameter name")
            if name == "password" { throw inlinePassword }
            guard supportedParameters.contains(name) else {
                // Only the name is shown: the value could be anything.
                let shown = name.count <= 40 ? "'\(name)'" : "(a long name)"
                throw .invalidLocation("unknown URL parameter \(shown); supported: \(supportedParameters.joined(separator: ", "))")
            }
            if parameters[name] != nil { throw .invalidLocation("URL parameter '\(name)' is given twice") }
            parameters[name] = try decode(parts.count > 1 ? parts[1] : "", "\(name) parameter")
        }

        var tls = PostgresLedgerSettings.TLSMode.prefer
        if let mode = parameters["sslmode"] {
            guard let parsed = PostgresLedgerSettings.TLSMode(rawValue: mode) else {
                let modes = PostgresLedgerSettings.TLSMode.allCases.map(\.rawValue).joined(separator: ", ")
                throw .invalidLocation("sslmode must be one of \(modes)")
            }
            tls = parsed
        }

        let endpoint: PostgresLedgerSettings.Endpoint
        if let host = parameters["host"], host.hasPrefix("/") {
            if tls == .require { throw .invalidLocation("sslmode=require cannot be used with a Unix socket (host=\(host))") }
            endpoint = .unixSocket(directory: host, port: port)
        } else if let host = parameters["host"] ?? urlHost {
            if host.isEmpty { throw .invalidLocation("the host= parameter is empty") }
            endpoint = .tcp(host: host, port: port)
        } else {
            throw .invalidLocation("name the server: postgres://user@HOST:port/database, or ?host=/socket/directory for a Unix socket")
        }

        let password = try findPassword(file: parameters["password_file"], environment: environment, readFile: readFile)
        return PostgresLedgerSettings(endpoint: endpoint, user: user, database: database, password: password, tls: tls)
    }

    static let inlinePassword = LedgerError.invalidLocation(
        "the PostgreSQL URL contains a password, which would end up in job files and logs; remove it, write it "
        + "to a file only the coordinator can read and add ?password_file=/path/to/file, or set "
        + "\(LedgerLocation.passwordVariable) (or PGPASSWORD) in the coordinator's environment")

    /// `host`, `host:port`, `[ipv6]:port` or empty (a socket given by `?host=`). Nil host when empty.
    private static func hostAndPort(_ text: Substring) throws(LedgerError) -> (String?, Int) {
        var hostPart = text
        var portPart: Substring?
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]") else { throw .invalidLocation("unclosed '[' in the URL's host") }
            hostPart = text[text.index(after: text.startIndex)..<close]
            let after = text[text.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { throw .invalidLocation("unexpected text after the URL's ']'") }
                portPart = after.dropFirst()
            }
        } else if let colon = text.firstIndex(of: ":") {
            hostPart = text[..<colon]
            portPart = text[text.index(after: colon)...]
        }
        var port = 5432
        if let portPart {
            guard let value = Int(portPart), (1...65_535).contains(value) else {
                throw .invalidLocation("the port in the URL must be a number from 1 to 65535")
            }
            port = value
        }
        let host = try decode(hostPart, "host name")
        return (host.isEmpty ? nil : host, port)
    }

    private static func decode(_ text: Substring, _ what: String) throws(LedgerError) -> String {
        guard let decoded = String(text).removingPercentEncoding else {
            throw .invalidLocation("the \(what) in the URL has a malformed %-escape")
        }
        return decoded
    }

    /// The password file first (an explicit choice in the URL), then the environment.
    private static func findPassword(file: String?, environment: [String: String],
                                     readFile: (String) throws -> String) throws(LedgerError) -> String? {
        if let file {
            if file.isEmpty { throw .invalidLocation("the password_file= parameter is empty") }
            let contents: String
            do {
                contents = try readFile(file)
            } catch {
                let reason = String(describing: error).split(whereSeparator: \.isNewline).joined(separator: " ")
                throw .invalidLocation("cannot read the password file \(file): \(reason)")
            }
            // A trailing newline is an editor's, not the password's.
            var password = Substring(contents)
            while let last = password.last, last.isNewline { password.removeLast() }
            if password.isEmpty { throw .invalidLocation("the password file \(file) is empty") }
            if password.contains(where: \.isNewline) {
                throw .invalidLocation("the password file \(file) has more than one line; it must hold the password alone")
            }
            return String(password)
        }
        for variable in [LedgerLocation.passwordVariable, "PGPASSWORD"] {
            if let value = environment[variable], !value.isEmpty { return value }
        }
        return nil
    }
}
