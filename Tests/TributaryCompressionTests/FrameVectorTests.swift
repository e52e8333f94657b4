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
    }
}
