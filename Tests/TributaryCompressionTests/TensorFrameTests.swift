import Foundation
import XCTest
@testable import TributaryCompression

final class TensorFrameTests: XCTestCase {
    /// 1, -2.5, 0, 0.1, 65536 as in Protocol/vectors/fp32-small-*.
    private let small: [Float] = [1.0, -2.5, 0.0, 0.1, 65536.0]

    func testCRCIsZlibIEEE() {
        XCTAssertEqual(crc32(Array("123456789".utf8)), 0xCBF4_3926)
        XCTAssertEqual(crc32([]), 0)
        // CRC of the fp32 payload 1, 2, 3, computed independently with Python's zlib.crc32.
        XCTAssertEqual(crc32(littleEndianBytes([1, 2, 3])), 0xB20E_96B1)
    }

    func testHeaderFieldsAtExactOffsets() throws {
        let body = try encodeFrame([1, 2, 3], zstdLevel: nil)
        XCTAssertEqual(body.count, 32 + 12)
        XCTAssertEqual(Array(body[0..<4]), [0x54, 0x52, 0x42, 0x46])                     // "TRBF"
        XCTAssertEqual(body[4], 1)                                                         // version
        XCTAssertEqual(body[5], 0)                                                         // codec fp32
        XCTAssertEqual(Array(body[6..<8]), [0, 0])                                         // flags
        XCTAssertEqual(Array(body[8..<16]), [3, 0, 0, 0, 0, 0, 0, 0])                      // n
        XCTAssertEqual(Array(body[16..<24]), [12, 0, 0, 0, 0, 0, 0, 0])                    // payload length
        XCTAssertEqual(Array(body[24..<28]), [0xB1, 0x96, 0x0E, 0xB2])                     // CRC-32 LE
        XCTAssertEqual(Array(body[28..<32]), [0, 0, 0, 0])                                 // codec parameter
        XCTAssertEqual(Array(body[32...]), [0, 0, 0x80, 0x3F, 0, 0, 0, 0x40, 0, 0, 0x40, 0x40])

        let compressed = try encodeFrame([1, 2, 3], zstdLevel: 3)
        XCTAssertEqual(Array(compressed[6..<8]), [1, 0], "flag bit 0 = zstd")
        XCTAssertEqual(Array(compressed[24..<28]), [0xB1, 0x96, 0x0E, 0xB2], "CRC is of the bytes before zstd")
        XCTAssertEqual(Array(compressed[32..<36]), [0x28, 0xB5, 0x2F, 0xFD], "payload is a zstd frame")
        let header = try compressed.withUnsafeBytes { try TensorFrameHeader.parse($0) }
        XCTAssertEqual(header, TensorFrameHeader(codec: .fp32, flags: .zstd, elementCount: 3,
                                                 payloadLength: UInt64(compressed.count - 32),
                                                 checksum: 0xB20E_96B1, codecParameter: 0))
        var rewritten = [UInt8](repeating: 0xFF, count: 32)
        rewritten.withUnsafeMutableBytes { header.write(to: $0) }
        XCTAssertEqual(rewritten, Array(compressed.prefix(32)))
    }

    func testRoundTrips() throws {
        let specials: [Float] = [-0.0, .leastNonzeroMagnitude, -.leastNormalMagnitude, .greatestFiniteMagnitude,
                                 -.greatestFiniteMagnitude, .ulpOfOne, 1e-30]
        for count in [0, 1, 7, 1_000_000] {
            var values = randomFloats(count, seed: UInt64(count))
            for (i, special) in specials.enumerated() where i < count { values[i * count / specials.count] = special }
            let raw = littleEndianBytes(values)
            for level in [nil, 1, 3] as [Int?] {
                let body = try encodeFrame(values, zstdLevel: level)
                let header = try body.withUnsafeBytes { try TensorFrameHeader.parse($0) }
                XCTAssertEqual(header.elementCount, UInt64(count))
                XCTAssertEqual(header.payloadLength, UInt64(body.count - 32))
                XCTAssertEqual(header.checksum, crc32(raw))
                XCTAssertEqual(header.flags, level == nil ? [] : .zstd)
                if level == nil { XCTAssertEqual(Array(body[32...]), raw, "n=\(count)") }
                XCTAssertLessThanOrEqual(body.count, TensorFrame.maximumBodySize(elementCount: count, codec: .fp32))
                assertBitwiseEqual(try decodeFrame(body, expectedCount: count), values, "n=\(count) level=\(String(describing: level))")
            }
        }
    }

