import Foundation
import Logging

/// A coordinator serving on an ephemeral loopback port inside this process: for
/// benchmarks and tests that drive the real HTTP surface without a second process.
public struct EmbeddedCoordinator: Sendable {
    public let job: TrainingJob
    public let port: Int
    public var url: String { "http://127.0.0.1:\(port)" }
    private let task: Task<Void, Error>
    private let shutdown: CoordinatorShutdown

    /// `port` 0 takes any free port (the url says which); a test restarting a coordinator
    /// gives the port the first one had.
    public static func start(_ config: JobConfig, logger: Logger, port wanted: Int = 0,
                             now: @escaping @Sendable () -> Date = { Date() }) async throws -> EmbeddedCoordinator {
        let job = try await TrainingJob.open(config: config, logger: logger, now: now)
        let server = CoordinatorServer(job: job, logger: logger)
        let shutdown = CoordinatorShutdown()
        let (ports, continuation) = AsyncStream<Int>.makeStream()
        let task = Task {
            try await server.run(host: "127.0.0.1", port: wanted, tls: nil, shutdown: shutdown) { continuation.yield($0) }
        }
        var port = 0
        for await p in ports { port = p; break }
        return EmbeddedCoordinator(job: job, port: port, task: task, shutdown: shutdown)
    }

    /// Graceful stop: the server drains, the job checkpoints, the ledger closes.
    public func stop() async {
        await shutdown.trigger()
        _ = try? await task.value
        await job.close()
    }
}
