import Foundation

/// Which codec a worker uses for its gradient updates, as written in configuration:
/// `fp32`, `fp16`, `bf16`, `int8[:B]`, `int4[:B]` (block size B in 16...65536, default 256 and
/// 64), `topk:F[:fp16|:int8]` (keep the ⌈F·n⌉ largest magnitudes, 0 < F ≤ 1, values in fp16 by
/// default), `lowrank:R[:fp16|:int8|:int4]` (PowerSGD-style rank-R factors of each matrix, 1 ≤ R ≤ 256,
/// fp16 values by default; needs the shard's tensor shapes). Codable as that string;
/// `description` gives the canonical form, which parses back.
public struct UpdateCodecSpec: Sendable, Hashable, Codable, CustomStringConvertible {
    public enum Kind: Sendable, Hashable {
        case fp32
        case fp16
        case bf16
        case int8Block(blockSize: Int)
        case int4Block(blockSize: Int)
        case topK(fraction: Double, values: TopKValueCodec)
        case lowRank(rank: Int, values: FactorValueCodec)
    }

    /// Ranks `lowrank:R` accepts.
    public static let lowRanks = 1...256

    public let kind: Kind

    public static let fp32 = UpdateCodecSpec(validated: .fp32)

    /// Checks block sizes (16...65536) and fractions (0 < F ≤ 1).
    public init(_ kind: Kind) throws(UpdateCodecSpecError) {
        switch kind {
        case .fp32, .fp16, .bf16: break
        case .int8Block(let size), .int4Block(let size):
            guard size >= Int(TensorCodec.blockSizes.lowerBound) && size <= Int(TensorCodec.blockSizes.upperBound) else {
                throw .invalidBlockSize(String(size))
            }
        case .topK(let fraction, _):
            guard fraction > 0 && fraction <= 1 else { throw .invalidFraction(String(fraction)) }
        case .lowRank(let rank, _):
            guard Self.lowRanks.contains(rank) else { throw .invalidRank(String(rank)) }
        }
        self.kind = kind
    }

    private init(validated kind: Kind) { self.kind = kind }

    /// Parses the configuration form (case and surrounding spaces ignored).
    public init(parsing text: String) throws(UpdateCodecSpecError) {
        let normalized = text.trimmingCharacters(in: .whitespacesAndNewlines).lowercased()
        let parts = normalized.split(separator: ":", omittingEmptySubsequences: false).map(String.init)
        let name = parts[0]
        let arguments = parts.dropFirst()
        switch name {
        case "fp32", "fp16", "bf16":
            guard arguments.isEmpty else { throw .unexpectedArgument(text) }
            self.init(validated: name == "fp32" ? .fp32 : name == "fp16" ? .fp16 : .bf16)
        case "int8", "int4":
            guard arguments.count <= 1 else { throw .unexpectedArgument(text) }
            let codec: TensorCodec = name == "int8" ? .int8Block : .int4Block
            let size: Int
            if let argument = arguments.first {
                guard let parsed = Int(argument) else { throw .invalidBlockSize(argument) }
                size = parsed
            } else {
                size = Int(codec.defaultParameter)
            }
            try self.init(name == "int8" ? .int8Block(blockSize: size) : .int4Block(blockSize: size))
        case "topk":
            guard let argument = arguments.first else { throw .invalidFraction("") }
            guard arguments.count <= 2 else { throw .unexpectedArgument(text) }
            guard let fraction = Double(argument), fraction.isFinite else { throw .invalidFraction(argument) }
            let values = try Self.subCodec(arguments, default: TopKValueCodec.fp16) { .invalidTopKValues($0) }
            try self.init(.topK(fraction: fraction, values: values))
        case "lowrank":
            guard let argument = arguments.first else { throw .invalidRank("") }
            guard arguments.count <= 2 else { throw .unexpectedArgument(text) }
            guard let rank = Int(argument) else { throw .invalidRank(argument) }
            let values = try Self.subCodec(arguments, default: FactorValueCodec.fp16) { .invalidFactorValues($0) }
            try self.init(.lowRank(rank: rank, values: values))
        default:
            throw .unknownCodec(text)
        }
    }

