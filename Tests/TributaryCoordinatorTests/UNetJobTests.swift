import Foundation
import XCTest
@testable import TributaryCoordinator

/// A `model.type: unet` job on builtin:digits opens, lays out one shard per U-Net level and
/// closes rounds like any other job.
final class UNetJobTests: JobTestCase {
    func testAUNetJobOpensWithAShardPerLevelAndClosesRounds() async throws {
        var c = config(checkpointEvery: 2)
        c.model.type = "unet"
        c.model.baseChannels = 4
        c.model.channelMultipliers = [1, 2]
        c.model.normGroups = 2
        c.model.attentionResolutions = [14]
        c.data.source = "builtin:digits"
        let job = try await open(c)
        XCTAssertEqual(job.layout.shards.map(\.name), ["stem", "down.0", "down.1", "mid", "up.0", "up.1", "head"])
        let workers = try await register(job, 2)
        try await run(job, workers, units: 4)
        let version = await job.version
        XCTAssertEqual(version, 2)
        let values = await job.parameterValues()
        XCTAssertNotNil(values["up_blocks.0.attentions.0.q.weight"], "attention at 14×14 is in the model")
        await job.close()
    }
}
