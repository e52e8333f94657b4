import Foundation
import XCTest
import TributaryCoordinator
import TributaryData
import TributaryModels

/// The job file's image keys: model.image_size / model.in_channels and data.random_flip parse,
/// a U-Net takes the data's geometry, and a CIFAR-10 job whose model wants another size stops
/// at open with one line before anything is written.
final class ImageJobConfigTests: XCTestCase {
    func testImageKeysParseAndTheUNetTakesTheDataGeometry() throws {
        let config = try JobConfig.parse("""
            name: x
            model: {type: unet, image_size: 32, in_channels: 3, base_channels: 16, norm_groups: 4}
            data: {source: builtin:digits, random_flip: true}
            auth: {join_token: t}
            """)
        XCTAssertTrue(config.data.randomFlip)
        XCTAssertEqual(config.imageLoadOptions, ImageLoadOptions(size: 32, channels: 3))
        XCTAssertFalse(try JobConfig.parse("name: x\nauth: {join_token: t}\n").data.randomFlip, "off by default")
        let spec = try config.modelSpec(vocabularySize: nil, features: 3072, classes: 10,
                                        geometry: ImageGeometry(channels: 3, height: 32, width: 32))
        let unet = try XCTUnwrap(spec.family as? UNetConfig)
        XCTAssertEqual([unet.imageSize, unet.inChannels, unet.pixelsPerSample], [32, 3, 3072])
        XCTAssertThrowsError(try config.modelSpec(vocabularySize: nil, features: 96, classes: 2,
                                                  geometry: ImageGeometry(channels: 1, height: 8, width: 12))) {
            XCTAssertTrue("\($0)".contains("square images") && "\($0)".contains("8×12×1"), "\($0)")
        }
        XCTAssertThrowsError(try JobConfig.parse("name: x\nmodel: {type: unet, in_channels: 2}\nauth: {join_token: t}\n")) {
            XCTAssertTrue("\($0)".contains("model.image_size / model.in_channels") && "\($0)".contains("1 (grayscale) or 3 (RGB)"), "\($0)")
        }
        XCTAssertThrowsError(try JobConfig.parse("name: x\ndata: {random_flips: true}\nauth: {join_token: t}\n")) {
            XCTAssertTrue("\($0)".contains("random_flip"), "\($0)")
        }
    }

    func testACIFARJobOfAnotherImageSizeStopsAtOpenInOneLine() async throws {
        let dir = NSTemporaryDirectory() + "tributary-image-job-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createDirectory(atPath: "\(dir)/cifar", withIntermediateDirectories: true)
        let record = [UInt8(3)] + [UInt8](repeating: 128, count: 3072)
        try Data((0..<4).flatMap { _ in record }).write(to: URL(fileURLWithPath: "\(dir)/cifar/data_batch_1.bin"))
        let config = try JobConfig.parse("""
            name: x
            model: {type: unet, image_size: 28, in_channels: 1}
            data: {source: \(dir)/cifar}
            storage: {data_directory: \(dir)/state}
            auth: {join_token: t}
            """)
        do {
            _ = try await TrainingJob.open(config: config, logger: quietLogger("image-job"))
            XCTFail("a 28×28×1 U-Net on CIFAR-10 opened")
        } catch {
            let text = "\(error)"
            XCTAssertEqual(text, "\(dir)/cifar: the dataset's images are 32×32×3 but the model expects 28×28×1; set the model's image size and channels to match (model.image_size and model.in_channels in a job file, --image-size and --in-channels for tributary train) or leave them out to follow the data")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: "\(dir)/state"), "nothing written")
    }
}
