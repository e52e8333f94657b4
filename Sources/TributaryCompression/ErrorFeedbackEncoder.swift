import Foundation

/// A worker's error-feedback state for one shard: the codec, the residual it carries between
/// steps and, for `lowrank`, the shard's tensor shapes and the power iteration's warm start
/// (persist `residual` and `warmStart` to survive restarts).
public struct ErrorFeedbackEncoder: Sendable {
    public let spec: UpdateCodecSpec
    public let shapes: [MatrixShape]?
    public var residual: [Float]
    public var warmStart: [Float]

    /// `shapes` defaults to one vector of `elementCount` (only `lowrank` uses shapes).
    public init(spec: UpdateCodecSpec, elementCount: Int, shapes: [MatrixShape]? = nil) {
        self.init(spec: spec, residual: [Float](repeating: 0, count: elementCount), shapes: shapes)
    }

    /// Resumes with a saved residual (and warm start; zeros mean a cold start).
    public init(spec: UpdateCodecSpec, residual: [Float], shapes: [MatrixShape]? = nil, warmStart: [Float]? = nil) {
        self.spec = spec
        let layout = shapes ?? (residual.isEmpty ? [] : [MatrixShape(rows: 1, cols: residual.count)])
        self.shapes = layout
        self.residual = residual
        let count = spec.warmStartCount(shapes: layout)
        self.warmStart = warmStart.flatMap { $0.count == count ? $0 : nil } ?? [Float](repeating: 0, count: count)
    }

    /// One step: the frame for gradient + residual, leaving in the residual what it did not carry.
    public mutating func encode(_ gradient: UnsafeBufferPointer<Float>, zstdLevel: Int?) throws(FrameEncodingError) -> [UInt8] {
        var result: Result<[UInt8], FrameEncodingError> = .success([])
        let spec = self.spec, shapes = self.shapes
        residual.withUnsafeMutableBufferPointer { r in
            warmStart.withUnsafeMutableBufferPointer { w in
                do throws(FrameEncodingError) {
                    result = .success(try spec.encode(gradient, residual: r, zstdLevel: zstdLevel, shapes: shapes, warmStart: w))
                } catch {
                    result = .failure(error)
                }
            }
        }
        return try result.get()
    }

    public mutating func encode(_ gradient: [Float], zstdLevel: Int?) throws(FrameEncodingError) -> [UInt8] {
        var result: Result<[UInt8], FrameEncodingError> = .success([])
        gradient.withUnsafeBufferPointer { g in
            do throws(FrameEncodingError) {
                result = .success(try encode(g, zstdLevel: zstdLevel))
            } catch {
                result = .failure(error)
            }
        }
        return try result.get()
    }

    /// Forgets what was not yet sent (e.g. after the model was replaced), and the warm start.
    public mutating func reset() {
        residual.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
        warmStart.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
    }
}

/// Why an update codec string was refused.
