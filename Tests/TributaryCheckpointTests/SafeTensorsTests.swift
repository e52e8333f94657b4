import Foundation
import XCTest
@testable import TributaryCheckpoint

final class SafeTensorsTests: XCTestCase {
    /// u64 little-endian header length, header, data: the layout every safetensors file has.
    static func file(header: String, data: [UInt8]) -> [UInt8] {
        let h = Array(header.utf8)
        var out: [UInt8] = []
        for shift in stride(from: 0, to: 64, by: 8) { out.append(UInt8(truncatingIfNeeded: UInt64(h.count) >> UInt64(shift))) }
        return out + h + data
    }

    static func le32(_ f: Float) -> [UInt8] {
        let b = f.bitPattern
        return [UInt8(b & 0xFF), UInt8((b >> 8) & 0xFF), UInt8((b >> 16) & 0xFF), UInt8(b >> 24)]
    }

    /// `safetensors.torch.save_file({"a": torch.tensor([1.0, 2.0])}, path)` produces exactly these
    /// 72 bytes: N = 56 (54 bytes of compact JSON + 2 spaces of padding), then two little-endian floats.
    static let pythonSingle: [UInt8] =
        [0x38, 0, 0, 0, 0, 0, 0, 0]
        + Array(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}  "#.utf8)
        + [0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x00, 0x40]

    func testPythonFixtureParses() throws {
        XCTAssertEqual(Self.pythonSingle.count, 72)
        let file = try SafeTensorsFile.parse(Self.pythonSingle)
        XCTAssertEqual(file.entries.count, 1)
        XCTAssertEqual(file.metadata, [:])
        let a = try XCTUnwrap(file.entry(named: "a"))
        XCTAssertEqual(a.dtype, .F32)
        XCTAssertEqual(a.shape, [2])
        XCTAssertEqual(try a.floats(), [1.0, 2.0])
        // Our writer produces the identical bytes.
        XCTAssertEqual(try SafeTensorsFile(entries: [SafeTensorsEntry(name: "a", shape: [2], floats: [1, 2])]).serialized(),
                       Self.pythonSingle)
    }

    func testPythonFixtureWithMetadataScalarAndMixedDTypes() throws {
        // safetensors' own writer orders by dtype alignment, then name: the reader must not assume name order.
        let header = #"{"__metadata__":{"format":"pt"},"idx":{"dtype":"I64","shape":[1],"data_offsets":[0,8]},"bias":{"dtype":"F32","shape":[],"data_offsets":[8,12]},"weight":{"dtype":"F32","shape":[2,2],"data_offsets":[12,28]}}"#
        XCTAssertEqual(header.utf8.count, 205)
        let data: [UInt8] = [7, 0, 0, 0, 0, 0, 0, 0] + Self.le32(0.5) + [1, 2, 3, 4].flatMap { Self.le32($0) }
        let bytes = Self.file(header: header + "   ", data: data)
        XCTAssertEqual(bytes.count, 244)
        XCTAssertEqual(Array(bytes[0..<8]), [0xD0, 0, 0, 0, 0, 0, 0, 0])
        let file = try SafeTensorsFile.parse(bytes)
        XCTAssertEqual(file.metadata, ["format": "pt"])
        XCTAssertEqual(file.entries.map(\.name), ["idx", "bias", "weight"])  // data order
        let bias = try XCTUnwrap(file.entry(named: "bias"))
        XCTAssertEqual(bias.shape, [])
        XCTAssertEqual(try bias.floats(), [0.5])
        XCTAssertEqual(try file.entry(named: "weight")?.floats(), [1, 2, 3, 4])
        let idx = try XCTUnwrap(file.entry(named: "idx"))
        XCTAssertEqual(idx.dtype, .I64)
        XCTAssertEqual(idx.bytes, [7, 0, 0, 0, 0, 0, 0, 0])
        XCTAssertThrowsError(try idx.floats()) { error in
            XCTAssertEqual((error as? SafeTensorsError)?.kind, .wrongDType)
        }
        XCTAssertNil(file.entry(named: "missing"))
    }

