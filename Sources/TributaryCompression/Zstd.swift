import CZstd
import Foundation

/// zstd (RFC 8878) for frame payloads. Decompression is bounded by the caller's buffer: it never
/// allocates or writes more than that, whatever the zstd frame header claims.
public enum Zstd {
    /// Accepted compression levels. Above 19 ("ultra") windows grow past what receivers accept.
    public static let levels: ClosedRange<Int> = 1...19
    /// Largest window a received frame may ask for (8 MiB, what level 19 uses). Only frames
    /// that do not declare their content size need a window buffer; this bounds it.
    public static let maximumWindowLog = 23

    static let magic: UInt32 = 0xFD2F_B528
    // ZSTD_CONTENTSIZE_UNKNOWN / _ERROR are `(0ULL - 1)` macros, which Swift does not import.
    private static let contentSizeUnknown = UInt64.max
    private static let contentSizeError = UInt64.max - 1

    /// The largest compressed payload receivers accept for `byteCount` raw bytes:
    /// `n + n/256 + 64`. It is at least ZSTD_compressBound (whose small-input margin is at most
    /// 64), and it is part of the format, so it must not depend on the libzstd version.
    public static func maximumCompressedSize(_ byteCount: Int) -> Int {
        precondition(byteCount >= 0, "negative byte count")
        let (sum, overflow) = byteCount.addingReportingOverflow(byteCount >> 8 + 64)
        return overflow ? Int.max : sum
    }

    /// One zstd frame (content size declared, no zstd checksum) of `bytes` at `level`.
    public static func compress(_ bytes: UnsafeRawBufferPointer, level: Int) throws(FrameEncodingError) -> [UInt8] {
        guard levels.contains(level) else { throw .invalidZstdLevel(level) }
        return try makeBytes(capacity: try compressionCapacity(bytes.count)) { (destination) throws(FrameEncodingError) -> Int in
            try compress(bytes, level: level, into: destination)
        }
    }

    /// Decompresses one zstd frame that must decode to exactly `exactSize` bytes. Nothing is
    /// allocated before the frame header and block structure have been checked.
    public static func decompress(_ bytes: UnsafeRawBufferPointer, exactSize: Int) throws(FrameError) -> [UInt8] {
        precondition(exactSize >= 0, "negative exactSize")
        try checkFrame(bytes, limit: exactSize, exact: true)
        var failure: FrameError?
        let result = [UInt8](unsafeUninitializedCapacity: exactSize) { buffer, count in
            do throws(FrameError) {
                _ = try decompressChecked(bytes, into: UnsafeMutableRawBufferPointer(buffer), exact: true)
                count = exactSize
            } catch {
                failure = error
                count = 0
            }
        }
        if let failure { throw failure }
        return result
    }

    /// Decompresses one zstd frame into `into`, returning the number of bytes it decodes to. A
    /// frame that would produce more than `into.count` bytes throws `decompressionBomb`. libzstd
    /// may use all of `into` as workspace, so bytes past the returned count can change too.
    public static func decompress(_ bytes: UnsafeRawBufferPointer, into: UnsafeMutableRawBufferPointer) throws(FrameError) -> Int {
        try decompress(bytes, into: into, exact: false)
    }

    /// `decompress(_:into:)`, or with `exact` the frame must fill `into` exactly.
    static func decompress(_ bytes: UnsafeRawBufferPointer, into: UnsafeMutableRawBufferPointer, exact: Bool) throws(FrameError) -> Int {
        try checkFrame(bytes, limit: into.count, exact: exact)
        return try decompressChecked(bytes, into: into, exact: exact)
    }

    // MARK: Compression

    /// Room that guarantees compression succeeds (ZSTD_compressBound).
    static func compressionCapacity(_ byteCount: Int) throws(FrameEncodingError) -> Int {
        let bound = ZSTD_compressBound(byteCount)
        guard ZSTD_isError(bound) == 0, bound > 0 else {
            throw .zstdFailure("input of \(byteCount) bytes is too large for zstd")
        }
        return bound
    }

