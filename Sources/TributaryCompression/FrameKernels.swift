import CZlib

/// The memory-speed passes over payloads: CRC-32, the finiteness scan, copies and the
/// accumulate. Work runs in 16 KiB chunks so that the CRC, the copy and the scan of a chunk
/// hit cache instead of streaming the whole tensor from memory two or three times.
enum FrameKernels {
    static let chunkElements = 4096

    /// zlib's CRC-32 (IEEE 802.3, reflected, init and xor-out 0xFFFFFFFF), continued from `crc`.
    static func checksum(_ crc: UInt32, _ bytes: UnsafeRawPointer, count: Int) -> UInt32 {
        guard count > 0 else { return crc }
        let result = crc32_z(UInt(crc), bytes.assumingMemoryBound(to: UInt8.self), count)
        return UInt32(truncatingIfNeeded: result)
    }

    static func checksum(_ bytes: UnsafeRawBufferPointer) -> UInt32 {
        guard let base = bytes.baseAddress else { return 0 }
        return checksum(0, base, count: bytes.count)
    }

    /// Index of the first NaN or ±Inf among `count` binary32 values in native byte order at
    /// `values` (any alignment), or nil.
    @inline(__always)
    static func firstNonFinite(_ values: UnsafeRawPointer, count: Int) -> Int? {
        // A value is non-finite iff its exponent bits are all ones, iff (bits & 0x7FFFFFFF) +
        // 0x00800000 carries into bit 31. OR-ing that over the chunk needs no branch per element
        // and only SSE2 integer ops, so it vectorises on baseline x86-64.
        let magnitude = SIMD8<UInt32>(repeating: 0x7FFF_FFFF)
        let carry = SIMD8<UInt32>(repeating: 0x0080_0000)
        var accumulated = SIMD8<UInt32>(repeating: 0)
        var i = 0
        while i &+ 8 <= count {
            let bits = values.loadUnaligned(fromByteOffset: i &* 4, as: SIMD8<UInt32>.self)
            accumulated |= (bits & magnitude) &+ carry
            i &+= 8
        }
        var tail: UInt32 = 0
        while i < count {
            tail |= (values.loadUnaligned(fromByteOffset: i &* 4, as: UInt32.self) & 0x7FFF_FFFF) &+ 0x0080_0000
            i &+= 1
        }
        accumulated |= SIMD8(repeating: tail)
        if (accumulated & SIMD8(repeating: 0x8000_0000)) == SIMD8(repeating: 0) { return nil }
        // Rare path: find which one.
        for j in 0..<count where values.loadUnaligned(fromByteOffset: j &* 4, as: UInt32.self) & 0x7F80_0000 == 0x7F80_0000 {
            return j
        }
        return nil
    }

    /// One pass over `count` binary32 values in native order at `source`: copies them to
    /// `destination` when given (non-overlapping), and returns the CRC-32 of their bytes and the
    /// index of the first non-finite value.
    static func copyChecksumScan(from source: UnsafeRawPointer, to destination: UnsafeMutableRawPointer?,
                                 count: Int) -> (checksum: UInt32, firstNonFinite: Int?) {
        var crc: UInt32 = 0
        var firstBad: Int?
        var start = 0
        while start < count {
            let length = min(chunkElements, count &- start)
            let chunk = source + start &* 4
            if let destination {
                (destination + start &* 4).copyMemory(from: chunk, byteCount: length &* 4)
            }
            crc = checksum(crc, chunk, count: length &* 4)
            if firstBad == nil, let bad = firstNonFinite(chunk, count: length) {
                firstBad = start &+ bad
            }
            start &+= length
        }
        return (crc, firstBad)
    }

    /// accumulator[i] += scale * values[i], as a separate multiply and add (no fused
    /// multiply-add), so results equal the scalar expression bit for bit.
    static func accumulate(_ values: UnsafePointer<Float>, scale: Float, into accumulator: UnsafeMutablePointer<Float>, count: Int) {
        let source = UnsafeRawPointer(values)
        let target = UnsafeMutableRawPointer(accumulator)
        let factor = SIMD8<Float>(repeating: scale)
        var i = 0
        while i &+ 8 <= count {
            let sum = target.loadUnaligned(fromByteOffset: i &* 4, as: SIMD8<Float>.self)
                + factor * source.loadUnaligned(fromByteOffset: i &* 4, as: SIMD8<Float>.self)
            target.storeBytes(of: sum, toByteOffset: i &* 4, as: SIMD8<Float>.self)
            i &+= 8
        }
        while i < count {
            accumulator[i] = accumulator[i] + scale * values[i]
            i &+= 1
        }
    }

    #if _endian(big)
    /// Swaps `count` 32-bit words in place (little-endian wire order <-> native order).
    static func byteSwap32(_ words: UnsafeMutableRawPointer, count: Int) {
        for i in 0..<count {
            let word = words.loadUnaligned(fromByteOffset: i &* 4, as: UInt32.self)
            words.storeBytes(of: word.byteSwapped, toByteOffset: i &* 4, as: UInt32.self)
        }
    }
    #endif
}

/// zlib's CRC-32 for callers outside the codecs (the coordinator's update log).
public enum CRC32 {
    /// The CRC-32 of `bytes`, continued from `crc` (0 to start).
    public static func checksum(_ bytes: UnsafeRawBufferPointer, continuing crc: UInt32 = 0) -> UInt32 {
        guard let base = bytes.baseAddress else { return crc }
        return FrameKernels.checksum(crc, base, count: bytes.count)
    }
}
