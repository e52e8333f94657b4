import TributaryProtocol

/// The job's `aggregation.rule`: which `RoundAggregator` combines a round. Adding a rule is
/// a new aggregator class and a case here.
public enum AggregationRule: String, Codable, Sendable, CaseIterable {
    /// Σ wᵢgᵢ / Σ wᵢ: exact, and moved without bound by one hostile update (trusted clusters).
    case mean
    /// Centered clipping: the default for volunteers.
    case centeredClip = "centered_clip"
    case trimmedMean = "trimmed_mean"
    case median

    /// The aggregator for `layout` as the job's settings configure it.
    func makeAggregator(layout: ShardLayout, settings: JobConfig.Aggregation) throws -> any RoundAggregator {
        switch self {
        case .mean: return try WeightedMeanAggregator(layout: layout)
        case .centeredClip:
            return CenteredClipAggregator(layout: layout, iterations: settings.clipIterations,
                                          radiusFactor: settings.clipRadius)
        case .trimmedMean: return CoordinateWiseAggregator(rule: .trimmedMean(trim: settings.trim))
        case .median: return CoordinateWiseAggregator(rule: .median)
        }
    }
}
