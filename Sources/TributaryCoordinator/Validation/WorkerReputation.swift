/// A worker's record under validation by replication: how often its updates agreed with
/// another worker's computation of the same unit, and how often they did not.
public struct WorkerReputation: Sendable, Equatable {
    public var agreements = 0
    public var disagreements = 0
    /// Agreements since the last disagreement (BOINC's "consecutive valid results").
    public var consecutiveAgreements = 0

    public init(agreements: Int = 0, disagreements: Int = 0, consecutiveAgreements: Int = 0) {
        self.agreements = agreements
        self.disagreements = disagreements
        self.consecutiveAgreements = consecutiveAgreements
    }

    mutating func noteAgreement() {
        agreements += 1
        consecutiveAgreements += 1
    }

    mutating func noteDisagreement() {
        disagreements += 1
        consecutiveAgreements = 0
    }

    /// Ledger metadata: `reputation:<worker id>` = "agreements,disagreements,consecutive"
    /// (kept with the bans, which need no schema change either).
    static let metaPrefix = "reputation:"

    var metaValue: String { "\(agreements),\(disagreements),\(consecutiveAgreements)" }

    init?(metaValue: String) {
        let parts = metaValue.split(separator: ",").compactMap { Int($0) }
        guard parts.count == 3, parts.allSatisfy({ $0 >= 0 }) else { return nil }
        self.init(agreements: parts[0], disagreements: parts[1], consecutiveAgreements: parts[2])
    }
}
