import Foundation
import XCTest
@testable import TributaryCompression

/// Protocol/vectors: frames built independently of this code (Python's struct and zlib, the
/// zstd 1.5.4 command line). Decoding must match exactly; encoding must match byte for byte
/// because libzstd's output is deterministic for a fixed version and level.
final class FrameVectorTests: XCTestCase {
    static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Protocol/vectors")

    static let vectors: [(name: String, count: Int, zstdLevel: Int?)] = [
        ("fp32-small-raw", 5, nil),
        ("fp32-small-zstd3", 5, 3),
        ("fp32-wave-1000-raw", 1000, nil),
        ("fp32-wave-1000-zstd3", 1000, 3),
    ]

    /// Vectors of the other codecs: `<name>.input.f32` encodes (with `spec`) to `<name>.frame`,
    /// which decodes to `<name>.expected.f32`.
    static let codecVectors: [(name: String, count: Int, spec: String, zstdLevel: Int?)] = [
        ("fp16-edge-raw", 23, "fp16", nil),
        ("fp16-edge-zstd3", 23, "fp16", 3),
        ("fp16-wave-1000-raw", 1000, "fp16", nil),
        ("fp16-wave-1000-zstd3", 1000, "fp16", 3),
        ("bf16-edge-raw", 23, "bf16", nil),
        ("bf16-edge-zstd3", 23, "bf16", 3),
        ("bf16-wave-1000-raw", 1000, "bf16", nil),
        ("bf16-wave-1000-zstd3", 1000, "bf16", 3),
        ("int8-b16-edge-raw", 40, "int8:16", nil),
        ("int8-b16-edge-zstd3", 40, "int8:16", 3),
        ("int8-b96-wave-1000-raw", 1000, "int8:96", nil),
        ("int8-b96-wave-1000-zstd3", 1000, "int8:96", 3),
        ("int4-b17-edge-raw", 40, "int4:17", nil),
        ("int4-b17-edge-zstd3", 40, "int4:17", 3),
        ("int4-b48-wave-1000-raw", 1000, "int4:48", nil),
        ("int4-b48-wave-1000-zstd3", 1000, "int4:48", 3),
        ("topk-fp16-spikes-20000-raw", 20000, "topk:0.00025:fp16", nil),
        ("topk-fp16-spikes-20000-zstd3", 20000, "topk:0.00025:fp16", 3),
        ("topk-int8-spikes-20000-raw", 20000, "topk:0.00025:int8", nil),
        ("topk-int8-spikes-20000-zstd3", 20000, "topk:0.00025:int8", 3),
        ("topk-fp16-wave-1000-raw", 1000, "topk:0.01:fp16", nil),
        ("topk-fp16-wave-1000-zstd3", 1000, "topk:0.01:fp16", 3),
        ("topk-int8-wave-1000-raw", 1000, "topk:0.01:int8", nil),
        ("topk-int8-wave-1000-zstd3", 1000, "topk:0.01:int8", 3),
    ]

    /// Low-rank vectors: a frame is defined by its factors (the encoder's choice), so
    /// `<name>.input.f32` is their exact product and equals `<name>.expected.f32`. `segments` is
    /// the frame's table (rows, cols, rank); `tolerance` bounds our encoder's relative L2 error on
    /// the input at the largest rank.
    static let lowRankVectors: [(name: String, values: String, segments: [(rows: Int, cols: Int, rank: Int)],
                                 zstdLevel: Int?, tolerance: Float)] = {
        let fp16 = [(12, 10, 2), (1, 7, 0), (5, 9, 1), (2, 2, 0)]
        let int8 = [(12, 10, 2), (1, 80, 0), (70, 3, 1), (5, 9, 1), (2, 2, 0)]
        let int4 = [(65, 5, 1), (1, 9, 0), (6, 8, 2)]
        return [
            ("lowrank-fp16-mixed-raw", "fp16", fp16, nil, 2e-3),
            ("lowrank-fp16-mixed-zstd3", "fp16", fp16, 3, 2e-3),
            ("lowrank-int8-mixed-raw", "int8", int8, nil, 1e-2),
            ("lowrank-int8-mixed-zstd3", "int8", int8, 3, 1e-2),
            ("lowrank-int4-mixed-raw", "int4", int4, nil, 0.1),
            ("lowrank-int4-mixed-zstd3", "int4", int4, 3, 0.1),
        ].map { (name: $0.0, values: $0.1, segments: $0.2.map { (rows: $0.0, cols: $0.1, rank: $0.2) },
                 zstdLevel: $0.3, tolerance: Float($0.4)) }
    }()