    /// Compresses straight into `destination` (at least `compressionCapacity` bytes, so that
    /// libzstd cannot run out of room) and returns the frame's size.
    static func compress(_ bytes: UnsafeRawBufferPointer, level: Int,
                         into destination: UnsafeMutableRawBufferPointer) throws(FrameEncodingError) -> Int {
        guard levels.contains(level) else { throw .invalidZstdLevel(level) }
        guard let target = destination.baseAddress else { throw .zstdFailure("no output buffer") }
        guard let cctx = ZstdContextPool.shared.takeCompressor() else {
            throw .zstdFailure("could not allocate a compression context")
        }
        defer { ZstdContextPool.shared.giveBack(compressor: cctx) }
        var empty: UInt8 = 0
        let written = withUnsafePointer(to: &empty) { emptyPointer in
            ZSTD_compressCCtx(cctx, target, destination.count,
                              bytes.baseAddress ?? UnsafeRawPointer(emptyPointer), bytes.count, Int32(level))
        }
        guard ZSTD_isError(written) == 0 else { throw .zstdFailure(errorName(written)) }
        return written
    }

    // MARK: Decompression

    /// Structural checks that need no output memory: zstd magic (no skippable or legacy frames),
    /// a valid frame header, a declared content size within the limit (and equal to it when
    /// `exact`), and exactly one complete frame with nothing after it.
    static func checkFrame(_ src: UnsafeRawBufferPointer, limit: Int, exact: Bool) throws(FrameError) {
        guard let base = src.baseAddress, src.count >= 4 else {
            throw .corruptCompression("zstd frame truncated: \(src.count) bytes")
        }
        let magic = UInt32(littleEndian: src.loadUnaligned(as: UInt32.self))
        guard magic == Self.magic else {
            throw .corruptCompression("not a zstd frame (magic 0x\(hex(magic, digits: 8)), expected 0xfd2fb528)")
        }
        let declared = ZSTD_getFrameContentSize(base, src.count)
        if declared == contentSizeError {
            throw .corruptCompression("invalid or truncated zstd frame header")
        }
        if declared != contentSizeUnknown {
            if declared > UInt64(limit) { throw .decompressionBomb(limit: limit) }
            if exact && declared != UInt64(limit) {
                throw .corruptCompression("zstd frame declares \(declared) bytes, expected \(limit)")
            }
        }
        let frameSize = ZSTD_findFrameCompressedSize(base, src.count)
        if ZSTD_isError(frameSize) != 0 {
            throw .corruptCompression("invalid or truncated zstd frame (\(errorName(frameSize)))")
        }
        if frameSize != src.count {
            throw .corruptCompression("\(src.count - frameSize) trailing bytes after the zstd frame")
        }
    }

    /// Streams the frame into `dst`, which is the hard bound on output. Once `dst` is full, one
    /// more call with a 1-byte probe tells a finished frame from one that has more to give.
    private static func decompressChecked(_ src: UnsafeRawBufferPointer, into dst: UnsafeMutableRawBufferPointer, exact: Bool) throws(FrameError) -> Int {
        guard let dctx = ZstdContextPool.shared.takeDecompressor() else {
            throw .corruptCompression("could not allocate a decompression context")
        }
        defer { ZstdContextPool.shared.giveBack(decompressor: dctx) }

        var placeholder: (UInt8, UInt8) = (0, 0)  // stands in for empty buffers' nil base addresses
        return try withUnsafeMutableBytes(of: &placeholder) { (dummy) throws(FrameError) -> Int in
            guard let dummyBase = dummy.baseAddress else { throw .corruptCompression("no scratch memory") }
            var input = ZSTD_inBuffer(src: src.baseAddress ?? UnsafeRawPointer(dummyBase), size: src.count, pos: 0)
            var output = ZSTD_outBuffer(dst: dst.baseAddress ?? dummyBase, size: dst.count, pos: 0)
            var produced = 0
            while true {
                let inputBefore = input.pos
                let outputBefore = output.pos
                var remaining: Int
                if output.pos < output.size {
                    remaining = ZSTD_decompressStream(dctx, &output, &input)
                    if ZSTD_isError(remaining) != 0 { throw failure(remaining) }
                    produced = output.pos
                } else {
                    var probe = ZSTD_outBuffer(dst: dummyBase, size: 1, pos: 0)
                    remaining = ZSTD_decompressStream(dctx, &probe, &input)
                    if ZSTD_isError(remaining) != 0 { throw failure(remaining) }
                    if probe.pos != 0 { throw .decompressionBomb(limit: dst.count) }
                }
                if remaining == 0 { break }
                if input.pos == inputBefore && output.pos == outputBefore {
                    // No progress: more input is needed (truncated) or the decoder is stuck.
                    throw .corruptCompression(input.pos == input.size ? "zstd frame truncated" : "zstd decoder made no progress")
                }
            }
            if input.pos != input.size {
                throw .corruptCompression("\(input.size - input.pos) trailing bytes after the zstd frame")
            }
            if exact && produced != dst.count {
                throw .corruptCompression("zstd frame decodes to \(produced) bytes, expected \(dst.count)")
            }
            return produced
        }
    }

