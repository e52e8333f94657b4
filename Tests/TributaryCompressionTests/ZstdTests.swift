import Foundation
import XCTest
@testable import TributaryCompression

final class ZstdTests: XCTestCase {
    private let text = Array(String(repeating: "tributary frames carry gradients; ", count: 300).utf8)

    func testRoundTripAndSizes() throws {
        let compressed = try text.withUnsafeBytes { try Zstd.compress($0, level: 3) }
        XCTAssertLessThan(compressed.count, 200, "10 KB of one repeated sentence compresses to a few dozen bytes")
        XCTAssertEqual(Array(compressed.prefix(4)), [0x28, 0xB5, 0x2F, 0xFD])
        let exact = try compressed.withUnsafeBytes { try Zstd.decompress($0, exactSize: text.count) }
        XCTAssertEqual(exact, text)

        // The bound is the buffer given (zstd may use all of it as workspace), never past it.
        var roomy = [UInt8](repeating: 0xAA, count: text.count + 100 + 64)
        let written = try compressed.withUnsafeBytes { src in
            try roomy.withUnsafeMutableBytes { try Zstd.decompress(src, into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<(text.count + 100)])) }
        }
        XCTAssertEqual(written, text.count)
        XCTAssertEqual(Array(roomy.prefix(written)), text)
        XCTAssertEqual(Array(roomy.suffix(64)), [UInt8](repeating: 0xAA, count: 64), "nothing written past the bound")

        let empty = try [UInt8]().withUnsafeBytes { try Zstd.compress($0, level: 1) }
        XCTAssertEqual(try empty.withUnsafeBytes { try Zstd.decompress($0, exactSize: 0) }, [])
    }

    func testCompressionIsDeterministicAndLevelMatters() throws {
        let data = littleEndianBytes((0..<50_000).map { Float(sin(Double($0) * 0.01)) })
        let a = try data.withUnsafeBytes { try Zstd.compress($0, level: 3) }
        let b = try data.withUnsafeBytes { try Zstd.compress($0, level: 3) }
        let c = try data.withUnsafeBytes { try Zstd.compress($0, level: 19) }
        XCTAssertEqual(a, b)
        XCTAssertLessThan(c.count, a.count, "level 19 beats level 3 on a smooth signal")
        XCTAssertLessThanOrEqual(a.count, Zstd.maximumCompressedSize(data.count))
    }

    func testLevelsOutsideOneToNineteenAreRefused() {
        for level in [Int.min, -5, 0, 20, 22, Int.max] {
            XCTAssertThrowsError(try text.withUnsafeBytes { try Zstd.compress($0, level: level) }) { error in
                XCTAssertEqual(error as? FrameEncodingError, .invalidZstdLevel(level))
            }
        }
        for level in [1, 19] {
            XCTAssertNoThrow(try text.withUnsafeBytes { try Zstd.compress($0, level: level) })
        }
    }

    func testMaximumCompressedSizeFormula() {
        XCTAssertEqual(Zstd.maximumCompressedSize(0), 64)
        XCTAssertEqual(Zstd.maximumCompressedSize(20), 84)
        XCTAssertEqual(Zstd.maximumCompressedSize(4000), 4000 + 15 + 64)
        XCTAssertEqual(Zstd.maximumCompressedSize(Int.max), Int.max)
    }

    func testExactSizeMismatchesAreRefused() throws {
        let compressed = try text.withUnsafeBytes { try Zstd.compress($0, level: 3) }
        try compressed.withUnsafeBytes { src in
            XCTAssertThrowsError(try Zstd.decompress(src, exactSize: text.count - 1)) {
                XCTAssertEqual($0 as? FrameError, .decompressionBomb(limit: text.count - 1))
            }
            XCTAssertThrowsError(try Zstd.decompress(src, exactSize: text.count + 1)) {
                XCTAssertTrue(isCorruptCompression($0 as? FrameError, containing: "declares \(text.count) bytes"), "\($0)")
            }
        }
    }

    func testTrailingBytesConcatenatedAndSkippableFramesAreRefused() throws {
        let compressed = try text.withUnsafeBytes { try Zstd.compress($0, level: 3) }
        func error(_ bytes: [UInt8]) -> FrameError? {
            do {
                _ = try bytes.withUnsafeBytes { try Zstd.decompress($0, exactSize: text.count) }
                return nil
            } catch {
                return error as? FrameError
            }
        }
        XCTAssertTrue(isCorruptCompression(error(compressed + [0]), containing: "1 trailing bytes"))
        XCTAssertTrue(isCorruptCompression(error(compressed + compressed), containing: "\(compressed.count) trailing bytes"))
        let skippable: [UInt8] = [0x50, 0x2A, 0x4D, 0x18, 4, 0, 0, 0, 1, 2, 3, 4]
        XCTAssertTrue(isCorruptCompression(error(skippable + compressed), containing: "not a zstd frame"))
        XCTAssertTrue(isCorruptCompression(error([]), containing: "truncated"))
        XCTAssertTrue(isCorruptCompression(error([0x28, 0xB5]), containing: "truncated"))
        for length in 0..<compressed.count {
            XCTAssertTrue(isCorruptCompression(error(Array(compressed.prefix(length)))), "prefix \(length)")
        }
    }

    func testUndeclaredSizeFramesAreBoundedByTheOutput() throws {
        // 3 RLE blocks of 128 KiB with no content size: only streaming can tell how much comes.
        let frame = rleZstdFrame(blockCount: 3, declareContentSize: false)
        let total = 3 << 17
        let exact = try frame.withUnsafeBytes { try Zstd.decompress($0, exactSize: total) }
        XCTAssertEqual(exact.count, total)
        XCTAssertTrue(exact.allSatisfy { $0 == 0 })

        for limit in [0, 1, 64, total - 1] {
            var buffer = [UInt8](repeating: 0xEE, count: limit + 16)
            XCTAssertThrowsError(try frame.withUnsafeBytes { src in
                try buffer.withUnsafeMutableBytes { try Zstd.decompress(src, into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<limit])) }
            }) { XCTAssertEqual($0 as? FrameError, .decompressionBomb(limit: limit)) }
            XCTAssertEqual(Array(buffer.suffix(16)), [UInt8](repeating: 0xEE, count: 16), "wrote past a \(limit)-byte bound")
        }
        XCTAssertThrowsError(try frame.withUnsafeBytes { try Zstd.decompress($0, exactSize: total + 1) }) {
            XCTAssertTrue(isCorruptCompression($0 as? FrameError, containing: "decodes to \(total) bytes, expected \(total + 1)"), "\($0)")
        }
    }

    func testWindowsLargerThanEightMiBAreRefused() throws {
        // Window_Descriptor 0x88: 2^(10+17) = 128 MiB, which the decoder would have to allocate.
        let big = rleZstdFrame(blockCount: 1, blockSize: 16, declareContentSize: false, windowDescriptor: 0x88)
        XCTAssertThrowsError(try big.withUnsafeBytes { try Zstd.decompress($0, exactSize: 16) }) {
            XCTAssertTrue(isCorruptCompression($0 as? FrameError), "\($0)")
        }
        // 2^23 = 8 MiB (0x68) is the largest accepted.
        let ok = rleZstdFrame(blockCount: 1, blockSize: 16, declareContentSize: false, windowDescriptor: 0x68)
        XCTAssertEqual(try ok.withUnsafeBytes { try Zstd.decompress($0, exactSize: 16) }, [UInt8](repeating: 0, count: 16))
    }

    func testPooledContextsRecoverAfterErrorsAndWorkConcurrently() throws {
        let text = self.text
        let compressed = try text.withUnsafeBytes { try Zstd.compress($0, level: 5) }
        let bomb = rleZstdFrame(blockCount: 4, declareContentSize: false)
        let failures = LockedCounter()
        DispatchQueue.concurrentPerform(iterations: 64) { i in
            do {
                if i % 2 == 0 {
                    // Leaves a context mid-frame; the next user must still start clean.
                    _ = try bomb.withUnsafeBytes { try Zstd.decompress($0, exactSize: 100) }
                    failures.add()
                } else {
                    let out = try compressed.withUnsafeBytes { try Zstd.decompress($0, exactSize: text.count) }
                    if out != text { failures.add() }
                    let again = try out.withUnsafeBytes { try Zstd.compress($0, level: 5) }
                    if again != compressed { failures.add() }
                }
            } catch FrameError.decompressionBomb(limit: 100) where i % 2 == 0 {
            } catch {
                failures.add()
            }
        }
        XCTAssertEqual(failures.value, 0)
    }
}

final class LockedCounter: @unchecked Sendable {
    private let lock = NSLock()
    private var count = 0
    func add() { lock.lock(); count += 1; lock.unlock() }
    var value: Int { lock.lock(); defer { lock.unlock() }; return count }
}
