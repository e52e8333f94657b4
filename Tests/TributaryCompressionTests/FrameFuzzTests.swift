import Foundation
import XCTest
@testable import TributaryCompression

final class FrameFuzzTests: XCTestCase {
    static func kind(_ error: FrameError) -> String {
        switch error {
        case .truncated: return "truncated"
        case .badMagic: return "badMagic"
        case .unsupportedVersion: return "unsupportedVersion"
        case .unknownCodec: return "unknownCodec"
        case .badFlags: return "badFlags"
        case .badCodecParameter: return "badCodecParameter"
        case .elementCountMismatch: return "elementCountMismatch"
        case .payloadLengthMismatch: return "payloadLengthMismatch"
        case .payloadTooLarge: return "payloadTooLarge"
        case .decompressionBomb: return "decompressionBomb"
        case .corruptCompression: return "corruptCompression"
        case .checksumMismatch: return "checksumMismatch"
        case .nonFinite: return "nonFinite"
        case .sparseCountTooLarge: return "sparseCountTooLarge"
        case .truncatedVarint: return "truncatedVarint"
        case .malformedVarint: return "malformedVarint"
        case .sparseIndexOutOfRange: return "sparseIndexOutOfRange"
        case .truncatedPayload: return "truncatedPayload"
        case .trailingBytes: return "trailingBytes"
        case .lowRankSegmentCount: return "lowRankSegmentCount"
        case .lowRankBadSegment: return "lowRankBadSegment"
        case .lowRankCoverage: return "lowRankCoverage"
        case .lowRankOverflow: return "lowRankOverflow"
        }
    }

    struct Seed {
        var body: [UInt8]
        var count: Int
        /// The codec payload before zstd, for mutations that edit it and re-compress.
        var raw: [UInt8]
    }

    /// Valid frames of every codec, raw and zstd, small enough that 20,000 mutations run in seconds.
    static func seeds() throws -> [Seed] {
        func seed(_ body: [UInt8], _ count: Int) throws -> Seed {
            let header = try body.withUnsafeBytes { try TensorFrameHeader.parse($0) }
            let limit = header.codec.payloadSize(elementCount: count, parameter: header.codecParameter)
            return Seed(body: body, count: count, raw: try codecPayload(body, rawSize: limit))
        }
        let compressible = (0..<64).map { Float($0 % 5) - 2 }
        func topK(_ n: Int, _ fraction: Double, _ values: TopKValueCodec, _ level: Int?) throws -> Seed {
            let data = gaussianFloats(n, seed: UInt64(n))
            let selection = TopK.select(values: data, fraction: fraction)
            return try seed(try TensorFrame.encodeSparse(indices: selection.indices, values: selection.values, count: n,
                                                         valueCodec: values, zstdLevel: level), n)
        }
        func lowRank(_ shapes: [MatrixShape], _ spec: String, _ level: Int?) throws -> Seed {
            let n = shapes.reduce(0) { $0 + $1.count }
            var residual = [Float](repeating: 0, count: n)
            return try seed(try UpdateCodecSpec(parsing: spec).encode(gaussianFloats(n, seed: UInt64(n) + 99), residual: &residual,
                                                                     zstdLevel: level, shapes: shapes), n)
        }
        return [
            try lowRank([MatrixShape(rows: 12, cols: 10), MatrixShape(rows: 1, cols: 5)], "lowrank:2", nil),
            try lowRank([MatrixShape(rows: 3, cols: 3), MatrixShape(rows: 20, cols: 70), MatrixShape(rows: 1, cols: 1)], "lowrank:1:int8", nil),
            try lowRank([MatrixShape(rows: 30, cols: 30)], "lowrank:3:int8", 3),
            try lowRank([MatrixShape(rows: 1, cols: 40), MatrixShape(rows: 16, cols: 8)], "lowrank:2:fp16", 1),
            try seed(try encodeFrame(randomFloats(64, seed: 1), zstdLevel: nil), 64),
            try seed(try encodeFrame(compressible, zstdLevel: 3), 64),
            try seed(try encodeFrame(randomFloats(300, seed: 2), zstdLevel: 3), 300),
            try seed(try encodeFrame([0.5], zstdLevel: 1), 1),
            try seed(try encodeFrame([], zstdLevel: 3), 0),
            try seed(try encodeFrame(randomFloats(64, seed: 3), codec: .fp16, zstdLevel: nil), 64),
            try seed(try encodeFrame(gaussianFloats(300, seed: 4), codec: .fp16, zstdLevel: 3), 300),
            try seed(try encodeFrame(randomFloats(33, seed: 5), codec: .bf16, zstdLevel: nil), 33),
            try seed(try encodeFrame(gaussianFloats(200, seed: 6), codec: .bf16, zstdLevel: 3), 200),
            try seed(try encodeFrame(gaussianFloats(100, seed: 7), codec: .int8Block, parameter: 16, zstdLevel: nil), 100),
            try seed(try encodeFrame(gaussianFloats(300, seed: 8), codec: .int8Block, parameter: 64, zstdLevel: 3), 300),
            try seed(try encodeFrame(gaussianFloats(100, seed: 9), codec: .int4Block, parameter: 17, zstdLevel: nil), 100),
            try seed(try encodeFrame(gaussianFloats(257, seed: 10), codec: .int4Block, parameter: 16, zstdLevel: 3), 257),
            try topK(300, 0.05, .fp16, nil),
            try topK(500, 0.02, .int8, nil),
            try topK(1000, 0.03, .fp16, 3),
            try topK(64, 0.25, .int8, 3),
            try topK(20, 1, .fp16, nil),
            try topK(0, 0.5, .int8, nil),
        ]
    }

