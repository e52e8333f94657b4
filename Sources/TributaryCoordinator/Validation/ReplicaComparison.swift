import TributaryCompression
import TributaryProtocol
import TributaryTensor

/// One worker's result for a unit: the update as it arrived (encoded) and what it reported.
struct ReplicaResult: Sendable {
    let leaseID: String
    let workerID: String
    let bodies: [String: [UInt8]]
    let loss: Double
    let samples: Int
    let weight: Double
    let baseVersion: Int
}

/// How far two honest results for the same unit on the same version may differ.
///
/// Both workers compute the same gradient; what separates their updates is floating-point
/// order (relative 1e-6 on one CPU type, up to ~1e-3 across devices with reduced-precision
/// matrix units) and, for lossy codecs, each worker's quantisation error plus its
/// error-feedback residual, which holds what its earlier updates dropped. So the bound on
/// the relative distance ‖a − b‖ / max(‖a‖, ‖b‖) follows the job's codec: tight for the
/// dense codecs, loose for top-k and low rank, whose two honest encodings can keep
/// different coordinates. Norms must also agree within the same factor (a ×100 update is
/// close in direction only), and the reported losses, computed before any compression,
/// within `loss` relatively, whatever the codec.
public struct ReplicaTolerance: Sendable, Equatable {
    public var update: Double
    public var loss: Double

    public init(update: Double, loss: Double) {
        self.update = update
        self.loss = loss
    }

    /// The default for a job's codec (see the type's comment; Docs/OPERATOR.md has the table).
    public static func forCodec(_ kind: UpdateCodecSpec.Kind, loss: Double = 0.01) -> ReplicaTolerance {
        switch kind {
        case .fp32: return ReplicaTolerance(update: 0.01, loss: loss)
        case .fp16, .bf16: return ReplicaTolerance(update: 0.05, loss: loss)
        case .int8Block: return ReplicaTolerance(update: 0.15, loss: loss)
        case .int4Block: return ReplicaTolerance(update: 0.6, loss: loss)
        // Measured (ReplicaToleranceTests): honest top-k / low-rank replicas lie 0.7–1.15
        // apart and sign flips 1.48–1.78: a thin margin, so these codecs verify gross attacks only.
        case .topK, .lowRank: return ReplicaTolerance(update: 1.3, loss: loss)
        }
    }
}

/// Compares two results for one unit, decoding one shard at a time into two scratch buffers.
struct ReplicaComparison {
    struct Figures: Sendable, Equatable {
        /// ‖a − b‖ / max(‖a‖, ‖b‖) (0 when both are zero).
        var distance: Double
        /// max(‖a‖, ‖b‖) / min(‖a‖, ‖b‖) (infinite when exactly one is zero).
        var normRatio: Double
        /// |la − lb| / max(|la|, |lb|, 1e-6).
        var lossDifference: Double

        func agree(within t: ReplicaTolerance) -> Bool {
            distance <= t.update && normRatio <= 1 + t.update && lossDifference <= t.loss
        }
    }

    private var a: [Float] = []
    private var b: [Float] = []

    /// The figures of `x` against `y`; a body that does not decode (impossible after the
    /// checks on arrival) counts as infinitely far.
    mutating func compare(_ x: ReplicaResult, _ y: ReplicaResult, layout: ShardLayout) -> Figures {
        var xx = 0.0, yy = 0.0, dd = 0.0
        for shard in layout.shards {
            let n = shard.elementCount
            if a.count < n { a = [Float](repeating: 0, count: n) }
            if b.count < n { b = [Float](repeating: 0, count: n) }
            guard let sums = Self.shardSums(x.bodies[shard.name], y.bodies[shard.name], count: n, &a, &b) else {
                return Figures(distance: .infinity, normRatio: .infinity, lossDifference: .infinity)
            }
            xx += sums.xx
            yy += sums.yy
            dd += sums.dd
        }
        let nx = xx.squareRoot(), ny = yy.squareRoot()
        let larger = max(nx, ny), smaller = min(nx, ny)
        // Two all-zero updates are not two computations that agree: no gradient is zero.
        guard larger > 0 else { return Figures(distance: .infinity, normRatio: .infinity, lossDifference: .infinity) }
        let distance = dd.squareRoot() / larger
        let ratio = smaller > 0 ? larger / smaller : .infinity
        let loss = abs(x.loss - y.loss) / max(abs(x.loss), abs(y.loss), 1e-6)
        return Figures(distance: distance, normRatio: ratio, lossDifference: loss)
    }

    private static func shardSums(_ x: [UInt8]?, _ y: [UInt8]?, count n: Int, _ a: inout [Float], _ b: inout [Float])
        -> (xx: Double, yy: Double, dd: Double)? {
        guard let x, let y else { return nil }
        return a.withUnsafeMutableBufferPointer { pa -> (xx: Double, yy: Double, dd: Double)? in
            b.withUnsafeMutableBufferPointer { pb -> (xx: Double, yy: Double, dd: Double)? in
                guard let ba = pa.baseAddress, let bb = pb.baseAddress else { return nil }
                do {
                    try x.withUnsafeBytes { try TensorFrame.decode($0, expectedCount: n, into: UnsafeMutableBufferPointer(start: ba, count: n)) }
                    try y.withUnsafeBytes { try TensorFrame.decode($0, expectedCount: n, into: UnsafeMutableBufferPointer(start: bb, count: n)) }
                } catch { return nil }
                return (ElementwiseKernels.sumOfSquares(ba, count: n), ElementwiseKernels.sumOfSquares(bb, count: n),
                        ElementwiseKernels.squaredDistance(ba, bb, count: n))
            }
        }
    }
}