    /// The value sub-codec a `topk:F[:V]` or `lowrank:R[:V]` names in its second argument.
    private static func subCodec<V: ParameterSubCodec>(
        _ arguments: ArraySlice<String>, default fallback: V, refusal: (String) -> UpdateCodecSpecError
    ) throws(UpdateCodecSpecError) -> V {
        guard arguments.count == 2 else { return fallback }
        let name = arguments[arguments.startIndex + 1]
        guard let codec = V(name: name) else { throw refusal(name) }
        return codec
    }

    /// The canonical configuration form: `int8:256`, `topk:0.01:fp16`, ….
    public var description: String {
        switch kind {
        case .fp32: return "fp32"
        case .fp16: return "fp16"
        case .bf16: return "bf16"
        case .int8Block(let size): return "int8:\(size)"
        case .int4Block(let size): return "int4:\(size)"
        case .topK(let fraction, let values): return "topk:\(fraction):\(values)"
        case .lowRank(let rank, let values): return "lowrank:\(rank):\(values)"
        }
    }

    /// The frame codec (header byte 5) and parameter (bytes 28...31) this spec writes.
    public var codec: TensorCodec {
        switch kind {
        case .fp32: return .fp32
        case .fp16: return .fp16
        case .bf16: return .bf16
        case .int8Block: return .int8Block
        case .int4Block: return .int4Block
        case .topK: return .topK
        case .lowRank: return .lowRank
        }
    }

    public var codecParameter: UInt32 {
        switch kind {
        case .fp32, .fp16, .bf16: return 0
        case .int8Block(let size), .int4Block(let size): return UInt32(size)
        case .topK(_, let values): return values.parameter
        case .lowRank(_, let values): return values.parameter
        }
    }

    /// Whether the codec needs the shard's tensor shapes (`encode(…, shapes:)`).
    public var needsShapes: Bool {
        if case .lowRank = kind { return true }
        return false
    }

    /// Floats of per-shard state the codec keeps between steps besides the residual (the
    /// low-rank warm start: Σ rank·cols over the matrices sent as factors); 0 for the others.
    public func warmStartCount(shapes: [MatrixShape]) -> Int {
        guard case .lowRank(let rank, _) = kind else { return 0 }
        return LowRankEncoder.warmStartCount(shapes: shapes, rank: rank)
    }

    /// Bytes an encode of a shard laid out as `shapes` holds besides its input, the residual
    /// and the body (for the worker's memory plan); nil for codecs that do not depend on shapes.
    public func lowRankWorkingBytes(shapes: [MatrixShape]) -> Int? {
        guard case .lowRank(let rank, let values) = kind else { return nil }
        return LowRankEncoder.workingBytes(shapes: shapes, rank: rank, codec: values)
    }

    /// The largest body this spec can produce for n elements (what a receiver expecting it may allow).
    public func maximumBodySize(elementCount: Int) -> Int {
        TensorFrame.maximumBodySize(elementCount: elementCount, codec: codec, codecParameter: codecParameter)
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let text = try container.decode(String.self)
        do {
            try self.init(parsing: text)
        } catch {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: error.description)
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(description)
    }

