import Foundation
import XCTest
@testable import TributaryCompression

/// Top-k: selection, the payload layout, decoding to dense, accumulating only k entries, and
/// every refusal of a hostile payload.
final class SparseFrameTests: XCTestCase {
    /// Every index by a full sort: magnitude descending, lower index first among ties. The top k
    /// are the first k of this order.
    private func referenceOrder(_ values: [Float]) -> [Int] {
        values.indices.sorted { a, b in
            abs(values[a]) != abs(values[b]) ? abs(values[a]) > abs(values[b]) : a < b
        }
    }

    private func referenceTopK(_ values: [Float], k: Int) -> [Int] {
        Array(referenceOrder(values).prefix(k)).sorted()
    }

    func testCountRoundsUpWithoutFloatingPointNoise() {
        XCTAssertEqual(TopK.count(elementCount: 1000, fraction: 0.01), 10)
        XCTAssertEqual(TopK.count(elementCount: 100, fraction: 0.07), 7, "0.07 · 100 = 7.000000000000001 in doubles")
        XCTAssertEqual(TopK.count(elementCount: 1001, fraction: 0.01), 11)
        XCTAssertEqual(TopK.count(elementCount: 50, fraction: 0.001), 1)
        XCTAssertEqual(TopK.count(elementCount: 50, fraction: 1), 50)
        XCTAssertEqual(TopK.count(elementCount: 50, fraction: 7), 50)
        XCTAssertEqual(TopK.count(elementCount: 50, fraction: 0), 1)
        XCTAssertEqual(TopK.count(elementCount: 50, fraction: .nan), 1)
        XCTAssertEqual(TopK.count(elementCount: 0, fraction: 0.5), 0)
        XCTAssertEqual(TopK.count(elementCount: 16 << 20, fraction: 0.01), 167_773)
    }

    func testSelectKeepsExactlyTheLargestMagnitudes() {
        var rng = SplitMix64(seed: 42)
        let gaussian = gaussianFloats(100_003, seed: 1)
        // Heavy ties: few distinct magnitudes, both signs, zeros.
        let tied = (0..<30_000).map { _ in Float(Int.random(in: -6...6, using: &rng)) * 0.25 }
        // Keys that share their upper bits, so the second and third radix levels decide.
        let close = (0..<20_000).map { _ in Float(bitPattern: 0x3F80_0000 | UInt32.random(in: 0..<2048, using: &rng)) * (Bool.random(using: &rng) ? 1 : -1) }
        let specials: [Float] = [0, -0.0, .leastNonzeroMagnitude, -.greatestFiniteMagnitude, 1, -1, 1, 0x1p-140, 3]
        let cases: [([Float], [Int])] = [
            (gaussian, [1, 2, 1000, 1001, 50_000, 100_002, 100_003]),
            (tied, [1, 7, 2000, 2001, 4615, 29_999]),
            (close, [1, 100, 9999, 19_999]),
            (specials, [1, 2, 3, 4, 5, 8, 9]),
            ([Float](repeating: 0, count: 100), [1, 50, 100]),
            ([5], [1]),
        ]
        for (values, ks) in cases {
            let order = referenceOrder(values)
            for k in ks {
                let selected = values.withUnsafeBufferPointer { TopK.select(values: $0, count: k) }
                let expected = Array(order.prefix(k)).sorted()
                XCTAssertEqual(selected.indices.map(Int.init), expected, "n = \(values.count), k = \(k)")
                XCTAssertEqual(selected.values.map(\.bitPattern), expected.map { values[$0].bitPattern })
            }
        }
        let byFraction = TopK.select(values: gaussian, fraction: 0.01)
        XCTAssertEqual(byFraction.indices.count, 1001)
        XCTAssertEqual(byFraction.indices.map(Int.init), referenceTopK(gaussian, k: 1001))
        XCTAssertEqual(TopK.select(values: [Float](), fraction: 0.5).indices, [])
    }

