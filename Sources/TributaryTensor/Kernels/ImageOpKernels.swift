import Foundation

/// The parameter-free pieces of a diffusion U-Net: SiLU, 2× nearest upsampling, 2×2
/// average pooling (NCHW, each plane on its own) and the sinusoidal timestep embedding.
public enum ImageOpKernels {
    /// out = x · σ(x).
    public static func siluForward(out: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>, count: Int) {
        typealias V = FastMath.V
        Parallel.forRanges(count, minPerThread: 32_768) { range in
            var i = range.lowerBound
            while i + 8 <= range.upperBound {
                let x = FastMath.load(input + i)
                FastMath.store(x / (V(repeating: 1) + FastMath.exp(-x)), out + i)
                i += 8
            }
            while i < range.upperBound {
                out[i] = input[i] / (1 + FastMath.exp(-input[i]))
                i += 1
            }
        }
    }

    /// dInput = dOut · σ(x)·(1 + x·(1 − σ(x))), overwritten or added.
    public static func siluBackward(dInput: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>,
                                    input: UnsafePointer<Float>, count: Int, accumulate: Bool) {
        typealias V = FastMath.V
        Parallel.forRanges(count, minPerThread: 32_768) { range in
            var i = range.lowerBound
            let one = V(repeating: 1)
            while i + 8 <= range.upperBound {
                let x = FastMath.load(input + i)
                let sigma = one / (one + FastMath.exp(-x))
                var d = FastMath.load(dOut + i) * sigma * (one + x * (one - sigma))
                if accumulate { d += FastMath.load(dInput + i) }
                FastMath.store(d, dInput + i)
                i += 8
            }
            while i < range.upperBound {
                let sigma = 1 / (1 + FastMath.exp(-input[i]))
                let d = dOut[i] * sigma * (1 + input[i] * (1 - sigma))
                dInput[i] = accumulate ? dInput[i] + d : d
                i += 1
            }
        }
    }

    /// out[p, 2y + dy, 2x + dx] = input[p, y, x] for `planes` planes of height × width.
    public static func upsampleNearest2xForward(out: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>,
                                                planes: Int, height: Int, width: Int) {
        let outWidth = 2 * width
        Parallel.forRanges(planes * height, minPerThread: max(1, 8192 / max(1, width))) { rows in
            for r in rows {
                let source = input + r * width
                let first = out + 2 * r * outWidth
                for x in 0..<width {
                    first[2 * x] = source[x]
                    first[2 * x + 1] = source[x]
                }
                (first + outWidth).update(from: first, count: outWidth)
            }
        }
    }

    /// dInput[p, y, x] = Σ of the four dOut values it was copied to (overwritten or added).
    public static func upsampleNearest2xBackward(dInput: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>,
                                                 planes: Int, height: Int, width: Int, accumulate: Bool) {
        let outWidth = 2 * width
        Parallel.forRanges(planes * height, minPerThread: max(1, 8192 / max(1, width))) { rows in
            for r in rows {
                let top = dOut + 2 * r * outWidth, bottom = top + outWidth
                let target = dInput + r * width
                for x in 0..<width {
                    let d = top[2 * x] + top[2 * x + 1] + bottom[2 * x] + bottom[2 * x + 1]
                    target[x] = accumulate ? target[x] + d : d
                }
            }
        }
    }

    /// out[p, y, x] = mean of input[p, 2y..2y+1, 2x..2x+1]; out is ⌊height/2⌋ × ⌊width/2⌋, so
    /// an odd last row or column is dropped (PyTorch's avg_pool2d(2) without ceil_mode).
    public static func averagePool2xForward(out: UnsafeMutablePointer<Float>, input: UnsafePointer<Float>,
                                            planes: Int, height: Int, width: Int) {
        let outHeight = height / 2, outWidth = width / 2
        Parallel.forRanges(planes * outHeight, minPerThread: max(1, 8192 / max(1, width))) { rows in
            for r in rows {
                let plane = r / outHeight, y = r % outHeight
                let top = input + (plane * height + 2 * y) * width, bottom = top + width
                let target = out + r * outWidth
                for x in 0..<outWidth {
                    target[x] = 0.25 * (top[2 * x] + top[2 * x + 1] + bottom[2 * x] + bottom[2 * x + 1])
                }
            }
        }
    }

    /// dInput = dOut / 4 spread over each 2×2 window; a dropped odd row or column gets 0
    /// (or is left as it was when `accumulate`).
    public static func averagePool2xBackward(dInput: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>,
                                             planes: Int, height: Int, width: Int, accumulate: Bool) {
        let outHeight = height / 2, outWidth = width / 2
        Parallel.forRanges(planes, minPerThread: max(1, 8192 / max(1, height * width))) { range in
            for plane in range {
                let target = dInput + plane * height * width
                if !accumulate { target.update(repeating: 0, count: height * width) }
                for y in 0..<outHeight {
                    let source = dOut + (plane * outHeight + y) * outWidth
                    let top = target + 2 * y * width, bottom = top + width
                    for x in 0..<outWidth {
                        let d = 0.25 * source[x]
                        top[2 * x] += d
                        top[2 * x + 1] += d
                        bottom[2 * x] += d
                        bottom[2 * x + 1] += d
                    }
                }
            }
        }
    }

    /// out[n, ·] = [sin(t·f₀) … sin(t·f_{h−1}), cos(t·f₀) … cos(t·f_{h−1})] (cos first when
    /// `flipSinToCos`), h = dimension/2, f_i = maxPeriod^(−i / (h − frequencyShift)), and a
    /// zero last column when the dimension is odd — diffusers' `get_timestep_embedding`
    /// (shift 1 is DDPM's original; UNet2DModel uses shift 0 with cos first). Computed in
    /// double: t·f reaches 1000 radians, where fp32 arguments lose the phase.
    public static func timestepEmbedding(out: UnsafeMutablePointer<Float>, timesteps: UnsafePointer<Float>, count: Int,
                                         dimension: Int, maxPeriod: Double, frequencyShift: Double, flipSinToCos: Bool) {
        let half = dimension / 2
        let denominator = Double(half) - frequencyShift
        for n in 0..<count {
            let row = out + n * dimension
            let t = Double(timesteps[n])
            for i in 0..<half {
                let angle = t * Foundation.exp(-Foundation.log(maxPeriod) * Double(i) / denominator)
                let (first, second) = flipSinToCos ? (cos(angle), sin(angle)) : (sin(angle), cos(angle))
                row[i] = Float(first)
                row[half + i] = Float(second)
            }
            if dimension % 2 == 1 { row[dimension - 1] = 0 }
        }
    }
}
