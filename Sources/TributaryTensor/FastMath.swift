/// Vectorised transcendental functions for the hot loops (softmax, GELU).
///
/// glibc's scalar `expf`/`tanhf` cost a call per element and block auto-vectorisation;
/// these evaluate eight lanes at once with plain SIMD arithmetic. Relative error of
/// `exp` is below 2e-7 over the range used (about one fp32 ulp), so gradient checks and
/// training behave as with libm.
public enum FastMath {
    public typealias V = SIMD8<Float>

    @inlinable @inline(__always)
    public static func exp(_ x: V) -> V {
        // exp(x) = 2^n · exp(r), n = round(x / ln 2), r = x − n·ln 2, |r| ≤ ln2/2.
        // Explicit selects: SIMD's generic clamped() is not specialised and costs two calls.
        var clamped = x.replacing(with: V(repeating: -87.3), where: x .< V(repeating: -87.3))
        clamped = clamped.replacing(with: V(repeating: 88.3), where: clamped .> V(repeating: 88.3))
        let magic = V(repeating: 12_582_912.0) // 1.5 · 2^23: adding it rounds to an integer
        let t = clamped * V(repeating: 1.442_695_04) + magic
        let n = t - magic
        // Cody–Waite split of ln 2 keeps r accurate.
        var r = clamped - n * V(repeating: 0.693_145_751_953_125)
        r = r - n * V(repeating: 1.428_606_765_330_187_045e-06)
        // Degree-6 polynomial for exp(r) on [-ln2/2, ln2/2].
        var p = V(repeating: 1.0 / 720.0)
        p = p * r + V(repeating: 1.0 / 120.0)
        p = p * r + V(repeating: 1.0 / 24.0)
        p = p * r + V(repeating: 1.0 / 6.0)
        p = p * r + V(repeating: 0.5)
        p = p * r + V(repeating: 1.0)
        p = p * r + V(repeating: 1.0)
        // 2^n from the integer sitting in t's low mantissa bits.
        let nInt = SIMD8<Int32>(truncatingIfNeeded: t.bitPattern(as: Int32.self)) &- SIMD8<Int32>(repeating: 0x4B40_0000)
        let scaleBits = (nInt &+ SIMD8<Int32>(repeating: 127)) &<< SIMD8<Int32>(repeating: 23)
        return p * V(bitPattern: scaleBits)
    }

    @inlinable @inline(__always)
    public static func tanh(_ x: V) -> V {
        // tanh(x) = 1 − 2 / (exp(2x) + 1); saturates cleanly for large |x|.
        let e = exp(x + x)
        return V(repeating: 1) - V(repeating: 2) / (e + V(repeating: 1))
    }

    @inlinable @inline(__always)
    public static func exp(_ x: Float) -> Float { exp(V(repeating: x))[0] }

    @inlinable @inline(__always)
    public static func tanh(_ x: Float) -> Float { tanh(V(repeating: x))[0] }

    // Reductions with eight independent partial sums: the compiler may not reassociate
    // a scalar float accumulation, so `for i { s += x[i] }` would stay one lane wide.

    @inlinable
    public static func sum(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
        var acc = V(repeating: 0)
        var i = 0
        while i + 8 <= n { acc += load(x + i); i += 8 }
        var s = acc.sum()
        while i < n { s += x[i]; i += 1 }
        return s
    }

    @inlinable
    public static func dot(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, _ n: Int) -> Float {
        var acc = V(repeating: 0)
        var i = 0
        while i + 8 <= n { acc += load(x + i) * load(y + i); i += 8 }
        var s = acc.sum()
        while i < n { s += x[i] * y[i]; i += 1 }
        return s
    }

    /// Σ (x − c)², the centred second moment (LayerNorm's variance without cancellation).
    @inlinable
    public static func sumSquaredDeviations(_ x: UnsafePointer<Float>, _ n: Int, from c: Float) -> Float {
        let cv = V(repeating: c)
        var acc = V(repeating: 0)
        var i = 0
        while i + 8 <= n { let d = load(x + i) - cv; acc += d * d; i += 8 }
        var s = acc.sum()
        while i < n { let d = x[i] - c; s += d * d; i += 1 }
        return s
    }

    @inlinable
    public static func maximum(_ x: UnsafePointer<Float>, _ n: Int) -> Float {
        var acc = V(repeating: -.infinity)
        var i = 0
        while i + 8 <= n {
            let v = load(x + i)
            acc = acc.replacing(with: v, where: v .> acc)
            i += 8
        }
        var m = acc.max()
        while i < n { if x[i] > m { m = x[i] }; i += 1 }
        return m
    }

    /// Loads 8 floats (no alignment requirement).
    @inlinable @inline(__always)
    public static func load(_ p: UnsafePointer<Float>) -> V {
        UnsafeRawPointer(p).loadUnaligned(as: V.self)
    }

    @inlinable @inline(__always)
    public static func store(_ v: V, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: V.self)
    }
}

extension SIMD8 where Scalar == Float {
    @inlinable @inline(__always)
    func bitPattern(as: Int32.Type) -> SIMD8<Int32> {
        unsafeBitCast(self, to: SIMD8<Int32>.self)
    }
    @inlinable @inline(__always)
    init(bitPattern: SIMD8<Int32>) {
        self = unsafeBitCast(bitPattern, to: SIMD8<Float>.self)
    }
}
