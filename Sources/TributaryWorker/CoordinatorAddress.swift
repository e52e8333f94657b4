import Foundation

/// The coordinator's URL as a volunteer types it, reduced to its origin: every route is
/// under the origin, so a pasted status or dashboard URL (`…/v1/status`, `…/`) still works.
public struct CoordinatorAddress: Sendable, Equatable {
    /// `http(s)://host[:port]`, what requests are built on.
    public let origin: String
    /// The path, query or fragment that was dropped (nil when there was none), for one log line.
    public let ignored: String?

    public enum Refusal: Error, Equatable, CustomStringConvertible {
        case notHTTP(String)
        case noHost(String)
        case credentials

        public var description: String {
            switch self {
            case let .notHTTP(text):
                return "--coordinator must be an http:// or https:// URL such as http://host:8470 (got \(text.prefix(80).debugDescription))"
            case let .noHost(text): return "--coordinator has no host name: \(text.prefix(80).debugDescription)"
            case .credentials: return "--coordinator must not carry a user name or password; give the join token with --join-token"
            }
        }
    }

    public init(_ text: String) throws(Refusal) {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        guard let url = URLComponents(string: trimmed), let scheme = url.scheme?.lowercased(),
              scheme == "http" || scheme == "https" else { throw .notHTTP(trimmed) }
        guard let host = url.host, !host.isEmpty else { throw .noHost(trimmed) }
        guard url.user == nil, url.password == nil else { throw .credentials }
        let bracketed = host.contains(":") && !host.hasPrefix("[") ? "[\(host)]" : host
        origin = "\(scheme)://\(bracketed)" + (url.port.map { ":\($0)" } ?? "")
        var dropped = url.path == "/" ? "" : url.path
        if let query = url.query { dropped += "?" + query }
        if let fragment = url.fragment { dropped += "#" + fragment }
        ignored = dropped.isEmpty ? nil : dropped
    }
}