    func testPayloadLayoutByteByByte() throws {
        // n = 300, entries at 0, 5, 6, 200 (deltas 0, 4, 0, 193 → 0x00 0x04 0x00 0xC1 0x01).
        let body = try TensorFrame.encodeSparse(indices: [0, 5, 6, 200], values: [1, -2, 0.5, 65536], count: 300,
                                                valueCodec: .fp16, zstdLevel: nil)
        XCTAssertEqual(body[5], 5, "codec top-k")
        XCTAssertEqual(Array(body[8..<16]), [44, 1, 0, 0, 0, 0, 0, 0], "n = 300 is the dense length")
        XCTAssertEqual(Array(body[28..<32]), [0, 0, 0, 0], "parameter 0: fp16 values")
        let payload = Array(body[32...])
        XCTAssertEqual(payload, [4, 0, 0, 0, 0x00, 0x04, 0x00, 0xC1, 0x01, 0x00, 0x3C, 0x00, 0xC0, 0x00, 0x38, 0xFF, 0x7B])
        XCTAssertEqual(Array(body[24..<28]), withUnsafeBytes(of: crc32(payload).littleEndian) { Array($0) })
        var expected = [Float](repeating: 0, count: 300)
        expected[0] = 1; expected[5] = -2; expected[6] = 0.5; expected[200] = 65504  // saturated
        assertBitwiseEqual(try decodeFrame(body, expectedCount: 300), expected)

        // int8 values: one scale 127/127 = 1 for all, then q.
        let int8 = try TensorFrame.encodeSparse(indices: [3, 16_387], values: [127, -2.5], count: 20_000, valueCodec: .int8, zstdLevel: nil)
        XCTAssertEqual(Array(int8[28..<32]), [1, 0, 0, 0])
        // delta 16387 − 3 − 1 = 16383 = 0x3FFF: two bytes FF 7F; 16384 would take three.
        XCTAssertEqual(Array(int8[32...]), [2, 0, 0, 0, 0x03, 0xFF, 0x7F, 0, 0, 0x80, 0x3F, 127, 0xFE])
        let threeBytes = try TensorFrame.encodeSparse(indices: [16_384], values: [1], count: 20_000, valueCodec: .int8, zstdLevel: nil)
        XCTAssertEqual(Array(threeBytes[36..<39]), [0x80, 0x80, 0x01])
        // The largest index of the largest tensor: a 5-byte varint.
        let far = try TensorFrame.encodeSparse(indices: [UInt32.max], values: [1], count: Int(UInt32.max) + 1, valueCodec: .int8, zstdLevel: nil)
        XCTAssertEqual(Array(far[36..<41]), [0xFF, 0xFF, 0xFF, 0xFF, 0x0F])
        // k = 0: just the count (and, for int8, a zero scale).
        XCTAssertEqual(Array(try TensorFrame.encodeSparse(indices: [], values: [], count: 10, zstdLevel: nil)[32...]), [0, 0, 0, 0])
        XCTAssertEqual(Array(try TensorFrame.encodeSparse(indices: [], values: [], count: 10, valueCodec: .int8, zstdLevel: nil)[32...]),
                       [0, 0, 0, 0, 0, 0, 0, 0])
        XCTAssertEqual(try decodeFrame(try TensorFrame.encodeSparse(indices: [], values: [], count: 0, zstdLevel: 3), expectedCount: 0), [])
    }

