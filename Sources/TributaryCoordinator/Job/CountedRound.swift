/// The open round's counted updates, in the order the ledger recorded them. The round's
/// aggregator is fed from here when the round closes (and when recovery replays it), so an
/// update voided by replication before the close never reaches the gradient, and the order
/// of the sum is the ledger's order in both cases: the replayed model is bit for bit the
/// live one.
struct CountedRound {
    struct Entry {
        let leaseID: String
        let unit: Int
        let update: RoundUpdate
        let loss: Double
    }

    private(set) var entries: [Entry] = []

    var isEmpty: Bool { entries.isEmpty }
    var count: Int { entries.count }
    var samples: Int { entries.reduce(0) { $0 + $1.update.samples } }
    var losses: [Double] { entries.map(\.loss) }
    /// Σ loss·samples / Σ samples.
    var meanLoss: Double {
        let total = samples
        return total > 0 ? entries.reduce(0.0) { $0 + $1.loss * Double($1.update.samples) } / Double(total) : 0
    }

    mutating func append(leaseID: String, unit: Int, _ update: RoundUpdate, loss: Double) {
        entries.append(Entry(leaseID: leaseID, unit: unit, update: update, loss: loss))
    }

    /// Takes a counted update out of the round (it was voided); nil when it is not in it.
    @discardableResult
    mutating func remove(leaseID: String) -> Entry? {
        guard let i = entries.firstIndex(where: { $0.leaseID == leaseID }) else { return nil }
        return entries.remove(at: i)
    }

    func entry(leaseID: String) -> Entry? { entries.first { $0.leaseID == leaseID } }

    mutating func reset() { entries.removeAll(keepingCapacity: true) }

    /// The aggregator gets exactly this round's updates, in order.
    func feed(_ aggregator: any RoundAggregator) {
        aggregator.reset()
        // Cannot fail from input: every body passed the frame checks on arrival (or at replay).
        for e in entries { try? aggregator.add(e.update) }
    }
}
