/// A worker's record under validation by replication: how often its updates agreed with
/// another worker's computation of the same unit, and how often they did not.
public struct WorkerReputation: Sendable, Equatable {
    public var agreements = 0
    public var disagreements = 0
    /// Agreements since the last disagreement (BOINC's "consecutive valid results").
    public var consecutiveAgreements = 0
    /// The distinct workers it agreed with since the last disagreement (at most
    /// `partnerMemory`): colluders agree with each other only, so trust needs several.
    public var partners: Set<String> = []

    static let partnerMemory = 8

    public init(agreements: Int = 0, disagreements: Int = 0, consecutiveAgreements: Int = 0, partners: Set<String> = []) {
        self.agreements = agreements
        self.disagreements = disagreements
        self.consecutiveAgreements = consecutiveAgreements
        self.partners = partners
    }

    mutating func noteAgreement(with partners: [String]) {
        agreements += 1
        consecutiveAgreements += 1
        for p in partners where self.partners.count < Self.partnerMemory { self.partners.insert(p) }
    }

    /// In a dispute nobody decided: no verdict, but its run of agreements ends (else a worker
    /// that disputes every honest unit it checks still earns trust from its accomplice).
    mutating func noteUndecided() {
        consecutiveAgreements = 0
        partners = []
    }

    mutating func noteDisagreement() {
        disagreements += 1
        consecutiveAgreements = 0
        partners = []
    }

    /// Ledger metadata: `reputation:<worker id>` = "agreements,disagreements,consecutive[,p1|p2…]"
    /// (kept with the bans, which need no schema change either; worker ids hold no `,` or `|`).
    static let metaPrefix = "reputation:"

    var metaValue: String {
        let head = "\(agreements),\(disagreements),\(consecutiveAgreements)"
        return partners.isEmpty ? head : head + "," + partners.sorted().joined(separator: "|")
    }

    init?(metaValue: String) {
        let fields = metaValue.split(separator: ",", omittingEmptySubsequences: false)
        guard fields.count == 3 || fields.count == 4 else { return nil }
        let counts = fields.prefix(3).compactMap { Int($0) }
        guard counts.count == 3, counts.allSatisfy({ $0 >= 0 }) else { return nil }
        let partners = fields.count == 4 ? Set(fields[3].split(separator: "|").map(String.init).prefix(Self.partnerMemory)) : []
        self.init(agreements: counts[0], disagreements: counts[1], consecutiveAgreements: counts[2], partners: partners)
    }
}
