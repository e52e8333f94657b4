/// Sizes computed from a job's configuration, which a hostile or mistaken coordinator
/// controls: computed with overflow checks and refused as a `ModelError` past `limit`, so
/// validation never traps and everything after it can multiply validated sizes freely.
public enum CheckedSize {
    /// 2⁴⁰ elements (4 TiB of fp32): far past any model a volunteer can hold, far below
    /// where later products of these sizes (× batch, × 4 bytes) could overflow.
    public static let limit = 1 << 40
    /// At most this many layers (GPT blocks, MLP hidden layers): each is its own shard.
    public static let maximumLayers = 10_000

    /// `factors` multiplied, or `.invalidConfiguration` naming `what` when the product
    /// overflows or passes `limit` (factors are non-negative).
    public static func product(_ factors: Int..., what: String) throws(ModelError) -> Int {
        var result = 1
        for f in factors {
            let (p, overflow) = result.multipliedReportingOverflow(by: f)
            guard !overflow, p <= limit else { throw tooLarge(what) }
            result = p
        }
        return result
    }

    /// `terms` added, refused like `product`.
    public static func sum(_ terms: [Int], what: String) throws(ModelError) -> Int {
        var result = 0
        for t in terms {
            let (s, overflow) = result.addingReportingOverflow(t)
            guard !overflow, s <= limit else { throw tooLarge(what) }
            result = s
        }
        return result
    }

    /// Whether `count` items of `each` elements stay within `limit` (a unit of samples).
    public static func fits(_ count: Int, of each: Int) -> Bool {
        let (p, overflow) = count.multipliedReportingOverflow(by: each)
        return !overflow && p <= limit
    }

    static func tooLarge(_ what: String) -> ModelError {
        .invalidConfiguration("\(what) is absurdly large (over \(limit.formatted()) elements); refusing the model")
    }
}
