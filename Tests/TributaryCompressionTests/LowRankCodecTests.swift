import Foundation
import XCTest
@testable import TributaryCompression

/// The low-rank (PowerSGD-style) codec: what it sends, what error feedback keeps, what a
/// receiver refuses.
final class LowRankCodecTests: XCTestCase {
    /// `count` orthonormal vectors of `length` (Gram–Schmidt on seeded Gaussians).
    func orthonormal(_ count: Int, _ length: Int, seed: UInt64) -> [[Float]] {
        var rng = SplitMix64(seed: seed)
        var vectors: [[Double]] = []
        while vectors.count < count {
            var v = (0..<length).map { _ in Double.random(in: -1...1, using: &rng) }
            for u in vectors {
                let d = zip(v, u).reduce(0) { $0 + $1.0 * $1.1 }
                for i in 0..<length { v[i] -= d * u[i] }
            }
            let norm = v.reduce(0) { $0 + $1 * $1 }.squareRoot()
            vectors.append(v.map { $0 / norm })
        }
        return vectors.map { $0.map(Float.init) }
    }

    /// Σₖ sₖ·uₖ·vₖᵀ, rows × cols, row-major.
    func matrix(rows: Int, cols: Int, singularValues s: [Float], seed: UInt64) -> [Float] {
        let u = orthonormal(s.count, rows, seed: seed), v = orthonormal(s.count, cols, seed: seed + 1)
        var m = [Float](repeating: 0, count: rows * cols)
        for k in 0..<s.count {
            for i in 0..<rows { for j in 0..<cols { m[i * cols + j] += s[k] * u[k][i] * v[k][j] } }
        }
        return m
    }

    func norm(_ a: [Float]) -> Double { a.reduce(0) { $0 + Double($1) * Double($1) }.squareRoot() }
    func distance(_ a: [Float], _ b: [Float]) -> Double {
        zip(a, b).reduce(0) { $0 + (Double($1.0) - Double($1.1)) * (Double($1.0) - Double($1.1)) }.squareRoot()
    }

