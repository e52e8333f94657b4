import Foundation
import XCTest
@testable import TributaryCompression

/// Protocol/vectors, the parameter-delta files (make_delta_vectors.py, built from
/// Protocol/frames.md, "Parameter deltas", alone). A worker that rebuilds a shard from deltas
/// must hold the coordinator's bits exactly, so the reproducible decode, the reconstruction
/// rule and the delta chain are checked bit for bit.
final class ParameterDeltaVectorTests: XCTestCase {
    static let directory = FrameVectorTests.directory

    struct SingleDelta {
        let name: String
        let count: Int
        /// The low-rank value codec (the frame's codec parameter): 0 fp16, 1 int8.
        let parameter: UInt32
        /// The segment table: rows, cols, rank.
        let segments: [[Int]]
    }

    static let singleDeltas = [
        SingleDelta(name: "delta-lowrank-fp16", count: 484, parameter: 0, segments: [[16, 12, 4], [1, 12, 0], [70, 4, 2]]),
        SingleDelta(name: "delta-lowrank-int8", count: 484, parameter: 1, segments: [[16, 12, 4], [1, 12, 0], [70, 4, 2]]),
    ]

    static let chainName = "delta-chain-5-8"
    static let chainFrom = 5
    static let chainTo = 8
    static let chainCount = 210

    private func load(_ file: String) throws -> [UInt8] {
        Array(try Data(contentsOf: Self.directory.appendingPathComponent(file)))
    }

