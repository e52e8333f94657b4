import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A failed atomic write. The target was left as it was; `description` names the path,
/// the step that failed and the system's reason.
public struct AtomicFileError: Error, CustomStringConvertible, Sendable, Equatable {
    public let path: String
    public let operation: String
    /// The errno value, or 0 when the failure was not a system call's.
    public let code: Int32

    public var description: String {
        if code == ENOSPC || code == EDQUOT {
            // The case people meet most: said in words, with what is left, not as a system error.
            let directory = (path as NSString).deletingLastPathComponent
            var fs = statvfs()
            let free = statvfs(directory, &fs) == 0 ? Int(fs.f_bavail) &* Int(fs.f_frsize) : 0
            return "cannot write \(path): the disk is full (\(Self.bytes(free)) free there); free some space or choose another directory — the previous file, if any, is unchanged"
        }
        let reason = code == 0 ? "failed" : String(cString: strerror(code))
        return "\(path): cannot write file (\(operation): \(reason)); check that the directory exists, is writable and has space — the previous file, if any, is unchanged"
    }

    static func bytes(_ n: Int) -> String {
        n >= 1 << 20 ? String(format: "%.1f MiB", Double(n) / 1048576) : "\(n / 1024) KiB"
    }
}

/// Whole-file replacement that a crash or power loss cannot leave half-written: the bytes go to
/// a temporary file beside the target, are flushed to disk, and then renamed over it.
public enum AtomicFile {
    public static func writeText(_ s: String, to path: String) throws {
        try write(Array(s.utf8), to: path)
    }

    public static func write(_ bytes: [UInt8], to path: String) throws {
        try write(bytes, to: path, failingAt: nil)
    }

    /// Points at which tests make a write fail, to check that cleanup leaves the target untouched.
    enum FaultPoint: Sendable { case afterWrite, beforeRename }

    static func write(_ bytes: [UInt8], to path: String, failingAt fault: FaultPoint?) throws {
        func fail(_ operation: String, _ code: Int32) -> AtomicFileError {
            AtomicFileError(path: path, operation: operation, code: code)
        }
        let (directory, name) = split(path)
        guard !name.isEmpty, name != ".", name != ".." else {
            throw fail("path names a directory, not a file", EISDIR)
        }

        // A unique name in the same directory, so the final rename stays within one file system.
        var temp = ""
        var fd: Int32 = -1
        for _ in 0..<8 {
            let suffix = String(UInt64.random(in: 0...UInt64.max), radix: 36)
            temp = "\(directory)/.\(name).tmp-\(getpid())-\(suffix)"
            fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
            if fd >= 0 || errno != EEXIST { break }
        }
        if fd < 0 { throw fail("create temporary file in \(directory)", errno) }

        var renamed = false
        defer {
            if fd >= 0 { close(fd) }
            if !renamed { unlink(temp) }
        }

        // Keep the permissions of the file being replaced.
        var existing = stat()
        if stat(path, &existing) == 0, (existing.st_mode & S_IFMT) == S_IFREG {
            _ = fchmod(fd, existing.st_mode & 0o7777)
        }

        try bytes.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = posixWrite(fd, raw.baseAddress.map { $0 + offset }, raw.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw fail("write", errno)
                }
                offset += n
            }
        }
        if fault == .afterWrite { throw fail("write (injected fault)", EIO) }
        if fsync(fd) != 0 { throw fail("fsync", errno) }
        let closeStatus = close(fd)
        fd = -1
        if closeStatus != 0 { throw fail("close", errno) }
        if fault == .beforeRename { throw fail("rename (injected fault)", EIO) }
        if rename(temp, path) != 0 { throw fail("rename temporary file over target", errno) }
        renamed = true

        // Make the rename itself durable. Best effort: some file systems refuse fsync on a
        // directory (EINVAL), and the new file is already in place either way.
        let dirFD = open(directory, O_RDONLY | O_CLOEXEC)
        if dirFD >= 0 {
            _ = fsync(dirFD)
            close(dirFD)
        }
    }

    /// (directory, last component); the directory is "." for a bare name.
    static func split(_ path: String) -> (String, String) {
        guard let slash = path.lastIndex(of: "/") else { return (".", path) }
        let directory = String(path[..<slash])
        return (directory.isEmpty ? "/" : directory, String(path[path.index(after: slash)...]))
    }
}

// `write` is shadowed inside AtomicFile by its own static methods.
@inline(__always)
private func posixWrite(_ fd: Int32, _ buffer: UnsafeRawPointer?, _ count: Int) -> Int {
    #if canImport(Glibc)
    return Glibc.write(fd, buffer, count)
    #else
    return Darwin.write(fd, buffer, count)
    #endif
}
