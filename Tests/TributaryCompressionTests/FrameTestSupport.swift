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

func encodeFrame(_ values: [Float], codec: TensorCodec, parameter: UInt32? = nil, zstdLevel: Int?) throws -> [UInt8] {
    try values.withUnsafeBufferPointer { try TensorFrame.encode($0, codec: codec, codecParameter: parameter, zstdLevel: zstdLevel) }
}

/// A frame for `values` in the codec `spec` names (top-k included), without error feedback.
func encodeFrame(_ values: [Float], spec: String, zstdLevel: Int?) throws -> [UInt8] {
    try values.withUnsafeBufferPointer { try UpdateCodecSpec(parsing: spec).encode($0, residual: nil, zstdLevel: zstdLevel) }
}

/// Adds `scale` · frame into `accumulator` through a fresh scratch; returns the error, or nil.
func accumulateError(_ body: [UInt8], expectedCount: Int, scale: Float = 2, into accumulator: inout [Float]) -> FrameError? {
    var scratch = [Float](repeating: 0, count: expectedCount)
    do {
        try body.withUnsafeBytes { raw in
            try accumulator.withUnsafeMutableBufferPointer { acc in
                try scratch.withUnsafeMutableBufferPointer {
                    try TensorFrame.accumulate(raw, expectedCount: expectedCount, scale: scale, into: acc, scratch: $0)
                }
            }
        }
        return nil
    } catch let error as FrameError {
        return error
    } catch {
        XCTFail("accumulate threw a non-FrameError: \(error)")
        return nil
    }
}

/// The body refuses with `expected` both when decoded and when accumulated, and the failed
/// accumulate leaves its accumulator exactly as it was.
func assertRefused(_ body: [UInt8], count: Int, _ expected: FrameError, _ message: String = "",
                   file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(decodeError(body, expectedCount: count), expected, "decode: \(message)", file: file, line: line)
    let start = (0..<count).map { Float($0 % 13) - 6.5 }
    var accumulator = start
    XCTAssertEqual(accumulateError(body, expectedCount: count, into: &accumulator), expected, "accumulate: \(message)",
                   file: file, line: line)
    assertBitwiseEqual(accumulator, start, "accumulator touched: \(message)", file: file, line: line)
}

/// Gaussian N(0, 1) values (Box–Muller), seeded.
func gaussianFloats(_ count: Int, seed: UInt64) -> [Float] {
    var rng = SplitMix64(seed: seed)
    return (0..<count).map { _ in
        let u = Double.random(in: Double.ulpOfOne..<1, using: &rng), v = Double.random(in: 0..<1, using: &rng)
        return Float((-2 * log(u)).squareRoot() * cos(2 * Double.pi * v))
    }
}

/// A top-k body from hand-written payload fields, with a correct CRC unless one is given.
func craftTopK(count: UInt64, k: UInt32, varints: [UInt8], values: [UInt8], parameter: UInt32 = 0,
               checksum: UInt32? = nil, zstdLevel: Int? = nil) throws -> [UInt8] {
    var raw: [UInt8] = []
    appendLittleEndian(k, to: &raw)
    raw += varints + values
    let crc = checksum ?? crc32(raw)
    guard let zstdLevel else { return craftBody(codec: 5, elementCount: count, payload: raw, checksum: crc, parameter: parameter) }
    let compressed = try raw.withUnsafeBytes { try Zstd.compress($0, level: zstdLevel) }
    return craftBody(codec: 5, flags: 1, elementCount: count, payload: compressed, checksum: crc, parameter: parameter)
}

func halfBytes(_ values: [Float]) -> [UInt8] {
    values.flatMap { value -> [UInt8] in
        let bits = Float16(value).bitPattern
        return [UInt8(bits & 0xFF), UInt8(bits >> 8)]
    }
}

func floatBytes(_ value: Float) -> [UInt8] { littleEndianBytes([value]) }

/// The codec payload of a body (decompressed when flag bit 0 is set).
func codecPayload(_ body: [UInt8], rawSize: Int) throws -> [UInt8] {
    let payload = Array(body[32...])
    guard body[6] & 1 == 1 else { return payload }
    var out = [UInt8](repeating: 0, count: rawSize)
    let produced = try payload.withUnsafeBytes { src in try out.withUnsafeMutableBytes { try Zstd.decompress(src, into: $0) } }
    return Array(out.prefix(produced))
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

/// A low-rank payload's segment table (u32 S, then rows, cols, rank per segment) equals `segments`.
func assertLowRankSegmentTable(_ payload: [UInt8], _ segments: [[Int]], _ name: String,
                               file: StaticString = #filePath, line: UInt = #line) {
    func u32(_ at: Int) -> Int {
        Int(payload[at]) | Int(payload[at + 1]) << 8 | Int(payload[at + 2]) << 16 | Int(payload[at + 3]) << 24
    }
    guard payload.count >= 4 + 12 * segments.count else { return XCTFail("\(name): payload too short", file: file, line: line) }
    XCTAssertEqual(u32(0), segments.count, name, file: file, line: line)
    for (index, segment) in segments.enumerated() {
        XCTAssertEqual([u32(4 + 12 * index), u32(8 + 12 * index), u32(12 + 12 * index)], segment,
                       "\(name) segment \(index)", file: file, line: line)
    }
}
