/// The open round's units that wait for replicas, and the verdict each new replica brings:
/// a value with no I/O, so the rules are testable alone.
///
/// One replica that agrees with the counted update confirms it. One that disagrees opens a
/// dispute, which a third worker decides: the side it agrees with is right. With no
/// majority the counted update is held back (voided, the unit computed again) and nobody's
/// reputation changes: three different answers say nothing about who lied.
struct UnitVerifications {
    struct Verification {
        let epoch: Int
        let unit: Int
        var counted: ReplicaResult
        var replicas: [ReplicaResult] = []
        /// Workers that computed the unit: none of them may compute its next replica.
        var involved: Set<String>
    }

    enum Verdict {
        /// The counted update stands; `agreeing` replicas confirm it, `refuted` ones lied.
        case confirmed(counted: ReplicaResult, agreeing: [ReplicaResult], refuted: [ReplicaResult])
        /// The counted update was wrong: `winner` takes its place, `agreeing` confirm the winner.
        case replaced(refuted: ReplicaResult, winner: ReplicaResult, agreeing: [ReplicaResult])
        /// Two results disagree: one more worker must decide.
        case disputed
        /// Three results, no two agreeing: the counted update is held back.
        case unresolved(counted: ReplicaResult)
    }

    private(set) var byUnit: [Int: Verification] = [:]

    var isEmpty: Bool { byUnit.isEmpty }

    mutating func open(epoch: Int, unit: Int, counted: ReplicaResult) {
        byUnit[unit] = Verification(epoch: epoch, unit: unit, counted: counted, involved: [counted.workerID])
    }

    func verification(unit: Int) -> Verification? { byUnit[unit] }

    /// What `replica` decides for `unit` (nil: no verification is open for it). Changes
    /// nothing: the caller records the verdict, then calls `settle`.
    func judge(_ replica: ReplicaResult, unit: Int, agree: (ReplicaResult, ReplicaResult) -> Bool) -> Verdict? {
        guard let v = byUnit[unit] else { return nil }
        guard let first = v.replicas.first else {
            return agree(v.counted, replica) ? .confirmed(counted: v.counted, agreeing: [replica], refuted: []) : .disputed
        }
        if agree(v.counted, replica) { return .confirmed(counted: v.counted, agreeing: [replica], refuted: [first]) }
        if agree(first, replica) { return .replaced(refuted: v.counted, winner: first, agreeing: [replica]) }
        return .unresolved(counted: v.counted)
    }

    /// Applies `verdict` for `replica`: a dispute keeps the unit open with the replica noted,
    /// every other verdict ends its verification.
    mutating func settle(_ verdict: Verdict, replica: ReplicaResult, unit: Int) {
        switch verdict {
        case .disputed:
            byUnit[unit]?.replicas.append(replica)
            byUnit[unit]?.involved.insert(replica.workerID)
        case .confirmed, .replaced, .unresolved:
            byUnit[unit] = nil
        }
    }

    /// Ends a unit's verification (its counted update was voided, or the round closes).
    mutating func remove(unit: Int) { byUnit[unit] = nil }

    mutating func reset() { byUnit = [:] }

    /// Units whose counted update is disputed and still undecided.
    var disputedUnits: [Int] { byUnit.values.filter { !$0.replicas.isEmpty }.map(\.unit).sorted() }
}
