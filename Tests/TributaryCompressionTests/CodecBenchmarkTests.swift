import Foundation
import XCTest
@testable import TributaryCompression

/// Throughput and compression of every codec on 16 Mi N(0, 1) values, one thread. Skipped
/// unless TRIBUTARY_BENCH=1; meant for release builds:
/// `TRIBUTARY_BENCH=1 swift test -c release --filter testCodecThroughput`.
final class CodecBenchmarkTests: XCTestCase {
    private func best(of runs: Int, _ body: () throws -> Void) rethrows -> Double {
        var fastest = Double.infinity
        for _ in 0..<runs {
            let start = DispatchTime.now().uptimeNanoseconds
            try body()
            fastest = min(fastest, Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9)
        }
        return fastest
    }

    func testCodecThroughput() throws {
        guard ProcessInfo.processInfo.environment["TRIBUTARY_BENCH"] == "1" else {
            throw XCTSkip("set TRIBUTARY_BENCH=1 (and build with -c release) to measure codec throughput")
        }
        let n = 16 << 20
        let values = gaussianFloats(n, seed: 1)
        let megabytes = Double(4 * n) / 1e6  // throughput is quoted in fp32 input (or output) bytes
        var out = [Float](repeating: 0, count: n)
        var accumulator = [Float](repeating: 0, count: n)
        var scratch = [Float](repeating: 0, count: n)
        var lines = ["codec            enc MB/s  dec MB/s  acc MB/s  enc+z3 MB/s  dec+z3 MB/s  EF enc MB/s  bytes(z3)    ratio(z3)"]
        for text in ["fp32", "fp16", "bf16", "int8:256", "int8:64", "int4:64", "int4:32", "topk:0.01", "topk:0.01:int8"] {
            let spec = try UpdateCodecSpec(parsing: text)
            var raw: [UInt8] = [], compressed: [UInt8] = []
            let encode = try values.withUnsafeBufferPointer { g in
                try best(of: 3) { raw = try spec.encode(g, residual: nil, zstdLevel: nil) }
            }
            let encodeZstd = try values.withUnsafeBufferPointer { g in
                try best(of: 2) { compressed = try spec.encode(g, residual: nil, zstdLevel: 3) }
            }
            var residual = [Float](repeating: 0, count: n)
            let feedback = try values.withUnsafeBufferPointer { g in
                try residual.withUnsafeMutableBufferPointer { r in
                    try best(of: 3) { _ = try spec.encode(g, residual: r, zstdLevel: nil) }
                }
            }
            func decodeTime(_ body: [UInt8]) throws -> Double {
                try body.withUnsafeBytes { b in
                    try out.withUnsafeMutableBufferPointer { o in
                        try best(of: 3) { try TensorFrame.decode(b, expectedCount: n, into: o) }
                    }
                }
            }
            let decode = try decodeTime(raw), decodeZstd = try decodeTime(compressed)
            let accumulate = try raw.withUnsafeBytes { b in
                try accumulator.withUnsafeMutableBufferPointer { a in
                    try scratch.withUnsafeMutableBufferPointer { s in
                        try best(of: 3) { try TensorFrame.accumulate(b, expectedCount: n, scale: 0.5, into: a, scratch: s) }
                    }
                }
            }
            func rate(_ seconds: Double) -> String { String(format: "%8.0f", megabytes / seconds) }
            lines.append(text.padding(toLength: 16, withPad: " ", startingAt: 0)
                         + " \(rate(encode))  \(rate(decode))  \(rate(accumulate))     \(rate(encodeZstd))     \(rate(decodeZstd))     \(rate(feedback))"
                         + String(format: "  %10d  %8.2fx", compressed.count, Double(4 * n) / Double(compressed.count)))
        }
        // Selection alone, and select + encode, at 1% of 16 Mi (k = 167,773).
        let select = values.withUnsafeBufferPointer { g in best(of: 3) { _ = TopK.select(values: g, fraction: 0.01) } }
        let spec = try UpdateCodecSpec(parsing: "topk:0.01")
        let selectEncode = try values.withUnsafeBufferPointer { g in try best(of: 3) { _ = try spec.encode(g, residual: nil, zstdLevel: nil) } }
        lines.append(String(format: "top-k 1%% of 16 Mi: select %.1f ms, select + encode %.1f ms", select * 1e3, selectEncode * 1e3))
        print(lines.joined(separator: "\n"))
        XCTAssertLessThan(selectEncode, 0.1)
    }
}
