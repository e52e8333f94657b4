/// Compressed parameter downloads (Protocol/frames.md, "Parameter deltas"): version v of a
/// shard is version v − 1 plus a delta, a tensor frame in the job's download codec. The
/// rule is exact, so a worker that applies the chain of deltas holds bit for bit what the
/// coordinator published, and the manifest's content hash proves it.
public enum ParameterDelta {
    /// values[i] = values[i] + d[i], one fp32 rounding each, with d the delta frame decoded
    /// reproducibly (`TensorFrame.decode(…, reproducible: true)`). `scratch` holds at least
    /// `values.count` floats. The frame is validated whole before `values` changes.
    public static func apply(_ delta: UnsafeRawBufferPointer, to values: UnsafeMutableBufferPointer<Float>,
                             scratch: UnsafeMutableBufferPointer<Float>) throws(FrameError) {
        precondition(scratch.count >= values.count, "scratch must hold at least values.count floats")
        let decoded = UnsafeMutableBufferPointer(rebasing: scratch[0..<values.count])
        try TensorFrame.decode(delta, expectedCount: values.count, into: decoded, reproducible: true)
        guard let v = values.baseAddress, let d = decoded.baseAddress else { return }
        for i in 0..<values.count { v[i] = v[i] + d[i] }
    }
}

/// The coordinator's side of compressed downloads for one shard: what workers hold (the
/// published values) and the delta that moves it toward the true parameters. Error feedback
/// is implicit: each delta encodes target − published, so what one delta leaves out is in
/// the next one's difference.
public struct ParameterDeltaEncoder: Sendable {
    public let codec: UpdateCodecSpec
    public let shapes: [MatrixShape]?
    /// The values workers reconstruct for the latest version.
    public private(set) var published: [Float]
    /// The low-rank codec's warm start (empty for the others), kept between versions.
    public private(set) var warmStart: [Float]

    /// Starts from `published` (the values a full download gives). `warmStart` of the wrong
    /// length (or nil) starts cold.
    public init(codec: UpdateCodecSpec, shapes: [MatrixShape]?, published: [Float], warmStart: [Float]? = nil) {
        self.codec = codec
        self.shapes = shapes
        self.published = published
        let count = shapes.map { codec.warmStartCount(shapes: $0) } ?? 0
        self.warmStart = warmStart?.count == count ? warmStart ?? [] : [Float](repeating: 0, count: count)
    }

    /// The delta frame toward `target` (as many values as `published`); `published` then holds
    /// exactly what a worker applying the frame gets.
    public mutating func advance(toward target: UnsafeBufferPointer<Float>, zstdLevel: Int?) throws -> [UInt8] {
        precondition(target.count == published.count, "target and published values differ in length")
        let n = published.count
        var difference = [Float](repeating: 0, count: n)
        difference.withUnsafeMutableBufferPointer { d in
            published.withUnsafeBufferPointer { p in
                guard let dBase = d.baseAddress, let pBase = p.baseAddress, let tBase = target.baseAddress else { return }
                for i in 0..<n { dBase[i] = tBase[i] - pBase[i] }
            }
        }
        let codec = self.codec, shapes = self.shapes
        let body = try difference.withUnsafeBufferPointer { d in
            try warmStart.withUnsafeMutableBufferPointer { w in
                try codec.encode(d, residual: nil, zstdLevel: zstdLevel, shapes: shapes, warmStart: w.isEmpty ? nil : w)
            }
        }
        // The decode reuses the difference's memory: it is no longer needed.
        try body.withUnsafeBytes { raw in
            try published.withUnsafeMutableBufferPointer { p in
                try difference.withUnsafeMutableBufferPointer { scratch in
                    try ParameterDelta.apply(raw, to: p, scratch: scratch)
                }
            }
        }
        return body
    }
}

/// Errors of a delta chain's container (its frames report `FrameError`).
public enum DeltaChainError: Error, Equatable, CustomStringConvertible, Sendable {
    case truncated(Int)
    case badMagic
    case unsupportedVersion(UInt8)
    case wrongVersions(from: UInt64, to: UInt64, expectedFrom: Int, expectedTo: Int)
    case tooManyDeltas(Int)
    case frameLength(index: Int, length: UInt64, left: Int)
    case trailingBytes(Int)

