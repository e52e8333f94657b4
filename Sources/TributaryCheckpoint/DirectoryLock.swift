import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// An exclusive lock on a data directory (`flock` on a lock file in it), held while a
/// coordinator or a worker uses the directory: two processes writing one ledger, one
/// checkpoint folder or one shard cache would corrupt each other (issue 14). The kernel
/// drops the lock when the process dies, so a kill -9 never leaves it stale.
public final class DirectoryLock: Sendable {
    public let path: String
    private let descriptor: Mutex<Int32>

    public enum Failure: Error, CustomStringConvertible, Equatable {
        case held(path: String, by: String)
        case cannotOpen(path: String, reason: String)

        public var description: String {
            switch self {
            case let .held(path, by):
                return "\(path) is locked by another process (\(by)); stop it first, or use another directory"
            case let .cannotOpen(path, reason):
                return "cannot open the lock file \(path): \(reason)"
            }
        }
    }

    private init(path: String, fd: Int32) {
        self.path = path
        descriptor = Mutex(fd)
    }

    /// Takes the lock file `name` in `directory` (created if missing), or throws `.held`
    /// naming the holder's pid without waiting.
    public static func acquire(_ directory: String, name: String) throws(Failure) -> DirectoryLock {
        let path = "\(directory)/\(name)"
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw .cannotOpen(path: path, reason: String(cString: strerror(errno))) }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            var buffer = [UInt8](repeating: 0, count: 64)
            let n = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
            close(fd)
            let holder = n > 0 ? String(decoding: buffer[0..<n], as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) : ""
            throw .held(path: path, by: holder.isEmpty ? "pid unknown" : holder)
        }
        // Who holds it, for the next one's message.
        let text = Array("pid \(getpid())\n".utf8)
        _ = ftruncate(fd, 0)
        _ = text.withUnsafeBytes { pwrite(fd, $0.baseAddress, $0.count, 0) }
        return DirectoryLock(path: path, fd: fd)
    }

    /// Gives the lock up (also when the object goes away, or the process ends).
    public func release() {
        descriptor.withLock { fd in
            guard fd >= 0 else { return }
            _ = flock(fd, LOCK_UN)
            close(fd)
            fd = -1
        }
    }

    deinit { release() }
}
