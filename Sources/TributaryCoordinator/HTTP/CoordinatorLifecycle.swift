import Foundation
import Logging
import ServiceLifecycle

/// Stops a running coordinator gracefully from inside the process (tests, embedding).
public actor CoordinatorShutdown {
    private var group: ServiceGroup?
    private var requested = false

    public init() {}

    func attach(_ g: ServiceGroup) async {
        group = g
        if requested { await g.triggerGracefulShutdown() }
    }

    public func trigger() async {
        requested = true
        await group?.triggerGracefulShutdown()
    }
}

/// Expires leases, closes rounds whose deadline passed and retries what storage refused,
/// twice a second; ends the coordinator when the job failed.
struct JobTicker: Service {
    let job: TrainingJob
    let logger: Logger

    func run() async throws {
        while !Task.isShuttingDownGracefully && !Task.isCancelled {
            do {
                try await Task.sleep(for: .milliseconds(500))
            } catch {
                return
            }
            do { try await job.tick() } catch {
                logger.error("periodic job work failed", metadata: ["error": "\(error)"])
            }
            // A failed job ends the service group: the daemon exits non-zero, saying why.
            if let reason = await job.failureReason { throw JobError.jobFailed(reason) }
        }
    }
}
