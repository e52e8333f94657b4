import Foundation

/// How a worker runs.
public struct WorkerOptions: Sendable {
    public var coordinator: String
    public var joinToken: String
    public var name: String?
    public var dataDirectory: String
    public var memoryBudgetBytes: Int?
    /// Stop after this many committed units (nil: run until stopped).
    public var maxUnits: Int?
    /// On SIGINT/SIGTERM, how long the current unit may take to finish before its lease is released.
    public var gracePeriod: Duration = .seconds(30)
    /// The waits after failed or refused requests, and between "no work" polls.
    public var retry = RetryPolicy()

    public init(coordinator: String, joinToken: String, name: String? = nil, dataDirectory: String,
                memoryBudgetBytes: Int? = nil, maxUnits: Int? = nil) {
        self.coordinator = coordinator
        self.joinToken = joinToken
        self.name = name
        self.dataDirectory = dataDirectory
        self.memoryBudgetBytes = memoryBudgetBytes
        self.maxUnits = maxUnits
    }
}

/// One line of progress, for whoever shows it.
public struct UnitReport: Sendable {
    public let unit: Int
    public let epoch: Int
    public let version: Int
    public let loss: Double
    public let samples: Int
    public let computeSeconds: Double
    public let totalSeconds: Double
    public let bytesUp: Int
    public let bytesDown: Int
    public let round: Int
    /// Times the unit's lease was renewed while it was worked on.
    public let renewals: Int
}

public enum WorkerError: Error, CustomStringConvertible {
    case fatal(String)
    public var description: String {
        switch self { case let .fatal(why): return why }
    }
}
