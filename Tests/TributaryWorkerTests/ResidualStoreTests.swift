import Foundation
@testable import TributaryWorker
import XCTest

final class ResidualStoreTests: XCTestCase {
    private func read(_ store: ResidualStore, _ shard: String, _ n: Int) -> [Float] {
        var out = [Float](repeating: .nan, count: n)
        out.withUnsafeMutableBufferPointer { store.load(shard, into: $0) }
        return out
    }

    /// Staged residuals become the state only on commit; a refused unit's are dropped and
    /// the committed ones come back; a file of another size reads as zeros; a new store on
    /// the same directory (a restarted worker) sees the committed state.
    func testStagedResidualsCountOnlyAfterCommit() throws {
        let dir = NSTemporaryDirectory() + "tributary-residual-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = ResidualStore(directory: dir)
        XCTAssertEqual(read(store, "block.0", 3), [0, 0, 0], "nothing yet: zeros")

        let first: [Float] = [1.5, -2, 0.25]
        try first.withUnsafeBufferPointer { try store.stage("block.0", $0) }
        XCTAssertEqual(read(store, "block.0", 3), [0, 0, 0], "staged is not committed")
        try store.commitStaged()
        XCTAssertEqual(read(store, "block.0", 3), first)

        let second: [Float] = [9, 9, 9]
        try second.withUnsafeBufferPointer { try store.stage("block.0", $0) }
        store.discardStaged()
        XCTAssertEqual(read(store, "block.0", 3), first, "a refused unit leaves the committed residual")
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(dir)/block.0.f32.pending"))

        XCTAssertEqual(read(ResidualStore(directory: dir), "block.0", 3), first, "a restarted worker reads it back")
        XCTAssertEqual(read(store, "block.0", 4), [0, 0, 0, 0], "another model's size: zeros")
    }
}
