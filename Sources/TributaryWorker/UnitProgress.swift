import Foundation
import Synchronization

/// Where the unit in hand is, for `tributary worker status` and the worker's progress line:
/// a long unit (many micro-batches, or a local round's inner steps) otherwise says nothing
/// for minutes.
public final class UnitProgress: Sendable {
    public enum Phase: String, Sendable, Codable {
        case downloading, computing, uploading, committing
    }

    public struct Snapshot: Sendable, Codable, Equatable {
        public var unit: Int
        public var samples: Int
        public var phase: Phase
        /// Steps of the phase done and in all (micro-batches, or inner steps); 0 of 0 when
        /// the phase is not counted.
        public var done: Int
        public var total: Int
        /// What a step is: "micro-batch", "inner step".
        public var stepName: String?
        public var startedAt: Date

        /// "computing, micro-batch 3 of 8" and the like.
        public var phrase: String {
            guard total > 0, let stepName else { return phase.rawValue }
            return "\(phase.rawValue), \(stepName) \(min(done + 1, total)) of \(total)"
        }
    }

    private let state = Mutex<Snapshot?>(nil)

    public init() {}

    public var snapshot: Snapshot? { state.withLock { $0 } }

    func begin(unit: Int, samples: Int, at date: Date = Date()) {
        state.withLock {
            $0 = Snapshot(unit: unit, samples: samples, phase: .downloading, done: 0, total: 0, stepName: nil, startedAt: date)
        }
    }

    func enter(_ phase: Phase, steps: Int = 0, named stepName: String? = nil) {
        state.withLock {
            $0?.phase = phase
            $0?.done = 0
            $0?.total = steps
            $0?.stepName = stepName
        }
    }

    /// `done` of `total` steps of the compute are finished.
    func computing(_ done: Int, of total: Int, named stepName: String) {
        state.withLock {
            $0?.phase = .computing
            $0?.done = done
            $0?.total = total
            $0?.stepName = stepName
        }
    }

    /// One more step of the phase done.
    func step() {
        state.withLock { s in
            guard let done = s?.done, let total = s?.total, done < total else { return }
            s?.done = done + 1
        }
    }

    func end() { state.withLock { $0 = nil } }
}
