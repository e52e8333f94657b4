import XCTest
import TributaryCoordinator
import TributaryModels

/// A job file naming `model.type: unet` becomes a U-Net over the data's square images.
final class UNetJobConfigTests: XCTestCase {
    func testAUNetJobFileBuildsItsSpecFromTheImageData() throws {
        let config = try JobConfig.parse("""
            name: x
            model: {type: unet, base_channels: 16, channel_multipliers: [1, 2], blocks_per_level: 2, norm_groups: 4,
                    attention_resolutions: [14], diffusion_steps: 500, noise_schedule: cosine}
            data: {source: builtin:digits}
            auth: {join_token: t}
            """)
        let spec = try config.modelSpec(vocabularySize: nil, features: 784, classes: 10)
        XCTAssertEqual(spec.modelType, "unet")
        let unet = try XCTUnwrap(spec.family as? UNetConfig)
        XCTAssertEqual(unet, UNetConfig(imageSize: 28, inChannels: 1, baseChannels: 16, channelMultipliers: [1, 2], blocksPerLevel: 2,
                                        normGroups: 4, timesteps: 500, schedule: .cosine, attentionResolutions: [14]))
        // Defaults: the 28×28 MNIST U-Net of UNetConfig.
        let plain = try JobConfig.parse("name: x\nmodel: {type: unet}\nauth: {join_token: t}\n")
        XCTAssertEqual(try plain.modelSpec(vocabularySize: nil, features: 784, classes: 10).family as? UNetConfig, UNetConfig())

        XCTAssertThrowsError(try config.modelSpec(vocabularySize: 65, features: nil, classes: nil)) { XCTAssertTrue("\($0)".contains("image data"), "\($0)") }
        XCTAssertThrowsError(try config.modelSpec(vocabularySize: nil, features: 785, classes: 10)) { XCTAssertTrue("\($0)".contains("square"), "\($0)") }
        let badSchedule = try JobConfig.parse("name: x\nmodel: {type: unet, noise_schedule: quadratic}\nauth: {join_token: t}\n")
        XCTAssertThrowsError(try badSchedule.modelSpec(vocabularySize: nil, features: 784, classes: 10)) {
            XCTAssertTrue("\($0)".contains("linear or cosine"), "\($0)")
        }
        let badGroups = try JobConfig.parse("name: x\nmodel: {type: unet, base_channels: 12}\nauth: {join_token: t}\n")
        XCTAssertThrowsError(try badGroups.modelSpec(vocabularySize: nil, features: 784, classes: 10))
        XCTAssertThrowsError(try JobConfig.parse("name: x\nmodel: {type: diffusion}\nauth: {join_token: t}\n")) {
            XCTAssertTrue("\($0)".contains("gpt, mlp, unet"), "\($0)")
        }
        XCTAssertNoThrow(try JobConfig.parse(JobConfig.example), "the example, with its unet comments, still parses")
    }
}
