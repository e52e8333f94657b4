import Foundation
import Logging
import TributaryProtocol

/// Keeps a lease alive while its unit is worked on, and ends the unit's work when the
/// lease is lost. Leases are short (10 s by default) so that a worker that vanishes holds
/// its unit, and a sync round, only that long; a worker still at work renews every third
/// of the time left. A refused renewal (the lease expired, was released or handed on, or
/// the worker is unknown) cancels the unit at once: whatever it computed could only be
/// refused. A renewal that fails on the network is tried again at the next beat, until the
/// deadline and `HeldLease.margin` passed with none answered: then the lease is surely gone.
struct LeaseHeartbeat: Sendable {
    let lease: HeldLease
    /// A client with a short timeout: a renewal stuck on the network is retried, not awaited.
    let client: CoordinatorClient
    let token: String
    let logger: Logger

    private enum Outcome<T: Sendable>: Sendable {
        case beatEnded((any Error)?)
        case unit(Result<T, any Error>)
    }

    /// Runs `unit` while the lease is renewed beside it; the unit is cancelled (and this
    /// throws why, a `ClientError`) when the lease is lost before the unit finished.
    func keepingAlive<T: Sendable>(_ unit: @escaping @Sendable () async throws -> T) async throws -> T {
        let result = await withTaskGroup(of: Outcome<T>.self, returning: Result<T, any Error>.self) { group in
            group.addTask {
                do { try await beat(); return .beatEnded(nil) } catch { return .beatEnded(error) }
            }
            group.addTask {
                do { return .unit(.success(try await unit())) } catch { return .unit(.failure(error)) }
            }
            while let outcome = await group.next() {
                switch outcome {
                case .beatEnded(nil):
                    continue  // stopped while the unit commits: the commit's answer decides
                case let .beatEnded(error?):
                    group.cancelAll()
                    return .failure(error)
                case let .unit(.success(value)):
                    group.cancelAll()
                    return .success(value)
                case let .unit(.failure(error)):
                    // Failing because the heartbeat cancelled it: the heartbeat's reason is the one to report.
                    if lease.phase == .abandoned { continue }
                    group.cancelAll()
                    return .failure(error)
                }
            }
            return .failure(CancellationError())
        }
        return try result.get()
    }

    /// Renews until cancelled; returns quietly when the lease is lost while the unit commits.
    func beat() async throws {
        while true {
            try await Task.sleep(for: lease.nextBeat())
            do {
                let (renewal, date): (LeaseRenewal, Date?) = try await client.jsonReply(
                    .POST, Routes.renew(lease.id), token: token, timeout: lease.renewalTimeout(), rateLimitRetries: 0)
                guard renewal.leaseId == lease.id else {
                    throw ClientError.protocolViolation("the renewal of lease \(lease.id) answered for another lease")
                }
                lease.extend(to: renewal.deadline, coordinatorDate: date)
                logger.debug("lease renewed", metadata: [
                    "lease": "\(lease.id)", "left_ms": "\(Int(Backoff.seconds(lease.timeLeft()) * 1000))"])
            } catch let ClientError.refused(problem) where problem.code != .rateLimited {
                try await refused(problem)
                return
            } catch let error as ClientError {
                if Task.isCancelled { throw CancellationError() }
                guard lease.isPastDeadline() else {
                    logger.info("lease renewal failed; trying again", metadata: [
                        "lease": "\(lease.id)", "error": "\(LogSafe.escape(error.description))",
                        "left_ms": "\(Int(Backoff.seconds(lease.timeLeft()) * 1000))"])
                    continue
                }
                guard lease.abandon() else { return }
                logger.warning("lease passed its deadline with no renewal answered; the unit is abandoned",
                               metadata: ["lease": "\(lease.id)", "error": "\(LogSafe.escape(error.description))"])
                throw ClientError.transient("lease \(lease.id) passed its deadline with no renewal answered (\(error))")
            }
        }
    }

    /// A renewal was refused. Most refusals mean the lease has ended; the two that say it
    /// cannot be extended (its lifetime, or its sync round's deadline) leave it valid until
    /// its deadline, so the unit may still finish and commit in time.
    private func refused(_ problem: Problem) async throws {
        if problem.code == .leaseLifetimeExceeded || problem.code == .roundDeadlineReached {
            logger.info("lease cannot be renewed further; the unit must commit before its deadline", metadata: [
                "lease": "\(lease.id)", "reason": "\(problem.code.rawValue)",
                "left_ms": "\(Int(Backoff.seconds(lease.timeLeft()) * 1000))"])
            try await Task.sleep(for: max(.zero, lease.timeLeft() + HeldLease.margin))
        }
        guard lease.abandon() else { return }
        logger.warning("lease renewal refused; the unit is abandoned", metadata: [
            "lease": "\(lease.id)", "reason": "\(problem.code.rawValue)", "detail": "\(LogSafe.escape(problem.detail))"])
        throw ClientError.refused(problem)
    }
}