    func testRoundTripsZerosElsewhereAndAccumulatesOnlyK() throws {
        let n = 100_000
        let values = gaussianFloats(n, seed: 7)
        let selection = TopK.select(values: values, fraction: 0.01)
        XCTAssertEqual(selection.indices.count, 1000)
        let threshold = selection.values.map { abs($0) }.min() ?? 0
        XCTAssertEqual(values.filter { abs($0) > threshold }.count, 999, "exactly k − 1 magnitudes lie above the k-th")
        for valueCodec in TopKValueCodec.allCases {
            for level in [nil, 3] as [Int?] {
                let body = try TensorFrame.encodeSparse(indices: selection.indices, values: selection.values, count: n,
                                                        valueCodec: valueCodec, zstdLevel: level)
                XCTAssertLessThanOrEqual(body.count, TensorFrame.maximumBodySize(elementCount: n, codec: .topK, codecParameter: valueCodec.parameter))
                XCTAssertLessThan(body.count, n * 4 / 25, "1% top-k is far below 4% of the fp32 size")
                let decoded = try decodeFrame(body, expectedCount: n)
                let kept = Set(selection.indices.map(Int.init))
                let scale = (selection.values.map { abs($0) }.max() ?? 0) / 127
                for i in 0..<n {
                    if kept.contains(i) {
                        let bound = valueCodec == .fp16 ? abs(Double(values[i])) * 0x1p-11 : Double(scale) / 2 * (1 + 1e-6) + Double(values[i].ulp)
                        XCTAssertLessThanOrEqual(abs(Double(decoded[i]) - Double(values[i])), bound, "i = \(i)")
                    } else {
                        XCTAssertEqual(decoded[i].bitPattern, 0, "zero elsewhere, i = \(i)")
                    }
                }
                // accumulate adds the k entries and touches nothing else; −0.0 elsewhere stays −0.0.
                var start = randomFloats(n, seed: 8)
                start[1] = -0.0
                var accumulator = start
                XCTAssertNil(accumulateError(body, expectedCount: n, scale: -0.5, into: &accumulator))
                for i in 0..<n {
                    let expected = kept.contains(i) ? start[i] + -0.5 * decoded[i] : start[i]
                    if accumulator[i].bitPattern != expected.bitPattern { XCTFail("i = \(i)"); break }
                }
            }
        }
    }

    func testVarintBytesNeverExceedN() {
        // The limit 4 + 3n (fp16 values) rests on: Σ varint bytes ≤ n for any increasing indices < n.
        var rng = SplitMix64(seed: 11)
        for _ in 0..<2000 {
            let n = Int.random(in: 1...100_000, using: &rng)
            let k = Int.random(in: 1...min(n, 50), using: &rng)
            var indices = Set<Int>()
            // Spread them out, which is the expensive case for varints.
            while indices.count < k { indices.insert(Bool.random(using: &rng) ? n - 1 - indices.count : Int.random(in: 0..<n, using: &rng)) }
            var previous = -1, bytes = 0
            for index in indices.sorted() {
                bytes += TensorFrame.varintLength(UInt32(index - previous - 1))
                previous = index
            }
            XCTAssertLessThanOrEqual(bytes, n)
        }
        // k = n with every delta 0 reaches the limit exactly, and is accepted.
        let all = (0..<1000).map(UInt32.init)
        let full = try? TensorFrame.encodeSparse(indices: all, values: [Float](repeating: 1, count: 1000), count: 1000, zstdLevel: nil)
        XCTAssertEqual(full?.count, 32 + TensorCodec.topK.payloadSize(elementCount: 1000, parameter: 0))
        XCTAssertEqual(full.flatMap { try? decodeFrame($0, expectedCount: 1000) }, [Float](repeating: 1, count: 1000))
    }

    func testEncodeSparseRefusesBadInput() {
        func error(_ indices: [UInt32], _ values: [Float], count: Int, level: Int? = nil) -> FrameEncodingError? {
            do {
                _ = try TensorFrame.encodeSparse(indices: indices, values: values, count: count, zstdLevel: level)
                return nil
            } catch {
                return error
            }
        }
        XCTAssertEqual(error([1, 2], [1], count: 5), .sparseLengthMismatch(indices: 2, values: 1))
        XCTAssertEqual(error([1, 5], [1, 1], count: 5), .sparseIndexOutOfRange(position: 1, index: 5, count: 5))
        XCTAssertEqual(error([1, 1], [1, 1], count: 5), .sparseIndicesNotIncreasing(position: 1))
        XCTAssertEqual(error([3, 2], [1, 1], count: 5), .sparseIndicesNotIncreasing(position: 1))
        XCTAssertEqual(error([1, 3], [1, .nan], count: 5), .nonFinite(index: 3))
        XCTAssertEqual(error([1], [1], count: 5, level: 0), .invalidZstdLevel(0))
        XCTAssertEqual(error([], [], count: Int(UInt32.max) + 2), .tooManyElementsForSparse(Int(UInt32.max) + 2))
    }

    // MARK: Hostile payloads