    private func load(_ file: String) throws -> [UInt8] {
        Array(try Data(contentsOf: Self.directory.appendingPathComponent(file)))
    }

    private func floats(_ bytes: [UInt8]) -> [Float] {
        stride(from: 0, to: bytes.count, by: 4).map { i in
            Float(bitPattern: UInt32(bytes[i]) | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2]) << 16 | UInt32(bytes[i + 3]) << 24)
        }
    }

    func testVectorsDecodeAndEncodeExactly() throws {
        for vector in Self.vectors {
            let input = try load("\(vector.name).input.f32")
            let frame = try load("\(vector.name).frame")
            XCTAssertEqual(input.count, 4 * vector.count, vector.name)
            let values = floats(input)
            assertBitwiseEqual(try decodeFrame(frame, expectedCount: vector.count), values, vector.name)
            let encoded = try encodeFrame(values, zstdLevel: vector.zstdLevel)
            let firstDifference = zip(encoded, frame).enumerated().first { $0.element.0 != $0.element.1 }?.offset
            XCTAssertTrue(encoded.count == frame.count && firstDifference == nil,
                          "\(vector.name): encoded \(encoded.count) bytes vs \(frame.count), first difference at \(String(describing: firstDifference))")
            let header = try frame.withUnsafeBytes { try TensorFrameHeader.parse($0) }
            XCTAssertEqual(header.flags, vector.zstdLevel == nil ? [] : .zstd, vector.name)
            XCTAssertEqual(header.checksum, crc32(input), vector.name)
        }
    }

    /// Both ways for every codec: decode(frame) == expected bit for bit, encode(input) == frame byte
    /// for byte, through the spec string (as a worker would) and through TensorFrame directly.
    func testCodecVectorsDecodeAndEncodeExactly() throws {
        for vector in Self.codecVectors {
            let input = floats(try load("\(vector.name).input.f32"))
            let expected = floats(try load("\(vector.name).expected.f32"))
            let frame = try load("\(vector.name).frame")
            XCTAssertEqual(input.count, vector.count, vector.name)
            XCTAssertEqual(expected.count, vector.count, vector.name)
            assertBitwiseEqual(try decodeFrame(frame, expectedCount: vector.count), expected, vector.name)
            var accumulator = [Float](repeating: 0, count: vector.count)
            XCTAssertNil(accumulateError(frame, expectedCount: vector.count, scale: 1, into: &accumulator), vector.name)
            assertBitwiseEqual(accumulator, expected.map { 0 + $0 }, vector.name)

            let spec = try UpdateCodecSpec(parsing: vector.spec)
            let header = try frame.withUnsafeBytes { try TensorFrameHeader.parse($0) }
            XCTAssertEqual(header.codec, spec.codec, vector.name)
            XCTAssertEqual(header.codecParameter, spec.codecParameter, vector.name)
            XCTAssertEqual(header.flags, vector.zstdLevel == nil ? [] : .zstd, vector.name)
            var direct: [UInt8]
            if case .topK(let fraction, let values) = spec.kind {
                let selection = TopK.select(values: input, fraction: fraction)
                direct = try TensorFrame.encodeSparse(indices: selection.indices, values: selection.values, count: vector.count,
                                                      valueCodec: values, zstdLevel: vector.zstdLevel)
            } else {
                direct = try encodeFrame(input, codec: spec.codec, parameter: spec.codecParameter, zstdLevel: vector.zstdLevel)
            }
            for (route, encoded) in [("spec", try encodeFrame(input, spec: vector.spec, zstdLevel: vector.zstdLevel)), ("direct", direct)] {
                let firstDifference = zip(encoded, frame).enumerated().first { $0.element.0 != $0.element.1 }?.offset
                XCTAssertTrue(encoded.count == frame.count && firstDifference == nil,
                              "\(vector.name) via \(route): encoded \(encoded.count) bytes vs \(frame.count), first difference at \(String(describing: firstDifference))")
            }
        }
    }

    /// Values the spec's rules fix, checked against the vector files (so against make_vectors.py).
    func testCodecVectorsShowTheDocumentedRounding() throws {
        let fp16 = floats(try load("fp16-edge-raw.expected.f32"))
        XCTAssertEqual(fp16[5], 1, "1 + 2⁻¹¹ ties to even: 1")
        XCTAssertEqual(fp16[6], 1 + 0x1p-9, "1 + 3·2⁻¹¹ ties to even: 1 + 2⁻⁹")
        XCTAssertEqual(Array(fp16[7...11]), [65504, 65504, 65504, -65504, 65504], "65519 rounds down, 65520 and beyond saturate")
        XCTAssertEqual(Array(fp16[13...15]), [0x1p-24, 0, 0x1p-23], "subnormal halves: 2⁻²⁵ ties to 0, 3·2⁻²⁵ to 2·2⁻²⁴")
        XCTAssertEqual(fp16[3].bitPattern, 0x8000_0000, "−0 stays −0")
        let bf16 = floats(try load("bf16-edge-raw.expected.f32"))
        XCTAssertEqual(Array(bf16[17...18]), [1, 1 + 0x1p-6], "bfloat16 ties to even")
        XCTAssertEqual(bf16[19].bitPattern, 0x7F7F_0000, "rounding past the largest bfloat16 saturates")
        XCTAssertEqual(bf16[20].bitPattern, 0xFF7F_0000)
        let int8 = floats(try load("int8-b16-edge-raw.expected.f32"))
        XCTAssertEqual(Array(int8[0..<9]), [127, 2, 4, -2, -4, 0, 2, 0, 64], "scale 1: q = round half to even")
        XCTAssertEqual(Array(int8[16..<32]), [Float](repeating: 0, count: 16), "all-zero block")
        let int4 = floats(try load("int4-b17-edge-raw.expected.f32"))
        XCTAssertEqual(Array(int4[0..<12]), [7, 0, 2, 2, 0, -2, -2, 4, -7, 6, 4, -4], "scale 1: q = round half to even")
        let topk = floats(try load("topk-fp16-spikes-20000-raw.expected.f32"))
        XCTAssertEqual(topk.indices.filter { topk[$0] != 0 }, [0, 5, 6, 200, 17000], "index 19999 ties at 7.5 and loses to lower indices")
        XCTAssertEqual([topk[0], topk[5], topk[6], topk[200], topk[17000]], [50, -7.5, 100, 7.5, -7.5])
        // Deltas 0, 4, 0, 193, 16799: varints of 1, 1, 1, 2 and 3 bytes.
        XCTAssertEqual(Array(try load("topk-fp16-spikes-20000-raw.frame")[32..<44]),
                       [5, 0, 0, 0, 0x00, 0x04, 0x00, 0xC1, 0x01, 0x9F, 0x83, 0x01])
    }

    /// Decoding is bit for bit (the vectors' products and sums are exact in fp32, so any summation
    /// order gives the same bits), the input is the decoded tensor, and accumulate matches decode.
    func testLowRankVectorsDecodeExactly() throws {
        for vector in Self.lowRankVectors {
            let count = vector.segments.reduce(0) { $0 + $1.rows * $1.cols }
            let input = floats(try load("\(vector.name).input.f32"))
            let expected = floats(try load("\(vector.name).expected.f32"))
            let frame = try load("\(vector.name).frame")
            XCTAssertEqual(input.count, count, vector.name)
            assertBitwiseEqual(input, expected, "\(vector.name): input = expected (the exact product)")
            assertBitwiseEqual(try decodeFrame(frame, expectedCount: count), expected, vector.name)
            var accumulator = [Float](repeating: 0, count: count)
            XCTAssertNil(accumulateError(frame, expectedCount: count, scale: 1, into: &accumulator), vector.name)
            assertBitwiseEqual(accumulator, expected.map { 0 + $0 }, "\(vector.name) accumulated")

            let spec = try UpdateCodecSpec(parsing: "lowrank:1:\(vector.values)")
            let header = try frame.withUnsafeBytes { try TensorFrameHeader.parse($0) }
            XCTAssertEqual(header.codec, .lowRank, vector.name)
            XCTAssertEqual(header.codecParameter, spec.codecParameter, vector.name)
            XCTAssertEqual(header.flags, vector.zstdLevel == nil ? [] : .zstd, vector.name)
            XCTAssertEqual(header.elementCount, UInt64(count), vector.name)
            if vector.zstdLevel == nil {
                // The segment table, as the vector's README describes it.
                let payload = Array(frame[TensorFrameHeader.size...])
                XCTAssertEqual(header.checksum, crc32(payload), vector.name)
                assertLowRankSegmentTable(payload, vector.segments.map { [$0.rows, $0.cols, $0.rank] }, vector.name)
            }
        }
        // The int8 vector's 70×3 segment: its 70-value p run spans two blocks (64 + 6), both scale 1,
        // and its q run (63.5, −20.5, 8) has scale 0.5.
        let int8 = try load("lowrank-int8-mixed-raw.frame")
        let p70 = TensorFrameHeader.size + 4 + 12 * 5 + 60 + 88
        XCTAssertEqual(Array(int8[p70..<(p70 + 5)]), [0x00, 0x00, 0x80, 0x3F, 0x7F], "block 0: scale 1, then 127")
        XCTAssertEqual(Array(int8[(p70 + 68)..<(p70 + 73)]), [0x00, 0x00, 0x80, 0x3F, 0x7F], "block 1: scale 1, then 127")
        XCTAssertEqual(Array(int8[(p70 + 78)..<(p70 + 85)]), [0x00, 0x00, 0x00, 0x3F, 0x7F, 0xD7, 0x10], "q: scale 0.5, 127, −41, 16")
    }

    /// Our encoder chooses its own factors, so it is not asked to reproduce the frame: given the
    /// vector's matrix shapes and its largest rank, it must come back close to the (exactly low-rank)
    /// input, in a frame that decodes, and leave the rest in the residual.
    func testLowRankEncoderApproximatesVectorInputs() throws {
        for vector in Self.lowRankVectors {
            let input = floats(try load("\(vector.name).input.f32"))
            let rank = vector.segments.map(\.rank).max() ?? 1
            let spec = try UpdateCodecSpec(parsing: "lowrank:\(rank):\(vector.values)")
            let shapes = vector.segments.map { MatrixShape(rows: $0.rows, cols: $0.cols) }
            var residual = [Float](repeating: 0, count: input.count)
            let body = try spec.encode(input, residual: &residual, zstdLevel: vector.zstdLevel, shapes: shapes)
            let header = try body.withUnsafeBytes { try TensorFrameHeader.parse($0) }
            XCTAssertEqual(header.codec, .lowRank, vector.name)
            XCTAssertEqual(header.flags, vector.zstdLevel == nil ? [] : .zstd, vector.name)
            let decoded = try decodeFrame(body, expectedCount: input.count)
            func norm(_ x: [Float]) -> Double { x.reduce(0) { $0 + Double($1) * Double($1) }.squareRoot() }
            let error = norm(zip(decoded, input).map { $0 - $1 }) / norm(input)
            XCTAssertLessThanOrEqual(error, Double(vector.tolerance), "\(vector.name): relative L2 error \(error)")
            // Error feedback: residual = input − decoded (up to fp32 rounding of the subtraction).
            let leftover = norm(zip(zip(decoded, residual), input).map { $0.0 + $0.1 - $1 }) / norm(input)
            XCTAssertLessThanOrEqual(leftover, 1e-6, "\(vector.name): decoded + residual vs input")
        }
    }

    /// Protocol/frames.md, "Worked example: a low-rank payload", byte for byte.
    func testLowRankWorkedExampleDecodes() throws {
        let payload: [UInt8] = [
            0x02, 0, 0, 0,
            0x04, 0, 0, 0, 0x06, 0, 0, 0, 0x01, 0, 0, 0,
            0x01, 0, 0, 0, 0x04, 0, 0, 0, 0x00, 0, 0, 0,
            0x00, 0x3C, 0x00, 0xC0, 0x00, 0x38, 0x00, 0x44,
            0x00, 0x38, 0x00, 0x42, 0x00, 0xBC, 0x00, 0x40, 0x00, 0x34, 0x00, 0xC4,
            0x00, 0x34, 0x00, 0xB8, 0x00, 0x40, 0x00, 0x48,
        ]
        XCTAssertEqual(payload.count, 56)
        XCTAssertEqual(crc32(payload), 0xD08C_A68B)
        let body = craftBody(codec: 6, elementCount: 28, payload: payload, checksum: crc32(payload), parameter: 0)
        let p: [Float] = [1, -2, 0.5, 4], q: [Float] = [0.5, 3, -1, 2, 0.25, -4]
        assertBitwiseEqual(try decodeFrame(body, expectedCount: 28), p.flatMap { pi in q.map { pi * $0 } } + [0.25, -0.5, 2, 8])
        XCTAssertEqual(TensorFrame.maximumBodySize(elementCount: 1000, codec: .lowRank), 4_111, "as fp32")
        XCTAssertEqual(TensorFrame.maximumBodySize(elementCount: 1000), 4_111)
    }

    func testSmallVectorIsTheDocumentedBytes() throws {
        XCTAssertEqual(floats(try load("fp32-small-raw.input.f32")), [1.0, -2.5, 0.0, 0.1, 65536.0])
        XCTAssertEqual(try load("fp32-small-raw.frame").count, 52)
        XCTAssertEqual(Array(try load("fp32-small-raw.frame")[24..<28]), [0xA3, 0x60, 0xF3, 0x88])  // CRC 0x88F360A3
    }

    func testWaveVectorFollowsTheDocumentedFormula() throws {
        // x_i = float32(sin(i * 0.1) * (1 + i / 1000)) in double precision, i = 0..<1000.
        let values = floats(try load("fp32-wave-1000-raw.input.f32"))
        for (i, value) in values.enumerated() {
            let expected = Float(sin(Double(i) * 0.1) * (1 + Double(i) / 1000))
            // One float ulp of slack: libm's sin may differ in the last double bit across platforms.
            XCTAssertLessThanOrEqual(abs(value - expected), expected.ulp, "i = \(i)")
        }
    }

    func testReadmeListsEveryVectorFile() throws {
        let readme = String(decoding: try load("README.md"), as: UTF8.self)
        for vector in Self.vectors {
            XCTAssertTrue(readme.contains("\(vector.name).input.f32"), vector.name)
            XCTAssertTrue(readme.contains("\(vector.name).frame"), vector.name)
        }
        for name in Self.codecVectors.map(\.name) + Self.lowRankVectors.map(\.name) {
            for suffix in ["input.f32", "expected.f32", "frame"] {
                XCTAssertTrue(readme.contains("`\(name).\(suffix)`"), "\(name).\(suffix)")
            }
        }
    }
}
