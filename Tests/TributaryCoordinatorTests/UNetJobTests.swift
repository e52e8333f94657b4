import Foundation
import TributaryData
import TributaryModels
import TributaryProtocol
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

    /// MNIST's batches go out as 8-bit pixels (kind 3: a quarter of float32's bytes) and decode
    /// to the very floats the coordinator's dataset holds; builtin:digits, whose values are
    /// not whole pixels, still goes as float32 (kind 1).
    func testImageBatchesTravelAsEightBitPixels() async throws {
        let mnist = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../../shared/data/mnist")
            .standardizedFileURL.path
        guard FileManager.default.fileExists(atPath: mnist) else { throw XCTSkip("../shared/data/mnist is absent") }
        for (source, kind, bytesPerValue) in [(mnist, UInt8(3), 1), ("builtin:digits", UInt8(1), 4)] {
            var c = config(checkpointEvery: 100)
            c.model.type = "unet"
            c.model.baseChannels = 4
            c.model.channelMultipliers = [1, 2]
            c.model.normGroups = 2
            c.data.source = source
            let job = try await open(c)
            let worker = try await register(job, 1)[0]
            let grant = try await job.lease(worker: worker)
            let body = try await job.batch(lease: grant.leaseId, worker: worker)
            XCTAssertEqual(body[5], kind, source)
            XCTAssertEqual(body.count, 16 + grant.sampleCount * (784 * bytesPerValue + bytesPerValue), source)
            let decoded = try BatchBody.decode(body, maxBatch: grant.sampleCount, width: 784)
            guard case let .features(inputs, _, batch) = decoded,
                  case let .features(expected, _, _) = await job.data.train.batch(job.unitOrder.batch(epoch: grant.epoch, index: grant.unitIndex)) else {
                return XCTFail("image batches are features")
            }
            XCTAssertEqual(batch, grant.sampleCount)
            XCTAssertEqual(inputs.map(\.bitPattern), expected.map(\.bitPattern), source)
            XCTAssertGreaterThan(Set(inputs).count, 10, "real pixel values, not a constant")
            await job.close()
        }
    }

    /// Each validation draws a 4 × 4 grid of 28×28 images into the data directory: 4·28 + 3·2
    /// = 118 pixels square, gray. A GPT job has none to give.
    func testValidationDrawsASampleGrid() async throws {
        var c = config(checkpointEvery: 100)
        c.model.type = "unet"
        c.model.baseChannels = 4
        c.model.channelMultipliers = [1, 2]
        c.model.normGroups = 2
        c.data.source = "builtin:digits"
        c.storage.validationEveryRounds = 1
        let job = try await open(c)
        XCTAssertThrowsError(try job.latestSamples()) { error in
            XCTAssertEqual((error as? JobError)?.problemCode, .notFound, "none before the first validation")
        }
        let workers = try await register(job, 2)
        try await run(job, workers, units: 2)
        let path = "\(c.storage.dataDirectory)/samples/latest.png"
        XCTAssertTrue(FileManager.default.fileExists(atPath: path))
        let grid = try PNGImage.decode(try job.latestSamples())
        XCTAssertEqual([grid.width, grid.height, grid.channels], [118, 118, 1])
        XCTAssertEqual(grid.pixels[28], 128, "the gap after the first column")
        XCTAssertEqual(try PNGImage.read(path: path), grid)
        await job.close()

        let gpt = try await open(config(checkpointEvery: 100))
        XCTAssertThrowsError(try gpt.latestSamples()) { error in
            XCTAssertTrue("\(error)".contains("only U-Net jobs do"), "\(error)")
        }
        await gpt.close()
    }
}
