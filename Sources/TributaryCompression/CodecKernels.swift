/// The conversions behind the fp16, bf16, int8-block and int4-block payloads (and top-k's value
/// sections). Every loop works on 8 lanes with SSE2-level integer and float operations, so it
/// vectorises on baseline x86-64; tails run the same lane formulas on a padded vector, so a
/// value converts to the same bits wherever it sits. Conversions never branch per element:
/// non-finite inputs or outputs are OR-ed into a flag and located on a slow path afterwards.
enum CodecKernels {
    // 1.5 · 2²³: adding it to a float of magnitude ≤ 2²² rounds to an integer (nearest, ties to
    // even, the FPU's default mode) and leaves that integer in the low mantissa bits, so
    // bits(y + magic) = 0x4B40_0000 + round(y) in two's complement.
    static let magic: Float = 12_582_912
    static let magicBits: UInt32 = 0x4B40_0000

    // MARK: Non-finite flags

    /// Bit 31 of the result is set in a lane whose binary32 bits are NaN or ±Inf.
    @inline(__always)
    static func nonFiniteFlag32(_ bits: SIMD8<UInt32>) -> SIMD8<UInt32> {
        (bits & 0x7FFF_FFFF) &+ 0x0080_0000
    }

    @inline(__always)
    static func anyFlag32(_ flags: SIMD8<UInt32>) -> Bool {
        (flags & 0x8000_0000) != SIMD8(repeating: 0)
    }

    /// Loads `count` < 8 words (any alignment) into the low lanes of a zeroed vector.
    @inline(__always)
    static func loadPartial32(_ source: UnsafeRawPointer, count: Int) -> SIMD8<UInt32> {
        var lanes = SIMD8<UInt32>(repeating: 0)
        for lane in 0..<count { lanes[lane] = source.loadUnaligned(fromByteOffset: lane &* 4, as: UInt32.self) }
        return lanes
    }

    @inline(__always)
    static func storePartial32(_ lanes: SIMD8<UInt32>, to target: UnsafeMutableRawPointer, count: Int) {
        for lane in 0..<count { target.storeBytes(of: lanes[lane], toByteOffset: lane &* 4, as: UInt32.self) }
    }

    // MARK: Byte order

    // Payload words are little-endian; these are identities on little-endian hosts.
    @inline(__always)
    static func littleEndian16(_ v: SIMD8<UInt16>) -> SIMD8<UInt16> {
        #if _endian(big)
        return (v &<< 8) | (v &>> 8)
        #else
        return v
        #endif
    }

    @inline(__always)
    static func loadFloatLE(_ source: UnsafeRawPointer, _ offset: Int) -> Float {
        Float(bitPattern: UInt32(littleEndian: source.loadUnaligned(fromByteOffset: offset, as: UInt32.self)))
    }

    @inline(__always)
    static func storeFloatLE(_ value: Float, _ target: UnsafeMutableRawPointer, _ offset: Int) {
        target.storeBytes(of: value.bitPattern.littleEndian, toByteOffset: offset, as: UInt32.self)
    }

    // MARK: Lane selection

    // SIMDMask's `replacing(with:where:)` is a lane loop that LLVM leaves scalar; these integer
    // masks stay in SSE2 registers.

    /// All ones in lanes where a < b, zero elsewhere; valid when every lane and b are below 2³¹.
    @inline(__always)
    static func lessThanMask(_ a: SIMD8<UInt32>, _ b: UInt32) -> SIMD8<UInt32> {
        SIMD8(repeating: 0) &- ((a &- SIMD8(repeating: b)) &>> 31)
    }

    @inline(__always)
    static func select(_ mask: SIMD8<UInt32>, _ yes: SIMD8<UInt32>, _ no: SIMD8<UInt32>) -> SIMD8<UInt32> {
        (yes & mask) | (no & ~mask)
    }

    // MARK: fp16

