import Foundation
import XCTest
@testable import TributaryCompression

final class FrameFuzzTests: XCTestCase {
    private static func kind(_ error: FrameError) -> String {
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
        }
    }

    /// 20,000 seeded mutations (flips, truncations, extensions, header overwrites), half of them
    /// with the length field and, for raw payloads, the CRC repaired so they reach the deeper checks.
    /// Every outcome must be a FrameError, or exactly expectedCount finite values; a failed
    /// accumulate must leave its accumulator as it was.
    func testRandomMutations() throws {
        let compressible = (0..<64).map { Float($0 % 5) - 2 }
        let seeds: [(body: [UInt8], count: Int)] = [
            (try encodeFrame(randomFloats(64, seed: 1), zstdLevel: nil), 64),
            (try encodeFrame(compressible, zstdLevel: 3), 64),
            (try encodeFrame(randomFloats(300, seed: 2), zstdLevel: 3), 300),
            (try encodeFrame([0.5], zstdLevel: 1), 1),
            (try encodeFrame([], zstdLevel: 3), 0),
        ]
        var rng = SplitMix64(seed: 0x7B1B_7A2F)
        var outcomes: [String: Int] = [:]
        let start = Date()
        for iteration in 0..<20_000 {
            let (original, count) = seeds[iteration % seeds.count]
            var body = original
            switch Int.random(in: 0..<6, using: &rng) {
            case 0, 1:  // flip 1...4 bytes anywhere (payload-heavy, since most bytes are payload)
                for _ in 0..<Int.random(in: 1...4, using: &rng) {
                    body[Int.random(in: 0..<body.count, using: &rng)] ^= UInt8.random(in: 1...255, using: &rng)
                }
            case 2:
                body = Array(body.prefix(Int.random(in: 0..<body.count, using: &rng)))
            case 3:
                body += (0..<Int.random(in: 1...16, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            case 4 where count > 0 && body.count == 32 + 4 * count:  // plant a NaN/Inf in a raw payload
                let offset = 32 + 4 * Int.random(in: 0..<count, using: &rng)
                let bits = 0x7F80_0000 | UInt32.random(in: 0...UInt32.max, using: &rng) & 0x807F_FFFF
                body.withUnsafeMutableBytes { $0.storeBytes(of: bits.littleEndian, toByteOffset: offset, as: UInt32.self) }
            default:  // overwrite a header byte
                body[Int.random(in: 0..<min(32, body.count), using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
            if body.count >= 32 && Bool.random(using: &rng) {
                let payloadCount = body.count - 32
                body.withUnsafeMutableBytes { $0.storeBytes(of: UInt64(payloadCount).littleEndian, toByteOffset: 16, as: UInt64.self) }
                if body[6] == 0 && Bool.random(using: &rng) {
                    let crc = crc32(Array(body[32...]))
                    body.withUnsafeMutableBytes { $0.storeBytes(of: crc.littleEndian, toByteOffset: 24, as: UInt32.self) }
                }
            }

            var accumulator = [Float](repeating: 1.5, count: count)
            var scratch = [Float](repeating: 0, count: count)
            do {
                let values = try decodeFrame(body, expectedCount: count)
                XCTAssertEqual(values.count, count)
                XCTAssertTrue(values.allSatisfy { $0.isFinite }, "iteration \(iteration) decoded a non-finite value")
                outcomes["success", default: 0] += 1
            } catch let error as FrameError {
                outcomes[Self.kind(error), default: 0] += 1
                if iteration % 8 == 0 {
                    XCTAssertThrowsError(try body.withUnsafeBytes { raw in
                        try accumulator.withUnsafeMutableBufferPointer { acc in
                            try scratch.withUnsafeMutableBufferPointer {
                                try TensorFrame.accumulate(raw, expectedCount: count, scale: 2, into: acc, scratch: $0)
                            }
                        }
                    })
                    XCTAssertTrue(accumulator.allSatisfy { $0 == 1.5 }, "iteration \(iteration): accumulate touched the accumulator")
                }
            } catch {
                XCTFail("iteration \(iteration) threw \(error)")
            }
        }
        XCTAssertEqual(outcomes.values.reduce(0, +), 20_000)
        // The mutations reach every layer: header, lengths, zstd, CRC, values, and some still decode.
        for expected in ["success", "truncated", "badMagic", "unsupportedVersion", "unknownCodec", "badFlags",
                         "elementCountMismatch", "payloadLengthMismatch", "corruptCompression", "checksumMismatch", "nonFinite"] {
            XCTAssertGreaterThan(outcomes[expected, default: 0], 0, "no \(expected) among \(outcomes)")
        }
        XCTAssertLessThan(Date().timeIntervalSince(start), 20)
    }
}
