import Foundation

/// A deterministic pseudo-random generator (xoshiro256**, seeded through SplitMix64).
///
/// Everything that must be reproducible across processes and machines — parameter
/// initialisation, data order, dropout-free sampling — draws from this, never from
/// `SystemRandomNumberGenerator`, so that a worker can rebuild exactly the batch the
/// coordinator means and a resumed run continues the same sequence.
public struct SeededRandom: RandomNumberGenerator, Sendable, Codable, Equatable {
    @usableFromInline var state: (UInt64, UInt64, UInt64, UInt64)

    public init(seed: UInt64) {
        var sm = seed
        func splitMix(_ x: inout UInt64) -> UInt64 {
            x &+= 0x9E37_79B9_7F4A_7C15
            var z = x
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            return z ^ (z >> 31)
        }
        state = (splitMix(&sm), splitMix(&sm), splitMix(&sm), splitMix(&sm))
    }

    /// Derives an independent stream, e.g. one per epoch or per tensor, from a base seed.
    public init(seed: UInt64, stream: UInt64) {
        self.init(seed: seed ^ (stream &* 0xD1B5_4A32_D192_ED03) &+ stream)
    }

    @inlinable
    public mutating func next() -> UInt64 {
        let result = rotl(state.1 &* 5, 7) &* 9
        let t = state.1 << 17
        state.2 ^= state.0
        state.3 ^= state.1
        state.1 ^= state.2
        state.0 ^= state.3
        state.2 ^= t
        state.3 = rotl(state.3, 45)
        return result
    }

    @inlinable
    func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    /// Uniform in [0, 1) with 24 bits of mantissa.
    @inlinable
    public mutating func nextUnitFloat() -> Float {
        Float(next() >> 40) * (1.0 / 16_777_216.0)
    }

    /// Uniform integer in 0..<bound without modulo bias (Lemire's method).
    @inlinable
    public mutating func nextIndex(below bound: Int) -> Int {
        precondition(bound > 0, "bound must be positive")
        let b = UInt64(bound)
        var m = next().multipliedFullWidth(by: b)
        if m.low < b {
            let threshold = (0 &- b) % b
            while m.low < threshold { m = next().multipliedFullWidth(by: b) }
        }
        return Int(m.high)
    }

    /// Standard normal sample (Box–Muller; one of the pair is discarded for simplicity).
    @inlinable
    public mutating func nextGaussian() -> Float {
        var u1 = Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
        if u1 < 1e-300 { u1 = 1e-300 }
        let u2 = Double(next() >> 11) * (1.0 / 9_007_199_254_740_992.0)
        return Float((-2.0 * Foundation.log(u1)).squareRoot() * Foundation.cos(2.0 * Double.pi * u2))
    }

    /// A Fisher–Yates permutation of 0..<count, identical on every platform and Swift version
    /// (unlike `Array.shuffle(using:)`, whose algorithm is not specified).
    public mutating func permutation(count: Int) -> [Int] {
        var p = Array(0..<count)
        if count < 2 { return p }
        for i in stride(from: count - 1, to: 0, by: -1) {
            let j = nextIndex(below: i + 1)
            p.swapAt(i, j)
        }
        return p
    }

    // Codable through the four state words, so an optimizer/trainer checkpoint can resume the stream.
    enum CodingKeys: String, CodingKey { case s0, s1, s2, s3 }
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        state = (try c.decode(UInt64.self, forKey: .s0), try c.decode(UInt64.self, forKey: .s1),
                 try c.decode(UInt64.self, forKey: .s2), try c.decode(UInt64.self, forKey: .s3))
    }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(state.0, forKey: .s0); try c.encode(state.1, forKey: .s1)
        try c.encode(state.2, forKey: .s2); try c.encode(state.3, forKey: .s3)
    }
    public static func == (a: SeededRandom, b: SeededRandom) -> Bool {
        a.state.0 == b.state.0 && a.state.1 == b.state.1 && a.state.2 == b.state.2 && a.state.3 == b.state.3
    }
}

