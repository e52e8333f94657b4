import Foundation
import XCTest
@testable import TributaryCompression

/// SplitMix64: seeded, so failures reproduce.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

/// Deterministic finite values with varied exponents and signs (poorly compressible, like gradients).
func randomFloats(_ count: Int, seed: UInt64) -> [Float] {
    var rng = SplitMix64(seed: seed)
    return (0..<count).map { _ in Float.random(in: -1...1, using: &rng) * Float(1 << Int.random(in: 0...20, using: &rng)) / 4096 }
}

func crc32(_ bytes: [UInt8]) -> UInt32 {
    bytes.withUnsafeBytes { FrameKernels.checksum($0) }
}

func littleEndianBytes(_ values: [Float]) -> [UInt8] {
    values.map { $0.bitPattern.littleEndian }.withUnsafeBytes { Array($0) }
}

func appendLittleEndian<T: FixedWidthInteger>(_ value: T, to bytes: inout [UInt8]) {
    withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
}

/// Builds a body field by field, so tests can set any field to any value.
func craftBody(magic: [UInt8] = Array("TRBF".utf8), version: UInt8 = 1, codec: UInt8 = 0, flags: UInt16 = 0,
               elementCount: UInt64, payload: [UInt8], payloadLength: UInt64? = nil,
               checksum: UInt32, parameter: UInt32 = 0) -> [UInt8] {
    var body = magic
    body.append(version)
    body.append(codec)
    appendLittleEndian(flags, to: &body)
    appendLittleEndian(elementCount, to: &body)
    appendLittleEndian(payloadLength ?? UInt64(payload.count), to: &body)
    appendLittleEndian(checksum, to: &body)
    appendLittleEndian(parameter, to: &body)
    return body + payload
}

/// A valid body for raw little-endian fp32 `payload` (values may be non-finite: the CRC is right).
func craftFP32(_ payload: [UInt8], zstdLevel: Int? = nil) throws -> [UInt8] {
    let count = UInt64(payload.count / 4)
    guard let zstdLevel else { return craftBody(elementCount: count, payload: payload, checksum: crc32(payload)) }
    let compressed = try payload.withUnsafeBytes { try Zstd.compress($0, level: zstdLevel) }
    return craftBody(flags: 1, elementCount: count, payload: compressed, checksum: crc32(payload))
}

/// A hand-made zstd frame (RFC 8878) of `blockCount` RLE blocks of `blockSize` zero bytes: a
/// few bytes per block, so a bomb costs the test no memory to build.
func rleZstdFrame(blockCount: Int, blockSize: Int = 128 << 10, declareContentSize: Bool,
                  windowDescriptor: UInt8 = 0x38 /* 2^(10+7) = 128 KiB */) -> [UInt8] {
    var frame: [UInt8] = [0x28, 0xB5, 0x2F, 0xFD]
    frame.append(declareContentSize ? 0x80 : 0x00)  // FCS_Field_Size 4 bytes or none; not single-segment
    frame.append(windowDescriptor)
    if declareContentSize { appendLittleEndian(UInt32(blockCount * blockSize), to: &frame) }
    for block in 0..<blockCount {
        let last: UInt32 = block == blockCount - 1 ? 1 : 0
        let header = last | 1 << 1 | UInt32(blockSize) << 3  // Block_Type 1 = RLE
        frame += [UInt8(header & 0xFF), UInt8(header >> 8 & 0xFF), UInt8(header >> 16 & 0xFF), 0x00]
    }
    return frame
}

func decodeFrame(_ body: [UInt8], expectedCount: Int) throws -> [Float] {
    var out = [Float](repeating: -7, count: expectedCount)
    try body.withUnsafeBytes { raw in
        try out.withUnsafeMutableBufferPointer { try TensorFrame.decode(raw, expectedCount: expectedCount, into: $0) }
    }
    return out
}

func encodeFrame(_ values: [Float], zstdLevel: Int?) throws -> [UInt8] {
    try values.withUnsafeBufferPointer { try TensorFrame.encode($0, zstdLevel: zstdLevel) }
}

/// The FrameError a decode throws, or nil when it succeeds.
func decodeError(_ body: [UInt8], expectedCount: Int) -> FrameError? {
    do {
        _ = try decodeFrame(body, expectedCount: expectedCount)
        return nil
    } catch let error as FrameError {
        return error
    } catch {
        XCTFail("decode threw a non-FrameError: \(error)")
        return nil
    }
}

func assertBitwiseEqual(_ a: [Float], _ b: [Float], _ message: String = "", file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, message, file: file, line: line)
    guard a.count == b.count else { return }
    if let i = a.indices.first(where: { a[$0].bitPattern != b[$0].bitPattern }) {
        XCTFail("\(message): first difference at \(i): \(a[i]) vs \(b[i])", file: file, line: line)
    }
}

func isCorruptCompression(_ error: FrameError?, containing text: String = "") -> Bool {
    if case .corruptCompression(let reason) = error { return text.isEmpty || reason.contains(text) }
    return false
}

/// Peak resident memory since the last reset (Linux: VmHWM, reset through clear_refs); nil where
/// unsupported, and then the memory assertions are skipped.
enum PeakMemory {
    static func reset() -> Bool {
        #if os(Linux)
        guard let handle = FileHandle(forWritingAtPath: "/proc/self/clear_refs") else { return false }
        defer { try? handle.close() }
        return (try? handle.write(contentsOf: Data("5".utf8))) != nil
        #else
        return false
        #endif
    }

    static func bytes() -> Int? {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
              let kilobytes = Int(line.split(separator: " ").dropFirst().first ?? "") else { return nil }
        return kilobytes * 1024
    }
}