    func testEncodeIntoReusesTheBufferAndMatchesEncode() throws {
        var body: [UInt8] = []
        for (count, level) in [(100_000, nil), (3, 3), (0, nil), (100_000, 3), (5, nil)] as [(Int, Int?)] {
            let values = randomFloats(count, seed: UInt64(count + 1))
            try values.withUnsafeBufferPointer { try TensorFrame.encode($0, zstdLevel: level, into: &body) }
            XCTAssertEqual(body, try encodeFrame(values, zstdLevel: level), "n=\(count) level=\(String(describing: level))")
        }
        XCTAssertGreaterThanOrEqual(body.capacity, 32 + 400_000, "storage kept from the largest frame")
        XCTAssertThrowsError(try [Float.nan].withUnsafeBufferPointer { try TensorFrame.encode($0, zstdLevel: nil, into: &body) }) {
            XCTAssertEqual($0 as? FrameEncodingError, .nonFinite(index: 0))
        }
        XCTAssertEqual(body, [])
    }

    func testDecodeAcceptsUnalignedBodies() throws {
        let values = randomFloats(1001, seed: 5)
        for level in [nil, 3] as [Int?] {
            let body = try encodeFrame(values, zstdLevel: level)
            let shifted = [0x77] + body
            var out = [Float](repeating: 0, count: values.count)
            try shifted.withUnsafeBytes { raw in
                try out.withUnsafeMutableBufferPointer {
                    try TensorFrame.decode(UnsafeRawBufferPointer(rebasing: raw[1...]), expectedCount: values.count, into: $0)
                }
            }
            assertBitwiseEqual(out, values)
        }
    }

    func testMaximumBodySize() throws {
        XCTAssertEqual(TensorFrame.maximumBodySize(elementCount: 0, codec: .fp32), 32 + 64)
        XCTAssertEqual(TensorFrame.maximumBodySize(elementCount: 1000, codec: .fp32), 32 + 4000 + 15 + 64)
        XCTAssertEqual(TensorFrame.maximumBodySize(elementCount: 1 << 20, codec: .fp32), 32 + (4 << 20) + 16384 + 64)
        XCTAssertEqual(TensorFrame.maximumBodySize(elementCount: Int.max, codec: .fp32), Int.max)
        // Incompressible data at the worst level still fits.
        var rng = SplitMix64(seed: 77)
        let noise = (0..<4096).map { _ in Float(bitPattern: UInt32.random(in: 0..<0x7F00_0000, using: &rng)) }
        let body = try encodeFrame(noise, zstdLevel: 1)
        XCTAssertGreaterThan(body.count, 32 + 4 * 4096, "noise does not compress")
        XCTAssertLessThanOrEqual(body.count, TensorFrame.maximumBodySize(elementCount: 4096, codec: .fp32))
    }

    func testEncodeRefusesNonFiniteValuesAndBadLevels() {
        for (index, bad) in [(0, Float.nan), (6, .infinity), (4096, -.infinity), (9999, .signalingNaN)] {
            var values = randomFloats(10_000, seed: 3)
            values[index] = bad
            for level in [nil, 3] as [Int?] {
                XCTAssertThrowsError(try encodeFrame(values, zstdLevel: level)) {
                    XCTAssertEqual($0 as? FrameEncodingError, .nonFinite(index: index))
                }
            }
        }
        for level in [0, 20, -1] {
            XCTAssertThrowsError(try encodeFrame(small, zstdLevel: level)) {
                XCTAssertEqual($0 as? FrameEncodingError, .invalidZstdLevel(level))
            }
        }
    }

    // MARK: Every FrameError from a crafted body

