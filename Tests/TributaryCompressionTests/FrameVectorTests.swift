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
        for vector in Self.codecVectors {
            for suffix in ["input.f32", "expected.f32", "frame"] {
                XCTAssertTrue(readme.contains("`\(vector.name).\(suffix)`"), "\(vector.name).\(suffix)")
            }
        }
    }
}
