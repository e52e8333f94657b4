import Foundation
import XCTest
@testable import TributaryCheckpoint

final class AtomicFileTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "atomicfile-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }

    override func tearDown() {
        try? FileManager.default.removeItem(atPath: dir)
    }

    func contents(_ path: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: path))) }
    func leftovers() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: dir).filter { $0.contains(".tmp-") }
    }

    func testWritesAndReplaces() throws {
        let path = dir + "/ckpt.bin"
        try AtomicFile.write([1, 2, 3], to: path)
        XCTAssertEqual(try contents(path), [1, 2, 3])
        let big = (0..<3_000_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        try AtomicFile.write(big, to: path)
        XCTAssertEqual(try contents(path), big)
        try AtomicFile.write([], to: path)
        XCTAssertEqual(try contents(path), [])
        try AtomicFile.writeText("héllo\n", to: path)
        XCTAssertEqual(try contents(path), [0x68, 0xC3, 0xA9, 0x6C, 0x6C, 0x6F, 0x0A])
        XCTAssertEqual(try leftovers(), [])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: dir), ["ckpt.bin"])
    }

    func testRelativePathAndPermissionsKept() throws {
        let path = dir + "/keep.txt"
        try AtomicFile.writeText("a", to: path)
        try FileManager.default.setAttributes([.posixPermissions: 0o600], ofItemAtPath: path)
        try AtomicFile.writeText("b", to: path)
        let mode = try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as? Int
        XCTAssertEqual(mode, 0o600)
        XCTAssertEqual(AtomicFile.split("name").0, ".")
        XCTAssertEqual(AtomicFile.split("/top").0, "/")
        XCTAssertEqual(AtomicFile.split("a/b/c.bin").0, "a/b")
        XCTAssertEqual(AtomicFile.split("a/b/c.bin").1, "c.bin")
    }

    func testMissingDirectoryFailsCleanly() throws {
        let path = dir + "/no/such/dir/ckpt.bin"
        XCTAssertThrowsError(try AtomicFile.write([1], to: path)) { error in
            let e = error as? AtomicFileError
            XCTAssertEqual(e?.code, ENOENT)
            XCTAssertTrue("\(error)".contains(path), "\(error)")
            XCTAssertTrue("\(error)".contains("No such file or directory"), "\(error)")
        }
        XCTAssertThrowsError(try AtomicFile.write([1], to: dir + "/")) { error in
            XCTAssertEqual((error as? AtomicFileError)?.code, EISDIR)
        }
    }

    func testFailedRenameLeavesTargetAndNoTemporary() throws {
        // A directory at the target path: the data is written, then rename fails with EISDIR.
        let path = dir + "/target"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false)
        try Data([9]).write(to: URL(fileURLWithPath: path + "/inside"))
        XCTAssertThrowsError(try AtomicFile.write([1, 2, 3], to: path)) { error in
            XCTAssertTrue("\(error)".contains("rename"), "\(error)")
            XCTAssertTrue("\(error)".contains(path), "\(error)")
        }
        XCTAssertEqual(try contents(path + "/inside"), [9])
        XCTAssertEqual(try leftovers(), [])
    }

    func testInjectedFailuresLeavePreviousFileIntact() throws {
        let path = dir + "/model.safetensors"
        try AtomicFile.write([7, 7, 7], to: path)
        for fault in [AtomicFile.FaultPoint.afterWrite, .beforeRename] {
            XCTAssertThrowsError(try AtomicFile.write([1, 2, 3, 4], to: path, failingAt: fault)) { error in
                XCTAssertTrue("\(error)".contains(path), "\(error)")
                XCTAssertTrue("\(error)".contains("unchanged"), "\(error)")
            }
            XCTAssertEqual(try contents(path), [7, 7, 7])
            XCTAssertEqual(try leftovers(), [])
        }
    }

    func testUnwritableDirectory() throws {
        guard geteuid() != 0 else { throw XCTSkip("root ignores directory permissions") }
        let path = dir + "/ro/file"
        try FileManager.default.createDirectory(atPath: dir + "/ro", withIntermediateDirectories: false)
        try AtomicFile.write([1], to: path)
        try FileManager.default.setAttributes([.posixPermissions: 0o555], ofItemAtPath: dir + "/ro")
        defer { try? FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: dir + "/ro") }
        XCTAssertThrowsError(try AtomicFile.write([2], to: path)) { error in
            XCTAssertEqual((error as? AtomicFileError)?.code, EACCES)
        }
        XCTAssertEqual(try contents(path), [1])
    }

    /// A full disk (a real 64 KiB tmpfs; root only) is said in words with what is left, and
    /// the file it was to replace is unchanged (it was `NSCocoaErrorDomain 640` elsewhere).
    func testAFullDiskIsSaidInWords() throws {
        let mount = "\(dir)/small"
        try FileManager.default.createDirectory(atPath: mount, withIntermediateDirectories: true)
        func run(_ tool: String, _ args: [String]) -> Int32 {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: tool)
            p.arguments = args
            do { try p.run() } catch { return -1 }
            p.waitUntilExit()
            return p.terminationStatus
        }
        guard getuid() == 0, run("/bin/mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", mount]) == 0 else {
            throw XCTSkip("mounting a small file system needs root")
        }
        defer { _ = run("/bin/umount", [mount]) }
        let path = "\(mount)/model.safetensors"
        try AtomicFile.write([7, 7, 7], to: path)
        XCTAssertThrowsError(try AtomicFile.write([UInt8](repeating: 1, count: 256 << 10), to: path)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.hasPrefix("cannot write \(path): the disk is full ("), text)
            XCTAssertTrue(text.hasSuffix(" free there); free some space or choose another directory — the previous file, if any, is unchanged"), text)
        }
        XCTAssertEqual(try contents(path), [7, 7, 7])
    }
}