    func testParsesAndPrintsCanonically() throws {
        XCTAssertEqual(try UpdateCodecSpec(parsing: "lowrank:4").description, "lowrank:4:fp16")
        XCTAssertEqual(try UpdateCodecSpec(parsing: " LowRank:2:INT8 ").kind, .lowRank(rank: 2, values: .int8))
        XCTAssertEqual(try UpdateCodecSpec(parsing: "lowrank:2:int8").codec, .lowRank)
        XCTAssertEqual(try UpdateCodecSpec(parsing: "lowrank:2:int8").codecParameter, 1)
        for bad in ["lowrank", "lowrank:0", "lowrank:257", "lowrank:x", "lowrank:2:int2", "lowrank:2:fp16:1"] {
            XCTAssertThrowsError(try UpdateCodecSpec(parsing: bad), bad)
        }
        XCTAssertEqual(try JSONDecoder().decode([UpdateCodecSpec].self, from: Data(#"["lowrank:3:int8"]"#.utf8)),
                       [try UpdateCodecSpec(.lowRank(rank: 3, values: .int8))])
    }

    func testEffectiveRankSendsSmallTensorsDense() {
        XCTAssertEqual(MatrixShape(shape: [64]).effectiveRank(4), 0)             // a vector
        XCTAssertEqual(MatrixShape(shape: [3, 3]).effectiveRank(1), 1)          // 6 < 9
        XCTAssertEqual(MatrixShape(shape: [3, 3]).effectiveRank(2), 0)          // 12 ≥ 9
        XCTAssertEqual(MatrixShape(shape: [128, 384]).effectiveRank(4), 4)
        XCTAssertEqual(MatrixShape(shape: [8, 3, 3]), MatrixShape(rows: 8, cols: 9))
        let spec = try? UpdateCodecSpec(parsing: "lowrank:2")
        XCTAssertEqual(spec?.warmStartCount(shapes: [MatrixShape(shape: [64]), MatrixShape(shape: [32, 48])]), 2 * 48)
    }

    /// A matrix of exactly rank r comes through a rank-r frame whole (up to fp16 rounding of the
    /// factors) from a cold start: P = M·Q spans M's columns for almost every random Q.
    func testExactlyLowRankMatrixRoundTrips() throws {
        let m = matrix(rows: 48, cols: 80, singularValues: [3, 1], seed: 11)
        let shapes = [MatrixShape(rows: 48, cols: 80)]
        let spec = try UpdateCodecSpec(parsing: "lowrank:2")
        var residual = [Float](repeating: 0, count: m.count)
        let body = try spec.encode(m, residual: &residual, zstdLevel: 3, shapes: shapes)
        let decoded = try decodeFrame(body, expectedCount: m.count)
        XCTAssertLessThan(distance(decoded, m) / norm(m), 2e-3)
        // Error feedback keeps exactly what was not sent.
        for i in 0..<m.count { XCTAssertEqual(residual[i] + decoded[i], m[i], accuracy: 1e-5) }
        XCTAssertLessThan(body.count, 32 + 16 + 2 * 2 * (48 + 80) + 32, "two factor pairs in fp16, not 3,840 values")
    }

    /// Warm-started power iteration converges to the best rank-r approximation: after a few
    /// steps on the same matrix (no error feedback) the error is the optimal √(Σ_{k>r} sₖ²).
    func testWarmStartConvergesToTheBestRankRApproximation() throws {
        let s: [Float] = [10, 6, 3, 1, 0.5]
        let m = matrix(rows: 40, cols: 60, singularValues: s, seed: 21)
        let optimal = Double(s[2...].reduce(0) { $0 + $1 * $1 }).squareRoot()
        var encoder = ErrorFeedbackEncoder(spec: try UpdateCodecSpec(parsing: "lowrank:2"), elementCount: m.count,
                                           shapes: [MatrixShape(rows: 40, cols: 60)])
        var errors: [Double] = []
        for _ in 0..<8 {
            encoder.residual = [Float](repeating: 0, count: m.count)  // the same M every step
            let decoded = try decodeFrame(try encoder.encode(m, zstdLevel: nil), expectedCount: m.count)
            errors.append(distance(decoded, m))
        }
        XCTAssertGreaterThan(errors[0], optimal * 1.01, "a cold start is not already optimal")
        XCTAssertEqual(errors[7], optimal, accuracy: optimal * 0.01)
        // Without the warm start every step is a cold start and stays at the first step's error.
        var cold = ErrorFeedbackEncoder(spec: encoder.spec, elementCount: m.count, shapes: encoder.shapes)
        cold.residual = [Float](repeating: 0, count: m.count)
        _ = try cold.encode(m, zstdLevel: nil)
        cold.reset()
        let again = try decodeFrame(try cold.encode(m, zstdLevel: nil), expectedCount: m.count)
        XCTAssertEqual(distance(again, m), errors[0], accuracy: errors[0] * 1e-4)
    }

    /// Over steps, error feedback delivers the whole gradient: Σ decoded = T·g − residual_T,
    /// and the residual stays bounded, so the mean decoded update tends to g.
    func testErrorFeedbackDeliversTheFullRankGradientOverTime() throws {
        let shapes = [MatrixShape(rows: 1, cols: 30), MatrixShape(rows: 32, cols: 24), MatrixShape(rows: 2, cols: 2)]
        let g = randomFloats(30 + 32 * 24 + 4, seed: 5).map { $0 * 50 }
        for values in FactorValueCodec.allCases {
            var encoder = ErrorFeedbackEncoder(spec: try UpdateCodecSpec(.lowRank(rank: 2, values: values)),
                                               elementCount: g.count, shapes: shapes)
            var sum = [Float](repeating: 0, count: g.count)
            let steps = 400
            for _ in 0..<steps {
                let decoded = try decodeFrame(try encoder.encode(g, zstdLevel: 1), expectedCount: g.count)
                for i in 0..<g.count { sum[i] += decoded[i] }
            }
            for i in 0..<g.count {
                XCTAssertEqual(sum[i] + encoder.residual[i], Float(steps) * g[i], accuracy: 2e-3 * Float(steps) * 50)
            }
            let mean = sum.map { $0 / Float(steps) }
            XCTAssertLessThan(distance(mean, g) / norm(g), 0.1, "\(values)")
            // The dense segments (the vector and the 2×2) arrive every step, only rounded: fp16 to
            // half an ulp, int8 to half a step of the block's scale.
            var fresh = ErrorFeedbackEncoder(spec: encoder.spec, elementCount: g.count, shapes: shapes)
            let first = try decodeFrame(try fresh.encode(g, zstdLevel: 1), expectedCount: g.count)
            let blockMax = g[0..<30].map(abs).max() ?? 0
            for i in 0..<30 {
                let step: Float = values == .fp16 ? abs(g[i]) / 1024 : blockMax / (values == .int8 ? 254 : 14) * 1.0001
                XCTAssertEqual(first[i], g[i], accuracy: step, "\(values) \(i)")
            }
        }
    }

    /// Accumulate adds scale · what decode gives, by sgemm straight into the accumulator.
    func testAccumulateAddsScaledDecode() throws {
        let shapes = [MatrixShape(rows: 16, cols: 16), MatrixShape(rows: 1, cols: 7), MatrixShape(rows: 20, cols: 9)]
        let g = gaussianFloats(256 + 7 + 180, seed: 9)
        for spec in ["lowrank:1", "lowrank:3:int8"] {
            var residual = [Float](repeating: 0, count: g.count)
            let body = try UpdateCodecSpec(parsing: spec).encode(g, residual: &residual, zstdLevel: 1, shapes: shapes)
            let decoded = try decodeFrame(body, expectedCount: g.count)
            let start = randomFloats(g.count, seed: 3)
            var accumulator = start
            var scratch = [Float](repeating: 0, count: g.count)
            try body.withUnsafeBytes { raw in
                try accumulator.withUnsafeMutableBufferPointer { a in
                    try scratch.withUnsafeMutableBufferPointer { s in
                        try TensorFrame.accumulate(raw, expectedCount: g.count, scale: 0.25, into: a, scratch: s)
                    }
                }
            }
            for i in 0..<g.count { XCTAssertEqual(accumulator[i], start[i] + 0.25 * decoded[i], accuracy: 1e-5, spec) }
        }
    }

    func testEncodeRefusesWhatItCannotSend() throws {
        let spec = try UpdateCodecSpec(parsing: "lowrank:2")
        var residual = [Float](repeating: 0, count: 12)
        XCTAssertThrowsError(try spec.encode([Float](repeating: 1, count: 12), residual: &residual, zstdLevel: 1)) {
            XCTAssertEqual($0 as? FrameEncodingError, .lowRankCodecNeedsShapes)
        }
        XCTAssertThrowsError(try spec.encode([Float](repeating: 1, count: 12), residual: &residual, zstdLevel: 1,
                                             shapes: [MatrixShape(rows: 3, cols: 3)])) {
            XCTAssertEqual($0 as? FrameEncodingError, .shapesMismatch(values: 12, shapes: 9))
        }
        var g = [Float](repeating: 1, count: 12)
        g[5] = .nan
        XCTAssertThrowsError(try spec.encode(g, residual: &residual, zstdLevel: 1, shapes: [MatrixShape(rows: 3, cols: 4)])) {
            XCTAssertEqual($0 as? FrameEncodingError, .nonFinite(index: 5))
        }
        XCTAssertEqual(residual, [Float](repeating: 0, count: 12), "a refused gradient leaves the residual alone")
        var wrongWarmStart = [Float](repeating: 0, count: 5)  // a 6×8 matrix at rank 2 needs 2·8
        var residual48 = [Float](repeating: 0, count: 48)
        XCTAssertThrowsError(try spec.encode([Float](repeating: 1, count: 48), residual: &residual48, zstdLevel: 1,
                                             shapes: [MatrixShape(rows: 6, cols: 8)], warmStart: &wrongWarmStart)) {
            XCTAssertEqual($0 as? FrameEncodingError, .warmStartLengthMismatch(expected: 16, actual: 5))
        }
        XCTAssertEqual(residual48, [Float](repeating: 0, count: 48), "a caller's mistake leaves the residual alone")
    }

    // MARK: Hostile payloads

    /// A payload built field by field: u32 S, the table, then `values` as fp16 runs.
    func craftLowRank(count: Int, segments: [(UInt32, UInt32, UInt32)], values: [Float], segmentCount: UInt32? = nil,
                      extra: [UInt8] = []) -> [UInt8] {
        var raw: [UInt8] = []
        appendLittleEndian(segmentCount ?? UInt32(segments.count), to: &raw)
        for (rows, cols, rank) in segments {
            appendLittleEndian(rows, to: &raw)
            appendLittleEndian(cols, to: &raw)
            appendLittleEndian(rank, to: &raw)
        }
        for v in values { appendLittleEndian(Float16(v).bitPattern, to: &raw) }
        raw += extra
        return craftBody(codec: TensorCodec.lowRank.rawValue, elementCount: UInt64(count), payload: raw, checksum: crc32(raw))
    }

    func assertRefused(_ body: [UInt8], count: Int, _ expected: FrameError, line: UInt = #line) {
        XCTAssertThrowsError(try decodeFrame(body, expectedCount: count), line: line) {
            XCTAssertEqual($0 as? FrameError, expected, line: line)
        }
        var accumulator = [Float](repeating: 1.5, count: count)
        var scratch = [Float](repeating: 0, count: count)
        XCTAssertThrowsError(try body.withUnsafeBytes { raw in
            try accumulator.withUnsafeMutableBufferPointer { a in
                try scratch.withUnsafeMutableBufferPointer { s in
                    try TensorFrame.accumulate(raw, expectedCount: count, scale: 1, into: a, scratch: s)
                }
            }
        }, line: line)
        XCTAssertEqual(accumulator, [Float](repeating: 1.5, count: count), "accumulator untouched", line: line)
    }

    func testHostileLowRankPayloads() throws {
        // A valid one first: a 4×5 rank-1 segment (p = 1,2,3,4; q = 1,0.5,0,−1,2) and a dense 1×3.
        let p: [Float] = [1, 2, 3, 4], q: [Float] = [1, 0.5, 0, -1, 2]
        let good = craftLowRank(count: 23, segments: [(4, 5, 1), (1, 3, 0)], values: p + q + [7, 8, 9])
        let decoded = try decodeFrame(good, expectedCount: 23)
        XCTAssertEqual(Array(decoded[0..<20]), p.flatMap { pi in q.map { pi * $0 } })
        XCTAssertEqual(Array(decoded[20...]), [7, 8, 9])

        assertRefused(craftLowRank(count: 23, segments: [], values: [], segmentCount: 1025), count: 23, .lowRankSegmentCount(1025))
        assertRefused(craftLowRank(count: 23, segments: [(4, 5, 1)], values: [], segmentCount: 2), count: 23,
                      .truncatedPayload(expected: 28, actual: 16))
        assertRefused(craftLowRank(count: 23, segments: [(0, 5, 0), (1, 3, 0)], values: []), count: 23,
                      .lowRankBadSegment(index: 0, rows: 0, cols: 5, rank: 0))
        assertRefused(craftLowRank(count: 23, segments: [(4, 5, 3), (1, 3, 0)], values: []), count: 23,
                      .lowRankBadSegment(index: 0, rows: 4, cols: 5, rank: 3))  // 27 factor values ≥ 20
        assertRefused(craftLowRank(count: 23, segments: [(4, 5, 1), (1, 4, 0)], values: []), count: 23,
                      .lowRankCoverage(covered: 24, count: 23))
        assertRefused(craftLowRank(count: 23, segments: [(4, 5, 1), (1, 2, 0)], values: []), count: 23,
                      .lowRankCoverage(covered: 22, count: 23))
        assertRefused(craftLowRank(count: 23, segments: [(0xFFFF_FFFF, 0xFFFF_FFFF, 0)], values: []), count: 23,
                      .lowRankCoverage(covered: 0xFFFF_FFFE_0000_0001, count: 23))
        assertRefused(craftLowRank(count: 23, segments: [(4, 5, 1), (1, 3, 0)], values: p + q + [7, 8]), count: 23,
                      .truncatedPayload(expected: 28 + 24, actual: 28 + 22))
        assertRefused(craftLowRank(count: 23, segments: [(4, 5, 1), (1, 3, 0)], values: p + q + [7, 8, 9], extra: [0]),
                      count: 23, .trailingBytes(1))
        assertRefused(craftLowRank(count: 23, segments: [(4, 5, 1), (1, 3, 0)], values: p + q + [7, .infinity, 9]),
                      count: 23, .nonFinite(index: 21))
        assertRefused(craftLowRank(count: 23, segments: [(4, 5, 1), (1, 3, 0)], values: [1, .nan, 3, 4] + q + [7, 8, 9]),
                      count: 23, .nonFinite(index: 0))
        var corrupt = good
        corrupt[corrupt.count - 1] ^= 1
        assertRefused(corrupt, count: 23, .checksumMismatch(expected: crc32(Array(good[32...])), actual: crc32(Array(corrupt[32...]))))
    }

    /// int8 runs carry any finite scale, so factors can be huge: a product past the fp32 range
    /// is refused rather than decoded to ±Inf.
    func testFactorsWhoseProductOverflowsAreRefused() throws {
        func body(scale: Float) -> [UInt8] {
            var raw: [UInt8] = []
            appendLittleEndian(UInt32(1), to: &raw)
            for field in [UInt32(3), 3, 1] { appendLittleEndian(field, to: &raw) }
            for _ in 0..<2 {  // p and q: one int8 block of 3 values each, all 127 · scale
                appendLittleEndian(scale.bitPattern, to: &raw)
                raw += [127, 127, 127]
            }
            return craftBody(codec: TensorCodec.lowRank.rawValue, elementCount: 9, payload: raw, checksum: crc32(raw), parameter: 1)
        }
        XCTAssertEqual(try decodeFrame(body(scale: 1e15 / 127), expectedCount: 9)[0], 1e30, accuracy: 1e24)
        assertRefused(body(scale: 1e20 / 127), count: 9, .lowRankOverflow(segment: 0))
    }

    /// int4 runs: blocks of 64 values, 4 + ⌈L/2⌉ bytes each; a 70-value run is one full block and one of 6.
    func testInt4RunsAreBlocksOf64() throws {
        XCTAssertEqual(FactorValueCodec.int4.runBytes(70), (4 + 32) + (4 + 3))
        XCTAssertEqual(FactorValueCodec.int4.runBytes(5), 4 + 3)
        XCTAssertEqual(FactorValueCodec.int8.runBytes(70), (4 + 64) + (4 + 6))
        let x = gaussianFloats(70, seed: 4)
        var bytes = [UInt8](repeating: 0, count: FactorValueCodec.int4.runBytes(70))
        var sent = [Float](repeating: 0, count: 70), back = [Float](repeating: 0, count: 70)
        x.withUnsafeBufferPointer { source in
            bytes.withUnsafeMutableBytes { target in
                sent.withUnsafeMutableBufferPointer { s in
                    XCTAssertNil(FactorValueCodec.int4.encodeRun(source.baseAddress!, count: 70, into: target.baseAddress!, decoded: s.baseAddress))
                }
            }
        }
        bytes.withUnsafeBytes { raw in
            back.withUnsafeMutableBufferPointer { XCTAssertNil(FactorValueCodec.int4.decodeRun(raw.baseAddress!, count: 70, into: $0.baseAddress!)) }
        }
        XCTAssertEqual(sent, back, "what the encoder says it sent is what a receiver decodes")
        for (start, end) in [(0, 64), (64, 70)] {
            let m = x[start..<end].map(abs).max() ?? 0
            for i in start..<end { XCTAssertEqual(back[i], x[i], accuracy: m / 14 * 1.0001) }
        }
    }

    func testHeaderLimitsAndUnknownParameter() throws {
        let g = gaussianFloats(24, seed: 1)
        var r = [Float](repeating: 0, count: 24)
        var body = try UpdateCodecSpec(parsing: "lowrank:1").encode(g, residual: &r, zstdLevel: nil, shapes: [MatrixShape(rows: 4, cols: 6)])
        body[28] = 3  // parameter 3: no such value codec
        XCTAssertThrowsError(try decodeFrame(body, expectedCount: 24)) { XCTAssertEqual($0 as? FrameError, .badCodecParameter(3)) }
        // Never more than fp32: accepting low-rank raises no receiver's limit.
        XCTAssertEqual(TensorCodec.lowRank.payloadSize(elementCount: 100), 400)
        XCTAssertEqual(TensorFrame.maximumBodySize(elementCount: 1000, codec: .lowRank),
                       TensorFrame.maximumBodySize(elementCount: 1000, codec: .fp32))
        // A payload past 4·n is refused before its table is read.
        let long = craftLowRank(count: 6, segments: [(2, 3, 0)], values: [1, 2, 3, 4, 5, 6])  // 4 + 12 + 12 = 28 > 24
        assertRefused(long, count: 6, .payloadTooLarge(claimed: 28, limit: 24))
    }

    /// A shard of tensors so small that table and runs would outweigh the dense tensor goes as
    /// fp32, exactly (and leaves nothing in the residual).
    func testShardsOfTinyTensorsGoAsFP32() throws {
        let g: [Float] = [0.5, -1, 2, 0.25, 3]
        var residual = [Float](repeating: 0.125, count: 5)
        let body = try UpdateCodecSpec(parsing: "lowrank:2").encode(g, residual: &residual, zstdLevel: nil,
                                                                   shapes: [MatrixShape(rows: 1, cols: 2), MatrixShape(rows: 1, cols: 3)])
        XCTAssertEqual(body[5], TensorCodec.fp32.rawValue)
        XCTAssertEqual(try decodeFrame(body, expectedCount: 5), g.map { $0 + 0.125 })
        XCTAssertEqual(residual, [Float](repeating: 0, count: 5))
    }
}

