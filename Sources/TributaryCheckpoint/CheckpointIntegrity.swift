import Crypto
import Foundation

/// Each checkpoint proves itself: `SHA256SUMS` beside its files holds every file's SHA-256
/// in the format `sha256sum -c` checks (`<64 hex>  <name>`), so one flipped bit on disk is
/// found before the weights are used, by Tributary or by an operator's shell.
public enum CheckpointIntegrity {
    public static let sumsFile = "SHA256SUMS"

    /// Writes the SHA-256 of every regular file in `directory` (but the sums file itself).
    public static func writeSums(in directory: String) throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: directory)
            .filter { $0 != sumsFile && !$0.hasPrefix(".") }.sorted()
        var text = ""
        for name in names {
            text += "\(try hash(of: "\(directory)/\(name)"))  \(name)\n"
        }
        try AtomicFile.writeText(text, to: "\(directory)/\(sumsFile)")
    }

    /// Checks every file `SHA256SUMS` lists. Throws `CheckpointError.corrupt` naming the
    /// first file that is missing or whose content changed. No sums file: nothing to check.
    public static func verify(_ directory: String) throws {
        let sumsPath = "\(directory)/\(sumsFile)"
        guard let data = FileManager.default.contents(atPath: sumsPath) else { return }
        guard let text = String(data: data, encoding: .utf8) else {
            throw CheckpointError.corrupt(path: directory, reason: "\(sumsFile) is not text")
        }
        let lines = text.split(separator: "\n", omittingEmptySubsequences: true)
        guard !lines.isEmpty else { throw CheckpointError.corrupt(path: directory, reason: "\(sumsFile) is empty") }
        for line in lines {
            let parts = line.split(separator: " ", maxSplits: 1)
            guard parts.count == 2, parts[0].count == 64 else {
                throw CheckpointError.corrupt(path: directory, reason: "\(sumsFile) has a malformed line")
            }
            let name = parts[1].hasPrefix(" ") || parts[1].hasPrefix("*") ? String(parts[1].dropFirst()) : String(parts[1])
            guard !name.contains("/"), !name.isEmpty else {
                throw CheckpointError.corrupt(path: directory, reason: "\(sumsFile) names a file outside the checkpoint")
            }
            let file = "\(directory)/\(name)"
            guard FileManager.default.fileExists(atPath: file) else {
                throw CheckpointError.corrupt(path: directory, reason: "\(name) is missing")
            }
            let found = try hash(of: file)
            guard found == parts[0].lowercased() else {
                throw CheckpointError.corrupt(path: directory, reason: "\(name) fails its SHA-256 (expected \(parts[0].prefix(12))…, found \(found.prefix(12))…)")
            }
        }
    }

    /// The file's SHA-256, read in 1 MiB pieces (a checkpoint can be larger than memory allows twice).
    static func hash(of path: String) throws -> String {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw CheckpointError.corrupt(path: path, reason: "cannot be opened for reading")
        }
        defer { try? handle.close() }
        var hasher = SHA256()
        while true {
            let chunk: Data
            do { chunk = try handle.read(upToCount: 1 << 20) ?? Data() } catch {
                throw CheckpointError.corrupt(path: path, reason: "cannot be read: \(error.localizedDescription)")
            }
            if chunk.isEmpty { break }
            hasher.update(data: chunk)
        }
        return hasher.finalize().map { String(format: "%02x", $0) }.joined()
    }
}

extension CheckpointStore {
    /// The step directories on disk, oldest first (names `step-NNNNNNNN` only).
    public func stepDirectories() -> [(step: Int, path: String)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        return names.compactMap { name -> (Int, String)? in
            guard name.hasPrefix("step-"), name.count == 13, let n = Int(name.dropFirst(5)), n >= 0 else { return nil }
            return (n, "\(directory)/\(name)")
        }.sorted { $0.0 < $1.0 }
    }

    /// Moves a damaged checkpoint aside (`step-….corrupt-<unix time>`), so it is never read
    /// again nor pruned as if it were good, and stays for an operator to look at.
    @discardableResult
    public func quarantine(_ path: String) -> String? {
        let target = "\(path).corrupt-\(Int(Date().timeIntervalSince1970))"
        do { try FileManager.default.moveItem(atPath: path, toPath: target) } catch { return nil }
        return target
    }

    /// Points `latest` at `step` (after recovery chose an older checkpoint than it named).
    public func markLatest(step: Int) throws {
        try AtomicFile.writeText(Self.stepDirectoryName(step) + "\n", to: "\(directory)/\(Self.latestFile)")
    }
}
