import ArgumentParser
import Foundation
import TributaryCheckpoint
import TributaryData
import TributaryModels
import TributaryTensor
import TributaryTraining

/// `tributary sample` on a U-Net checkpoint: a PNG grid of images drawn by DDIM or DDPM.
extension SampleCommand {
    /// Images per forward pass: as many as keep the U-Net's activations under this.
    static let sampleActivationBudget = 1 << 30

    func sampleImages(_ loaded: LoadedCheckpoint, config: UNetConfig) throws {
        guard let out else {
            throw CLIError("\(loaded.path) holds a U-Net, which draws images: give --out FILE.png for the grid (and --images N, default 64)")
        }
        let method: DiffusionSampler.Method
        switch sampler {
        case "ddim": method = .ddim(steps: steps ?? min(50, config.timesteps)) // a given --steps past T is refused, not cut
        case "ddpm":
            guard steps == nil else { throw CLIError("--steps applies to --sampler ddim; ddpm visits all \(config.timesteps) timesteps") }
            method = .ddpm
        default: throw CLIError("--sampler must be ddim or ddpm, got \(sampler)")
        }
        guard config.inChannels == 1 || config.inChannels == 3 else {
            throw CLIError("\(loaded.path) holds a U-Net of \(config.inChannels) channels; a PNG grid shows 1 (gray) or 3 (RGB)")
        }
        try Self.checkWritable(out)
        let count = images ?? 64
        // A grid too large for one PNG is refused before any image is drawn.
        _ = try ImageGrid.layout(count: count, side: config.imageSize)
        let model = try UNet(config: config, device: CPUDevice(allocator: .shared))
        try loaded.loadWeights(into: model.parameters)
        let perImage = max(1, UNet.activationBytes(config: config, batch: 1))
        let batch = max(1, min(count, Self.sampleActivationBudget / perImage))
        print("model: \(config.summary) (step \(loaded.config.step))")
        print("sampling \(count) images by \(method), seed \(seed), \(batch) per batch, \(ComputeThreads.count) threads")
        let start = Date()
        let pixels = try DiffusionSampler.sample(model, method: method, count: count, seed: seed, batchSize: batch)
        let grid = try ImageGrid.render(pixels, count: count, channels: config.inChannels, side: config.imageSize)
        try grid.write(to: out)
        print(String(format: "wrote %@: %d×%d pixels, %d images of %d×%d, in %.1f s", out, grid.width, grid.height, count,
                     config.imageSize, config.imageSize, Date().timeIntervalSince(start)))
    }

    /// Refuses an --out that cannot be written before minutes of sampling: its directory
    /// must exist and be writable, and it must not name a directory.
    static func checkWritable(_ out: String) throws {
        let fm = FileManager.default
        let parent = (out as NSString).deletingLastPathComponent
        let directory = parent.isEmpty ? "." : parent
        var isDirectory: ObjCBool = false
        guard fm.fileExists(atPath: directory, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw CLIError("cannot write \(out): \(directory) is not a directory; create it or choose another --out")
        }
        guard access(directory, W_OK) == 0 else {
            throw CLIError("cannot write \(out): \(directory) is not writable; choose another --out")
        }
        if fm.fileExists(atPath: out, isDirectory: &isDirectory), isDirectory.boolValue {
            throw CLIError("cannot write \(out): it is a directory; give a file name such as \(out)/samples.png")
        }
    }
}