    public var description: String {
        switch self {
        case let .truncated(n): return "a delta chain of \(n) bytes is shorter than its header"
        case .badMagic: return "not a delta chain (magic is not TRDC)"
        case let .unsupportedVersion(v): return "delta chain format version \(v) is not supported"
        case let .wrongVersions(from, to, ef, et):
            return "the delta chain goes from version \(from) to \(to), not \(ef) to \(et)"
        case let .tooManyDeltas(n): return "a delta chain of \(n) deltas is longer than \(DeltaChain.maximumDeltas)"
        case let .frameLength(index, length, left):
            return "delta \(index) claims \(length) bytes but \(left) remain"
        case let .trailingBytes(n): return "the delta chain has \(n) bytes after its last delta"
        }
    }
}

/// The body of `GET /v1/versions/{v}/shards/{shard}/delta?from=u` (Protocol/frames.md): a
/// 24-byte header (`TRDC`, format 1, three zero bytes, u64 from, u64 to, little-endian) and
/// then, for each version u + 1 … v in order, a u64 length and that delta's tensor frame.
public enum DeltaChain {
    public static let magic: [UInt8] = [0x54, 0x52, 0x44, 0x43]
    public static let formatVersion: UInt8 = 1
    public static let headerSize = 24
    /// The longest chain a coordinator serves and a worker accepts.
    public static let maximumDeltas = 256

    public static func encode(from: Int, to: Int, deltas: [[UInt8]]) -> [UInt8] {
        precondition(to - from == deltas.count && from >= 0, "a chain from u to v has v − u deltas")
        var out = magic + [formatVersion, 0, 0, 0]
        out.reserveCapacity(headerSize + deltas.reduce(0) { $0 + 8 + $1.count })
        withUnsafeBytes(of: UInt64(from).littleEndian) { out.append(contentsOf: $0) }
        withUnsafeBytes(of: UInt64(to).littleEndian) { out.append(contentsOf: $0) }
        for d in deltas {
            withUnsafeBytes(of: UInt64(d.count).littleEndian) { out.append(contentsOf: $0) }
            out.append(contentsOf: d)
        }
        return out
    }

    /// The byte ranges of the chain's deltas, in version order, after checking the header
    /// names exactly `from` → `to` and the lengths tile the body.
    public static func deltas(in body: UnsafeRawBufferPointer, from: Int, to: Int) throws(DeltaChainError) -> [Range<Int>] {
        guard body.count >= headerSize else { throw .truncated(body.count) }
        guard body[0] == magic[0], body[1] == magic[1], body[2] == magic[2], body[3] == magic[3] else { throw .badMagic }
        guard body[4] == formatVersion, body[5] == 0, body[6] == 0, body[7] == 0 else { throw .unsupportedVersion(body[4]) }
        let claimedFrom = UInt64(littleEndian: body.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        let claimedTo = UInt64(littleEndian: body.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
        guard from >= 0, to > from, claimedFrom == UInt64(from), claimedTo == UInt64(to) else {
            throw .wrongVersions(from: claimedFrom, to: claimedTo, expectedFrom: from, expectedTo: to)
        }
        let count = to - from
        guard count <= maximumDeltas else { throw .tooManyDeltas(count) }
        var ranges: [Range<Int>] = []
        var offset = headerSize
        for index in 0..<count {
            let left = body.count - offset
            guard left >= 8 else { throw .frameLength(index: index, length: 8, left: left) }
            let length = UInt64(littleEndian: body.loadUnaligned(fromByteOffset: offset, as: UInt64.self))
            guard length <= UInt64(left - 8) else { throw .frameLength(index: index, length: length, left: left - 8) }
            let start = offset + 8
            ranges.append(start..<(start + Int(length)))
            offset = start + Int(length)
        }
        guard offset == body.count else { throw .trailingBytes(body.count - offset) }
        return ranges
    }
}
