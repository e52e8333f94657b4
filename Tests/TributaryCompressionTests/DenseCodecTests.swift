import Foundation
import XCTest
@testable import TributaryCompression

/// fp16, bf16, int8-block and int4-block: rounding, error bounds, layouts, sizes and refusals.
final class DenseCodecTests: XCTestCase {
    /// Values across the whole binary32 range, both signs, including subnormals and zeros.
    private func wideFloats(_ count: Int, seed: UInt64) -> [Float] {
        var rng = SplitMix64(seed: seed)
        return (0..<count).map { _ in
            var bits = UInt32.random(in: 0...UInt32.max, using: &rng)
            if bits & 0x7F80_0000 == 0x7F80_0000 { bits &= 0xBFFF_FFFF }  // no NaN/Inf
            return Float(bitPattern: bits)
        }
    }

    // MARK: fp16

    func testFP16MatchesIEEEHalfConversionAndSaturates() throws {
        // Swift's Float16(x) is an independent round-to-nearest-even conversion; ours must give the
        // same bits everywhere it is finite, and ±65504 where it overflows.
        var values = wideFloats(20_000, seed: 1)
        values += (0..<20_000).map { i in Float(sin(Double(i))) * Float(1 << (i % 40)) / 65536 }  // the half range
        values += [65504, 65519.996, 65520, -65520, 1e6, -.greatestFiniteMagnitude, 0x1p-25, 0x1.8p-24, -0x1p-26, -0.0, 0]
        for level in [nil, 3] as [Int?] {
            let body = try encodeFrame(values, codec: .fp16, zstdLevel: level)
            XCTAssertEqual(body[5], 1)
            XCTAssertLessThanOrEqual(body.count, TensorFrame.maximumBodySize(elementCount: values.count, codec: .fp16, codecParameter: 0))
            let payload = try codecPayload(body, rawSize: 2 * values.count)
            XCTAssertEqual(payload.count, 2 * values.count)
            for (i, x) in values.enumerated() {
                let got = UInt16(payload[2 * i]) | UInt16(payload[2 * i + 1]) << 8
                let reference = Float16(x)
                let expected = reference.isFinite ? reference.bitPattern : (x < 0 ? 0xFBFF : 0x7BFF)
                if got != expected {
                    XCTFail("x = \(x) (0x\(String(x.bitPattern, radix: 16))): got 0x\(String(got, radix: 16)), expected 0x\(String(expected, radix: 16))")
                    break
                }
            }
            let decoded = try decodeFrame(body, expectedCount: values.count)
            assertBitwiseEqual(decoded, values.map { x in Float16(x).isFinite ? Float(Float16(x)) : (x < 0 ? -65504 : 65504) })
        }
    }

    func testFP16ErrorBoundsAndExactValues() throws {
        // Normal range: relative error ≤ 2⁻¹¹; subnormal range: absolute error ≤ 2⁻²⁵.
        var rng = SplitMix64(seed: 9)
        let normal = (0..<50_000).map { _ in
            Float(Double.random(in: 1..<2, using: &rng) * pow(2, Double(Int.random(in: -14...15, using: &rng)))) * (Bool.random(using: &rng) ? 1 : -1)
        }.filter { abs($0) <= 65504 }
        let decoded = try decodeFrame(try encodeFrame(normal, codec: .fp16, zstdLevel: nil), expectedCount: normal.count)
        var worst = 0.0
        for (x, y) in zip(normal, decoded) { worst = max(worst, abs(Double(y) - Double(x)) / abs(Double(x))) }
        XCTAssertLessThanOrEqual(worst, 0x1p-11)
        XCTAssertGreaterThan(worst, 0x1p-12, "the bound is nearly reached, so the test would notice a cruder rounding")

        let tiny = (0..<10_000).map { _ in Float.random(in: -0x1p-14...0x1p-14, using: &rng) }
        let tinyDecoded = try decodeFrame(try encodeFrame(tiny, codec: .fp16, zstdLevel: 3), expectedCount: tiny.count)
        for (x, y) in zip(tiny, tinyDecoded) { XCTAssertLessThanOrEqual(abs(Double(y) - Double(x)), 0x1p-25) }

        // Every one of the 63,488 finite halves survives exactly.
        let halves = (0...UInt16.max).map { Float16(bitPattern: $0) }.filter { $0.isFinite }.map { Float($0) }
        XCTAssertEqual(halves.count, 63_488)
        assertBitwiseEqual(try decodeFrame(try encodeFrame(halves, codec: .fp16, zstdLevel: nil), expectedCount: halves.count), halves)
    }