    /// Encodes gradient `g` as a frame, with error feedback when `residual` is given (the
    /// caller's buffer, as long as `g`, zero at first, kept between steps): the frame carries
    /// v = g + residual in this codec, and afterwards residual = v − (what the receiver decodes),
    /// so whatever the codec drops now is sent later. Non-finite g, or a non-finite g + residual,
    /// is refused before the residual is touched. If zstd fails after the sum, the residual holds
    /// v (nothing sent, nothing lost). `zstdLevel` nil sends the payload uncompressed.
    ///
    /// `shapes` (the shard's tensors, in order) and `warmStart` (`warmStartCount(shapes:)`
    /// floats, zeros at first, kept between steps like the residual) are for `lowrank`, which
    /// refuses to encode without shapes; the other codecs ignore them.
    public func encode(_ g: UnsafeBufferPointer<Float>, residual: UnsafeMutableBufferPointer<Float>?,
                       zstdLevel: Int?, shapes: [MatrixShape]? = nil,
                       warmStart: UnsafeMutableBufferPointer<Float>? = nil) throws(FrameEncodingError) -> [UInt8] {
        if let zstdLevel, !Zstd.levels.contains(zstdLevel) { throw .invalidZstdLevel(zstdLevel) }
        let n = g.count
        precondition(n <= TensorFrame.maximumElementCount, "too many elements for one frame")
        if case .topK = kind, n > Int(UInt32.max) + 1 { throw .tooManyElementsForSparse(n) }
        if needsShapes {
            // Checked before the residual changes: a wrong layout is the caller's error, not lost mass.
            guard let shapes else { throw .lowRankCodecNeedsShapes }
            let covered = shapes.reduce(0) { $0 + $1.count }
            guard covered == n else { throw .shapesMismatch(values: n, shapes: covered) }
            guard shapes.count <= LowRankPayload.maximumSegments else { throw .tooManySegments(shapes.count) }
            let state = warmStartCount(shapes: shapes)
            if let warmStart, warmStart.count != state {
                throw .warmStartLengthMismatch(expected: state, actual: warmStart.count)
            }
        }
        guard let residual else {
            // Top-k would only look at the entries it selects, low-rank at their products;
            // report the first bad one like the dense codecs.
            if !codec.isDense, let base = g.baseAddress, let bad = FrameKernels.firstNonFinite(base, count: n) {
                throw .nonFinite(index: bad)
            }
            return try encodeValues(g, zstdLevel: zstdLevel, residual: nil, shapes: shapes, warmStart: warmStart)
        }
        guard residual.count == n else { throw .residualLengthMismatch(values: n, residual: residual.count) }
        guard let gBase = g.baseAddress, let rBase = residual.baseAddress else {
            return try encodeValues(g, zstdLevel: zstdLevel, residual: nil, shapes: shapes, warmStart: warmStart)  // n = 0
        }
        if let bad = FrameKernels.firstNonFinite(gBase, count: n) { throw .nonFinite(index: bad) }
        if let bad = Self.firstNonFiniteSum(gBase, rBase, count: n) { throw .residualOverflow(index: bad) }
        FrameKernels.accumulate(gBase, scale: 1, into: rBase, count: n)  // residual = v = residual + 1·g, exactly g + r
        return try encodeValues(UnsafeBufferPointer(residual), zstdLevel: zstdLevel, residual: residual, shapes: shapes,
                                warmStart: warmStart)
    }

    /// `encode` for arrays.
    public func encode(_ g: [Float], residual: inout [Float], zstdLevel: Int?,
                       shapes: [MatrixShape]? = nil, warmStart: inout [Float]) throws(FrameEncodingError) -> [UInt8] {
        var result: Result<[UInt8], FrameEncodingError> = .success([])
        g.withUnsafeBufferPointer { gradient in
            residual.withUnsafeMutableBufferPointer { r in
                warmStart.withUnsafeMutableBufferPointer { w in
                    do throws(FrameEncodingError) {
                        result = .success(try encode(gradient, residual: r, zstdLevel: zstdLevel, shapes: shapes, warmStart: w))
                    } catch {
                        result = .failure(error)
                    }
                }
            }
        }
        return try result.get()
    }

    /// `encode` for arrays, for codecs without a warm start.
    public func encode(_ g: [Float], residual: inout [Float], zstdLevel: Int?,
                       shapes: [MatrixShape]? = nil) throws(FrameEncodingError) -> [UInt8] {
        var coldStart = [Float](repeating: 0, count: shapes.map { warmStartCount(shapes: $0) } ?? 0)
        return try encode(g, residual: &residual, zstdLevel: zstdLevel, shapes: shapes, warmStart: &coldStart)
    }

