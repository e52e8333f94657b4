import Foundation
import XCTest
@testable import TributaryCompression

/// `UpdateCodecSpec`: parsing, Codable, and error feedback (nothing a codec drops is lost).
final class ErrorFeedbackTests: XCTestCase {
    func testParsingAcceptsTheDocumentedForms() throws {
        let cases: [(String, UpdateCodecSpec.Kind, String)] = [
            ("fp32", .fp32, "fp32"),
            ("FP16", .fp16, "fp16"),
            (" bf16\n", .bf16, "bf16"),
            ("int8", .int8Block(blockSize: 256), "int8:256"),
            ("int8:16", .int8Block(blockSize: 16), "int8:16"),
            ("int8:65536", .int8Block(blockSize: 65536), "int8:65536"),
            ("int8:1000", .int8Block(blockSize: 1000), "int8:1000"),
            ("int4", .int4Block(blockSize: 64), "int4:64"),
            ("int4:17", .int4Block(blockSize: 17), "int4:17"),
            ("topk:0.01", .topK(fraction: 0.01, values: .fp16), "topk:0.01:fp16"),
            ("topk:0.01:int8", .topK(fraction: 0.01, values: .int8), "topk:0.01:int8"),
            ("TopK:1e-3:FP16", .topK(fraction: 0.001, values: .fp16), "topk:0.001:fp16"),
            ("topk:1", .topK(fraction: 1, values: .fp16), "topk:1.0:fp16"),
        ]
        for (text, kind, canonical) in cases {
            let spec = try UpdateCodecSpec(parsing: text)
            XCTAssertEqual(spec.kind, kind, text)
            XCTAssertEqual(spec.description, canonical, text)
            XCTAssertEqual(try UpdateCodecSpec(parsing: spec.description), spec, "canonical form parses back: \(text)")
        }
        XCTAssertEqual(try UpdateCodecSpec(parsing: "int8:100").codec, .int8Block)
        XCTAssertEqual(try UpdateCodecSpec(parsing: "int8:100").codecParameter, 100)
        XCTAssertEqual(try UpdateCodecSpec(parsing: "topk:0.1:int8").codec, .topK)
        XCTAssertEqual(try UpdateCodecSpec(parsing: "topk:0.1:int8").codecParameter, 1)
        XCTAssertEqual(try UpdateCodecSpec(parsing: "bf16").codec, .bf16)
    }

    func testParsingRefusesEverythingElseClearly() {
        let cases: [(String, UpdateCodecSpecError)] = [
            ("", .unknownCodec("")),
            ("fp64", .unknownCodec("fp64")),
            ("int16:64", .unknownCodec("int16:64")),
            ("top-k:0.1", .unknownCodec("top-k:0.1")),
            ("fp16:2", .unexpectedArgument("fp16:2")),
            ("int8:15", .invalidBlockSize("15")),
            ("int8:65537", .invalidBlockSize("65537")),
            ("int4:0", .invalidBlockSize("0")),
            ("int8:abc", .invalidBlockSize("abc")),
            ("int8:", .invalidBlockSize("")),
            ("int8:64:2", .unexpectedArgument("int8:64:2")),
            ("topk", .invalidFraction("")),
            ("topk:", .invalidFraction("")),
            ("topk:0", .invalidFraction("0.0")),
            ("topk:1.5", .invalidFraction("1.5")),
            ("topk:-0.1", .invalidFraction("-0.1")),
            ("topk:nan", .invalidFraction("nan")),
            ("topk:inf", .invalidFraction("inf")),
            ("topk:1%", .invalidFraction("1%")),
            ("topk:0.1:int4", .invalidTopKValues("int4")),
            ("topk:0.1:fp16:x", .unexpectedArgument("topk:0.1:fp16:x")),
        ]
        for (text, expected) in cases {
            XCTAssertThrowsError(try UpdateCodecSpec(parsing: text), text) { error in
                XCTAssertEqual(error as? UpdateCodecSpecError, expected, text)
                let message = (error as? UpdateCodecSpecError)?.description ?? ""
                XCTAssertFalse(message.contains("\n"))
                XCTAssertTrue(message.contains("expected"), message)
            }
        }
        XCTAssertEqual(UpdateCodecSpecError.unknownCodec("fp64").description,
                       "unknown update codec 'fp64'; expected one of fp32, fp16, bf16, int8[:B], int4[:B] (B = 16...65536), topk:F[:fp16|:int8] (0 < F <= 1), lowrank:R[:fp16|:int8|:int4] (R = 1...256)")
        XCTAssertThrowsError(try UpdateCodecSpec(.int8Block(blockSize: 8)))
        XCTAssertThrowsError(try UpdateCodecSpec(.topK(fraction: 0, values: .fp16)))
    }