    func testHostileTopKPayloads() throws {
        let half1: [UInt8] = [0x00, 0x3C]
        func fp16(_ count: Int) -> [UInt8] { (0..<count).flatMap { _ in half1 } }
        for level in [nil, 3] as [Int?] {
            let tag = "zstd \(String(describing: level))"
            // A valid reference: n = 10, k = 2 at 3 and 9.
            let valid = try craftTopK(count: 10, k: 2, varints: [3, 5], values: fp16(2), zstdLevel: level)
            var expected = [Float](repeating: 0, count: 10)
            expected[3] = 1; expected[9] = 1
            XCTAssertEqual(try decodeFrame(valid, expectedCount: 10), expected, tag)

            assertRefused(try craftTopK(count: 10, k: 11, varints: [], values: [], zstdLevel: level), count: 10,
                          .sparseCountTooLarge(k: 11, count: 10), tag)
            assertRefused(try craftTopK(count: 10, k: .max, varints: [], values: [], zstdLevel: level), count: 10,
                          .sparseCountTooLarge(k: .max, count: 10), tag)
            assertRefused(try craftTopK(count: 10, k: 2, varints: [3, 6], values: fp16(2), zstdLevel: level), count: 10,
                          .sparseIndexOutOfRange(position: 1, index: 10, count: 10), tag)
            assertRefused(try craftTopK(count: 10, k: 1, varints: [10], values: fp16(1), zstdLevel: level), count: 10,
                          .sparseIndexOutOfRange(position: 0, index: 10, count: 10), tag)
            // A delta of 2³² − 1 after index 5: a 32-bit decoder would wrap to index 4 (backwards).
            assertRefused(try craftTopK(count: 10, k: 2, varints: [5, 0xFF, 0xFF, 0xFF, 0xFF, 0x0F], values: fp16(2), zstdLevel: level),
                          count: 10, .sparseIndexOutOfRange(position: 1, index: 5 + 1 + 0xFFFF_FFFF, count: 10), tag)
            // Varints: cut off at the end, too long, over 32 bits, overlong.
            assertRefused(try craftTopK(count: 10, k: 1, varints: [0x80], values: [], zstdLevel: level), count: 10,
                          .truncatedVarint(offset: 4), tag)
            assertRefused(try craftTopK(count: 10, k: 2, varints: [1, 0x81, 0x80], values: [], zstdLevel: level), count: 10,
                          .truncatedVarint(offset: 5), tag)
            assertRefused(try craftTopK(count: 10, k: 1, varints: [0x80, 0x80, 0x80, 0x80, 0x80, 0x00], values: fp16(1), zstdLevel: level),
                          count: 10, .malformedVarint(offset: 4), tag)
            assertRefused(try craftTopK(count: 10, k: 1, varints: [0x80, 0x80, 0x80, 0x80, 0x10], values: fp16(1), zstdLevel: level),
                          count: 10, .malformedVarint(offset: 4), tag)
            assertRefused(try craftTopK(count: 10, k: 2, varints: [1, 0x81, 0x00], values: fp16(2), zstdLevel: level), count: 10,
                          .malformedVarint(offset: 5), tag)
            // Lengths: the count field itself, the value section short or long.
            let twoBytes = craftBody(codec: 5, elementCount: 10, payload: [1, 0], checksum: crc32([1, 0]))
            if level == nil { assertRefused(twoBytes, count: 10, .truncatedPayload(expected: 4, actual: 2)) }
            assertRefused(try craftTopK(count: 10, k: 2, varints: [3, 5], values: Array(fp16(2).dropLast()), zstdLevel: level),
                          count: 10, .truncatedPayload(expected: 10, actual: 9), tag)
            assertRefused(try craftTopK(count: 10, k: 2, varints: [3, 5], values: fp16(2) + [0], zstdLevel: level),
                          count: 10, .trailingBytes(1), tag)
            assertRefused(try craftTopK(count: 10, k: 1, varints: [3], values: fp16(1), parameter: 1, zstdLevel: level),
                          count: 10, .truncatedPayload(expected: 10, actual: 7), "int8 needs a scale: \(tag)")
            // Values: an fp16 NaN at the second entry (index 9); int8 NaN scale; int8 overflow.
            assertRefused(try craftTopK(count: 10, k: 2, varints: [3, 5], values: half1 + [0x00, 0x7E], zstdLevel: level),
                          count: 10, .nonFinite(index: 9), tag)
            assertRefused(try craftTopK(count: 10, k: 2, varints: [3, 5], values: [0, 0, 0xC0, 0x7F, 1, 1], parameter: 1, zstdLevel: level),
                          count: 10, .nonFinite(index: 3), tag)
            assertRefused(try craftTopK(count: 10, k: 0, varints: [], values: [0, 0, 0x80, 0x7F], parameter: 1, zstdLevel: level),
                          count: 10, .nonFinite(index: 0), "a k = 0 payload's scale must be finite too: \(tag)")
            assertRefused(try craftTopK(count: 10, k: 2, varints: [3, 5], values: floatBytes(0x1p126) + [1, 0x81], parameter: 1, zstdLevel: level),
                          count: 10, .nonFinite(index: 9), tag)
            // CRC, element count, parameter.
            let wrongCRC = try craftTopK(count: 10, k: 2, varints: [3, 5], values: fp16(2), checksum: 0x1234_5678, zstdLevel: level)
            var raw: [UInt8] = [2, 0, 0, 0, 3, 5]
            raw += fp16(2)
            assertRefused(wrongCRC, count: 10, .checksumMismatch(expected: 0x1234_5678, actual: crc32(raw)), tag)
            assertRefused(valid, count: 11, .elementCountMismatch(claimed: 10, expected: 11), tag)
            for parameter: UInt32 in [2, 0x100, 0x0100_0000] {
                assertRefused(try craftTopK(count: 10, k: 2, varints: [3, 5], values: fp16(2), parameter: parameter, zstdLevel: level),
                              count: 10, .badCodecParameter(parameter), tag)
            }
        }
        // The CRC is checked before the structure: a corrupt count reports as corrupt, not as k > n.
        let body = try TensorFrame.encodeSparse(indices: [1, 2], values: [1, 1], count: 10, zstdLevel: nil)
        var corrupt = body
        corrupt[35] = 0xFF
        assertRefused(corrupt, count: 10, .checksumMismatch(expected: crc32(Array(body[32...])), actual: crc32(Array(corrupt[32...]))))
        // Uncompressed payloads larger than 4 + 3n are refused before reading them.
        let huge = craftBody(codec: 5, elementCount: 2, payload: [UInt8](repeating: 0, count: 11), checksum: 0)
        assertRefused(huge, count: 2, .payloadTooLarge(claimed: 11, limit: 10))
        // A zstd payload that inflates past 4 + 3n is a bomb.
        let inflated = try [UInt8](repeating: 0, count: 4096).withUnsafeBytes { try Zstd.compress($0, level: 3) }
        assertRefused(craftBody(codec: 5, flags: 1, elementCount: 100, payload: inflated, checksum: 0), count: 100,
                      .decompressionBomb(limit: 304))
    }