    // MARK: bf16

    /// An independent bfloat16 rounding: compare the dropped half with 0x8000.
    private func referenceBF16(_ x: Float) -> UInt16 {
        let bits = x.bitPattern
        var upper = bits >> 16
        let lower = bits & 0xFFFF
        if lower > 0x8000 || (lower == 0x8000 && upper & 1 == 1) { upper += 1 }
        if upper & 0x7FFF == 0x7F80 { upper = (upper & 0x8000) | 0x7F7F }
        return UInt16(upper)
    }

    func testBF16RoundsToNearestEvenWithinTwoToTheMinusEight() throws {
        var values = wideFloats(30_000, seed: 2) + randomFloats(20_000, seed: 3)
        values += [1 + 0x1p-8, 1 + 0x1.8p-7, -(1 + 0x1p-8), Float(bitPattern: 0x7F7F_FFFF), -Float(bitPattern: 0x7F7F_8000),
                   Float(bitPattern: 0x7F7F_7FFF), .leastNonzeroMagnitude, -0.0]
        let body = try encodeFrame(values, codec: .bf16, zstdLevel: nil)
        XCTAssertEqual(body.count, 32 + 2 * values.count)
        let payload = Array(body[32...])
        for (i, x) in values.enumerated() {
            XCTAssertEqual(UInt16(payload[2 * i]) | UInt16(payload[2 * i + 1]) << 8, referenceBF16(x), "x = \(x)")
        }
        let decoded = try decodeFrame(body, expectedCount: values.count)
        var worst = 0.0
        for (x, y) in zip(values, decoded) where x.isNormal && abs(x) < 0x1p127 {
            worst = max(worst, abs(Double(y) - Double(x)) / abs(Double(x)))
        }
        XCTAssertLessThanOrEqual(worst, 0x1p-8)
        XCTAssertGreaterThan(worst, 0x1p-9)
        // Ties go to even; overflow saturates at ±(2 − 2⁻⁷)·2¹²⁷.
        let n = values.count
        XCTAssertEqual(decoded[n - 8], 1)
        XCTAssertEqual(decoded[n - 7], 1 + 0x1p-6)
        XCTAssertEqual(decoded[n - 5].bitPattern, 0x7F7F_0000)
        XCTAssertEqual(decoded[n - 4].bitPattern, 0xFF7F_0000)
        XCTAssertEqual(decoded[n - 3].bitPattern, 0x7F7F_0000)
        XCTAssertEqual(decoded[n - 1].bitPattern, 0x8000_0000)
        // Values whose low 16 bits are zero are exact, in either container.
        let exact = wideFloats(5000, seed: 4).map { Float(bitPattern: $0.bitPattern & 0xFFFF_0000) }
        assertBitwiseEqual(try decodeFrame(try encodeFrame(exact, codec: .bf16, zstdLevel: 3), expectedCount: exact.count), exact)
    }

    // MARK: int8 / int4 blocks

