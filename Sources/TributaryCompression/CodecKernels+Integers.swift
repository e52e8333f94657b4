/// Scaled integers: the int8-block and int4-block payloads and top-k's int8 values.
extension CodecKernels {
    // MARK: Scaled integers (int8 / int4 blocks, top-k int8 values)

    /// The block's scale: fl(max|x| / levels), stepped one float down in the rare case where
    /// fl(levels · scale) would overflow (max|x| within a hair of Float.greatestFiniteMagnitude),
    /// so that every dequantised value is finite. Returns nil (and the first bad index) for
    /// non-finite input.
    @inline(__always)
    static func blockScale(_ source: UnsafePointer<Float>, count: Int, levels: Float) -> (scale: Float, firstNonFinite: Int?) {
        let raw = UnsafeRawPointer(source)
        // Magnitudes as integers: the same order as floats, and NaN sorts above Inf, so one
        // signed max (SSE2 compare + blend) finds both the max and any non-finite value.
        var best = SIMD8<Int32>(repeating: 0)
        var i = 0
        while i &+ 8 <= count {
            let bits = raw.loadUnaligned(fromByteOffset: i &* 4, as: SIMD8<Int32>.self) & 0x7FFF_FFFF
            best = pointwiseMax(best, bits)
            i &+= 8
        }
        var key = best.max()
        while i < count {
            key = max(key, raw.loadUnaligned(fromByteOffset: i &* 4, as: Int32.self) & 0x7FFF_FFFF)
            i &+= 1
        }
        if key >= 0x7F80_0000 { return (0, FrameKernels.firstNonFinite(raw, count: count)) }
        var scale = Float(bitPattern: UInt32(key)) / levels
        if !(scale * levels).isFinite { scale = scale.nextDown }
        return (scale, nil)
    }

    /// q = round(clamp(x / scale, ±limit)) as two's-complement bits in the low byte/nibble.
    @inline(__always)
    static func quantize(_ x: SIMD8<Float>, scale: SIMD8<Float>, limit: SIMD8<Float>) -> SIMD8<UInt32> {
        let y = (x / scale).clamped(lowerBound: -limit, upperBound: limit)
        return unsafeBitCast(y + SIMD8(repeating: magic), to: SIMD8<UInt32>.self)
    }

    /// Signed integers q (as 0x4B40_0000 + q bit patterns) → q · scale, with the non-finite flag.
    @inline(__always)
    static func dequantize(_ biased: SIMD8<UInt32>, scale: SIMD8<Float>, flags: inout SIMD8<UInt32>) -> SIMD8<Float> {
        let value = (unsafeBitCast(biased, to: SIMD8<Float>.self) - SIMD8(repeating: magic)) * scale
        flags |= nonFiniteFlag32(unsafeBitCast(value, to: SIMD8<UInt32>.self))
        return value
    }

    /// One int8 block: fp32 scale = max|x| / 127, then `count` bytes. Returns the first non-finite index.
    static func encodeInt8Block(_ source: UnsafePointer<Float>, count: Int, into target: UnsafeMutableRawPointer) -> Int? {
        let (scale, bad) = blockScale(source, count: count, levels: 127)
        if let bad { return bad }
        storeFloatLE(scale, target, 0)
        let out = target + 4
        guard scale != 0 else {
            out.initializeMemory(as: UInt8.self, repeating: 0, count: count)
            return nil
        }
        let raw = UnsafeRawPointer(source)
        let s = SIMD8<Float>(repeating: scale), limit = SIMD8<Float>(repeating: 127)
        var i = 0
        while i &+ 8 <= count {
            let q = quantize(raw.loadUnaligned(fromByteOffset: i &* 4, as: SIMD8<Float>.self), scale: s, limit: limit)
            out.storeBytes(of: SIMD8<UInt8>(truncatingIfNeeded: q), toByteOffset: i, as: SIMD8<UInt8>.self)
            i &+= 8
        }
        if i < count {
            let x = unsafeBitCast(loadPartial32(raw + i &* 4, count: count &- i), to: SIMD8<Float>.self)
            let q = quantize(x, scale: s, limit: limit)
            for lane in 0..<(count &- i) { out.storeBytes(of: UInt8(truncatingIfNeeded: q[lane]), toByteOffset: i &+ lane, as: UInt8.self) }
        }
        return nil
    }

    /// One int8 block (scale + `count` bytes) → floats. Returns the first non-finite output index.
    static func decodeInt8Block(_ source: UnsafeRawPointer, count: Int, into target: UnsafeMutablePointer<Float>) -> Int? {
        dequantizeInt8(source + 4, count: count, scale: loadFloatLE(source, 0), into: target)
    }

