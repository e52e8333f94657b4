import Foundation
import Logging
import TributaryCoordinator
import TributaryProtocol
import TributaryWorker

/// A whole job in this process, for the benchmarks that measure training: the embedded
/// coordinator on loopback and `workers` worker daemons (data in `directory`/w0, w1, …)
/// until the job is complete; the finished job's status.
enum InProcessJob {
    static func run(_ config: JobConfig, workers: Int, directory: String, label: String) async throws -> StatusReport {
        var logger = Logger(label: label)
        logger.logLevel = .warning
        let coordinator = try await EmbeddedCoordinator.start(config, logger: logger)
        do {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for i in 0..<workers {
                    let options = WorkerOptions(coordinator: coordinator.url, joinToken: config.auth.joinToken ?? "",
                                                name: "w\(i)", dataDirectory: "\(directory)/w\(i)")
                    let daemon = WorkerDaemon(options: options, logger: logger)
                    group.addTask { try await daemon.run() }
                }
                try await group.waitForAll()
            }
        } catch {
            await coordinator.stop()
            throw error
        }
        let status = coordinator.job.status()
        await coordinator.stop()
        return status
    }
}
