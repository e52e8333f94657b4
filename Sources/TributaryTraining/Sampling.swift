import Foundation
import TributaryTensor

public enum Sampling {
    /// Draws a token from logits with temperature and top-k (greedy at temperature 0).
    public static func pick(logits: [Float], temperature: Float, topK: Int, rng: inout SeededRandom) -> Int {
        guard !logits.isEmpty else { return 0 }
        if temperature == 0 {
            return logits.indices.max { logits[$0] < logits[$1] } ?? 0
        }
        var candidates = Array(logits.indices)
        if topK > 0 && topK < logits.count {
            candidates.sort { logits[$0] > logits[$1] }
            candidates = Array(candidates.prefix(topK))
        }
        let mx = candidates.map { logits[$0] }.max() ?? 0
        let weights = candidates.map { Double(exp((logits[$0] - mx) / temperature)) }
        let total = weights.reduce(0, +)
        var u = Double(rng.nextUnitFloat()) * total
        for (i, w) in zip(candidates, weights) {
            u -= w
            if u <= 0 { return i }
        }
        return candidates.last ?? 0
    }
}
