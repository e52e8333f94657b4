import Foundation

/// What `tributary worker status` shows: the worker's state, the unit in hand and what this
/// run did. Served on the worker's control socket (`<data-dir>/control.sock`), never on the
/// network.
public struct WorkerControlStatus: Codable, Sendable, Equatable {
    public struct Session: Codable, Sendable, Equatable {
        public var units = 0
        public var samples = 0
        public var bytesUp = 0
        public var bytesDown = 0
        public var seconds = 0.0
        public init() {}
    }

    /// "computing", "paused", "machine in use" or "waiting for work".
    public var state: String
    /// Why the worker does not compute (empty when it may).
    public var holds: [String]
    public var unit: UnitProgress.Snapshot?
    public var coordinator: String
    public var session: Session

    public init(gate: ComputeGate, unit: UnitProgress.Snapshot?, coordinator: String, session: Session) {
        let reasons = gate.reasons
        if reasons.contains(where: { $0.hold == .paused }) {
            state = "paused"
        } else if !reasons.isEmpty {
            state = "machine in use"
        } else {
            state = unit == nil ? "waiting for work" : "computing"
        }
        holds = reasons.map(\.reason)
        self.unit = unit
        self.coordinator = coordinator
        self.session = session
    }
}
