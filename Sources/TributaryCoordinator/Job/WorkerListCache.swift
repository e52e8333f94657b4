import Foundation
import NIOConcurrencyHelpers
import TributaryProtocol

/// The worker list as last read from the ledger. Reading 10,000 workers per request let
/// four pollers cut training twentyfold; the copy is re-read at most every `maxAge`
/// seconds, or when a registration changed the count.
final class WorkerListCache: Sendable {
    static let maxAge: TimeInterval = 2
    private let state = NIOLockedValueBox<(list: [WorkerSummary], at: Date, registered: Int)?>(nil)

    func fresh(at now: Date, registered: Int) -> [WorkerSummary]? {
        state.withLockedValue { s in
            guard let s, s.registered == registered, now.timeIntervalSince(s.at) < Self.maxAge else { return nil }
            return s.list
        }
    }

    func store(_ list: [WorkerSummary], at now: Date, registered: Int) {
        state.withLockedValue { $0 = (list, now, registered) }
    }

    /// Forces the next read to go to the ledger (after a ban).
    func invalidate() { state.withLockedValue { $0 = nil } }
}
