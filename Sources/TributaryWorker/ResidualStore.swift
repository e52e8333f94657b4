import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The worker's error-feedback residuals, one file per shard (`residual/NAME.f32`, raw
/// little-endian fp32), streamed through memory one shard at a time so that they cost the
/// budget one shard, not a model.
///
/// A unit's new residuals are staged (`NAME.f32.pending`) while its shards are encoded and
/// become the committed state only after the coordinator accepted the unit; a refused or
/// failed unit discards them, so the mass that unit carried is sent again later rather than
/// lost. Residuals survive a restart and are kept across parameter versions (they hold
/// gradient mass not yet sent, still a valid direction on the next version). A file of the
/// wrong size (another model) reads as zeros.
///
/// The low-rank codec's warm start (its last Q per shard, `NAME.warm.f32`) is kept the same
/// way; zeros mean a cold start from seeded random vectors.
final class ResidualStore: @unchecked Sendable {
    static let warmStartSuffix = ".warm"

    // Unchecked: used by one unit at a time; `staged` is guarded by `lock`.
    let directory: String
    private let lock = NSLock()
    private var staged: Set<String> = []

    init(directory: String) {
        self.directory = directory
    }

    private func path(_ shard: String) -> String { "\(directory)/\(shard).f32" }

    /// The committed residual of `shard` into `out` (zeros when there is none, it has the
    /// wrong size, or holds a non-finite value).
    func load(_ shard: String, into out: UnsafeMutableBufferPointer<Float>) {
        out.update(repeating: 0)
        guard let base = out.baseAddress else { return }
        let fd = open(path(shard), O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0, Int(info.st_size) == 4 * out.count else { return }
        let raw = UnsafeMutableRawPointer(base)
        var offset = 0
        while offset < 4 * out.count {
            let n = read(fd, raw + offset, 4 * out.count - offset)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { out.update(repeating: 0); return }
            offset += n
        }
        for i in 0..<out.count {
            let v = Float(bitPattern: UInt32(littleEndian: base[i].bitPattern))
            base[i] = v.isFinite ? v : 0
        }
    }

    /// Writes `shard`'s new residual as this unit's staged state.
    func stage(_ shard: String, _ values: UnsafeBufferPointer<Float>) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let target = path(shard) + ".pending"
        let fd = open(target, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw WorkerError.fatal("cannot write the error-feedback residual \(target): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        guard let base = values.baseAddress else { return lock.withLock { _ = staged.insert(shard) } }
        // Little-endian on disk; every platform Swift targets here is little-endian already.
        let raw = UnsafeRawPointer(base)
        var offset = 0
        while offset < 4 * values.count {
            let n = write(fd, raw + offset, 4 * values.count - offset)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { throw WorkerError.fatal("cannot write the error-feedback residual \(target): \(String(cString: strerror(errno)))") }
            offset += n
        }
        guard fsync(fd) == 0 else { throw WorkerError.fatal("cannot sync \(target): \(String(cString: strerror(errno)))") }
        lock.withLock { _ = staged.insert(shard) }
    }

    /// The unit was accepted: its staged residuals become the committed ones (each by an
    /// atomic rename, after the data reached the disk).
    func commitStaged() throws {
        let names = lock.withLock { () -> Set<String> in defer { staged = [] }; return staged }
        for name in names where rename(path(name) + ".pending", path(name)) != 0 {
            throw WorkerError.fatal("cannot commit the error-feedback residual \(path(name)): \(String(cString: strerror(errno)))")
        }
        let dir = open(directory, O_RDONLY | O_CLOEXEC)
        if dir >= 0 { _ = fsync(dir); close(dir) }
    }

    /// The unit was refused or failed: back to the committed residuals.
    func discardStaged() {
        let names = lock.withLock { () -> Set<String> in defer { staged = [] }; return staged }
        for name in names { unlink(path(name) + ".pending") }
    }
}