    private static func failure(_ code: Int) -> FrameError {
        .corruptCompression(errorName(code))
    }

    static func errorName(_ code: Int) -> String {
        guard let name = ZSTD_getErrorName(code) else { return "zstd error \(code)" }
        return String(cString: name)
    }
}

/// Reuses zstd contexts across calls and threads. A context is owned by one caller between
/// `take` and `giveBack`, so contexts are never shared concurrently.
final class ZstdContextPool: @unchecked Sendable {
    static let shared = ZstdContextPool()

    /// Contexts kept per kind; more concurrent callers create and free their own.
    private static let maximumPooled = 16
    /// Compression contexts grow with the level (level 19's are ~100 MiB); only small ones are kept.
    private static let maximumPooledCompressorBytes = 16 << 20

    private let lock = NSLock()
    private var compressors: [OpaquePointer] = []    // guarded by lock
    private var decompressors: [OpaquePointer] = []  // guarded by lock

    func takeCompressor() -> OpaquePointer? {
        lock.lock()
        let pooled = compressors.popLast()
        lock.unlock()
        return pooled ?? ZSTD_createCCtx()
    }

    func giveBack(compressor cctx: OpaquePointer) {
        if ZSTD_sizeof_CCtx(cctx) <= Self.maximumPooledCompressorBytes {
            lock.lock()
            if compressors.count < Self.maximumPooled {
                compressors.append(cctx)
                lock.unlock()
                return
            }
            lock.unlock()
        }
        ZSTD_freeCCtx(cctx)
    }

    func takeDecompressor() -> OpaquePointer? {
        lock.lock()
        let pooled = decompressors.popLast()
        lock.unlock()
        if let pooled {
            // A previous caller may have stopped mid-frame (error or bomb).
            ZSTD_DCtx_reset(pooled, ZSTD_reset_session_only)
            return pooled
        }
        guard let dctx = ZSTD_createDCtx() else { return nil }
        ZSTD_DCtx_setParameter(dctx, ZSTD_d_windowLogMax, Int32(Zstd.maximumWindowLog))
        return dctx
    }

    func giveBack(decompressor dctx: OpaquePointer) {
        lock.lock()
        if decompressors.count < Self.maximumPooled {
            decompressors.append(dctx)
            lock.unlock()
            return
        }
        lock.unlock()
        ZSTD_freeDCtx(dctx)
    }
}

/// A new array filled by `fill` (which returns the bytes it wrote) in place, without copying
/// through a scratch buffer. When the result is much smaller than `capacity` (a well-compressed
/// payload), it moves to an exactly sized array so the worst-case capacity is not kept alive.
func makeBytes(capacity: Int,
               _ fill: (UnsafeMutableRawBufferPointer) throws(FrameEncodingError) -> Int) throws(FrameEncodingError) -> [UInt8] {
    var failure: FrameEncodingError?
    let bytes = [UInt8](unsafeUninitializedCapacity: capacity) { buffer, initialized in
        do throws(FrameEncodingError) {
            initialized = try fill(UnsafeMutableRawBufferPointer(buffer))
        } catch {
            failure = error
            initialized = 0
        }
    }
    if let failure { throw failure }
    let waste = capacity - bytes.count
    guard waste > 64 << 10 && waste > capacity / 8 else { return bytes }
    return [UInt8](unsafeUninitializedCapacity: bytes.count) { buffer, initialized in
        _ = buffer.initialize(from: bytes)
        initialized = bytes.count
    }
}