    /// `count` signed bytes · `scale` → floats. Returns the first non-finite output index.
    static func dequantizeInt8(_ bytes: UnsafeRawPointer, count: Int, scale: Float, into target: UnsafeMutablePointer<Float>) -> Int? {
        let s = SIMD8<Float>(repeating: scale)
        let out = UnsafeMutableRawPointer(target)
        var flags = SIMD8<UInt32>(repeating: 0)
        var i = 0
        while i &+ 8 <= count {
            let b = SIMD8<UInt32>(truncatingIfNeeded: bytes.loadUnaligned(fromByteOffset: i, as: SIMD8<UInt8>.self))
            // (b ^ 0x80) − 128 sign-extends the byte; folded into the magic bias.
            let value = dequantize((b ^ 0x80) &+ (magicBits &- 0x80), scale: s, flags: &flags)
            out.storeBytes(of: value, toByteOffset: i &* 4, as: SIMD8<Float>.self)
            i &+= 8
        }
        if i < count {
            var b = SIMD8<UInt32>(repeating: 0)
            for lane in 0..<(count &- i) { b[lane] = UInt32(bytes.load(fromByteOffset: i &+ lane, as: UInt8.self)) }
            var tailFlags = SIMD8<UInt32>(repeating: 0)
            let value = dequantize((b ^ 0x80) &+ (magicBits &- 0x80), scale: s, flags: &tailFlags)
            for lane in 0..<(count &- i) {
                target[i &+ lane] = value[lane]
                flags[0] |= tailFlags[lane]
            }
        }
        return anyFlag32(flags) ? FrameKernels.firstNonFinite(UnsafeRawPointer(target), count: count) : nil
    }

    /// One int4 block: fp32 scale = max|x| / 7, then ⌈count/2⌉ bytes, element 2j in the low nibble
    /// of byte j and 2j+1 in the high one (0 when count is odd).
    static func encodeInt4Block(_ source: UnsafePointer<Float>, count: Int, into target: UnsafeMutableRawPointer) -> Int? {
        let (scale, bad) = blockScale(source, count: count, levels: 7)
        if let bad { return bad }
        storeFloatLE(scale, target, 0)
        let out = target + 4
        guard scale != 0 else {
            out.initializeMemory(as: UInt8.self, repeating: 0, count: (count &+ 1) / 2)
            return nil
        }
        let raw = UnsafeRawPointer(source)
        let s = SIMD8<Float>(repeating: scale), limit = SIMD8<Float>(repeating: 7)
        var i = 0
        while i &+ 16 <= count {
            let a = quantize(raw.loadUnaligned(fromByteOffset: i &* 4, as: SIMD8<Float>.self), scale: s, limit: limit)
            let b = quantize(raw.loadUnaligned(fromByteOffset: (i &+ 8) &* 4, as: SIMD8<Float>.self), scale: s, limit: limit)
            let both = SIMD16<UInt32>(lowHalf: a, highHalf: b)
            let packed = (both.evenHalf & 0xF) | ((both.oddHalf & 0xF) &<< 4)
            out.storeBytes(of: SIMD8<UInt8>(truncatingIfNeeded: packed), toByteOffset: i / 2, as: SIMD8<UInt8>.self)
            i &+= 16
        }
        while i < count {
            let length = min(8, count &- i)
            let x = unsafeBitCast(loadPartial32(raw + i &* 4, count: length), to: SIMD8<Float>.self)
            var q = quantize(x, scale: s, limit: limit) & 0xF
            for lane in length..<8 { q[lane] = 0 }  // the padding nibble of an odd block is 0
            for pair in 0..<((length &+ 1) / 2) {
                out.storeBytes(of: UInt8(truncatingIfNeeded: q[2 &* pair] | q[2 &* pair &+ 1] &<< 4),
                               toByteOffset: (i / 2) &+ pair, as: UInt8.self)
            }
            i &+= length
        }
        return nil
    }

    /// One int4 block → floats. Returns the first non-finite output index.
    static func decodeInt4Block(_ source: UnsafeRawPointer, count: Int, into target: UnsafeMutablePointer<Float>) -> Int? {
        let s = SIMD8<Float>(repeating: loadFloatLE(source, 0))
        let bytes = source + 4
        let out = UnsafeMutableRawPointer(target)
        var flags = SIMD8<UInt32>(repeating: 0)
        // (n ^ 8) − 8 sign-extends a nibble; folded into the magic bias.
        let bias = SIMD8<UInt32>(repeating: magicBits &- 8)
        var i = 0
        while i &+ 16 <= count {
            let b = SIMD8<UInt32>(truncatingIfNeeded: bytes.loadUnaligned(fromByteOffset: i / 2, as: SIMD8<UInt8>.self))
            var value = SIMD16<Float>()
            value.evenHalf = dequantize(((b & 0xF) ^ 8) &+ bias, scale: s, flags: &flags)
            value.oddHalf = dequantize(((b &>> 4) ^ 8) &+ bias, scale: s, flags: &flags)
            out.storeBytes(of: value, toByteOffset: i &* 4, as: SIMD16<Float>.self)
            i &+= 16
        }
        while i < count {
            let length = min(8, count &- i)
            var nibbles = SIMD8<UInt32>(repeating: 0)
            for lane in 0..<length {
                let byte = UInt32(bytes.load(fromByteOffset: (i &+ lane) / 2, as: UInt8.self))
                nibbles[lane] = lane & 1 == 0 ? byte & 0xF : byte &>> 4
            }
            var tailFlags = SIMD8<UInt32>(repeating: 0)
            let value = dequantize((nibbles ^ 8) &+ bias, scale: s, flags: &tailFlags)
            for lane in 0..<length {
                target[i &+ lane] = value[lane]
                flags[0] |= tailFlags[lane]
            }
            i &+= length
        }
        return anyFlag32(flags) ? FrameKernels.firstNonFinite(UnsafeRawPointer(target), count: count) : nil
    }
}

