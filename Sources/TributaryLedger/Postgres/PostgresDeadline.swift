import Foundation
import NIOConcurrencyHelpers

/// Bounds one ledger call in time. Seen in tests: after the server closed every pooled
/// connection, a call could wait forever inside the pool (about once in ten runs). The call
/// runs in its own task and the caller gets `Expired` after `seconds`, whether or not the call
/// honours cancellation (it is cancelled, and finishes on its own).
enum PostgresDeadline {
    struct Expired: Error {}

    private struct State {
        var finished = false
        var tasks: [Task<Void, Never>] = []
    }

    static func run<T: Sendable>(seconds: Double, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
        let state = NIOLockedValueBox(State())
        return try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<T, any Error>) in
            @Sendable func finish(_ result: Result<T, any Error>) {
                let others: [Task<Void, Never>]? = state.withLockedValue { s in
                    guard !s.finished else { return nil }
                    s.finished = true
                    return s.tasks
                }
                guard let others else { return }
                continuation.resume(with: result)
                for task in others { task.cancel() }   // the timer, or the call that ran out of time
            }
            let call = Task {
                do { finish(.success(try await body())) } catch { finish(.failure(error)) }
            }
            let timer = Task {
                try? await Task.sleep(for: .milliseconds(Int(seconds * 1000)))
                if !Task.isCancelled { finish(.failure(Expired())) }
            }
            let alreadyDone = state.withLockedValue { s -> Bool in
                s.tasks = [call, timer]
                return s.finished
            }
            if alreadyDone { call.cancel(); timer.cancel() }
        }
    }
}
