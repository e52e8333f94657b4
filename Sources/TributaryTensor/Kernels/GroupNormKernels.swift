/// GroupNorm over NCHW images: each image's channels are cut into `groups` runs of
/// channels/groups consecutive channels, and each run — contiguous in memory — is
/// normalised on its own, then scaled and shifted per channel.
public enum GroupNormKernels {
    /// out = (x − mean) · rstd · weight[c] + bias[c]; mean and rstd saved per (image, group).
    public static func forward(out: UnsafeMutablePointer<Float>, mean: UnsafeMutablePointer<Float>,
                               rstd: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>,
                               weight: UnsafePointer<Float>, bias: UnsafePointer<Float>,
                               batch: Int, channels: Int, groups: Int, pixels: Int, epsilon: Float) {
        let perGroup = channels / groups, groupCount = perGroup * pixels
        Parallel.forRanges(batch * groups, minPerThread: max(1, 16_384 / max(1, groupCount))) { range in
            for item in range {
                let g = item % groups
                let x = input + item * groupCount
                // Channel sums in fp32 (vectorised), the group's total in double: a group
                // can hold tens of thousands of values.
                var total = 0.0
                for c in 0..<perGroup { total += Double(FastMath.sum(x + c * pixels, pixels)) }
                let m = Float(total / Double(groupCount))
                var squares = 0.0
                for c in 0..<perGroup { squares += Double(FastMath.sumSquaredDeviations(x + c * pixels, pixels, from: m)) }
                let s = Float(1 / (squares / Double(groupCount) + Double(epsilon)).squareRoot())
                mean[item] = m
                rstd[item] = s
                for c in 0..<perGroup {
                    let channel = g * perGroup + c
                    let scale = s * weight[channel], shift = bias[channel] - m * scale
                    let source = x + c * pixels, target = out + item * groupCount + c * pixels
                    for i in 0..<pixels { target[i] = source[i] * scale + shift }
                }
            }
        }
    }

    /// dInput = ∂L/∂x (overwritten, or added when `accumulateInput`); dWeight += Σ dOut·x̂ and
    /// dBias += Σ dOut per channel. (image, group) items are split across threads; each
    /// thread sums its weight/bias gradients in its own scratch, added at the end.
    public static func backward(dInput: UnsafeMutablePointer<Float>, dWeight: UnsafeMutablePointer<Float>,
                                dBias: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>,
                                input: UnsafePointer<Float>, weight: UnsafePointer<Float>,
                                mean: UnsafePointer<Float>, rstd: UnsafePointer<Float>,
                                batch: Int, channels: Int, groups: Int, pixels: Int, accumulateInput: Bool) {
        let perGroup = channels / groups, groupCount = perGroup * pixels, items = batch * groups
        let threads = max(1, min(ComputeThreads.count, items, items * groupCount / 16_384))
        withUnsafeTemporaryAllocation(of: Float.self, capacity: threads * 2 * channels) { scratch in
            guard let partial = scratch.baseAddress else { return }
            partial.initialize(repeating: 0, count: threads * 2 * channels)
            Parallel.forThreadRanges(items, threads: threads) { t, range in
                let dw = partial + t * 2 * channels
                let db = dw + channels
                for item in range {
                    let g = item % groups
                    let x = input + item * groupCount, dy = dOut + item * groupCount, dx = dInput + item * groupCount
                    let m = mean[item], s = rstd[item]
                    // Σ dy·w and Σ dy·w·x̂ over the group; per channel Σ dy and Σ dy·x̂.
                    var sumD: Float = 0, sumDN: Float = 0
                    for c in 0..<perGroup {
                        let channel = g * perGroup + c
                        let (dySum, dyXhatSum) = channelSums(x + c * pixels, dy + c * pixels, pixels, mean: m, rstd: s)
                        db[channel] += dySum
                        dw[channel] += dyXhatSum
                        sumD += dySum * weight[channel]
                        sumDN += dyXhatSum * weight[channel]
                    }
                    let meanD = sumD / Float(groupCount), meanDN = sumDN / Float(groupCount)
                    for c in 0..<perGroup {
                        let w = weight[g * perGroup + c]
                        let xc = x + c * pixels, dyc = dy + c * pixels, dxc = dx + c * pixels
                        if accumulateInput {
                            for i in 0..<pixels { dxc[i] += (dyc[i] * w - meanD - (xc[i] - m) * s * meanDN) * s }
                        } else {
                            for i in 0..<pixels { dxc[i] = (dyc[i] * w - meanD - (xc[i] - m) * s * meanDN) * s }
                        }
                    }
                }
            }
            for t in 0..<threads {
                let dw = partial + t * 2 * channels
                for c in 0..<channels {
                    dWeight[c] += dw[c]
                    dBias[c] += dw[channels + c]
                }
            }
        }
    }

    /// (Σ dy, Σ dy·x̂) over one channel's plane, eight lanes at a time.
    @inline(__always)
    static func channelSums(_ x: UnsafePointer<Float>, _ dy: UnsafePointer<Float>, _ n: Int,
                            mean m: Float, rstd s: Float) -> (Float, Float) {
        typealias V = FastMath.V
        let mv = V(repeating: m), sv = V(repeating: s)
        var accD = V(repeating: 0), accDN = V(repeating: 0)
        var i = 0
        while i + 8 <= n {
            let g = FastMath.load(dy + i)
            accD += g
            accDN += g * ((FastMath.load(x + i) - mv) * sv)
            i += 8
        }
        var sumD = accD.sum(), sumDN = accDN.sum()
        while i < n {
            sumD += dy[i]
            sumDN += dy[i] * (x[i] - m) * s
            i += 1
        }
        return (sumD, sumDN)
    }
}