    private func floats(_ bytes: [UInt8]) -> [Float] {
        stride(from: 0, to: bytes.count, by: 4).map { i in
            Float(bitPattern: UInt32(bytes[i]) | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2]) << 16 | UInt32(bytes[i + 3]) << 24)
        }
    }

    /// `ParameterDelta.apply` of one frame to `values`.
    private func apply(_ frame: [UInt8], to values: inout [Float], scratch: inout [Float]) throws {
        try frame.withUnsafeBytes { raw in
            try values.withUnsafeMutableBufferPointer { v in
                try scratch.withUnsafeMutableBufferPointer { s in
                    try ParameterDelta.apply(raw, to: v, scratch: s)
                }
            }
        }
    }

    /// The frame decoded reproducibly.
    private func decodeReproducibly(_ frame: [UInt8], count: Int) throws -> [Float] {
        var out = [Float](repeating: -7, count: count)
        try frame.withUnsafeBytes { raw in
            try out.withUnsafeMutableBufferPointer { try TensorFrame.decode(raw, expectedCount: count, into: $0, reproducible: true) }
        }
        return out
    }

    private func chainRanges(_ body: [UInt8], from: Int, to: Int) throws -> [Range<Int>] {
        try body.withUnsafeBytes { try DeltaChain.deltas(in: $0, from: from, to: to) }
    }

    /// The error `DeltaChain.deltas` refuses `body` with, or nil when it accepts it.
    private func chainError(_ body: [UInt8], from: Int, to: Int) -> DeltaChainError? {
        do {
            _ = try chainRanges(body, from: from, to: to)
            return nil
        } catch let error as DeltaChainError {
            return error
        } catch {
            XCTFail("DeltaChain.deltas threw a non-DeltaChainError: \(error)")
            return nil
        }
    }

    // MARK: Single low-rank deltas

    /// decode(frame, reproducible) = delta.f32 and apply(frame, base) = expected.f32, bit for bit;
    /// the files themselves obey the rule expected[i] = base[i] + delta[i].
    func testLowRankDeltasDecodeReproduciblyAndApplyExactly() throws {
        for vector in Self.singleDeltas {
            let base = floats(try load("\(vector.name).base.f32"))
            let frame = try load("\(vector.name).frame")
            let delta = floats(try load("\(vector.name).delta.f32"))
            let expected = floats(try load("\(vector.name).expected.f32"))
            XCTAssertEqual(base.count, vector.count, vector.name)
            XCTAssertEqual(delta.count, vector.count, vector.name)
            XCTAssertEqual(expected.count, vector.count, vector.name)

            let header = try frame.withUnsafeBytes { try TensorFrameHeader.parse($0) }
            XCTAssertEqual(header.codec, .lowRank, vector.name)
            XCTAssertEqual(header.codecParameter, vector.parameter, vector.name)
            XCTAssertEqual(header.flags, [], vector.name)
            XCTAssertEqual(header.elementCount, UInt64(vector.count), vector.name)
            let payload = Array(frame[TensorFrameHeader.size...])
            XCTAssertEqual(header.checksum, crc32(payload), vector.name)
            assertLowRankSegmentTable(payload, vector.segments, vector.name)

            assertBitwiseEqual(try decodeReproducibly(frame, count: vector.count), delta, "\(vector.name): reproducible decode")
            assertBitwiseEqual(zip(base, delta).map { $0 + $1 }, expected, "\(vector.name): the files obey the rule")
            var values = base
            var scratch = [Float](repeating: 0, count: vector.count)
            try apply(frame, to: &values, scratch: &scratch)
            assertBitwiseEqual(values, expected, "\(vector.name): ParameterDelta.apply")

            // Row 3 of the first segment is a zero row: +0, but −0 at element 43.
            XCTAssertEqual(delta[36..<48].map(\.bitPattern),
                           [UInt32](repeating: 0, count: 7) + [0x8000_0000] + [UInt32](repeating: 0, count: 4), vector.name)
        }
        // The signed zeros of the bases: −0 + −0 = −0 (fp16's element 43), +0 + −0 = +0 (int8's).
        XCTAssertEqual(floats(try load("delta-lowrank-fp16.expected.f32"))[43].bitPattern, 0x8000_0000)
        XCTAssertEqual(floats(try load("delta-lowrank-int8.expected.f32"))[43].bitPattern, 0)
        XCTAssertEqual(floats(try load("delta-lowrank-fp16.expected.f32"))[36].bitPattern, 0, "−0 + +0 = +0")
    }

    /// The reproducible order is k = 1…r with every product and sum rounded on its own: written
    /// out here from the decoded factors of the int8 vector's first segment (16 × 12, rank 4).
    func testReproducibleProductIsTheDocumentedOrder() throws {
        let frame = try load("delta-lowrank-int8.frame")
        let delta = floats(try load("delta-lowrank-int8.delta.f32"))
        let payload = Array(frame[TensorFrameHeader.size...])
        // Runs after the 3-entry table: p₁…p₄ (16 values: one block each, a scale and 16 bytes),
        // then q₁…q₄ (12 values: a scale and 12 bytes).
        var offset = 4 + 12 * 3
        func run(_ length: Int) -> [Float] {
            let scale = floats(Array(payload[offset..<(offset + 4)]))[0]
            let values = payload[(offset + 4)..<(offset + 4 + length)].map { Float(Int8(bitPattern: $0)) * scale }
            offset += 4 + length
            return values
        }
        let p = (0..<4).map { _ in run(16) }
        let q = (0..<4).map { _ in run(12) }
        var differences = 0
        for i in 0..<16 {
            for j in 0..<12 {
                var acc = p[0][i] * q[0][j]
                for k in 1..<4 {
                    let product = p[k][i] * q[k][j]
                    acc = acc + product
                }
                XCTAssertEqual(delta[i * 12 + j].bitPattern, acc.bitPattern, "M[\(i)][\(j)]")
                // A fused multiply-add per step gives other bits for some elements.
                var fused = p[0][i] * q[0][j]
                for k in 1..<4 { fused = fused.addingProduct(p[k][i], q[k][j]) }
                if fused.bitPattern != acc.bitPattern { differences += 1 }
            }
        }
        XCTAssertGreaterThan(differences, 0, "the vector tells a fused decode apart")
    }

    /// A delta that fails its frame checks leaves the values as they were.
    func testAFailedDeltaChangesNothing() throws {
        let vector = Self.singleDeltas[1]
        let base = floats(try load("\(vector.name).base.f32"))
        var frame = try load("\(vector.name).frame")
        frame[frame.count - 1] ^= 0x01  // a value byte: the CRC no longer matches
        var values = base
        var scratch = [Float](repeating: 0, count: vector.count)
        XCTAssertThrowsError(try apply(frame, to: &values, scratch: &scratch)) { error in
            guard case .checksumMismatch = error as? FrameError else { return XCTFail("\(error)") }
        }
        assertBitwiseEqual(values, base, "values touched by a refused delta")
        let intact = try load("\(vector.name).frame")
        var short = Array(base.dropLast())
        var shortScratch = [Float](repeating: 0, count: short.count)
        XCTAssertThrowsError(try apply(intact, to: &short, scratch: &shortScratch)) { error in
            guard case .elementCountMismatch = error as? FrameError else { return XCTFail("\(error)") }
        }
    }

    // MARK: The delta chain

    /// The container's header and lengths as frames.md lays them out; its deltas rebuild version 8
    /// from version 5, whose uncompressed fp32 frame is the full body byte for byte.
    func testDeltaChainRebuildsTheTargetShardExactly() throws {
        let base = floats(try load("\(Self.chainName).base.f32"))
        let chain = try load("\(Self.chainName).chain")
        let expected = floats(try load("\(Self.chainName).expected.f32"))
        let full = try load("\(Self.chainName).expected.frame")
        XCTAssertEqual(base.count, Self.chainCount)
        XCTAssertEqual(expected.count, Self.chainCount)

        XCTAssertEqual(Array(chain[0..<8]), [0x54, 0x52, 0x44, 0x43, 1, 0, 0, 0], "TRDC, version 1, reserved")
        XCTAssertEqual(Array(chain[8..<24]), [5, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0], "from 5, to 8")
        let ranges = try chainRanges(chain, from: Self.chainFrom, to: Self.chainTo)
        XCTAssertEqual(ranges.map(\.count), [198, 198, 198])
        XCTAssertEqual(ranges.first?.lowerBound, DeltaChain.headerSize + 8)
        XCTAssertEqual(ranges.last?.upperBound, chain.count)
        XCTAssertEqual(DeltaChain.encode(from: Self.chainFrom, to: Self.chainTo, deltas: ranges.map { Array(chain[$0]) }), chain,
                       "DeltaChain.encode writes the vector's bytes")

        var values = base
        var scratch = [Float](repeating: 0, count: base.count)
        for range in ranges {
            let frame = Array(chain[range])
            let header = try frame.withUnsafeBytes { try TensorFrameHeader.parse($0) }
            XCTAssertEqual(header.codec, .lowRank)
            XCTAssertEqual(header.codecParameter, 1, "int8 values")
            try apply(frame, to: &values, scratch: &scratch)
        }
        assertBitwiseEqual(values, expected, "version 8 rebuilt")
        let body = try values.withUnsafeBufferPointer { try TensorFrame.encode($0, codec: .fp32, zstdLevel: nil) }
        XCTAssertEqual(body, full, "the rebuilt body is the full body (so its SHA-256 is the content hash)")
        XCTAssertLessThan(chain.count, full.count, "a chain is served only when smaller than the full body")
    }

    /// Each check of frames.md's delta-chain table, in order.
    func testDeltaChainRefusals() throws {
        let chain = try load("\(Self.chainName).chain")
        let (u, v) = (Self.chainFrom, Self.chainTo)
        let ranges = try chainRanges(chain, from: u, to: v)
        XCTAssertNil(chainError(chain, from: u, to: v))

        XCTAssertEqual(chainError(Array(chain.prefix(23)), from: u, to: v), .truncated(23))
        var magic = chain
        magic[3] = 0x44
        XCTAssertEqual(chainError(magic, from: u, to: v), .badMagic)
        var version = chain
        version[4] = 2
        XCTAssertEqual(chainError(version, from: u, to: v), .unsupportedVersion(2))
        var reserved = chain
        reserved[6] = 1
        XCTAssertEqual(chainError(reserved, from: u, to: v), .unsupportedVersion(1))
        XCTAssertEqual(chainError(chain, from: 4, to: v), .wrongVersions(from: 5, to: 8, expectedFrom: 4, expectedTo: 8))
        XCTAssertEqual(chainError(chain, from: u, to: 9), .wrongVersions(from: 5, to: 8, expectedFrom: 5, expectedTo: 9))
        XCTAssertEqual(chainError(chain, from: v, to: v), .wrongVersions(from: 5, to: 8, expectedFrom: 8, expectedTo: 8))

        var long = chain
        long.replaceSubrange(8..<24, with: [UInt8](repeating: 0, count: 8) + [0x2C, 0x01, 0, 0, 0, 0, 0, 0])
        XCTAssertEqual(chainError(long, from: 0, to: 300), .tooManyDeltas(300), "from 0 to 300: over 256 deltas")

        let last = ranges[2]
        XCTAssertEqual(chainError(Array(chain.prefix(last.lowerBound - 4)), from: u, to: v),
                       .frameLength(index: 2, length: 8, left: 4), "the last length cut in half")
        XCTAssertEqual(chainError(Array(chain.dropLast()), from: u, to: v),
                       .frameLength(index: 2, length: UInt64(last.count), left: last.count - 1), "the last frame one byte short")
        XCTAssertEqual(chainError(chain + [0], from: u, to: v), .trailingBytes(1))
    }

    func testReadmeListsEveryDeltaVectorFile() throws {
        let readme = String(decoding: try load("README.md"), as: UTF8.self)
        var files: [String] = []
        for vector in Self.singleDeltas {
            files += ["base.f32", "frame", "delta.f32", "expected.f32"].map { "\(vector.name).\($0)" }
        }
        files += ["base.f32", "chain", "expected.f32", "expected.frame"].map { "\(Self.chainName).\($0)" }
        for file in files {
            XCTAssertTrue(readme.contains("`\(file)`"), file)
            XCTAssertNoThrow(try load(file), file)
        }
    }
}