    func testLargeTopKAccumulateIsFastAndTouchesOnlyK() throws {
        // 4 Mi elements, 0.1%: accumulate must not walk the dense tensor (no dense copy).
        let n = 4 << 20
        var rng = SplitMix64(seed: 3)
        let indices = (0..<4096).map { _ in UInt32.random(in: 0..<UInt32(n), using: &rng) }
        let unique = Array(Set(indices)).sorted()
        let body = try TensorFrame.encodeSparse(indices: unique, values: unique.map { Float($0 % 100) + 1 }, count: n, zstdLevel: 3)
        var accumulator = [Float](repeating: 0, count: n)
        var scratch = [Float](repeating: 0, count: n)
        let clock = ContinuousClock()
        let elapsed = try clock.measure {
            for _ in 0..<50 {
                try body.withUnsafeBytes { raw in
                    try accumulator.withUnsafeMutableBufferPointer { acc in
                        try scratch.withUnsafeMutableBufferPointer {
                            try TensorFrame.accumulate(raw, expectedCount: n, scale: 1, into: acc, scratch: $0)
                        }
                    }
                }
            }
        }
        XCTAssertEqual(accumulator[Int(unique[0])], 50 * (Float(unique[0] % 100) + 1))
        XCTAssertEqual(accumulator.reduce(0) { $0 + ($1 != 0 ? 1 : 0) }, unique.count)
        // A dense pass over 16 MiB takes ~2 ms; 50 sparse adds of 4096 entries take far less.
        XCTAssertLessThan(elapsed, .milliseconds(100))
    }
}
