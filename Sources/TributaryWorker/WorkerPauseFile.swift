import Foundation

/// A pause the volunteer asked for outlives the worker: `tributary worker pause` writes
/// `<data-dir>/paused`, and a worker started on that directory stays paused until
/// `tributary worker resume`, as a BOINC client's "suspend" does.
public enum WorkerPauseFile {
    public static func path(dataDirectory: String) -> String { "\(dataDirectory)/paused" }

    public static func isPaused(dataDirectory: String) -> Bool {
        FileManager.default.fileExists(atPath: path(dataDirectory: dataDirectory))
    }

    /// Records the pause (or its end); throws when the data directory cannot be written.
    public static func set(_ paused: Bool, dataDirectory: String) throws(WorkerError) {
        let file = path(dataDirectory: dataDirectory)
        if paused {
            let stamp = ISO8601DateFormatter().string(from: Date()) + "\n"
            guard FileManager.default.createFile(atPath: file, contents: Data(stamp.utf8)) else {
                throw .fatal("cannot write \(file): check the data directory's space and permissions")
            }
        } else if FileManager.default.fileExists(atPath: file) {
            do { try FileManager.default.removeItem(atPath: file) } catch {
                throw .fatal("cannot remove \(file): check the data directory's permissions")
            }
        }
    }
}

extension ComputeGate {
    /// The volunteer's pause, as a phrase for the log and `worker status`.
    public static let pausedReason = "paused by the volunteer (tributary worker resume to continue)"

    /// Pauses or resumes, keeping the choice in the data directory.
    public func setPaused(_ paused: Bool, dataDirectory: String) throws(WorkerError) {
        try WorkerPauseFile.set(paused, dataDirectory: dataDirectory)
        set(.paused, reason: paused ? Self.pausedReason : nil)
    }
}