    func testHeaderErrors() throws {
        let payload = littleEndianBytes(small)
        let crc = crc32(payload)
        func body(magic: [UInt8] = Array("TRBF".utf8), version: UInt8 = 1, codec: UInt8 = 0, flags: UInt16 = 0,
                  count: UInt64 = 5, payloadLength: UInt64? = nil, parameter: UInt32 = 0) -> [UInt8] {
            craftBody(magic: magic, version: version, codec: codec, flags: flags, elementCount: count,
                      payload: payload, payloadLength: payloadLength, checksum: crc, parameter: parameter)
        }
        XCTAssertNil(decodeError(body(), expectedCount: 5))
        let valid = body()
        for length in [0, 1, 4, 31] {
            XCTAssertEqual(decodeError(Array(valid.prefix(length)), expectedCount: 5), .truncated(length))
        }
        XCTAssertEqual(decodeError(body(magic: Array("TRBG".utf8)), expectedCount: 5), .badMagic)
        XCTAssertEqual(decodeError(body(magic: [0x46, 0x42, 0x52, 0x54]), expectedCount: 5), .badMagic, "byte order matters")
        XCTAssertEqual(decodeError(body(version: 0), expectedCount: 5), .unsupportedVersion(0))
        XCTAssertEqual(decodeError(body(version: 2), expectedCount: 5), .unsupportedVersion(2))
        for codec: UInt8 in [7, 8, 15, 16, 255] {
            XCTAssertEqual(decodeError(body(codec: codec), expectedCount: 5), .unknownCodec(codec))
        }
        for flags: UInt16 in [2, 3, 0x8000, 0xFFFF] {
            XCTAssertEqual(decodeError(body(flags: flags), expectedCount: 5), .badFlags(flags))
        }
        XCTAssertEqual(decodeError(body(parameter: 64), expectedCount: 5), .badCodecParameter(64))
        XCTAssertEqual(decodeError(body(), expectedCount: 6), .elementCountMismatch(claimed: 5, expected: 6))
        XCTAssertEqual(decodeError(body(count: .max), expectedCount: 5), .elementCountMismatch(claimed: .max, expected: 5))
        XCTAssertEqual(decodeError(body(payloadLength: 21), expectedCount: 5), .payloadLengthMismatch(claimed: 21, actual: 20))
        XCTAssertEqual(decodeError(body(payloadLength: .max), expectedCount: 5), .payloadLengthMismatch(claimed: .max, actual: 20))
        XCTAssertEqual(decodeError(valid + [0], expectedCount: 5), .payloadLengthMismatch(claimed: 20, actual: 21))
        XCTAssertEqual(decodeError(Array(valid.dropLast()), expectedCount: 5), .payloadLengthMismatch(claimed: 20, actual: 19))
        // The checks run in the documented order: magic before version before codec ...
        XCTAssertEqual(decodeError(body(magic: Array("XXXX".utf8), version: 9, codec: 9), expectedCount: 5), .badMagic)
        XCTAssertEqual(decodeError(body(version: 9, codec: 9, flags: 4), expectedCount: 5), .unsupportedVersion(9))
        XCTAssertEqual(decodeError(body(codec: 9, flags: 4), expectedCount: 5), .unknownCodec(9))
        XCTAssertEqual(decodeError(body(flags: 4, count: 9, parameter: 1), expectedCount: 5), .badFlags(4))
        XCTAssertEqual(decodeError(body(count: 9, parameter: 1), expectedCount: 5), .badCodecParameter(1))
        XCTAssertEqual(decodeError(body(count: 9, payloadLength: 1), expectedCount: 5), .elementCountMismatch(claimed: 9, expected: 5))
    }

    func testPayloadSizeErrors() throws {
        let payload = littleEndianBytes(small)
        // Uncompressed fp32 payloads are exactly 4·n bytes: longer is too large, shorter is truncated.
        let long = craftBody(elementCount: 5, payload: payload + [0, 0, 0, 0], checksum: 0)
        XCTAssertEqual(decodeError(long, expectedCount: 5), .payloadTooLarge(claimed: 24, limit: 20))
        let short = craftBody(elementCount: 5, payload: Array(payload.prefix(16)), checksum: 0)
        XCTAssertEqual(decodeError(short, expectedCount: 5), .truncated(48))
        // Compressed payloads may exceed 4·n (small or noisy inputs), up to 4n + 4n/256 + 64.
        let padded = craftBody(flags: 1, elementCount: 5, payload: [UInt8](repeating: 0, count: 85), checksum: 0)
        XCTAssertEqual(decodeError(padded, expectedCount: 5), .payloadTooLarge(claimed: 85, limit: 84))
        let atLimit = craftBody(flags: 1, elementCount: 5, payload: [UInt8](repeating: 0, count: 84), checksum: 0)
        XCTAssertTrue(isCorruptCompression(decodeError(atLimit, expectedCount: 5), containing: "not a zstd frame"))
    }

