/// Token + position embeddings (GPT-2's wte and wpe).
public enum EmbeddingKernels {
    /// out[b, t, :] = wte[tokens[b, t], :] + wpe[t, :]. Tokens must be in range (validated by the caller).
    public static func forward(out: UnsafeMutablePointer<Float>, tokens: UnsafePointer<Int32>,
                               wte: UnsafePointer<Float>, wpe: UnsafePointer<Float>,
                               batch b: Int, sequence t: Int, channels c: Int) {
        Parallel.forRanges(b * t, minPerThread: max(1, 16_384 / max(1, c))) { range in
            for n in range {
                let o = out + n * c
                let te = wte + Int(tokens[n]) * c
                let pe = wpe + (n % t) * c
                for i in 0..<c { o[i] = te[i] + pe[i] }
            }
        }
    }

    /// dwte[tokens[n]] += dOut[n]; dwpe[t] += dOut[n]. Serial: tokens repeat, so rows of
    /// dwte would race under a naive parallel split, and this is a small share of a step.
    public static func backward(dWTE: UnsafeMutablePointer<Float>, dWPE: UnsafeMutablePointer<Float>,
                                dOut: UnsafePointer<Float>, tokens: UnsafePointer<Int32>,
                                batch b: Int, sequence t: Int, channels c: Int) {
        for n in 0..<(b * t) {
            let d = dOut + n * c
            let te = dWTE + Int(tokens[n]) * c
            let pe = dWPE + (n % t) * c
            for i in 0..<c {
                te[i] += d[i]
                pe[i] += d[i]
            }
        }
    }
}
