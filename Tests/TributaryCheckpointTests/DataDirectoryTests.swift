import Foundation
import TributaryCheckpoint
import XCTest

/// A data directory that cannot be made says which part of its path is wrong.
final class DataDirectoryTests: XCTestCase {
    func testDataDirectoriesAreCreatedOrRefusedWithTheReason() throws {
        let base = NSTemporaryDirectory() + "tributary-datadir-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: base) }
        try DataDirectory.create("\(base)/a/b")
        var isDirectory: ObjCBool = false
        XCTAssertTrue(FileManager.default.fileExists(atPath: "\(base)/a/b", isDirectory: &isDirectory) && isDirectory.boolValue)
        try DataDirectory.create("\(base)/a/b")  // existing: fine

        FileManager.default.createFile(atPath: "\(base)/file", contents: Data("x".utf8))
        XCTAssertThrowsError(try DataDirectory.create("\(base)/file/state/deeper")) { error in
            XCTAssertEqual("\(error)", "cannot create the data directory \(base)/file/state/deeper: \(base)/file is a file, not a directory")
        }
        XCTAssertThrowsError(try DataDirectory.create("\(base)/file")) { error in
            XCTAssertEqual("\(error)", "the data directory \(base)/file is a file; give a directory")
        }
    }
}