    func testRoundTripIsSortedAlignedAndExact() throws {
        let entries = [
            SafeTensorsEntry(name: "wte", shape: [3, 2], floats: [0.1, -2, .infinity, 0, -0.0, 1e-30]),
            SafeTensorsEntry(name: "b", dtype: .U8, shape: [3], bytes: [1, 2, 3]),
            SafeTensorsEntry(name: "step", dtype: .I64, shape: [], bytes: [42, 0, 0, 0, 0, 0, 0, 0]),
            SafeTensorsEntry(name: "empty", shape: [0, 4], floats: []),
            SafeTensorsEntry(name: "h.0.attn \"q\"\\ü", shape: [1], floats: [3]),
        ]
        let original = SafeTensorsFile(entries: entries, metadata: ["step": "100", "note": "a \"quoted\"\nline"])
        let bytes = try original.serialized()
        let headerLength = Int(bytes[0]) | Int(bytes[1]) << 8
        XCTAssertEqual((8 + headerLength) % 8, 0, "data must start 8-byte aligned")
        XCTAssertEqual(bytes.count, 8 + headerLength + 24 + 3 + 8 + 0 + 4)
        XCTAssertEqual(bytes[8 + headerLength - 1] == UInt8(ascii: " ") || bytes[8 + headerLength - 1] == UInt8(ascii: "}"), true)

        let parsed = try SafeTensorsFile.parse(bytes)
        // Entries come back in byte-wise name order, which is the data order.
        XCTAssertEqual(parsed.entries.map(\.name), ["b", "empty", "h.0.attn \"q\"\\ü", "step", "wte"])
        XCTAssertEqual(parsed.metadata, original.metadata)
        for e in entries { XCTAssertEqual(parsed.entry(named: e.name), e) }
        let wte = try XCTUnwrap(parsed.entry(named: "wte")?.floats())
        XCTAssertEqual(wte.map(\.bitPattern), [0.1, -2, .infinity, 0, -0.0, 1e-30].map { Float($0).bitPattern })
        // Serialising again is byte-identical (deterministic checkpoints hash the same).
        XCTAssertEqual(try parsed.serialized(), bytes)
        // Data region offsets as laid out: b [0,3), empty [3,3), h.0 [3,7), step [7,15), wte [15,39).
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(bytes[8..<(8 + headerLength)])) as? [String: Any])
        XCTAssertEqual((json["step"] as? [String: Any])?["data_offsets"] as? [Int], [7, 15])
        XCTAssertEqual((json["wte"] as? [String: Any])?["data_offsets"] as? [Int], [15, 39])
    }

    func testWriteAndReadFile() throws {
        let dir = NSTemporaryDirectory() + "safetensors-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/model.safetensors"
        let file = SafeTensorsFile(entries: [SafeTensorsEntry(name: "w", shape: [2], floats: [5, 6])], metadata: ["k": "v"])
        try file.write(to: path)
        XCTAssertEqual(try SafeTensorsFile.read(path: path), file)
        XCTAssertThrowsError(try SafeTensorsFile.read(path: dir + "/absent.safetensors")) { error in
            XCTAssertEqual((error as? SafeTensorsError)?.kind, .fileNotFound)
            XCTAssertTrue("\(error)".contains("absent.safetensors"))
        }
        try Data([1, 2, 3]).write(to: URL(fileURLWithPath: dir + "/short"))
        XCTAssertThrowsError(try SafeTensorsFile.read(path: dir + "/short")) { error in
            XCTAssertEqual((error as? SafeTensorsError)?.kind, .truncated)
            XCTAssertTrue("\(error)".hasPrefix(dir + "/short: "), "\(error)")
        }
    }

    func testWriterRejectsInvalidEntries() {
        func kind(_ entries: [SafeTensorsEntry]) -> SafeTensorsError.Kind? {
            do { _ = try SafeTensorsFile(entries: entries).serialized() } catch { return (error as? SafeTensorsError)?.kind }
            return nil
        }
        XCTAssertEqual(kind([SafeTensorsEntry(name: "x", shape: [3], floats: [1, 2])]), .invalidEntry)
        XCTAssertEqual(kind([SafeTensorsEntry(name: "x", shape: [-1], floats: [])]), .invalidEntry)
        XCTAssertEqual(kind([SafeTensorsEntry(name: "__metadata__", shape: [1], floats: [1])]), .invalidEntry)
        XCTAssertEqual(kind([SafeTensorsEntry(name: "x", shape: [1], floats: [1]),
                             SafeTensorsEntry(name: "x", shape: [1], floats: [2])]), .invalidEntry)
    }

    // MARK: Hostile input

    func assertRejected(_ bytes: [UInt8], _ kind: SafeTensorsError.Kind, _ fragment: String = "",
                        file: StaticString = #filePath, line: UInt = #line) {
        do {
            _ = try SafeTensorsFile.parse(bytes)
            XCTFail("accepted a malformed file", file: file, line: line)
        } catch let error as SafeTensorsError {
            XCTAssertEqual(error.kind, kind, "\(error)", file: file, line: line)
            if !fragment.isEmpty {
                XCTAssertTrue(error.description.contains(fragment), "\(error) lacks \(fragment)", file: file, line: line)
            }
            XCTAssertFalse(error.description.contains("\n"), file: file, line: line)
        } catch {
            XCTFail("unexpected error type: \(error)", file: file, line: line)
        }
    }

    func rejected(_ header: String, data: [UInt8] = [0, 0, 0, 0], _ kind: SafeTensorsError.Kind, _ fragment: String = "",
                  file: StaticString = #filePath, line: UInt = #line) {
        assertRejected(Self.file(header: header, data: data), kind, fragment, file: file, line: line)
    }

    func testHeaderLengthAndJSONErrors() {
        assertRejected([], .truncated, "8-byte")
        assertRejected([1, 0, 0], .truncated)
        assertRejected([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF] + Array("{}".utf8), .headerTooLarge, "18446744073709551615")
        assertRejected([0x01, 0xE1, 0xF5, 0x05, 0, 0, 0, 0] + Array("{}".utf8), .headerTooLarge)  // 100,000,001
        assertRejected([100, 0, 0, 0, 0, 0, 0, 0] + Array("{}".utf8), .truncated, "runs past the end")
        rejected("", .invalidHeader)
        rejected("[1,2]", .invalidHeader, "JSON object")
        rejected(#"{"a":"#, .invalidHeader, "not valid JSON")
        rejected(#"{"a:1}"#, .invalidHeader, "unterminated")
        rejected("{" + String(repeating: "[", count: 100) + String(repeating: "]", count: 100) + "}", .invalidHeader, "nests")
        rejected(#"{"a":1}"#, .invalidHeader, "\"a\"")
        rejected(#"{"__metadata__":{"k":1}}"#, data: [], .invalidHeader, "__metadata__")
    }

    func testEntryErrors() {
        rejected(#"{"a":{"dtype":"F8_E4M3","shape":[4],"data_offsets":[0,4]}}"#, .unknownDType, "F8_E4M3")
        rejected(#"{"a":{"shape":[4],"data_offsets":[0,4]}}"#, .invalidHeader, "dtype")
        rejected(#"{"a":{"dtype":"U8","shape":[-4],"data_offsets":[0,4]}}"#, .invalidShape, "-4")
        rejected(#"{"a":{"dtype":"U8","shape":[1.5],"data_offsets":[0,4]}}"#, .invalidShape)
        rejected(#"{"a":{"dtype":"U8","shape":["4"],"data_offsets":[0,4]}}"#, .invalidShape)
        rejected(#"{"a":{"dtype":"U8","data_offsets":[0,4]}}"#, .invalidShape)
        // 2^32 * 2^32 overflows 64 bits.
        rejected(#"{"a":{"dtype":"U8","shape":[4294967296,4294967296],"data_offsets":[0,4]}}"#, .invalidShape, "overflow")
        // 2^62 elements of 8 bytes overflows the byte count.
        rejected(#"{"a":{"dtype":"F64","shape":[4611686018427387904],"data_offsets":[0,4]}}"#, .invalidShape, "overflow")
        rejected(#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,5]}}"#, .invalidOffsets, "outside")
        rejected(#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[-1,3]}}"#, .invalidOffsets)
        rejected(#"{"a":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}}"#, .invalidOffsets, "reversed")
        rejected(#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0]}}"#, .invalidOffsets)
        rejected(#"{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,18446744073709551615]}}"#, .invalidOffsets)
        rejected(#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}"#, .sizeMismatch, "needs 8")
        rejected(#"{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[3],"data_offsets":[1,4]}}"#,
                 .overlappingData, "overlaps")
        rejected(#"{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"b":{"dtype":"U8","shape":[1],"data_offsets":[3,4]}}"#,
                 .gapInData, "[2, 3)")
        rejected(#"{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]}}"#, .gapInData, "cover only 2")
        rejected(#"{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"a":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}}"#,
                 .duplicateName, "header names \"a\" more than once")
        // The same name spelled with an escape is still a duplicate.
        rejected(#"{"a":{"dtype":"U8","shape":[2],"data_offsets":[0,2]},"\u0061":{"dtype":"U8","shape":[2],"data_offsets":[2,4]}}"#,
                 .duplicateName)
        // Escaped quotes and braces inside a name do not confuse the key scan.
        XCTAssertNoThrow(try SafeTensorsFile.parse(Self.file(
            header: #"{"x\"}{[":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}"#, data: [1, 2, 3, 4])))
    }

    func testTruncationsAndBitFlipsNeverCrash() throws {
        let bytes = try SafeTensorsFile(entries: [
            SafeTensorsEntry(name: "a", shape: [2, 3], floats: [1, 2, 3, 4, 5, 6]),
            SafeTensorsEntry(name: "b", dtype: .I32, shape: [2], bytes: [1, 0, 0, 0, 2, 0, 0, 0]),
        ], metadata: ["epoch": "3"]).serialized()
        // Every strict prefix is rejected: either the header is cut or the data no longer covers the offsets.
        for length in 0..<bytes.count {
            XCTAssertThrowsError(try SafeTensorsFile.parse(Array(bytes[..<length])), "prefix \(length)") { error in
                XCTAssertTrue(error is SafeTensorsError, "\(error)")
            }
        }
        // Random byte corruption either parses to something self-consistent or throws SafeTensorsError.
        var rng = SystemRandomNumberGenerator()
        for _ in 0..<2000 {
            var bad = bytes
            for _ in 0..<Int.random(in: 1...3, using: &rng) {
                bad[Int.random(in: 0..<bad.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng)
            }
            do {
                let parsed = try SafeTensorsFile.parse(bad)
                for e in parsed.entries { XCTAssertEqual(e.bytes.count, (e.elementCount ?? -1) * e.dtype.byteSize) }
            } catch {
                XCTAssertTrue(error is SafeTensorsError, "\(error)")
            }
        }
    }
}
