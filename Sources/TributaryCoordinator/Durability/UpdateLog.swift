import Foundation
import TributaryCompression
#if canImport(Glibc)
import Glibc
#endif

/// One accepted update as the log keeps it: enough to add it to its round again after a
/// crash (the ledger's row says that it was accepted, and in which order).
public struct LoggedUpdate: Sendable, Equatable {
    public let leaseID: String
    public let round: Int
    public let weight: Double
    /// Shard name → encoded body (a tensor frame), as the worker sent it.
    public let bodies: [String: [UInt8]]

    public init(leaseID: String, round: Int, weight: Double, bodies: [String: [UInt8]]) {
        self.leaseID = leaseID
        self.round = round
        self.weight = weight
        self.bodies = bodies
    }
}

/// A write to the update log that did not happen; the log is as it was before.
public struct UpdateLogError: Error, CustomStringConvertible, Sendable {
    public let path: String
    public let operation: String
    public let code: Int32

    public var description: String {
        "update log \(path): \(operation) failed (\(String(cString: strerror(code)))); check the data directory's space"
    }
}

/// The update log: every accepted update's encoded bodies, appended and synced to disk before
/// the worker hears "accepted". After a crash the coordinator loads a checkpoint and adds the
/// logged updates of every later round again, in the ledger's order, so the model comes back
/// bit for bit and nothing acknowledged is redone.
///
/// One segment per round (`round-00000042.log`), so pruning after a checkpoint is deleting
/// files. An entry is `TUL1`, a 4-byte little-endian header length, a JSON header (lease,
/// round, weight, shard names and sizes), the bodies, and the CRC-32 of all of that (the
/// bodies are tensor frames with CRCs of their own, checked again when replayed). A torn
/// or damaged entry ends a segment's reading: the entries after it were never acknowledged
/// (each append is synced before the ledger records its update). Used by the job actor only.
public final class UpdateLog {
    public let directory: String
    private var openSegment: (round: Int, fd: Int32)?
    static let magic: [UInt8] = Array("TUL1".utf8)
    /// An entry's header is small; a bigger length is damage, not a header.
    static let maxHeaderBytes = 1 << 20

    struct Header: Codable {
        var lease: String
        var round: Int
        var weight: Double
        var shards: [String]
        var sizes: [Int]
    }

    public init(directory: String) throws {
        self.directory = directory
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    deinit { if let s = openSegment { close(s.fd) } }

    public static func segmentName(_ round: Int) -> String {
        let digits = String(round)
        return "round-" + String(repeating: "0", count: max(0, 8 - digits.count)) + digits + ".log"
    }

    func path(of round: Int) -> String { "\(directory)/\(Self.segmentName(round))" }

    /// Appends `update` to its round's segment and syncs it. On failure the segment is cut
    /// back to where it was, so a later append follows a whole entry.
    public func append(_ update: LoggedUpdate) throws {
        let names = update.bodies.keys.sorted()
        let header = Header(lease: update.leaseID, round: update.round, weight: update.weight, shards: names,
                            sizes: names.map { update.bodies[$0]?.count ?? 0 })
        let json = try JSONEncoder().encode(header)
        var head = Self.magic
        var length = UInt32(json.count).littleEndian
        withUnsafeBytes(of: &length) { head.append(contentsOf: $0) }
        head.append(contentsOf: json)
        var crc = head.withUnsafeBytes { CRC32.checksum($0) }
        for name in names { crc = (update.bodies[name] ?? []).withUnsafeBytes { CRC32.checksum($0, continuing: crc) } }
        var trailer = crc.littleEndian

        let fd = try segment(for: update.round)
        let start = lseek(fd, 0, SEEK_END)
        guard start >= 0 else { throw failure("seek", errno) }
        do {
            // Written in place (no copy of the bodies into one buffer), then synced once.
            try writeAll(fd, head)
            for name in names { try writeAll(fd, update.bodies[name] ?? []) }
            try withUnsafeBytes(of: &trailer) { try writeAll(fd, Array($0)) }
            guard fdatasync(fd) == 0 else { throw failure("fdatasync", errno) }
        } catch {
            _ = ftruncate(fd, start)
            throw error
        }
    }

    /// The whole entries of `round`'s segment, in the order they were appended (empty when
    /// there is no segment).
    public func entries(round: Int) -> [LoggedUpdate] {
        guard let data = FileManager.default.contents(atPath: path(of: round)) else { return [] }
        let bytes = [UInt8](data)
        var out: [LoggedUpdate] = []
        var at = 0
        while let (entry, next) = Self.parse(bytes, at: at), entry.round == round {
            out.append(entry)
            at = next
        }
        return out
    }

    /// The leases whose updates `round`'s segment holds whole (what recovery checks first).
    public func leaseIDs(round: Int) -> [String] {
        guard let data = FileManager.default.contents(atPath: path(of: round)) else { return [] }
        let bytes = [UInt8](data)
        var out: [String] = []
        var at = 0
        // Checked like `entries`, without copying the bodies out.
        while let (entry, next) = Self.parse(bytes, at: at, keepingBodies: false), entry.round == round {
            out.append(entry.leaseID)
            at = next
        }
        return out
    }

    /// Deletes one round's segment (its updates were dropped from the ledger).
    public func discard(round: Int) {
        if let s = openSegment, s.round == round {
            close(s.fd)
            openSegment = nil
        }
        unlink(path(of: round))
    }

    /// Rounds with a segment on disk, ascending.
    public func rounds() -> [Int] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.compactMap { name -> Int? in
            guard name.hasPrefix("round-"), name.hasSuffix(".log") else { return nil }
            return Int(name.dropFirst(6).dropLast(4))
        }.sorted()
    }

