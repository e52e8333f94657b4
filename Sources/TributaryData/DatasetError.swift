import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Every failure the data loaders report. `description` is one line that names the file (when
/// there is one), says what is wrong, and what to do about it.
public struct DatasetError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: String, Sendable, Equatable {
        case fileNotFound, unreadable, unwritable, empty, invalidFormat, tooLarge, unknownCharacter, invalidArgument
    }

    public let kind: Kind
    /// The file involved, if any.
    public let path: String?
    public let message: String

    public init(_ kind: Kind, path: String? = nil, _ message: String) {
        self.kind = kind
        self.path = path
        self.message = message
    }

    public var description: String {
        if let path { return "\(path): \(message)" }
        return message
    }

    /// The same error, attributed to `path` (used when a byte-level parser is called by a loader).
    func at(_ path: String) -> DatasetError { DatasetError(kind, path: path, message) }
}

/// Reads a whole file with POSIX calls so that the error can say exactly why it failed
/// (Foundation's errors are verbose and differ between platforms).
func readFileBytes(_ path: String, what: String) throws -> [UInt8] {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    if fd < 0 {
        let code = errno
        if code == ENOENT {
            throw DatasetError(.fileNotFound, path: path,
                               "\(what) file does not exist; check the path or download the data set")
        }
        throw DatasetError(.unreadable, path: path,
                           "cannot open \(what) file: \(String(cString: strerror(code))); check permissions")
    }
    defer { close(fd) }
    var info = stat()
    if fstat(fd, &info) != 0 {
        throw DatasetError(.unreadable, path: path,
                           "cannot stat \(what) file: \(String(cString: strerror(errno)))")
    }
    if (info.st_mode & S_IFMT) == S_IFDIR {
        throw DatasetError(.unreadable, path: path, "is a directory, not a \(what) file; pass the file inside it")
    }
    // The size is a hint only (the file may grow or be a pipe); read until EOF.
    var bytes = [UInt8]()
    bytes.reserveCapacity(max(0, Int(info.st_size)))
    let chunkSize = 1 << 20
    let chunk = UnsafeMutableRawBufferPointer.allocate(byteCount: chunkSize, alignment: 16)
    defer { chunk.deallocate() }
    while true {
        let n = read(fd, chunk.baseAddress, chunkSize)
        if n < 0 {
            if errno == EINTR { continue }
            throw DatasetError(.unreadable, path: path,
                               "error reading \(what) file: \(String(cString: strerror(errno)))")
        }
        if n == 0 { break }
        bytes.append(contentsOf: UnsafeRawBufferPointer(rebasing: chunk[0..<n]))
    }
    return bytes
}
