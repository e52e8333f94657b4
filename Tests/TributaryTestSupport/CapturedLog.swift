import Foundation
import Logging

/// Log records kept for a test to read: a `Logger` whose lines a test can assert on.
public final class CapturedLog: @unchecked Sendable {
    // Unchecked: `records` is guarded by `lock`.
    public struct Record: Sendable {
        public let level: Logger.Level
        public let message: String
        public let metadata: Logger.Metadata
    }

    private let lock = NSLock()
    private var records: [Record] = []

    public init() {}

    public var all: [Record] { lock.withLock { records } }

    /// The records at `level` whose message starts with `prefix`.
    public func at(_ level: Logger.Level, _ prefix: String) -> [Record] {
        all.filter { $0.level == level && $0.message.hasPrefix(prefix) }
    }

    /// A logger (every level) writing here.
    public func logger(_ label: String) -> Logger {
        Logger(label: label) { _ in Handler(log: self) }
    }

    struct Handler: LogHandler {
        let log: CapturedLog
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(level: Logger.Level, message: Logger.Message, metadata: Logger.Metadata?, source: String, file: String,
                 function: String, line: UInt) {
            let record = Record(level: level, message: message.description, metadata: self.metadata.merging(metadata ?? [:]) { $1 })
            log.lock.withLock { log.records.append(record) }
        }
    }
}