    /// Encodes `values`; with `residual` (the same memory as `values`), then subtracts what was sent.
    private func encodeValues(_ values: UnsafeBufferPointer<Float>, zstdLevel: Int?,
                              residual: UnsafeMutableBufferPointer<Float>?, shapes: [MatrixShape]?,
                              warmStart: UnsafeMutableBufferPointer<Float>?) throws(FrameEncodingError) -> [UInt8] {
        let n = values.count
        switch kind {
        case .lowRank(let rank, let valueCodec):
            guard let shapes else { throw .lowRankCodecNeedsShapes }
            guard LowRankEncoder.fits(shapes: shapes, rank: rank, codec: valueCodec) else {
                // Factors and table would outweigh the dense tensor: send it exactly, as fp32.
                let body = try TensorFrame.encode(values, codec: .fp32, zstdLevel: zstdLevel)
                residual?.update(repeating: 0)
                return body
            }
            return try LowRankEncoder.encode(values, shapes: shapes, rank: rank, codec: valueCodec, zstdLevel: zstdLevel,
                                             residual: residual, warmStart: warmStart)
        case .fp32:
            let body = try TensorFrame.encode(values, codec: .fp32, zstdLevel: zstdLevel)
            residual?.update(repeating: 0)  // fp32 sends v exactly: v − v = 0
            return body
        case .fp16, .bf16, .int8Block, .int4Block:
            let codec = self.codec, parameter = codecParameter
            let capacity = try TensorFrame.bodyCapacity(elementCount: n, codec: codec, parameter: parameter, zstdLevel: zstdLevel)
            return try makeBytes(capacity: capacity) { (body) throws(FrameEncodingError) -> Int in
                try TensorFrame.write(values, codec: codec, parameter: parameter, zstdLevel: zstdLevel, into: body,
                                      residual: residual?.baseAddress)
            }
        case .topK(let fraction, let valueCodec):
            let (indices, selected) = TopK.select(values: values, fraction: fraction)
            var sent = [Float](repeating: 0, count: indices.count)
            var result: Result<[UInt8], FrameEncodingError> = .success([])
            indices.withUnsafeBufferPointer { i in
                selected.withUnsafeBufferPointer { v in
                    sent.withUnsafeMutableBufferPointer { s in
                        do throws(FrameEncodingError) {
                            result = .success(try TensorFrame.writeSparse(indices: i, values: v, count: n, valueCodec: valueCodec,
                                                                          zstdLevel: zstdLevel, sent: s.baseAddress))
                        } catch {
                            result = .failure(error)
                        }
                    }
                }
            }
            let body = try result.get()
            if let r = residual?.baseAddress {
                for (j, index) in indices.enumerated() { r[Int(index)] = r[Int(index)] - sent[j] }
            }
            return body
        }
    }

    /// Index of the first i where g[i] + r[i] is not finite, or nil.
    static func firstNonFiniteSum(_ g: UnsafePointer<Float>, _ r: UnsafePointer<Float>, count: Int) -> Int? {
        let a = UnsafeRawPointer(g), b = UnsafeRawPointer(r)
        var flags = SIMD8<UInt32>(repeating: 0)
        var i = 0
        while i &+ 8 <= count {
            let sum = a.loadUnaligned(fromByteOffset: i &* 4, as: SIMD8<Float>.self)
                + b.loadUnaligned(fromByteOffset: i &* 4, as: SIMD8<Float>.self)
            flags |= CodecKernels.nonFiniteFlag32(unsafeBitCast(sum, to: SIMD8<UInt32>.self))
            i &+= 8
        }
        var tail = false
        while i < count {
            tail = tail || !(g[i] + r[i]).isFinite
            i &+= 1
        }
        guard tail || CodecKernels.anyFlag32(flags) else { return nil }
        return (0..<count).first { !(g[$0] + r[$0]).isFinite }
    }
}

public enum UpdateCodecSpecError: Error, Equatable, Sendable, CustomStringConvertible {
    case unknownCodec(String)
    case invalidBlockSize(String)
    case invalidFraction(String)
    case invalidTopKValues(String)
    case unexpectedArgument(String)
    case invalidRank(String)
    case invalidFactorValues(String)

    static let accepted = "fp32, fp16, bf16, int8[:B], int4[:B] (B = 16...65536), topk:F[:fp16|:int8] (0 < F <= 1), lowrank:R[:fp16|:int8|:int4] (R = 1...256)"

    public var description: String {
        switch self {
        case .unknownCodec(let text):
            return "unknown update codec '\(text)'; expected one of \(Self.accepted)"
        case .invalidBlockSize(let text):
            return "invalid block size '\(text)': expected an integer in \(TensorCodec.blockSizes.lowerBound)...\(TensorCodec.blockSizes.upperBound)"
        case .invalidFraction(let text):
            return "invalid top-k fraction '\(text)': expected a number with 0 < F <= 1, e.g. topk:0.01"
        case .invalidTopKValues(let text):
            return "invalid top-k value codec '\(text)': expected fp16 or int8"
        case .unexpectedArgument(let text):
            return "malformed update codec '\(text)'; expected one of \(Self.accepted)"
        case .invalidRank(let text):
            return "invalid low-rank rank '\(text)': expected an integer in \(UpdateCodecSpec.lowRanks.lowerBound)...\(UpdateCodecSpec.lowRanks.upperBound), e.g. lowrank:4"
        case .invalidFactorValues(let text):
            return "invalid low-rank value codec '\(text)': expected fp16, int8 or int4"
        }
    }
}
