import Foundation

/// Creating a coordinator's or a worker's data directory, with the reason in words when it
/// cannot be: Foundation's errors (`NSCocoaErrorDomain Code=512`) say neither which part of
/// the path is wrong nor what to do.
public enum DataDirectory {
    public struct Failure: Error, CustomStringConvertible, Equatable {
        public let description: String
    }

    public static func create(_ path: String) throws(Failure) {
        let fm = FileManager.default
        var isDirectory: ObjCBool = false
        if fm.fileExists(atPath: path, isDirectory: &isDirectory) {
            guard isDirectory.boolValue else { throw Failure(description: "the data directory \(path) is a file; give a directory") }
            guard fm.isWritableFile(atPath: path) else {
                throw Failure(description: "the data directory \(path) is not writable by this user; fix its permissions or give another")
            }
            return
        }
        // The nearest existing ancestor says why a directory cannot be made below it.
        var ancestor = (path as NSString).deletingLastPathComponent
        while !ancestor.isEmpty, ancestor != "/", !fm.fileExists(atPath: ancestor) {
            ancestor = (ancestor as NSString).deletingLastPathComponent
        }
        if !ancestor.isEmpty, fm.fileExists(atPath: ancestor, isDirectory: &isDirectory), !isDirectory.boolValue {
            throw Failure(description: "cannot create the data directory \(path): \(ancestor) is a file, not a directory")
        }
        do {
            try fm.createDirectory(atPath: path, withIntermediateDirectories: true)
        } catch {
            let reason = ancestor.isEmpty || fm.isWritableFile(atPath: ancestor)
                ? "the disk may be full or read-only" : "\(ancestor) is not writable by this user"
            throw Failure(description: "cannot create the data directory \(path): \(reason)")
        }
    }
}