    func testCompressionErrors() throws {
        let payload = littleEndianBytes(small)
        let crc = crc32(payload)
        let zstd = try payload.withUnsafeBytes { try Zstd.compress($0, level: 3) }
        func flagged(_ data: [UInt8], count: UInt64 = 5) -> [UInt8] {
            craftBody(flags: 1, elementCount: count, payload: data, checksum: crc)
        }
        XCTAssertNil(decodeError(flagged(zstd), expectedCount: 5))
        XCTAssertTrue(isCorruptCompression(decodeError(flagged(payload), expectedCount: 5), containing: "not a zstd frame"))
        XCTAssertTrue(isCorruptCompression(decodeError(flagged(zstd + [1, 2]), expectedCount: 5), containing: "2 trailing bytes"))
        XCTAssertTrue(isCorruptCompression(decodeError(flagged(Array(zstd.dropLast())), expectedCount: 5)))
        var garbled = zstd
        garbled[garbled.count - 3] ^= 0xFF
        XCTAssertNotNil(decodeError(flagged(garbled), expectedCount: 5))
        // A zstd frame of the wrong size: 4 floats in a 5-float frame.
        let fourFloats = try Array(payload.prefix(16)).withUnsafeBytes { try Zstd.compress($0, level: 3) }
        XCTAssertTrue(isCorruptCompression(decodeError(flagged(fourFloats), expectedCount: 5), containing: "declares 16 bytes, expected 20"))
        // Six floats: the zstd header alone shows it would exceed 20 bytes.
        let sixFloats = try (payload + payload.prefix(4)).withUnsafeBytes { try Zstd.compress($0, level: 3) }
        XCTAssertEqual(decodeError(flagged(sixFloats), expectedCount: 5), .decompressionBomb(limit: 20))
    }

    func testChecksumErrors() throws {
        let payload = littleEndianBytes(small)
        var flipped = payload
        flipped[13] ^= 0x01
        let tampered = craftBody(elementCount: 5, payload: flipped, checksum: crc32(payload))
        XCTAssertEqual(decodeError(tampered, expectedCount: 5), .checksumMismatch(expected: crc32(payload), actual: crc32(flipped)))

        var wrongField = try encodeFrame(small, zstdLevel: 3)
        wrongField[24] ^= 0x80
        XCTAssertEqual(decodeError(wrongField, expectedCount: 5),
                       .checksumMismatch(expected: crc32(payload) ^ 0x80, actual: crc32(payload)))

        // A corrupted payload that also holds a NaN reports the checksum, not the NaN.
        var nanPayload = payload
        nanPayload[8...11] = [0, 0, 0xC0, 0x7F]
        XCTAssertEqual(decodeError(craftBody(elementCount: 5, payload: nanPayload, checksum: crc32(payload)), expectedCount: 5),
                       .checksumMismatch(expected: crc32(payload), actual: crc32(nanPayload)))
    }

    func testNonFiniteValuesAreRefusedWithTheirIndex() throws {
        let count = 10_000
        for index in [0, 7, 8, 4095, 4096, 4097, 9991, 9999] {
            for bits: UInt32 in [0x7FC0_0000, 0x7F80_0000, 0xFF80_0000, 0x7F80_0001, 0xFFFF_FFFF] {
                var values = randomFloats(count, seed: 11)
                values[index] = Float(bitPattern: bits)
                if index + 3 < count { values[index + 3] = .nan }  // only the first is reported
                let payload = littleEndianBytes(values)
                for level in [nil, 3] as [Int?] {
                    let body = try craftFP32(payload, zstdLevel: level)
                    XCTAssertEqual(decodeError(body, expectedCount: count), .nonFinite(index: index),
                                   "bits 0x\(String(bits, radix: 16)) at \(index), level \(String(describing: level))")
                }
            }
        }
        // The largest finite magnitudes pass.
        let edge: [Float] = [.greatestFiniteMagnitude, -.greatestFiniteMagnitude, Float(bitPattern: 0x7F7F_FFFF)]
        assertBitwiseEqual(try decodeFrame(try craftFP32(littleEndianBytes(edge)), expectedCount: 3), edge)
    }