/// Where each element of a dense codec's payload lies, and chunk-wise conversion over whole
/// blocks. Chunks of about 8 Ki elements keep a chunk's payload, floats and CRC in cache.
struct DenseLayout {
    let codec: TensorCodec
    /// Elements per block (int8/int4); 1 for fp16/bf16, whose elements stand alone.
    let block: Int
    /// Elements per chunk: whole blocks, at least one.
    let chunkElements: Int

    static let targetChunk = 8192

    /// nil for fp32 (which has its own copy path), top-k (not dense) and invalid parameters.
    init?(codec: TensorCodec, parameter: UInt32) {
        guard codec.isValid(parameter: parameter) else { return nil }
        switch codec {
        case .fp16, .bf16: self.init(known: codec, block: 1)
        case .int8Block, .int4Block: self.init(known: codec, block: Int(parameter))
        case .fp32, .topK, .lowRank: return nil
        }
    }

    /// A layout this build chose itself: fp16 or bf16 (block 1), or int8/int4 blocks of a size
    /// in `TensorCodec.blockSizes` (the low-rank codec's runs).
    init(known codec: TensorCodec, block: Int) {
        self.codec = codec
        self.block = block
        chunkElements = block * max(1, Self.targetChunk / block)
    }

    /// Payload bytes of one full block (halves: of one element).
    private var blockBytes: Int {
        switch codec {
        case .int8Block: return 4 + block
        case .int4Block: return 4 + (block + 1) / 2
        default: return 2
        }
    }

    func rawSize(elementCount n: Int) -> Int {
        codec.payloadSize(elementCount: n, parameter: codec == .fp16 || codec == .bf16 ? 0 : UInt32(block))
    }

    /// Payload offset of element `e`, which starts a block (or is `n`, giving the payload size).
    func rawOffset(ofElement e: Int, count n: Int) -> Int {
        e == n ? rawSize(elementCount: n) : (e / block) &* blockBytes
    }

    /// Converts elements [start, start + count) — whole blocks, or the final partial one — to
    /// their payload bytes at `target` (the payload offset of `start`). Returns the first
    /// non-finite input's index relative to `start`.
    func encode(_ source: UnsafePointer<Float>, count: Int, into target: UnsafeMutableRawPointer) -> Int? {
        switch codec {
        case .fp16: return CodecKernels.encodeFP16(source, count: count, into: target)
        case .bf16: return CodecKernels.encodeBF16(source, count: count, into: target)
        default:
            var done = 0
            var out = target
            while done < count {
                let length = min(block, count &- done)
                let bad = codec == .int8Block
                    ? CodecKernels.encodeInt8Block(source + done, count: length, into: out)
                    : CodecKernels.encodeInt4Block(source + done, count: length, into: out)
                if let bad { return done &+ bad }
                out += blockBytes
                done &+= length
            }
            return nil
        }
    }

    /// The inverse of `encode`: always writes all `count` floats; returns the first non-finite
    /// output's index relative to the chunk.
    func decode(_ source: UnsafeRawPointer, count: Int, into target: UnsafeMutablePointer<Float>) -> Int? {
        switch codec {
        case .fp16: return CodecKernels.decodeFP16(source, count: count, into: target)
        case .bf16: return CodecKernels.decodeBF16(source, count: count, into: target)
        default:
            var done = 0
            var input = source
            var firstBad: Int?
            while done < count {
                let length = min(block, count &- done)
                let bad = codec == .int8Block
                    ? CodecKernels.decodeInt8Block(input, count: length, into: target + done)
                    : CodecKernels.decodeInt4Block(input, count: length, into: target + done)
                if firstBad == nil, let bad { firstBad = done &+ bad }
                input += blockBytes
                done &+= length
            }
            return firstBad
        }
    }

    /// Calls `body(start, count, payloadOffset, payloadLength)` for each chunk in order.
    @inline(__always)
    func forEachChunk<E: Error>(count n: Int, _ body: (Int, Int, Int, Int) throws(E) -> Void) throws(E) {
        var start = 0
        while start < n {
            let length = min(chunkElements, n &- start)
            let offset = rawOffset(ofElement: start, count: n)
            let end = rawOffset(ofElement: start &+ length, count: n)
            try body(start, length, offset, end &- offset)
            start &+= length
        }
    }
}
