import NIOCore
import NIOPosix

/// The coordinator's listening address tried before the job opens its ledger and writes its
/// first checkpoint: a port in use is one line naming what to do, not a bind error after
/// the job started.
enum ListenCheck {
    static func ensureAvailable(host: String, port: Int) async throws {
        guard port != 0 else { return }
        do {
            let channel = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
                .serverChannelOption(.socketOption(.so_reuseaddr), value: 1)
                .bind(host: host, port: port).get()
            try await channel.close()
        } catch {
            throw CLIError(explain(error, host: host, port: port) ?? "cannot listen on \(host):\(port): \(error)")
        }
    }

    /// A bind failure in an operator's words, when it is one of the usual ones.
    static func explain(_ error: any Error, host: String, port: Int) -> String? {
        guard let io = error as? IOError else {
            if "\(error)".contains("Address already in use") { return inUse(host, port) }
            return nil
        }
        switch io.errnoCode {
        case 98: return inUse(host, port)  // EADDRINUSE
        case 99: return "\(host) is not an address of this machine; set server.listen (or --listen) to one of its addresses, or 0.0.0.0"
        case 13: return "port \(port) needs privileges to listen on; use a port above 1023 (server.listen or --listen)"
        default: return nil
        }
    }

    private static func inUse(_ host: String, _ port: Int) -> String {
        "port \(port) on \(host) is already in use (another coordinator?); stop it, or choose another port with --listen HOST:PORT"
    }
}
