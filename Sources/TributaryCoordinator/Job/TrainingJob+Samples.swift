import Foundation
import TributaryData
import TributaryModels
import TributaryTraining

/// A U-Net job's sample grid: drawn at each validation into `<data_directory>/samples/`
/// and served as `GET /v1/samples/latest.png` for the dashboard.
extension TrainingJob {
    /// Images per grid, DDIM steps, and the seed: the same x_T at every validation, so that
    /// successive grids show the same images sharpening as training goes on.
    static let sampleGridImages = 16
    static let sampleGridSteps = 20
    static let sampleGridSeed: UInt64 = 1
    /// A grid larger than this on disk is not served (16 images of 64×64 RGB are ~200 KB).
    static let sampleGridMaxBytes = 16 << 20

    nonisolated var samplesPath: String { "\(config.storage.dataDirectory)/samples/latest.png" }

    /// Draws and saves the grid when the model is a U-Net of 1 or 3 channels; a failure is
    /// logged and training goes on (the grid is for people watching, not for the job).
    func renderSamples() {
        guard let unet = model.model as? UNet, unet.config.inChannels == 1 || unet.config.inChannels == 3 else { return }
        let start = Date()
        do {
            let steps = min(Self.sampleGridSteps, unet.schedule.timesteps)
            let pixels = try DiffusionSampler.sample(unet, method: .ddim(steps: steps), count: Self.sampleGridImages,
                                                     seed: Self.sampleGridSeed, batchSize: Self.sampleGridImages)
            let grid = try ImageGrid.render(pixels, count: Self.sampleGridImages, channels: unet.config.inChannels,
                                            side: unet.config.imageSize)
            try FileManager.default.createDirectory(atPath: (samplesPath as NSString).deletingLastPathComponent,
                                                    withIntermediateDirectories: true)
            try grid.write(to: samplesPath)
            logger.info("samples drawn", metadata: ["version": "\(version)", "path": "\(samplesPath)",
                                                    "seconds": "\(String(format: "%.2f", Date().timeIntervalSince(start)))"])
        } catch {
            logger.warning("the sample grid could not be drawn: \(error)", metadata: ["version": "\(version)"])
        }
    }

    /// The latest grid's PNG bytes.
    public nonisolated func latestSamples() throws -> [UInt8] {
        guard spec.family is UNetConfig else {
            throw JobError.noSamples("a \(spec.modelType) model draws no images; only U-Net jobs do")
        }
        let attributes = try? FileManager.default.attributesOfItem(atPath: samplesPath)
        guard let size = (attributes?[.size] as? NSNumber)?.intValue else {
            throw JobError.noSamples("none drawn yet; the first comes with the first validation")
        }
        guard size <= Self.sampleGridMaxBytes, let data = FileManager.default.contents(atPath: samplesPath) else {
            throw JobError.noSamples("\(samplesPath) is unreadable or larger than \(Self.sampleGridMaxBytes) bytes")
        }
        return [UInt8](data)
    }
}