    /// Deletes the segments of rounds up to and including `round` (a checkpoint holds them).
    public func prune(throughRound round: Int) {
        if let s = openSegment, s.round <= round {
            close(s.fd)
            openSegment = nil
        }
        for r in rounds() where r <= round { unlink(path(of: r)) }
    }

    /// Total bytes on disk, for status and the overhead figures.
    public func byteCount() -> Int {
        rounds().reduce(0) { total, r in
            let size = ((try? FileManager.default.attributesOfItem(atPath: path(of: r)))?[.size] as? Int) ?? 0
            return total + size
        }
    }

    // MARK: Inside

    private func segment(for round: Int) throws -> Int32 {
        if let s = openSegment, s.round == round { return s.fd }
        if let s = openSegment { close(s.fd) }
        openSegment = nil
        let p = path(of: round)
        let existed = FileManager.default.fileExists(atPath: p)
        let fd = open(p, O_WRONLY | O_CREAT | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw failure("open \(Self.segmentName(round))", errno) }
        if !existed {
            // The new file's name must survive a crash too.
            let dir = open(directory, O_RDONLY | O_CLOEXEC)
            if dir >= 0 { _ = fsync(dir); close(dir) }
        } else {
            // A torn entry from a crash ends the segment: cut it off before appending.
            let whole = Self.wholeLength(p)
            _ = ftruncate(fd, off_t(whole))
        }
        openSegment = (round, fd)
        return fd
    }

    /// The length of the segment's prefix made of whole, intact entries.
    static func wholeLength(_ path: String) -> Int {
        guard let data = FileManager.default.contents(atPath: path) else { return 0 }
        let bytes = [UInt8](data)
        var at = 0
        while let (_, next) = parse(bytes, at: at) { at = next }
        return at
    }

    /// The entry at `offset` and where the next one starts; nil at the end or at damage.
    static func parse(_ bytes: [UInt8], at offset: Int, keepingBodies: Bool = true) -> (LoggedUpdate, Int)? {
        guard offset >= 0, bytes.count - offset >= 8, Array(bytes[offset..<offset + 4]) == magic else { return nil }
        let length = Int(bytes[offset + 4]) | Int(bytes[offset + 5]) << 8 | Int(bytes[offset + 6]) << 16
            | Int(bytes[offset + 7]) << 24
        guard length > 0, length <= maxHeaderBytes, bytes.count - offset - 8 >= length else { return nil }
        let headerStart = offset + 8
        guard let header = try? JSONDecoder().decode(Header.self, from: Data(bytes[headerStart..<headerStart + length])),
              header.shards.count == header.sizes.count, header.sizes.allSatisfy({ $0 >= 0 }) else { return nil }
        var at = headerStart + length
        var bodies: [String: [UInt8]] = [:]
        for (name, size) in zip(header.shards, header.sizes) {
            guard bytes.count - at >= size else { return nil }
            if keepingBodies { bodies[name] = Array(bytes[at..<at + size]) }
            at += size
        }
        guard bytes.count - at >= 4 else { return nil }
        let crc = bytes.withUnsafeBytes { CRC32.checksum(UnsafeRawBufferPointer(rebasing: $0[offset..<at])) }
        let stored = UInt32(bytes[at]) | UInt32(bytes[at + 1]) << 8 | UInt32(bytes[at + 2]) << 16 | UInt32(bytes[at + 3]) << 24
        guard crc == stored else { return nil }
        return (LoggedUpdate(leaseID: header.lease, round: header.round, weight: header.weight, bodies: bodies), at + 4)
    }

    private func writeAll(_ fd: Int32, _ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { raw in
            var done = 0
            while done < raw.count {
                let n = Glibc.write(fd, raw.baseAddress.map { $0 + done }, raw.count - done)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw failure("write", errno)
                }
                done += n
            }
        }
    }

    private func failure(_ operation: String, _ code: Int32) -> UpdateLogError {
        UpdateLogError(path: directory, operation: operation, code: code)
    }
}

/// What durability costs per accepted update: the log's append + fsync and the ledger's
/// transaction, timed separately, and the bodies' bytes written to the log.
public struct DurabilityFigures: Sendable {
    public private(set) var updates = 0
    public private(set) var logSeconds = 0.0
    public private(set) var ledgerSeconds = 0.0
    public private(set) var logBytes = 0

    mutating func note(logNanoseconds: UInt64, bytes: Int, ledgerNanoseconds: UInt64) {
        updates += 1
        logSeconds += Double(logNanoseconds) / 1e9
        ledgerSeconds += Double(ledgerNanoseconds) / 1e9
        logBytes += bytes
    }
}