    /// binary32 bits → binary16 bits (in the low 16 bits of each lane): round to nearest even,
    /// magnitudes that would round past 65504 saturate to ±65504. Inputs must be finite.
    @inline(__always)
    static func fp16Bits(_ bits: SIMD8<UInt32>) -> SIMD8<UInt32> {
        let sign = (bits &>> 16) & 0x8000
        let magnitude = bits & 0x7FFF_FFFF
        // Normal halves: rebias the exponent (127 → 15) and round the 13 dropped mantissa bits.
        // A carry out of the mantissa correctly bumps the exponent.
        let odd = (magnitude &>> 13) & 1
        let normal = ((magnitude &+ 0x0FFF &+ odd) &>> 13) &- 0x1_C000
        // Below 2⁻¹⁴ halves are subnormal with step 2⁻²⁴; adding 0.5 makes the FPU round at exactly
        // that step, and the sum's low mantissa bits are the half's bits (up to 0x400 = 2⁻¹⁴).
        let shifted = unsafeBitCast(unsafeBitCast(magnitude, to: SIMD8<Float>.self) + SIMD8(repeating: 0.5),
                                    to: SIMD8<UInt32>.self)
        let half = select(lessThanMask(magnitude, 0x3880_0000), shifted &- 0x3F00_0000, normal)
        // 65520 = 65504 + half an ulp rounds (to even) to infinity; everything from there saturates.
        return select(lessThanMask(magnitude, 0x477F_F000), half, SIMD8(repeating: 0x7BFF)) | sign
    }

    /// binary16 bits (low 16 bits of each lane) → binary32 bits. Exact for every finite half.
    @inline(__always)
    static func fp16ToFloatBits(_ half: SIMD8<UInt32>) -> SIMD8<UInt32> {
        let sign = (half & 0x8000) &<< 16
        let magnitude = half & 0x7FFF
        let normal = (magnitude &<< 13) &+ 0x3800_0000
        // Subnormal m · 2⁻²⁴ = (0.5 + m · 2⁻²⁴) − 0.5, both steps exact.
        let subnormal = unsafeBitCast(unsafeBitCast(magnitude | 0x3F00_0000, to: SIMD8<Float>.self) - SIMD8(repeating: 0.5),
                                      to: SIMD8<UInt32>.self)
        return select(lessThanMask(magnitude, 0x0400), subnormal, normal) | sign
    }

    /// Bit 15 is set in a lane whose half has an all-ones exponent (NaN or ±Inf).
    @inline(__always)
    static func nonFiniteFlag16(_ half: SIMD8<UInt32>) -> SIMD8<UInt32> {
        (half & 0x7FFF) &+ 0x0400
    }

    /// Writes `count` halves (2·count bytes) for the floats at `source`; returns the index of the
    /// first non-finite input, in which case the output is incomplete.
    static func encodeFP16(_ source: UnsafePointer<Float>, count: Int, into target: UnsafeMutableRawPointer) -> Int? {
        let raw = UnsafeRawPointer(source)
        var flags = SIMD8<UInt32>(repeating: 0)
        var i = 0
        while i &+ 8 <= count {
            let bits = raw.loadUnaligned(fromByteOffset: i &* 4, as: SIMD8<UInt32>.self)
            flags |= nonFiniteFlag32(bits)
            let half = littleEndian16(SIMD8<UInt16>(truncatingIfNeeded: fp16Bits(bits)))
            target.storeBytes(of: half, toByteOffset: i &* 2, as: SIMD8<UInt16>.self)
            i &+= 8
        }
        if i < count {
            let bits = loadPartial32(raw + i &* 4, count: count &- i)
            flags |= nonFiniteFlag32(bits)
            let half = fp16Bits(bits)
            for lane in 0..<(count &- i) {
                target.storeBytes(of: UInt16(truncatingIfNeeded: half[lane]).littleEndian,
                                  toByteOffset: (i &+ lane) &* 2, as: UInt16.self)
            }
        }
        return anyFlag32(flags) ? FrameKernels.firstNonFinite(raw, count: count) : nil
    }

