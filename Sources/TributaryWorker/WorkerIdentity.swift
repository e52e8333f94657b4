import Foundation

/// Who a worker is to its coordinator: what registration returned, kept in the data
/// directory as `identity.json` (`{"coordinator": URL, "workerId": …, "token": …}`,
/// readable by its user alone: the token is a secret).
public struct WorkerIdentity: Codable, Sendable, Equatable {
    public var coordinator: String
    public var workerId: String
    public var token: String

    public static let fileName = "identity.json"

    public init(coordinator: String, workerId: String, token: String) {
        self.coordinator = coordinator
        self.workerId = workerId
        self.token = token
    }

    public static func path(dataDirectory: String) -> String { "\(dataDirectory)/\(fileName)" }

    /// The identity a worker run with `dataDirectory` registered.
    public static func load(dataDirectory: String) throws(WorkerIdentityError) -> WorkerIdentity {
        let path = path(dataDirectory: dataDirectory)
        guard FileManager.default.fileExists(atPath: path) else { throw .missing }
        guard let data = FileManager.default.contents(atPath: path) else { throw .unreadable(path) }
        // An identity is three short strings; a large file is not one.
        guard data.count <= 64 << 10, let identity = try? JSONDecoder().decode(WorkerIdentity.self, from: data),
              !identity.coordinator.isEmpty, !identity.workerId.isEmpty, !identity.token.isEmpty else {
            throw .malformed(path)
        }
        return identity
    }
}

public enum WorkerIdentityError: Error, Equatable, CustomStringConvertible {
    /// No worker has registered with this data directory.
    case missing
    case unreadable(String)
    case malformed(String)

    public var description: String {
        switch self {
        case .missing:
            return "this data directory has no worker identity yet: run `tributary worker` with it first"
        case let .unreadable(path):
            return "cannot read \(path): check its permissions (it belongs to the user who ran the worker)"
        case let .malformed(path):
            return "\(path) is not a worker identity as `tributary worker` writes it"
        }
    }
}