    func testCodableAsItsString() throws {
        struct Config: Codable, Equatable { var update: UpdateCodecSpec }
        let config = Config(update: try UpdateCodecSpec(parsing: "topk:0.05:int8"))
        let json = try JSONEncoder().encode(config)
        XCTAssertEqual(String(decoding: json, as: UTF8.self), #"{"update":"topk:0.05:int8"}"#)
        XCTAssertEqual(try JSONDecoder().decode(Config.self, from: json), config)
        XCTAssertEqual(try JSONDecoder().decode(Config.self, from: Data(#"{"update":"INT4"}"#.utf8)).update.kind, .int4Block(blockSize: 64))
        XCTAssertThrowsError(try JSONDecoder().decode(Config.self, from: Data(#"{"update":"int8:7"}"#.utf8))) { error in
            guard case DecodingError.dataCorrupted(let context) = error else { return XCTFail("\(error)") }
            XCTAssertTrue(context.debugDescription.contains("invalid block size '7'"), context.debugDescription)
        }
    }

    /// Without a residual the spec is a plain encoder: the same bytes as TensorFrame.
    func testWithoutResidualMatchesThePlainEncoders() throws {
        let values = gaussianFloats(3000, seed: 1)
        for level in [nil, 3] as [Int?] {
            XCTAssertEqual(try encodeFrame(values, spec: "fp32", zstdLevel: level), try encodeFrame(values, zstdLevel: level))
            XCTAssertEqual(try encodeFrame(values, spec: "int4:48", zstdLevel: level),
                           try encodeFrame(values, codec: .int4Block, parameter: 48, zstdLevel: level))
            let selection = TopK.select(values: values, fraction: 0.02)
            XCTAssertEqual(try encodeFrame(values, spec: "topk:0.02:int8", zstdLevel: level),
                           try TensorFrame.encodeSparse(indices: selection.indices, values: selection.values, count: 3000,
                                                        valueCodec: .int8, zstdLevel: level))
        }
    }

    /// Over 50 steps, Σ sent + residual = Σ g up to fp32 rounding, for every codec.
    func testErrorFeedbackLosesNothing() throws {
        let n = 4099
        for text in ["fp32", "fp16", "bf16", "int8:64", "int4:32", "topk:0.01", "topk:0.05:int8"] {
            let spec = try UpdateCodecSpec(parsing: text)
            var residual = [Float](repeating: 0, count: n)
            var sumG = [Double](repeating: 0, count: n)
            var sumSent = [Double](repeating: 0, count: n)
            var slack = [Double](repeating: 0, count: n)  // what fp32 rounding may account for
            var rng = SplitMix64(seed: 99)
            for step in 0..<50 {
                // Gradients with a per-coordinate drift, noise, and occasional large values.
                let g = (0..<n).map { i -> Float in
                    let drift = Float(i % 17) / 17 - 0.5
                    let noise = Float.random(in: -1...1, using: &rng)
                    return (drift + noise) * (i % 101 == 0 ? 100 : 1) * 0.01
                }
                let before = residual
                let body = try spec.encode(g, residual: &residual, zstdLevel: step % 2 == 0 ? nil : 3)
                XCTAssertEqual(body[5], spec.codec.rawValue)
                let sent = try decodeFrame(body, expectedCount: n)
                for i in 0..<n {
                    sumG[i] += Double(g[i])
                    sumSent[i] += Double(sent[i])
                    // Each step is exact to one rounding of v = g + r and of v − sent.
                    let v = g[i] + before[i]
                    XCTAssertLessThanOrEqual(abs(Double(sent[i]) + Double(residual[i]) - Double(v)), Double(v.ulp),
                                             "\(text) step \(step) i \(i)")
                    slack[i] += 2 * Double(v.ulp)
                }
            }
            var lost = 0.0, norm = 0.0
            for i in 0..<n {
                let error = abs(sumSent[i] + Double(residual[i]) - sumG[i])
                XCTAssertLessThanOrEqual(error, slack[i] + 1e-12, "\(text) i \(i): Σ sent + r − Σ g beyond fp32 rounding")
                lost += error * error
                norm += sumG[i] * sumG[i]
            }
            XCTAssertGreaterThan(norm.squareRoot(), 1, "\(text): the sums are not trivially small")
            XCTAssertLessThan(lost.squareRoot() / norm.squareRoot(), 1e-5, "\(text): ‖Σ sent + r − Σ g‖ / ‖Σ g‖")
            if text == "fp32" { XCTAssertEqual(residual, [Float](repeating: 0, count: n)) }
            if text.hasPrefix("topk") { XCTAssertGreaterThan(residual.map { abs($0) }.max() ?? 0, 0.01, "top-k defers most of the gradient") }
        }
    }

    /// With a steady gradient and top-k at 1%, every coordinate is eventually sent, and over time
    /// each coordinate's total sent approaches its total gradient.
    func testTopKWithFeedbackEventuallySendsEveryCoordinate() throws {
        let n = 1000
        let spec = try UpdateCodecSpec(parsing: "topk:0.01")
        var encoder = ErrorFeedbackEncoder(spec: spec, elementCount: n)
        var rng = SplitMix64(seed: 5)
        // Magnitudes 0.1...1: at 10 entries a step the smallest must wait ~550 steps for its turn
        // (the send threshold settles near Σ|g| / k ≈ 55). Without feedback it would never go.
        let steady = (0..<n).map { _ in Float.random(in: 0.1...1, using: &rng) * (Bool.random(using: &rng) ? 1 : -1) }
        var everSent = [Bool](repeating: false, count: n)
        var sentTotal = [Double](repeating: 0, count: n)
        let steps = 1000
        var allSentBy: Int?
        for step in 0..<steps {
            let body = try encoder.encode(steady, zstdLevel: 3)
            let sent = try decodeFrame(body, expectedCount: n)
            var count = 0
            for i in 0..<n where sent[i] != 0 {
                everSent[i] = true
                sentTotal[i] += Double(sent[i])
                count += 1
            }
            XCTAssertEqual(count, 10)
            if allSentBy == nil && !everSent.contains(false) { allSentBy = step }
        }
        XCTAssertNotNil(allSentBy, "never sent: \(everSent.indices.filter { !everSent[$0] }.prefix(10))")
        XCTAssertGreaterThan(allSentBy ?? 0, 300, "the smallest gradients really did have to wait")
        for i in 0..<n {
            let total = Double(steady[i]) * Double(steps)
            XCTAssertEqual(sentTotal[i] + Double(encoder.residual[i]), total, accuracy: abs(total) * 1e-4, "i = \(i)")
            XCTAssertLessThan(abs(encoder.residual[i]), 100, "the residual stays bounded")
        }
    }

    func testNonFiniteInputNeverPoisonsTheResidual() throws {
        let spec = try UpdateCodecSpec(parsing: "int8:16")
        var residual = randomFloats(100, seed: 4)
        let saved = residual
        var g = randomFloats(100, seed: 5)
        g[37] = .infinity
        g[60] = .nan  // NaN's magnitude bits rank above Inf's: top-k at k = 1 would pick it first
        for text in ["fp32", "fp16", "int8:16", "topk:0.01", "topk:0.1:int8"] {
            XCTAssertThrowsError(try UpdateCodecSpec(parsing: text).encode(g, residual: &residual, zstdLevel: 3)) {
                XCTAssertEqual($0 as? FrameEncodingError, .nonFinite(index: 37), text)
            }
            assertBitwiseEqual(residual, saved, text)
            // Without a residual the same refusal.
            XCTAssertThrowsError(try encodeFrame(g, spec: text, zstdLevel: nil)) {
                XCTAssertEqual($0 as? FrameEncodingError, .nonFinite(index: 37), text)
            }
        }
        // Finite g whose sum with the residual overflows.
        var big = [Float](repeating: 1, count: 100)
        big[12] = 3e38
        residual[12] = 3e38
        let beforeOverflow = residual
        XCTAssertThrowsError(try spec.encode(big, residual: &residual, zstdLevel: nil)) {
            XCTAssertEqual($0 as? FrameEncodingError, .residualOverflow(index: 12))
        }
        assertBitwiseEqual(residual, beforeOverflow)
        // A residual of the wrong length, a bad zstd level: refused, residual untouched.
        var short = [Float](repeating: 0.5, count: 99)
        XCTAssertThrowsError(try spec.encode(randomFloats(100, seed: 1), residual: &short, zstdLevel: 3)) {
            XCTAssertEqual($0 as? FrameEncodingError, .residualLengthMismatch(values: 100, residual: 99))
        }
        XCTAssertEqual(short, [Float](repeating: 0.5, count: 99))
        XCTAssertThrowsError(try spec.encode(randomFloats(100, seed: 1), residual: &residual, zstdLevel: 22)) {
            XCTAssertEqual($0 as? FrameEncodingError, .invalidZstdLevel(22))
        }
        assertBitwiseEqual(residual, beforeOverflow)
        // Empty tensors work.
        var empty: [Float] = []
        XCTAssertEqual(try decodeFrame(try UpdateCodecSpec(parsing: "topk:0.5").encode([], residual: &empty, zstdLevel: 3), expectedCount: 0), [])
    }

    func testEncoderStateAndReset() throws {
        var encoder = ErrorFeedbackEncoder(spec: try UpdateCodecSpec(parsing: "int4:16"), elementCount: 64)
        _ = try encoder.encode(randomFloats(64, seed: 1), zstdLevel: nil)
        XCTAssertTrue(encoder.residual.contains { $0 != 0 })
        let saved = encoder.residual
        var resumed = ErrorFeedbackEncoder(spec: encoder.spec, residual: saved)
        XCTAssertEqual(try resumed.encode(randomFloats(64, seed: 2), zstdLevel: nil), try encoder.encode(randomFloats(64, seed: 2), zstdLevel: nil))
        encoder.reset()
        XCTAssertEqual(encoder.residual, [Float](repeating: 0, count: 64))
    }
}
