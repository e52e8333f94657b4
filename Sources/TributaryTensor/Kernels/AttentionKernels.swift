/// Causal multi-head self-attention over a packed QKV buffer.
///
/// Layout: qkv is [B, T, 3C] with q, k, v stacked along the last dimension (GPT-2's
/// c_attn), head h occupying columns h·hs ..< (h+1)·hs of each. Heads are addressed as
/// strided sub-matrices (leading dimension 3C), so nothing is transposed or copied.
/// Rows are processed in blocks of `rowBlock`; a block of query rows only needs keys up
/// to its last row, so the masked upper triangle is never computed (about half of
/// QKᵀ and PV at long contexts). Independent (batch, head) pairs run in parallel, each
/// thread calling BLAS serially on its own small products.
public enum AttentionKernels {
    public static let rowBlock = 64

    /// Scratch floats `backward` needs per thread.
    public static func scratchPerThread(sequence t: Int) -> Int { t * t }

    /// out[B, T, C] = softmax(mask(Q·Kᵀ / √hs)) · V; probs[B, H, T, T] keeps the
    /// attention weights (zero above the diagonal) for backward.
    public static func forward(out: UnsafeMutablePointer<Float>, probs: UnsafeMutablePointer<Float>,
                               qkv: UnsafePointer<Float>, batch b: Int, sequence t: Int, heads h: Int, channels c: Int) {
        let hs = c / h
        let scale = 1 / Float(hs).squareRoot()
        do {
            Parallel.forRanges(b * h) { pairs in
                for pair in pairs {
                    let bi = pair / h, hi = pair % h
                    let q = qkv + bi * t * 3 * c + hi * hs
                    let k = q + c, v = q + 2 * c
                    let p = probs + pair * t * t
                    let y = out + bi * t * c + hi * hs
                    var r0 = 0
                    while r0 < t {
                        let r1 = min(t, r0 + rowBlock)
                        let rows = r1 - r0
                        BLAS.sgemmSerial(transB: true, m: rows, n: r1, k: hs, alpha: scale,
                                   a: q + r0 * 3 * c, lda: 3 * c, b: k, ldb: 3 * c, c: p + r0 * t, ldc: t)
                        for row in r0..<r1 {
                            let pr = p + row * t
                            _ = SoftmaxCrossEntropyKernels.softmaxInPlace(pr, row + 1)
                            // Zero the masked part up to the block edge; columns ≥ r1 are never read.
                            for j in (row + 1)..<max(row + 1, r1) { pr[j] = 0 }
                        }
                        BLAS.sgemmSerial(m: rows, n: hs, k: r1, a: p + r0 * t, lda: t, b: v, ldb: 3 * c,
                                   c: y + r0 * c, ldc: c)
                        r0 = r1
                    }
                }
            }
        }
    }

    /// dQKV[B, T, 3C] (overwritten) from dOut[B, T, C] and the saved probabilities.
    /// `scratch` holds `scratchPerThread(sequence:)` floats for each of `scratchThreads`.
    public static func backward(dQKV: UnsafeMutablePointer<Float>, dOut: UnsafePointer<Float>,
                                qkv: UnsafePointer<Float>, probs: UnsafePointer<Float>,
                                scratch: UnsafeMutablePointer<Float>, scratchThreads: Int,
                                batch b: Int, sequence t: Int, heads h: Int, channels c: Int) {
        let hs = c / h
        let scale = 1 / Float(hs).squareRoot()
        let threads = max(1, min(scratchThreads, ComputeThreads.count))
        do {
            Parallel.forThreadRanges(b * h, threads: threads) { thread, pairs in
                let ds = scratch + thread * t * t
                for pair in pairs {
                    let bi = pair / h, hi = pair % h
                    let q = qkv + bi * t * 3 * c + hi * hs
                    let k = q + c, v = q + 2 * c
                    let dq = dQKV + bi * t * 3 * c + hi * hs
                    let dk = dq + c, dv = dq + 2 * c
                    let p = probs + pair * t * t
                    let dy = dOut + bi * t * c + hi * hs
                    for row in 0..<t {
                        (dk + row * 3 * c).update(repeating: 0, count: hs)
                        (dv + row * 3 * c).update(repeating: 0, count: hs)
                    }
                    var r0 = 0
                    while r0 < t {
                        let r1 = min(t, r0 + rowBlock)
                        let rows = r1 - r0
                        // dP = dY · Vᵀ for this block of query rows.
                        BLAS.sgemmSerial(transB: true, m: rows, n: r1, k: hs, a: dy + r0 * c, lda: c,
                                   b: v, ldb: 3 * c, c: ds + r0 * t, ldc: t)
                        // dV += Pᵀ · dY.
                        BLAS.sgemmSerial(transA: true, m: r1, n: hs, k: rows, a: p + r0 * t, lda: t,
                                   b: dy + r0 * c, ldb: c, beta: 1, c: dv, ldc: 3 * c)
                        // Softmax backward, with the 1/√hs of the scores folded in.
                        for row in r0..<r1 {
                            let pr = p + row * t, dr = ds + row * t
                            SoftmaxCrossEntropyKernels.softmaxBackwardInPlace(probabilities: pr, gradient: dr, row + 1,
                                                                              scale: scale)
                            for j in (row + 1)..<max(row + 1, r1) { dr[j] = 0 }
                        }
                        // dQ = dS · K;  dK += dSᵀ · Q.
                        BLAS.sgemmSerial(m: rows, n: hs, k: r1, a: ds + r0 * t, lda: t, b: k, ldb: 3 * c,
                                   c: dq + r0 * 3 * c, ldc: 3 * c)
                        BLAS.sgemmSerial(transA: true, m: r1, n: hs, k: rows, a: ds + r0 * t, lda: t,
                                   b: q + r0 * 3 * c, ldb: 3 * c, beta: 1, c: dk, ldc: 3 * c)
                        r0 = r1
                    }
                }
            }
        }
    }
}
