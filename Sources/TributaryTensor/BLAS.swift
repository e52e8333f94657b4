import COpenBLAS

/// Row-major single-precision matrix products through OpenBLAS.
///
/// `C = alpha · op(A) · op(B) + beta · C`, with op(X) = X or Xᵀ. Leading dimensions let
/// callers multiply strided sub-matrices (one attention head inside a QKV buffer)
/// without copying, and transposes are passed to BLAS rather than materialised.
///
/// Threading: OpenBLAS itself runs single-threaded and a large product is split into
/// row (or column) panels, one per compute thread, on the project's own pool. OpenBLAS's
/// pool busy-waits (sched_yield) for a long time after each call, and on a 2-core
/// volunteer machine those spinning threads steal the cores from the elementwise loops
/// that follow; one pool for everything avoids that (measured: gpt-tiny 164 → 124 ms/step).
public enum BLAS {
    /// Runs once, before the first product, for programs that never call `ComputeThreads.set`.
    static let openBLASPinnedToOneThread: Void = openblas_set_num_threads(1)

    /// Below this many multiply-adds a product runs on the calling thread.
    public static let parallelThreshold = 1 << 21

    public static func sgemm(transA: Bool = false, transB: Bool = false,
                             m: Int, n: Int, k: Int,
                             alpha: Float = 1,
                             a: UnsafePointer<Float>, lda: Int,
                             b: UnsafePointer<Float>, ldb: Int,
                             beta: Float = 0,
                             c: UnsafeMutablePointer<Float>, ldc: Int) {
        _ = openBLASPinnedToOneThread
        let threads = ComputeThreads.count
        if threads <= 1 || m * n * k < parallelThreshold {
            sgemmSerial(transA: transA, transB: transB, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda,
                        b: b, ldb: ldb, beta: beta, c: c, ldc: ldc)
            return
        }
        if m >= n || m >= 16 * threads {
            // Row panels of C: rows of op(A).
            let step = ((m + threads - 1) / threads + 7) / 8 * 8
            let panels = (m + step - 1) / step
            Parallel.runConcurrently(panels) { p in
                let r0 = p * step, rows = min(step, m - r0)
                sgemmSerial(transA: transA, transB: transB, m: rows, n: n, k: k, alpha: alpha,
                            a: transA ? a + r0 : a + r0 * lda, lda: lda, b: b, ldb: ldb,
                            beta: beta, c: c + r0 * ldc, ldc: ldc)
            }
        } else {
            // Column panels of C: columns of op(B).
            let step = ((n + threads - 1) / threads + 15) / 16 * 16
            let panels = (n + step - 1) / step
            Parallel.runConcurrently(panels) { p in
                let c0 = p * step, cols = min(step, n - c0)
                sgemmSerial(transA: transA, transB: transB, m: m, n: cols, k: k, alpha: alpha,
                            a: a, lda: lda, b: transB ? b + c0 * ldb : b + c0, ldb: ldb,
                            beta: beta, c: c + c0, ldc: ldc)
            }
        }
    }

    /// One OpenBLAS call on the calling thread (inside loops that are already parallel).
    @inlinable
    public static func sgemmSerial(transA: Bool = false, transB: Bool = false,
                             m: Int, n: Int, k: Int,
                             alpha: Float = 1,
                             a: UnsafePointer<Float>, lda: Int,
                             b: UnsafePointer<Float>, ldb: Int,
                             beta: Float = 0,
                             c: UnsafeMutablePointer<Float>, ldc: Int) {
        cblas_sgemm(CblasRowMajor,
                    transA ? CblasTrans : CblasNoTrans,
                    transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha,
                    a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }

    /// `y += alpha · x`.
    @inlinable
    public static func saxpy(_ n: Int, alpha: Float, x: UnsafePointer<Float>, y: UnsafeMutablePointer<Float>) {
        cblas_saxpy(Int32(n), alpha, x, 1, y, 1)
    }

    /// Σ x·y.
    @inlinable
    public static func sdot(_ n: Int, _ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>) -> Float {
        cblas_sdot(Int32(n), x, 1, y, 1)
    }
}
