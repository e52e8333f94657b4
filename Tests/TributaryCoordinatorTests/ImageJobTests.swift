import Foundation
import TributaryData
import TributaryModels
import TributaryProtocol
import TributaryTraining
import XCTest
@testable import TributaryCoordinator

/// A U-Net job on a folder of RGB images with `data.random_flip`: the model takes the folder's
/// size and channels, and the batch a worker downloads for a unit is the one a single process
/// builds for the same samples and epoch, flips included.
final class ImageJobTests: JobTestCase {
    func testAUnitsBatchHoldsTheSameFlipsAsASingleProcess() async throws {
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("tributary-image-job-\(UUID().uuidString)").path
        dirs.append(folder)
        for i in 0..<16 {
            let cls = i % 2 == 0 ? "even" : "odd"
            try FileManager.default.createDirectory(atPath: "\(folder)/\(cls)", withIntermediateDirectories: true)
            // Columns that differ left to right, so that a mirrored image differs from the original.
            var pixels: [UInt8] = []
            for p in 0..<100 {
                let x = p % 10
                pixels += [UInt8(x * 25), UInt8(i * 15), UInt8(255 - x * 25)]
            }
            try PNGImage(width: 10, height: 10, channels: 3, pixels: pixels).write(to: "\(folder)/\(cls)/\(i).png")
        }
        var c = config(checkpointEvery: 100)
        c.model.type = "unet"
        c.model.imageSize = 8
        c.model.inChannels = 3
        c.model.baseChannels = 4
        c.model.channelMultipliers = [1, 2]
        c.model.normGroups = 2
        c.data.source = folder
        c.data.randomFlip = true
        let job = try await open(c)
        let unet = try XCTUnwrap(job.spec.family as? UNetConfig)
        XCTAssertEqual([unet.imageSize, unet.inChannels, unet.pixelsPerSample], [8, 3, 192])

        // The single process's view of the same data.
        let raw = try DatasetSource.load(folder, images: ImageLoadOptions(size: 8, channels: 3))
        let local = try DatasetSource.prepare(raw, name: folder, blockSize: nil, validationFraction: c.data.validationFraction,
                                              seed: c.data.seed, randomFlip: true)
        let flip = RandomFlip(seed: c.data.seed)
        let order = try EpochSchedule(sampleCount: local.train.sampleCount, batchSize: c.units.samplesPerUnit, seed: c.data.seed)
        let workers = try await register(job, 1)
        var flipped = 0, kept = 0
        for _ in 0..<4 {
            let grant = try await job.lease(worker: workers[0])
            let body = try await job.batch(lease: grant.leaseId, worker: workers[0])
            let indices = order.batch(epoch: grant.epoch, index: grant.unitIndex)
            guard case let .features(got, labels, count) = try BatchBody.decode(body, maxBatch: 4, width: 192),
                  case let .features(expected, expectedLabels, _) = local.trainingBatch(indices, epoch: grant.epoch),
                  case let .features(plain, _, _) = local.train.batch(indices) else { return XCTFail("image batches") }
            XCTAssertEqual(count, 4)
            XCTAssertEqual(got, expected, "unit \(grant.unitIndex) of epoch \(grant.epoch)")
            XCTAssertEqual(labels, expectedLabels)
            for (row, sample) in indices.enumerated() {
                let same = got[(row * 192)..<((row + 1) * 192)] == plain[(row * 192)..<((row + 1) * 192)]
                XCTAssertEqual(same, !flip.isFlipped(sample: sample, epoch: grant.epoch), "sample \(sample)")
                if same { kept += 1 } else { flipped += 1 }
            }
            try await deliver(job, workers[0], grant)
        }
        XCTAssertGreaterThan(flipped, 0, "some images came flipped")
        XCTAssertGreaterThan(kept, 0, "and some not")
        await job.close()
    }
}