    func testDecompressionBombs() throws {
        let clock = ContinuousClock()
        // 64 MiB of zeros from libzstd: a few KiB on the wire.
        let zeros = [UInt8](repeating: 0, count: 64 << 20)
        let bomb = try zeros.withUnsafeBytes { try Zstd.compress($0, level: 3) }
        XCTAssertLessThan(bomb.count, 16 << 10)
        let crc = crc32([UInt8](repeating: 0, count: 64))
        let start = clock.now
        // Claiming n = 16, the compressed payload alone is over the 4·16 + 64 byte limit.
        XCTAssertEqual(decodeError(craftBody(flags: 1, elementCount: 16, payload: bomb, checksum: crc), expectedCount: 16),
                       .payloadTooLarge(claimed: UInt64(bomb.count), limit: 128))
        XCTAssertThrowsError(try bomb.withUnsafeBytes { try Zstd.decompress($0, exactSize: 64) }) {
            XCTAssertEqual($0 as? FrameError, .decompressionBomb(limit: 64))
        }
        // With n large enough for the payload to pass the size check, zstd's bound catches it.
        let n = bomb.count
        XCTAssertEqual(decodeError(craftBody(flags: 1, elementCount: UInt64(n), payload: bomb, checksum: crc), expectedCount: n),
                       .decompressionBomb(limit: 4 * n))
        XCTAssertLessThan(clock.now - start, .seconds(1))

        // Hand-made frames (no 64 MiB buffer to build): 512 RLE blocks of 128 KiB = 64 MiB, with
        // and without a declared content size. The second can only be caught while streaming.
        let canReset = PeakMemory.reset()
        let before = PeakMemory.bytes()
        let streamStart = clock.now
        for declared in [true, false] {
            let frame = rleZstdFrame(blockCount: 512, declareContentSize: declared)
            XCTAssertLessThan(frame.count, 2100)
            let body = craftBody(flags: 1, elementCount: 1024, payload: frame, checksum: 0)
            for _ in 0..<20 {
                XCTAssertEqual(decodeError(body, expectedCount: 1024), .decompressionBomb(limit: 4096), "declared \(declared)")
            }
        }
        XCTAssertLessThan(clock.now - streamStart, .seconds(1))
        if canReset, let before, let after = PeakMemory.bytes() {
            XCTAssertLessThan(after - before, 16 << 20, "peak memory rose by \(after - before) bytes decoding 64 MiB bombs")
        }
        // Contexts left mid-frame by the bombs still decode a good frame.
        assertBitwiseEqual(try decodeFrame(try encodeFrame(small, zstdLevel: 3), expectedCount: 5), small)
    }

    func testTruncationAtEveryLength() throws {
        let bodies = [try encodeFrame(small, zstdLevel: nil), try encodeFrame(small, zstdLevel: 3),
                      try encodeFrame(randomFloats(300, seed: 1), zstdLevel: 3)]
        for body in bodies {
            let count = body.count < 100 ? 5 : 300
            XCTAssertNil(decodeError(body, expectedCount: count))
            for length in 0..<body.count {
                let prefix = Array(body.prefix(length))
                let error = decodeError(prefix, expectedCount: count)
                if length < 32 {
                    XCTAssertEqual(error, .truncated(length))
                } else {
                    XCTAssertEqual(error, .payloadLengthMismatch(claimed: UInt64(body.count - 32), actual: length - 32))
                }
                // Patch the length field so the truncated payload itself is examined.
                guard length >= 32 else { continue }
                var patched = prefix
                patched.withUnsafeMutableBytes { $0.storeBytes(of: UInt64(length - 32).littleEndian, toByteOffset: 16, as: UInt64.self) }
                let deep = decodeError(patched, expectedCount: count)
                if body[6] == 0 {
                    XCTAssertEqual(deep, .truncated(length))
                } else {
                    XCTAssertTrue(isCorruptCompression(deep), "length \(length): \(String(describing: deep))")
                }
            }
        }
    }

