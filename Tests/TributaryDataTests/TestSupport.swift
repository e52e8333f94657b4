import Foundation
import XCTest
import CZlib
@testable import TributaryData

/// A fresh directory under the system temporary directory, removed by `cleanup`.
final class TemporaryDirectory {
    let path: String

    init() throws {
        path = NSTemporaryDirectory() + "tributary-data-tests-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func file(_ name: String) -> String { path + "/" + name }

    func write(_ bytes: [UInt8], _ name: String) throws -> String {
        let p = file(name)
        try Data(bytes).write(to: URL(fileURLWithPath: p))
        return p
    }

    func cleanup() { try? FileManager.default.removeItem(atPath: path) }
}

/// `shared/data/<relative>` beside the package root (found by walking up from this file to
/// Package.swift); throws XCTSkip when the shared data is not present.
func sharedDataFile(_ relative: String, filePath: String = #filePath) throws -> String {
    var dir = URL(fileURLWithPath: filePath).deletingLastPathComponent()
    while dir.path != "/" {
        if FileManager.default.fileExists(atPath: dir.appendingPathComponent("Package.swift").path) {
            let candidate = dir.deletingLastPathComponent().appendingPathComponent("shared/data/\(relative)").path
            guard FileManager.default.fileExists(atPath: candidate) else {
                throw XCTSkip("shared data \(candidate) is not present")
            }
            return candidate
        }
        dir = dir.deletingLastPathComponent()
    }
    throw XCTSkip("package root not found above \(filePath)")
}

/// Asserts that `body` throws a `DatasetError` of `kind` whose description contains each of
/// `fragments`; returns the error.
@discardableResult
func assertDatasetError<T>(_ kind: DatasetError.Kind, _ fragments: [String] = [],
                           file: StaticString = #filePath, line: UInt = #line,
                           _ body: () throws -> T) -> DatasetError? {
    do {
        _ = try body()
        XCTFail("expected a \(kind) error, nothing was thrown", file: file, line: line)
    } catch let error as DatasetError {
        XCTAssertEqual(error.kind, kind, "\(error)", file: file, line: line)
        for fragment in fragments {
            XCTAssertTrue(error.description.contains(fragment),
                          "\"\(error)\" does not mention \"\(fragment)\"", file: file, line: line)
        }
        XCTAssertFalse(error.description.contains("\n"), "description must be one line", file: file, line: line)
        return error
    } catch {
        XCTFail("unexpected error type \(type(of: error)): \(error)", file: file, line: line)
    }
    return nil
}

/// `fillBatch` into fresh arrays (pre-filled with -1 so unwritten slots show).
func tokenBatch(_ windows: TokenWindows, _ indices: [Int]) -> (inputs: [Int32], targets: [Int32]) {
    let n = indices.count * windows.blockSize
    let x = UnsafeMutablePointer<Int32>.allocate(capacity: max(n, 1))
    let y = UnsafeMutablePointer<Int32>.allocate(capacity: max(n, 1))
    defer { x.deallocate(); y.deallocate() }
    x.initialize(repeating: -1, count: n)
    y.initialize(repeating: -1, count: n)
    windows.fillBatch(indices: indices, inputs: x, targets: y)
    return (Array(UnsafeBufferPointer(start: x, count: n)), Array(UnsafeBufferPointer(start: y, count: n)))
}

/// `LabeledImages.fillBatch` into fresh arrays (pre-filled with -1 so unwritten slots show).
func imageBatch(_ data: LabeledImages, _ indices: [Int]) -> (inputs: [Float], targets: [Int32]) {
    let n = indices.count * data.featureCount
    let x = UnsafeMutablePointer<Float>.allocate(capacity: max(n, 1))
    let y = UnsafeMutablePointer<Int32>.allocate(capacity: max(indices.count, 1))
    defer { x.deallocate(); y.deallocate() }
    x.initialize(repeating: -1, count: n)
    y.initialize(repeating: -1, count: indices.count)
    data.fillBatch(indices: indices, inputs: x, targets: y)
    return (Array(UnsafeBufferPointer(start: x, count: n)), Array(UnsafeBufferPointer(start: y, count: indices.count)))
}

/// gzip-compresses `bytes` in memory with zlib (windowBits 31 = gzip wrapper), for fixtures.
func gzipCompress(_ bytes: [UInt8], level: Int32 = 6) throws -> [UInt8] {
    var stream = z_stream()
    guard deflateInit2_(&stream, level, Z_DEFLATED, 31, 8, Z_DEFAULT_STRATEGY,
                        zlibVersion(), Int32(MemoryLayout<z_stream>.size)) == Z_OK else {
        throw XCTSkip("zlib deflateInit2 failed")
    }
    defer { deflateEnd(&stream) }
    var out = [UInt8](repeating: 0, count: Int(deflateBound(&stream, uLong(bytes.count))) + 32)
    var input = bytes
    let status = input.withUnsafeMutableBufferPointer { inBuf in
        out.withUnsafeMutableBufferPointer { outBuf in
            stream.next_in = inBuf.baseAddress
            stream.avail_in = uInt(inBuf.count)
            stream.next_out = outBuf.baseAddress
            stream.avail_out = uInt(outBuf.count)
            return deflate(&stream, Z_FINISH)
        }
    }
    XCTAssertEqual(status, Z_STREAM_END)
    out.removeLast(Int(stream.avail_out))
    return out
}