    /// Rebuilds a body around an edited codec payload: new CRC and length, re-compressed when the
    /// original was, so the edit reaches the checks behind the CRC.
    static func rebuild(_ body: [UInt8], raw: [UInt8], level: Int) throws -> [UInt8] {
        var header = Array(body.prefix(32))
        let payload = header[6] & 1 == 1 ? try raw.withUnsafeBytes { try Zstd.compress($0, level: level) } : raw
        header.withUnsafeMutableBytes {
            $0.storeBytes(of: UInt64(payload.count).littleEndian, toByteOffset: 16, as: UInt64.self)
            $0.storeBytes(of: crc32(raw).littleEndian, toByteOffset: 24, as: UInt32.self)
        }
        return header + payload
    }

    /// `iterations` seeded mutations (flips, truncations, extensions, header overwrites, planted
    /// NaN/Inf, and edits of the codec payload behind a repaired CRC), half of the blind ones with
    /// the length field and, for raw payloads, the CRC repaired so they reach the deeper checks.
    /// Every outcome must be a FrameError, or exactly `count` finite values; every
    /// `accumulateEvery`-th body also goes through accumulate, which must fail the same way and
    /// leave its accumulator alone, or add exactly 2 · the decoded values.
    static func run(iterations: Int, seed: UInt64, accumulateEvery: Int) throws -> (outcomes: [String: Int], failures: [String]) {
        let seeds = try self.seeds()
        var rng = SplitMix64(seed: seed)
        var outcomes: [String: Int] = [:]
        var failures: [String] = []
        func fail(_ message: String) { if failures.count < 20 { failures.append(message) } }
        for iteration in 0..<iterations {
            let original = seeds[iteration % seeds.count]
            let count = original.count
            var body = original.body
            var blind = true
            switch Int.random(in: 0..<9, using: &rng) {
            case 0, 1:  // flip 1...4 bytes anywhere (payload-heavy, since most bytes are payload)
                for _ in 0..<Int.random(in: 1...4, using: &rng) {
                    body[Int.random(in: 0..<body.count, using: &rng)] ^= UInt8.random(in: 1...255, using: &rng)
                }
            case 2:
                body = Array(body.prefix(Int.random(in: 0..<body.count, using: &rng)))
            case 3:
                body += (0..<Int.random(in: 1...16, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            case 4 where !original.raw.isEmpty:  // plant a NaN/Inf pattern (fp32, half or bfloat16 shaped)
                var raw = original.raw
                let patterns: [[UInt8]] = [[0x00, 0x00, 0xC0, 0x7F], [0x00, 0x00, 0x80, 0xFF], [0x00, 0x7C], [0xFF, 0x7F], [0x80, 0x7F]]
                let pattern = patterns[Int.random(in: 0..<patterns.count, using: &rng)]
                let offset = Int.random(in: 0...max(0, raw.count - pattern.count), using: &rng)
                for (j, byte) in pattern.enumerated() where offset + j < raw.count { raw[offset + j] = byte }
                body = try rebuild(body, raw: raw, level: 1)
                blind = false
            case 5, 6:  // edit the codec payload, then repair CRC and length
                var raw = original.raw
                for _ in 0..<Int.random(in: 1...3, using: &rng) {
                    // Bias towards the front: top-k's count and first varints, a block's scale,
                    // a low-rank segment table.
                    let span = Bool.random(using: &rng) ? min(raw.count, 40) : raw.count
                    switch Int.random(in: 0..<4, using: &rng) {
                    case 0 where span > 0:
                        raw[Int.random(in: 0..<span, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
                    case 1 where span > 0:
                        raw[Int.random(in: 0..<span, using: &rng)] ^= 0x80
                    case 2 where span > 0:
                        raw.remove(at: Int.random(in: 0..<span, using: &rng))
                    default:
                        raw.insert(UInt8.random(in: 0...255, using: &rng), at: Int.random(in: 0...span, using: &rng))
                    }
                }
                body = try rebuild(body, raw: raw, level: 1)
                blind = false
            default:  // overwrite a header byte
                body[Int.random(in: 0..<min(32, body.count), using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
            if blind && body.count >= 32 && Bool.random(using: &rng) {
                let payloadCount = body.count - 32
                body.withUnsafeMutableBytes { $0.storeBytes(of: UInt64(payloadCount).littleEndian, toByteOffset: 16, as: UInt64.self) }
                if body[6] == 0 && Bool.random(using: &rng) {
                    let crc = crc32(Array(body[32...]))
                    body.withUnsafeMutableBytes { $0.storeBytes(of: crc.littleEndian, toByteOffset: 24, as: UInt32.self) }
                }
            }

            let decoded: [Float]?
            let error: FrameError?
            do {
                decoded = try decodeFrame(body, expectedCount: count)
                error = nil
            } catch let frameError as FrameError {
                decoded = nil
                error = frameError
            } catch {
                fail("iteration \(iteration) threw \(error)")
                continue
            }
            if let decoded {
                outcomes["success", default: 0] += 1
                if decoded.count != count || !decoded.allSatisfy({ $0.isFinite }) {
                    fail("iteration \(iteration) decoded \(decoded.count) values, or a non-finite one")
                }
            } else if let error {
                outcomes[kind(error), default: 0] += 1
            }
            guard iteration % accumulateEvery == 0 else { continue }
            var accumulator = [Float](repeating: 1.5, count: count)
            let accumulateFailure = accumulateError(body, expectedCount: count, scale: 2, into: &accumulator)
            if accumulateFailure != error {
                fail("iteration \(iteration): decode gave \(String(describing: error)), accumulate \(String(describing: accumulateFailure))")
            } else if let decoded {
                if let i = (0..<count).first(where: { accumulator[$0].bitPattern != (1.5 + 2 * decoded[$0]).bitPattern }) {
                    fail("iteration \(iteration): accumulated \(accumulator[i]) at \(i), expected 1.5 + 2 · \(decoded[i])")
                }
            } else if !accumulator.allSatisfy({ $0 == 1.5 }) {
                fail("iteration \(iteration): a failed accumulate touched the accumulator")
            }
        }
        return (outcomes, failures)
    }

    /// 20,000 mutations across every codec.
    func testRandomMutations() throws {
        let start = Date()
        let (outcomes, failures) = try Self.run(iterations: 20_000, seed: 0x7B1B_7A2F, accumulateEvery: 8)
        for failure in failures { XCTFail(failure) }
        XCTAssertEqual(outcomes.values.reduce(0, +), 20_000)
        print("testRandomMutations:", outcomes.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", "))
        // The mutations reach every layer: header, lengths, zstd, CRC, structure, values, and
        // some still decode.
        for expected in ["success", "truncated", "badMagic", "unsupportedVersion", "unknownCodec", "badFlags", "badCodecParameter",
                         "elementCountMismatch", "payloadLengthMismatch", "payloadTooLarge", "corruptCompression", "checksumMismatch",
                         "nonFinite", "sparseCountTooLarge", "truncatedVarint", "malformedVarint", "sparseIndexOutOfRange",
                         "truncatedPayload", "trailingBytes"] {
            XCTAssertGreaterThan(outcomes[expected, default: 0], 0, "no \(expected) among \(outcomes)")
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 20)
    }

    /// One million mutations; run it with
    /// `TRIBUTARY_LONG_FUZZ=1 swift test -c release --filter testMillionMutationsFuzz`.
    func testMillionMutationsFuzz() throws {
        guard ProcessInfo.processInfo.environment["TRIBUTARY_LONG_FUZZ"] == "1" else {
            throw XCTSkip("set TRIBUTARY_LONG_FUZZ=1 to run 1,000,000 mutations")
        }
        let start = Date()
        let (outcomes, failures) = try Self.run(iterations: 1_000_000, seed: 0x5EED_F00D, accumulateEvery: 4)
        for failure in failures { XCTFail(failure) }
        let total = outcomes.values.reduce(0, +)
        XCTAssertEqual(total, 1_000_000)
        let summary = outcomes.sorted { $0.key < $1.key }.map { "\($0.key) \($0.value)" }.joined(separator: ", ")
        print(String(format: "testMillionMutationsFuzz: %d mutated bodies in %.1f s, %d failures; %@",
                     total, Date().timeIntervalSince(start), failures.count, summary))
    }
}