    private func checkBlockErrors(_ values: [Float], codec: TensorCodec, block: Int, levels: Float,
                                  zstdLevel: Int?, file: StaticString = #filePath, line: UInt = #line) throws {
        let body = try encodeFrame(values, codec: codec, parameter: UInt32(block), zstdLevel: zstdLevel)
        let rawSize = codec.payloadSize(elementCount: values.count, parameter: UInt32(block))
        XCTAssertEqual(Array(body[28..<32]), [UInt8(block & 0xFF), UInt8(block >> 8 & 0xFF), UInt8(block >> 16), 0], file: file, line: line)
        if zstdLevel == nil { XCTAssertEqual(body.count, 32 + rawSize, file: file, line: line) }
        XCTAssertLessThanOrEqual(body.count, TensorFrame.maximumBodySize(elementCount: values.count, codec: codec, codecParameter: UInt32(block)))
        let payload = try codecPayload(body, rawSize: rawSize)
        XCTAssertEqual(payload.count, rawSize, file: file, line: line)
        let decoded = try decodeFrame(body, expectedCount: values.count)
        let blockBytes = 4 + (codec == .int8Block ? block : (block + 1) / 2)
        var start = 0, blockIndex = 0
        while start < values.count {
            let end = min(start + block, values.count)
            let slice = values[start..<end]
            let absmax = slice.map { abs($0) }.max() ?? 0
            let scale = payload.withUnsafeBytes { Float(bitPattern: UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: blockIndex * blockBytes, as: UInt32.self))) }
            XCTAssertEqual(scale, absmax / levels, "block \(blockIndex) scale", file: file, line: line)
            for i in start..<end {
                let error = abs(Double(decoded[i]) - Double(values[i]))
                // ≤ scale/2, plus the rounding of x/scale and of q·scale (a few binary32 ulps).
                let bound = Double(scale) / 2 * (1 + 0x1p-20) + Double(values[i].ulp) + Double(decoded[i].ulp)
                if error > bound {
                    XCTFail("\(codec) element \(i): |\(decoded[i]) − \(values[i])| = \(error) > scale/2 = \(Double(scale) / 2)", file: file, line: line)
                    return
                }
            }
            // The largest magnitude maps to ±levels, so it comes back within rounding.
            if let peak = slice.indices.max(by: { abs(values[$0]) < abs(values[$1]) }), absmax > 0 {
                XCTAssertEqual(Double(decoded[peak]), Double(values[peak]), accuracy: Double(absmax) * 1e-6, file: file, line: line)
            }
            start = end
            blockIndex += 1
        }
    }

    func testInt8BlockErrorIsAtMostHalfAScale() throws {
        let gradients = gaussianFloats(10_000, seed: 5)
        for block in [16, 17, 256, 1000, 65536] {
            for level in [nil, 3] as [Int?] {
                try checkBlockErrors(gradients, codec: .int8Block, block: block, levels: 127, zstdLevel: level)
            }
        }
        try checkBlockErrors(randomFloats(3001, seed: 6), codec: .int8Block, block: 64, levels: 127, zstdLevel: nil)
        try checkBlockErrors(wideFloats(2000, seed: 7).map { $0 / 4 }, codec: .int8Block, block: 16, levels: 127, zstdLevel: nil)
    }

    func testInt4BlockErrorIsAtMostHalfAScale() throws {
        let gradients = gaussianFloats(10_000, seed: 8)
        for block in [16, 17, 33, 64, 4096] {
            for level in [nil, 3] as [Int?] {
                try checkBlockErrors(gradients, codec: .int4Block, block: block, levels: 7, zstdLevel: level)
            }
        }
        try checkBlockErrors(randomFloats(1001, seed: 9), codec: .int4Block, block: 19, levels: 7, zstdLevel: nil)
    }

    func testBlockLayoutsByteByByte() throws {
        // int8, B = 16, n = 20: block 0 has absmax 127 so scale = 1 and q = round-half-even(x);
        // block 1 (4 values) is all zero: scale 0, bytes 0.
        var values: [Float] = [127, 2.5, 3.5, -2.5, -3.5, 0.5, -0.5, 1.49, -127, 126.6, 0, -0.0, 64, -64, 100, 1]
        values += [0, 0, -0.0, 0]
        let body = try encodeFrame(values, codec: .int8Block, parameter: 16, zstdLevel: nil)
        XCTAssertEqual(body.count, 32 + (4 + 16) + (4 + 4))
        XCTAssertEqual(Array(body[32..<36]), [0, 0, 0x80, 0x3F], "scale 1.0")
        XCTAssertEqual(Array(body[36..<52]).map { Int8(bitPattern: $0) }, [127, 2, 4, -2, -4, 0, 0, 1, -127, 127, 0, 0, 64, -64, 100, 1])
        XCTAssertEqual(Array(body[52...]), [0, 0, 0, 0, 0, 0, 0, 0])
        XCTAssertEqual(Array(body[24..<28]), withUnsafeBytes(of: crc32(Array(body[32...])).littleEndian) { Array($0) })

        // int4, B = 16, n = 3: scale = 7/7 = 1, q = 7, −3, 2 → bytes 0xD7 (−3 = 0xD in the high nibble), 0x02.
        let int4 = try encodeFrame([7, -3, 2.4], codec: .int4Block, parameter: 16, zstdLevel: nil)
        XCTAssertEqual(Array(int4[32...]), [0, 0, 0x80, 0x3F, 0xD7, 0x02])
        assertBitwiseEqual(try decodeFrame(int4, expectedCount: 3), [7, -3, 2])

        // fp16 / bf16 of 1, −2: 00 3C 00 C0 and 80 3F 00 C0.
        XCTAssertEqual(Array(try encodeFrame([1, -2], codec: .fp16, zstdLevel: nil)[32...]), [0x00, 0x3C, 0x00, 0xC0])
        XCTAssertEqual(Array(try encodeFrame([1, -2], codec: .bf16, zstdLevel: nil)[32...]), [0x80, 0x3F, 0x00, 0xC0])
    }

    func testExtremeScalesStayFinite() throws {
        // absmax = Float.greatestFiniteMagnitude: fl(absmax/127)·127 would overflow, so the scale
        // steps one float down and the peak decodes to a finite value just below it.
        for (codec, levels) in [(TensorCodec.int8Block, Float(127)), (.int4Block, 7)] {
            let values: [Float] = [.greatestFiniteMagnitude, -.greatestFiniteMagnitude / 3] + [Float](repeating: 1, count: 14)
            let decoded = try decodeFrame(try encodeFrame(values, codec: codec, parameter: 16, zstdLevel: nil), expectedCount: 16)
            XCTAssertTrue(decoded.allSatisfy { $0.isFinite }, "\(codec)")
            XCTAssertEqual(Double(decoded[0]), Double(Float.greatestFiniteMagnitude), accuracy: Double(Float.greatestFiniteMagnitude) * 1e-6)
            XCTAssertEqual(decoded[2], 0, "\(codec): 1 is far below half a scale")
            _ = levels
        }
        // Tiny blocks: absmax below 127·2⁻¹⁴⁹/2 gives scale 0 and all zeros; subnormal scales work.
        let tiny = [Float](repeating: .leastNonzeroMagnitude, count: 16)
        XCTAssertEqual(try decodeFrame(try encodeFrame(tiny, codec: .int8Block, parameter: 16, zstdLevel: nil), expectedCount: 16),
                       [Float](repeating: 0, count: 16))
        let small = (0..<16).map { Float($0) * 0x1p-130 }
        let decoded = try decodeFrame(try encodeFrame(small, codec: .int8Block, parameter: 16, zstdLevel: nil), expectedCount: 16)
        XCTAssertTrue(decoded.allSatisfy { $0.isFinite })
        XCTAssertEqual(Double(decoded[15]), Double(small[15]), accuracy: 0x1p-137)
    }

    func testEncodeRefusesNonFiniteValuesAndBadParameters() {
        let specs: [(TensorCodec, UInt32?)] = [(.fp16, nil), (.bf16, nil), (.int8Block, 16), (.int8Block, 300), (.int4Block, 17)]
        for (codec, parameter) in specs {
            for (index, bad) in [(0, Float.nan), (17, .infinity), (8191, -.infinity), (8192, .nan), (9999, .signalingNaN)] {
                var values = randomFloats(10_000, seed: 3)
                values[index] = bad
                if index + 5 < values.count { values[index + 5] = .nan }  // only the first is reported
                for level in [nil, 3] as [Int?] {
                    XCTAssertThrowsError(try encodeFrame(values, codec: codec, parameter: parameter, zstdLevel: level)) {
                        XCTAssertEqual($0 as? FrameEncodingError, .nonFinite(index: index), "\(codec) \(index)")
                    }
                }
            }
        }
        for (codec, parameter) in [(TensorCodec.fp32, UInt32(1)), (.fp16, 16), (.int8Block, 15), (.int8Block, 65537), (.int4Block, 0), (.topK, 2)] {
            XCTAssertThrowsError(try encodeFrame([1, 2], codec: codec, parameter: parameter, zstdLevel: nil)) {
                XCTAssertEqual($0 as? FrameEncodingError, .invalidCodecParameter(codec: codec, parameter: parameter))
            }
        }
        XCTAssertThrowsError(try encodeFrame([1, 2], codec: .topK, zstdLevel: nil)) {
            XCTAssertEqual($0 as? FrameEncodingError, .sparseCodecNeedsIndices)
        }
        XCTAssertThrowsError(try encodeFrame([1, 2], codec: .int8Block, zstdLevel: 20)) {
            XCTAssertEqual($0 as? FrameEncodingError, .invalidZstdLevel(20))
        }
        // Defaults: int8 blocks of 256, int4 of 64.
        XCTAssertEqual(Array(try encodeFrame([1], codec: .int8Block, zstdLevel: nil)[28..<32]), [0, 1, 0, 0])
        XCTAssertEqual(Array(try encodeFrame([1], codec: .int4Block, zstdLevel: nil)[28..<32]), [64, 0, 0, 0])
    }

    func testSizesAndLimits() {
        XCTAssertEqual(TensorCodec.fp16.payloadSize(elementCount: 1000, parameter: 0), 2000)
        XCTAssertEqual(TensorCodec.bf16.payloadSize(elementCount: 7, parameter: 0), 14)
        XCTAssertEqual(TensorCodec.int8Block.payloadSize(elementCount: 1000, parameter: 16), 62 * 20 + 4 + 8)
        XCTAssertEqual(TensorCodec.int8Block.payloadSize(elementCount: 1024, parameter: 256), 1024 + 16)
        XCTAssertEqual(TensorCodec.int4Block.payloadSize(elementCount: 40, parameter: 17), 2 * (4 + 9) + 4 + 3)
        XCTAssertEqual(TensorCodec.int4Block.payloadSize(elementCount: 1, parameter: 64), 5)
        XCTAssertEqual(TensorCodec.int8Block.payloadSize(elementCount: 0, parameter: 64), 0)
        XCTAssertEqual(TensorCodec.topK.payloadSize(elementCount: 1000, parameter: 0), 3004)
        XCTAssertEqual(TensorCodec.topK.payloadSize(elementCount: 1000, parameter: 1), 2008)
        // Without a parameter: the worst valid one (block 16; for top-k the larger sub-codec).
        XCTAssertEqual(TensorCodec.int8Block.payloadSize(elementCount: 1000), 1252)
        XCTAssertEqual(TensorCodec.topK.payloadSize(elementCount: 2), 12)
        XCTAssertEqual(TensorCodec.topK.payloadSize(elementCount: 10), 34)
        XCTAssertEqual(TensorFrame.maximumBodySize(elementCount: 1000, codec: .fp16, codecParameter: 0), 32 + 2000 + 7 + 64)
        XCTAssertEqual(TensorFrame.maximumBodySize(elementCount: 1000, codec: .int8Block, codecParameter: 256), 32 + 1016 + 3 + 64)
        XCTAssertEqual(TensorFrame.maximumBodySize(elementCount: 1000, codec: .int8Block), 32 + 1252 + 4 + 64)
        XCTAssertEqual(TensorFrame.maximumBodySize(elementCount: 1000, codec: .topK, codecParameter: 0), 32 + 3004 + 11 + 64)
        XCTAssertEqual(TensorFrame.maximumBodySize(elementCount: 1000), TensorFrame.maximumBodySize(elementCount: 1000, codec: .fp32))
        XCTAssertEqual(TensorFrame.maximumBodySize(elementCount: 1), 32 + 10 + 64, "tiny tensors: top-k int8 (8 + 2n) is the largest")
        for codec in TensorCodec.allCases {
            // Sizes saturate instead of trapping; int4's payload (0.75 bytes a value) still fits an Int.
            XCTAssertEqual(TensorFrame.maximumBodySize(elementCount: Int.max, codec: codec),
                           codec == .int4Block ? 32 + Zstd.maximumCompressedSize(Int.max / 16 * 12 + 4 + 8) : Int.max, "\(codec)")
            XCTAssertEqual(codec.payloadSize(elementCount: 0, parameter: codec.defaultParameter), codec == .topK ? 4 : 0, "\(codec)")
        }
        XCTAssertEqual(TensorCodec.int8Block.payloadSize(elementCount: 100, parameter: 3), 100 + 4 * 7, "invalid parameter: worst case")
    }

    func testAccumulateEveryDenseCodec() throws {
        let count = 5003
        let values = gaussianFloats(count, seed: 12)
        let start = randomFloats(count, seed: 13)
        for (codec, parameter) in [(TensorCodec.fp16, UInt32(0)), (.bf16, 0), (.int8Block, 64), (.int8Block, 65536), (.int4Block, 33)] {
            for level in [nil, 3] as [Int?] {
                let body = try encodeFrame(values, codec: codec, parameter: parameter, zstdLevel: level)
                let decoded = try decodeFrame(body, expectedCount: count)
                var accumulator = start
                XCTAssertNil(accumulateError(body, expectedCount: count, scale: 0.75, into: &accumulator))
                assertBitwiseEqual(accumulator, (0..<count).map { start[$0] + 0.75 * decoded[$0] }, "\(codec) \(String(describing: level))")
            }
        }
        // Tiny tensors whose compressed payload does not fit the scratch (n + 4 > 4n) still work.
        for codec in [TensorCodec.int8Block, .int4Block] {
            let body = try encodeFrame([0.5], codec: codec, parameter: 16, zstdLevel: 3)
            var accumulator: [Float] = [1]
            XCTAssertNil(accumulateError(body, expectedCount: 1, scale: 1, into: &accumulator))
            XCTAssertEqual(accumulator, [1.5])
        }
    }

    func testDecodeAcceptsUnalignedBodies() throws {
        let values = gaussianFloats(1001, seed: 5)
        for (codec, parameter) in [(TensorCodec.fp16, UInt32(0)), (.bf16, 0), (.int8Block, 16), (.int4Block, 17)] {
            for level in [nil, 3] as [Int?] {
                let body = try encodeFrame(values, codec: codec, parameter: parameter, zstdLevel: level)
                let expected = try decodeFrame(body, expectedCount: values.count)
                let shifted = [0x77] + body
                var out = [Float](repeating: 0, count: values.count)
                try shifted.withUnsafeBytes { raw in
                    try out.withUnsafeMutableBufferPointer {
                        try TensorFrame.decode(UnsafeRawBufferPointer(rebasing: raw[1...]), expectedCount: values.count, into: $0)
                    }
                }
                assertBitwiseEqual(out, expected)
            }
        }
    }

    // MARK: Hostile bodies

    func testHostileDenseBodies() throws {
        // Codec parameters: each dense codec's rule, checked before anything else but the header.
        for (codec, parameter) in [(UInt8(1), UInt32(1)), (2, 0x100), (3, 0), (3, 15), (3, 65537), (4, 8), (4, .max)] {
            let body = craftBody(codec: codec, elementCount: 16, payload: [UInt8](repeating: 0, count: 64), checksum: 0, parameter: parameter)
            assertRefused(body, count: 16, .badCodecParameter(parameter), "codec \(codec)")
        }
        XCTAssertNil(decodeError(try encodeFrame([Float](repeating: 1, count: 16), codec: .int8Block, parameter: 65536, zstdLevel: nil),
                                 expectedCount: 16))

        // fp16: a NaN and an Inf half; the first one's index is reported.
        var halves = halfBytes((0..<20).map { Float($0) })
        halves[14] = 0x00; halves[15] = 0x7C   // +Inf at 7
        halves[30] = 0x00; halves[31] = 0x7E   // NaN at 15
        for level in [nil, 3] as [Int?] {
            let compressed = try level.map { l in try halves.withUnsafeBytes { try Zstd.compress($0, level: l) } }
            let body = craftBody(codec: 1, flags: level == nil ? 0 : 1, elementCount: 20, payload: compressed ?? halves, checksum: crc32(halves))
            assertRefused(body, count: 20, .nonFinite(index: 7))
        }
        // bf16: −Inf at 3.
        var bf = [UInt8](repeating: 0x3F, count: 16)
        bf[6] = 0x80; bf[7] = 0xFF
        assertRefused(craftBody(codec: 2, elementCount: 8, payload: bf, checksum: crc32(bf)), count: 8, .nonFinite(index: 3))

        // int8: a NaN scale in the second block is reported at that block's first element; an
        // Inf scale the same; a finite scale so large that q · scale overflows, at that element.
        let good = try encodeFrame(gaussianFloats(40, seed: 1), codec: .int8Block, parameter: 16, zstdLevel: nil)
        for (scaleBits, q5, expected) in [(UInt32(0x7FC0_0000), UInt8(1), 16), (0xFF80_0000, 1, 16), (0x7F00_0000, 100, 21)] {
            var payload = Array(good[32...])
            payload.replaceSubrange(20..<24, with: withUnsafeBytes(of: scaleBits.littleEndian) { Array($0) })
            for j in 24..<40 { payload[j] = 0 }
            payload[24 + 5] = q5
            let body = craftBody(codec: 3, elementCount: 40, payload: payload, checksum: crc32(payload), parameter: 16)
            assertRefused(body, count: 40, .nonFinite(index: expected), "scale 0x\(String(scaleBits, radix: 16))")
        }
        // int4: a NaN scale in the last (short) block.
        let int4 = try encodeFrame(gaussianFloats(40, seed: 2), codec: .int4Block, parameter: 17, zstdLevel: nil)
        var int4Payload = Array(int4[32...])
        int4Payload.replaceSubrange(26..<30, with: [0, 0, 0xC0, 0x7F])
        assertRefused(craftBody(codec: 4, elementCount: 40, payload: int4Payload, checksum: crc32(int4Payload), parameter: 17),
                      count: 40, .nonFinite(index: 34))

        // Every dense codec, raw and zstd: CRC (payload or header field), element count, lengths.
        for (codec, parameter) in [(TensorCodec.fp16, UInt32(0)), (.bf16, 0), (.int8Block, 16), (.int4Block, 17)] {
            for level in [nil, 3] as [Int?] {
                let tag = "\(codec) \(String(describing: level))"
                let body = try encodeFrame(gaussianFloats(40, seed: 3), codec: codec, parameter: parameter, zstdLevel: level)
                let raw = try codecPayload(body, rawSize: codec.payloadSize(elementCount: 40, parameter: parameter))
                var wrongField = body
                wrongField[24] ^= 0x80
                assertRefused(wrongField, count: 40, .checksumMismatch(expected: crc32(raw) ^ 0x80, actual: crc32(raw)), tag)
                assertRefused(body, count: 39, .elementCountMismatch(claimed: 40, expected: 39), tag)
                assertRefused(body + [0], count: 40, .payloadLengthMismatch(claimed: UInt64(body.count - 32), actual: body.count - 31), tag)
                guard level == nil else { continue }
                var flippedPayload = body
                flippedPayload[body.count - 1] ^= 0x01
                assertRefused(flippedPayload, count: 40, .checksumMismatch(expected: crc32(raw), actual: crc32(Array(flippedPayload[32...]))), tag)
                var shortBody = Array(body.dropLast())
                shortBody.withUnsafeMutableBytes { $0.storeBytes(of: UInt64(raw.count - 1).littleEndian, toByteOffset: 16, as: UInt64.self) }
                assertRefused(shortBody, count: 40, .truncated(body.count - 1), tag)
            }
        }

        // CRC, element count, lengths.
        var flipped = good
        flipped[40] ^= 1
        assertRefused(flipped, count: 40, .checksumMismatch(expected: crc32(Array(good[32...])), actual: crc32(Array(flipped[32...]))))
        assertRefused(good, count: 41, .elementCountMismatch(claimed: 40, expected: 41))
        let short = craftBody(codec: 3, elementCount: 40, payload: Array(good[32..<(good.count - 1)]), checksum: 0, parameter: 16)
        assertRefused(short, count: 40, .truncated(good.count - 1))
        let long = craftBody(codec: 3, elementCount: 40, payload: Array(good[32...]) + [0], checksum: 0, parameter: 16)
        assertRefused(long, count: 40, .payloadTooLarge(claimed: UInt64(good.count - 31), limit: good.count - 32))
        // A zstd frame of the wrong size for the codec: the fp16 payload of 19 values in a 20-value frame.
        let nineteen = try halfBytes([Float](repeating: 1, count: 19)).withUnsafeBytes { try Zstd.compress($0, level: 3) }
        let wrongSize = craftBody(codec: 1, flags: 1, elementCount: 20, payload: nineteen, checksum: 0)
        XCTAssertTrue(isCorruptCompression(decodeError(wrongSize, expectedCount: 20), containing: "declares 38 bytes, expected 40"))
    }

    func testOddInt4BlocksIgnoreNothingButThePaddingNibble() throws {
        // The padding nibble of an odd block is written as 0; a receiver does not read it.
        let body = try encodeFrame([1, 2, 3], codec: .int4Block, parameter: 16, zstdLevel: nil)
        XCTAssertEqual(body.last.map { $0 >> 4 }, 0)
        var padded = body
        padded[padded.count - 1] |= 0x50
        let payload = Array(padded[32...])
        padded.replaceSubrange(24..<28, with: withUnsafeBytes(of: crc32(payload).littleEndian) { Array($0) })
        assertBitwiseEqual(try decodeFrame(padded, expectedCount: 3), try decodeFrame(body, expectedCount: 3))
    }
}