    /// Reads `count` halves at `source` into floats; returns the index of the first NaN/Inf half.
    static func decodeFP16(_ source: UnsafeRawPointer, count: Int, into target: UnsafeMutablePointer<Float>) -> Int? {
        let out = UnsafeMutableRawPointer(target)
        var flags = SIMD8<UInt32>(repeating: 0)
        var i = 0
        while i &+ 8 <= count {
            let half = SIMD8<UInt32>(truncatingIfNeeded: littleEndian16(source.loadUnaligned(fromByteOffset: i &* 2, as: SIMD8<UInt16>.self)))
            flags |= nonFiniteFlag16(half)
            out.storeBytes(of: fp16ToFloatBits(half), toByteOffset: i &* 4, as: SIMD8<UInt32>.self)
            i &+= 8
        }
        if i < count {
            var half = SIMD8<UInt32>(repeating: 0)
            for lane in 0..<(count &- i) {
                half[lane] = UInt32(UInt16(littleEndian: source.loadUnaligned(fromByteOffset: (i &+ lane) &* 2, as: UInt16.self)))
            }
            flags |= nonFiniteFlag16(half)
            storePartial32(fp16ToFloatBits(half), to: out + i &* 4, count: count &- i)
        }
        guard (flags & 0x8000) != SIMD8(repeating: 0) else { return nil }
        for j in 0..<count where UInt16(littleEndian: source.loadUnaligned(fromByteOffset: j &* 2, as: UInt16.self)) & 0x7C00 == 0x7C00 {
            return j
        }
        return nil
    }

    // MARK: bf16

    /// binary32 bits → bfloat16 bits: the upper half rounded to nearest even; values that would
    /// round to ±Inf saturate to ±0x7F7F (the largest finite bfloat16). Inputs must be finite.
    @inline(__always)
    static func bf16Bits(_ bits: SIMD8<UInt32>) -> SIMD8<UInt32> {
        let rounded = (bits &+ 0x7FFF &+ ((bits &>> 16) & 1)) &>> 16
        let saturated = ((bits &>> 16) & 0x8000) | 0x7F7F
        // Finite inputs round to at most 0x7F80 in magnitude, so "≥ 0x7F80" means "became ±Inf".
        return select(lessThanMask(rounded & 0x7FFF, 0x7F80), rounded, saturated)
    }

    static func encodeBF16(_ source: UnsafePointer<Float>, count: Int, into target: UnsafeMutableRawPointer) -> Int? {
        let raw = UnsafeRawPointer(source)
        var flags = SIMD8<UInt32>(repeating: 0)
        var i = 0
        while i &+ 8 <= count {
            let bits = raw.loadUnaligned(fromByteOffset: i &* 4, as: SIMD8<UInt32>.self)
            flags |= nonFiniteFlag32(bits)
            let half = littleEndian16(SIMD8<UInt16>(truncatingIfNeeded: bf16Bits(bits)))
            target.storeBytes(of: half, toByteOffset: i &* 2, as: SIMD8<UInt16>.self)
            i &+= 8
        }
        if i < count {
            let bits = loadPartial32(raw + i &* 4, count: count &- i)
            flags |= nonFiniteFlag32(bits)
            let half = bf16Bits(bits)
            for lane in 0..<(count &- i) {
                target.storeBytes(of: UInt16(truncatingIfNeeded: half[lane]).littleEndian,
                                  toByteOffset: (i &+ lane) &* 2, as: UInt16.self)
            }
        }
        return anyFlag32(flags) ? FrameKernels.firstNonFinite(raw, count: count) : nil
    }

    static func decodeBF16(_ source: UnsafeRawPointer, count: Int, into target: UnsafeMutablePointer<Float>) -> Int? {
        let out = UnsafeMutableRawPointer(target)
        var flags = SIMD8<UInt32>(repeating: 0)
        var i = 0
        while i &+ 8 <= count {
            let half = SIMD8<UInt32>(truncatingIfNeeded: littleEndian16(source.loadUnaligned(fromByteOffset: i &* 2, as: SIMD8<UInt16>.self)))
            flags |= (half & 0x7FFF) &+ 0x0080  // bit 15 iff the exponent is all ones
            out.storeBytes(of: half &<< 16, toByteOffset: i &* 4, as: SIMD8<UInt32>.self)
            i &+= 8
        }
        while i < count {
            let half = UInt32(UInt16(littleEndian: source.loadUnaligned(fromByteOffset: i &* 2, as: UInt16.self)))
            flags[0] |= (half & 0x7FFF) &+ 0x0080
            out.storeBytes(of: half &<< 16, toByteOffset: i &* 4, as: UInt32.self)
            i &+= 1
        }
        guard (flags & 0x8000) != SIMD8(repeating: 0) else { return nil }
        for j in 0..<count where UInt16(littleEndian: source.loadUnaligned(fromByteOffset: j &* 2, as: UInt16.self)) & 0x7F80 == 0x7F80 {
            return j
        }
        return nil
    }
}
