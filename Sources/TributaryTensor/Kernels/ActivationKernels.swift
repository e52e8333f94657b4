/// GELU (GPT-2's tanh approximation) and ReLU, forward and backward.
public enum ActivationKernels {
    @usableFromInline static let geluScale: Float = 0.797_884_560_802_865_4 // sqrt(2/π)
    @usableFromInline static let geluCubic: Float = 0.044_715

    /// Fused bias + GELU: pre[r, c] += bias[c] (kept for backward), out = gelu(pre).
    /// One pass instead of PyTorch's separate bias add and activation.
    public static func biasGELUForward(pre: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>,
                                       bias: UnsafePointer<Float>?, rows: Int, columns: Int) {
        Parallel.forRanges(rows, minPerThread: max(1, 8192 / max(1, columns))) { range in
            for r in range {
                let p = pre + r * columns
                let o = out + r * columns
                if let bias { for c in 0..<columns { p[c] += bias[c] } }
                geluRow(p, o, columns)
            }
        }
    }

    /// Fused bias + GELU that replaces the pre-activation by gelu′(pre + bias).
    /// Backward then needs one multiply per element instead of recomputing the tanh: the
    /// pre-activation itself is needed by nothing else (c_fc's backward reads its input,
    /// c_proj's reads the GELU output).
    public static func biasGELUForwardSavingDerivative(preToDerivative pre: UnsafeMutablePointer<Float>,
                                                       out: UnsafeMutablePointer<Float>,
                                                       bias: UnsafePointer<Float>?, rows: Int, columns: Int) {
        Parallel.forRanges(rows, minPerThread: max(1, 8192 / max(1, columns))) { range in
            typealias V = FastMath.V
            let half = V(repeating: 0.5), one = V(repeating: 1)
            let s = V(repeating: geluScale), k = V(repeating: geluCubic), k3 = V(repeating: 3 * geluCubic)
            for r in range {
                let p = pre + r * columns
                let o = out + r * columns
                if let bias { for c in 0..<columns { p[c] += bias[c] } }
                var i = 0
                while i + 8 <= columns {
                    let x = FastMath.load(p + i)
                    let x2 = x * x
                    let t = FastMath.tanh(s * (x + k * x2 * x))
                    let halfOnePlusT = half * (one + t)
                    FastMath.store(x * halfOnePlusT, o + i)
                    FastMath.store(halfOnePlusT + half * x * (one - t * t) * s * (one + k3 * x2), p + i)
                    i += 8
                }
                while i < columns {
                    let x = p[i]
                    let t = FastMath.tanh(geluScale * (x + geluCubic * x * x * x))
                    o[i] = 0.5 * x * (1 + t)
                    p[i] = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * geluScale * (1 + 3 * geluCubic * x * x)
                    i += 1
                }
            }
        }
    }

    @inlinable
    static func geluRow(_ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, _ n: Int) {
        typealias V = FastMath.V
        let half = V(repeating: 0.5), one = V(repeating: 1)
        let s = V(repeating: geluScale), k = V(repeating: geluCubic)
        var i = 0
        while i + 8 <= n {
            let v = FastMath.load(x + i)
            let t = FastMath.tanh(s * (v + k * v * v * v))
            FastMath.store(half * v * (one + t), y + i)
            i += 8
        }
        while i < n {
            let v = x[i]
            let t = FastMath.tanh(geluScale * (v + geluCubic * v * v * v))
            y[i] = 0.5 * v * (1 + t)
            i += 1
        }
    }

    /// dPre = dOut · gelu'(pre). `dPre` may alias `dOut`.
    public static func geluBackward(dPre: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>,
                                    pre: UnsafePointer<Float>, count: Int) {
        Parallel.forRanges(count, minPerThread: 16_384) { range in
            typealias V = FastMath.V
            let half = V(repeating: 0.5), one = V(repeating: 1)
            let s = V(repeating: geluScale), k = V(repeating: geluCubic), k3 = V(repeating: 3 * geluCubic)
            var i = range.lowerBound
            while i + 8 <= range.upperBound {
                let x = FastMath.load(pre + i)
                let x2 = x * x
                let t = FastMath.tanh(s * (x + k * x2 * x))
                let sech2 = one - t * t
                let grad = half * (one + t) + half * x * sech2 * s * (one + k3 * x2)
                FastMath.store(grad * FastMath.load(dOut + i), dPre + i)
                i += 8
            }
            while i < range.upperBound {
                let x = pre[i]
                let t = FastMath.tanh(geluScale * (x + geluCubic * x * x * x))
                let grad = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * geluScale * (1 + 3 * geluCubic * x * x)
                dPre[i] = grad * dOut[i]
                i += 1
            }
        }
    }

    /// Fused bias + ReLU: pre += bias (kept for backward), out = max(pre, 0).
    public static func biasReLUForward(pre: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>,
                                       bias: UnsafePointer<Float>?, rows: Int, columns: Int) {
        Parallel.forRanges(rows, minPerThread: max(1, 8192 / max(1, columns))) { range in
            for r in range {
                let p = pre + r * columns
                let o = out + r * columns
                if let bias { for c in 0..<columns { p[c] += bias[c] } }
                for c in 0..<columns { o[c] = p[c] > 0 ? p[c] : 0 }
            }
        }
    }

    /// dPre = dOut where pre > 0, else 0. `dPre` may alias `dOut`.
    public static func reluBackward(dPre: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>,
                                    pre: UnsafePointer<Float>, count: Int) {
        Parallel.forRanges(count, minPerThread: 32_768) { range in
            for i in range { dPre[i] = pre[i] > 0 ? dOut[i] : 0 }
        }
    }
}