    func testAccumulate() throws {
        let count = 1003  // not a multiple of 8: the scalar tail runs too
        let values = randomFloats(count, seed: 21)
        let start = randomFloats(count, seed: 22)
        var accumulator = start
        var scratch = [Float](repeating: 0, count: count + 5)
        func accumulate(_ body: [UInt8], scale: Float) throws {
            try body.withUnsafeBytes { raw in
                try accumulator.withUnsafeMutableBufferPointer { acc in
                    try scratch.withUnsafeMutableBufferPointer { tmp in
                        try TensorFrame.accumulate(raw, expectedCount: count, scale: scale, into: acc, scratch: tmp)
                    }
                }
            }
        }
        for level in [nil, 3] as [Int?] {
            accumulator = start
            try accumulate(try encodeFrame(values, zstdLevel: level), scale: 0.25)
            assertBitwiseEqual(accumulator, (0..<count).map { start[$0] + 0.25 * values[$0] })
            try accumulate(try encodeFrame(values, zstdLevel: level), scale: -3)
            assertBitwiseEqual(accumulator, (0..<count).map { (start[$0] + 0.25 * values[$0]) + -3 * values[$0] })
        }

        // Failures late in the payload (after most values were decoded) leave the accumulator alone.
        accumulator = start
        var late = values
        late[count - 1] = .infinity
        let nonFinite = try craftFP32(littleEndianBytes(late), zstdLevel: 3)
        var corrupt = try encodeFrame(values, zstdLevel: nil)
        corrupt[corrupt.count - 2] ^= 0x10
        let failing: [([UInt8], FrameError)] = [
            (nonFinite, .nonFinite(index: count - 1)),
            (corrupt, .checksumMismatch(expected: crc32(littleEndianBytes(values)), actual: crc32(Array(corrupt[32...])))),
            (Array(corrupt.prefix(40)), .payloadLengthMismatch(claimed: UInt64(4 * count), actual: 8)),
        ]
        for (body, expected) in failing {
            XCTAssertThrowsError(try accumulate(body, scale: 1)) { XCTAssertEqual($0 as? FrameError, expected) }
            assertBitwiseEqual(accumulator, start, "accumulator touched by \(expected)")
        }
    }

    func testErrorDescriptionsAreOneLine() {
        let errors: [FrameError] = [
            .truncated(3), .badMagic, .unsupportedVersion(2), .unknownCodec(9), .badFlags(0x8000), .badCodecParameter(7),
            .elementCountMismatch(claimed: 1, expected: 2), .payloadLengthMismatch(claimed: 1, actual: 2),
            .payloadTooLarge(claimed: 100, limit: 84), .decompressionBomb(limit: 64), .corruptCompression("x"),
            .checksumMismatch(expected: 0xCBF4_3926, actual: 1), .nonFinite(index: 4),
            .sparseCountTooLarge(k: 9, count: 3), .truncatedVarint(offset: 4), .malformedVarint(offset: 5),
            .sparseIndexOutOfRange(position: 1, index: 7, count: 3), .truncatedPayload(expected: 10, actual: 9), .trailingBytes(2),
        ]
        for error in errors {
            XCTAssertFalse(error.description.isEmpty)
            XCTAssertFalse(error.description.contains("\n"))
        }
        XCTAssertEqual(FrameError.badFlags(0x8000).description,
                       "tensor frame flags 0x8000 set reserved bits (only bit 0, zstd, is defined)")
        XCTAssertEqual(FrameError.checksumMismatch(expected: 0xCBF4_3926, actual: 1).description,
                       "tensor frame checksum mismatch: header says 0xcbf43926, payload has 0x00000001")
        XCTAssertEqual(FrameError.unknownCodec(9).description,
                       "unknown tensor codec id 9 (this build knows fp32 = 0, fp16 = 1, bf16 = 2, int8-block = 3, int4-block = 4, top-k = 5, low-rank = 6)")
        XCTAssertEqual(FrameError.sparseIndexOutOfRange(position: 1, index: 7, count: 3).description,
                       "top-k frame index #1 is 7, outside 0..<3 (indices must increase and stay below n)")
        let encodingErrors: [FrameEncodingError] = [
            .invalidZstdLevel(0), .nonFinite(index: 1), .zstdFailure("x"), .invalidCodecParameter(codec: .int8Block, parameter: 3),
            .sparseCodecNeedsIndices, .sparseLengthMismatch(indices: 1, values: 2), .sparseIndexOutOfRange(position: 0, index: 5, count: 5),
            .sparseIndicesNotIncreasing(position: 1), .tooManyElementsForSparse(1 << 33), .residualLengthMismatch(values: 2, residual: 1),
            .residualOverflow(index: 0),
        ]
        for error in encodingErrors {
            XCTAssertFalse(error.description.isEmpty)
            XCTAssertFalse(error.description.contains("\n"))
        }
        XCTAssertEqual(FrameEncodingError.invalidZstdLevel(20).description, "zstd level 20 is outside 1...19")
    }
}
