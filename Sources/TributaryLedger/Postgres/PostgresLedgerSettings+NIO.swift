import Foundation
internal import PostgresNIO

extension PostgresLedgerSettings {
    /// For the one connection that checks and migrates the schema on open.
    func connectionConfiguration() throws(LedgerError) -> PostgresConnection.Configuration {
        switch endpoint {
        case let .tcp(host, port):
            let mode: PostgresConnection.Configuration.TLS
            do {
                switch tls {
                case .disable: mode = .disable
                case .prefer: mode = .prefer(try NIOSSLContext(configuration: .makeClientConfiguration()))
                case .require: mode = .require(try NIOSSLContext(configuration: .makeClientConfiguration()))
                }
            } catch {
                throw .cannotConnect(location: redacted,
                                     message: "cannot set up TLS: \(PostgresErrors.oneLine(String(describing: error)))")
            }
            return .init(host: host, port: port, username: user, password: password, database: database, tls: mode)
        case .unixSocket:
            return .init(unixSocketPath: socketPath ?? "", username: user, password: password, database: database)
        }
    }

    /// For the pool that serves every later call.
    func clientConfiguration() -> PostgresClient.Configuration {
        var configuration: PostgresClient.Configuration
        switch endpoint {
        case let .tcp(host, port):
            let mode: PostgresClient.Configuration.TLS = switch tls {
            case .disable: .disable
            case .prefer: .prefer(.makeClientConfiguration())
            case .require: .require(.makeClientConfiguration())
            }
            configuration = .init(host: host, port: port, username: user, password: password, database: database, tls: mode)
        case .unixSocket:
            configuration = .init(unixSocketPath: socketPath ?? "", username: user, password: password, database: database)
        }
        // The coordinator writes from a handful of tasks; a small pool is plenty and leaves the
        // server's connection slots to others.
        configuration.options.maximumConnections = 8
        return configuration
    }
}
