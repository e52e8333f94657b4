import COpenBLAS

/// Row-major single-precision matrix products through OpenBLAS.
///
/// `C = alpha · op(A) · op(B) + beta · C`, with op(X) = X or Xᵀ. Leading dimensions let
/// callers multiply strided sub-matrices (one attention head inside a QKV buffer)
/// without copying, and transposes are passed to BLAS rather than materialised.
public enum BLAS {
    @inlinable
    public static func sgemm(transA: Bool = false, transB: Bool = false,
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
