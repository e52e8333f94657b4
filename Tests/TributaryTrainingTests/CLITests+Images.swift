import Foundation
import TributaryData
import XCTest

/// `tributary sample` on a U-Net checkpoint: a PNG grid read back with PNGImage, seeded,
/// and one-line refusals of bad requests.
extension CLITests {
    /// A 2-step U-Net (28×28, base 4, levels [1, 2]) on builtin:digits, checkpointed in `dir`.
    func trainTinyUNet(_ dir: String) throws {
        let r = try tributary(["train", "--data", "builtin:digits", "--model", "unet", "--base-channels", "4",
                               "--channel-multipliers", "1,2", "--norm-groups", "2", "--steps", "2", "--batch-size", "4",
                               "--eval-interval", "0", "--out", dir, "--threads", "1"])
        XCTAssertEqual(r.status, 0, r.stderr)
    }

    func testSampleWritesAPNGGridOfAUNetsImages() throws {
        let dir = try path("unet")
        try trainTinyUNet(dir)
        let grid = "\(dir)/grid.png"
        let args = ["sample", "--checkpoint", dir, "--images", "10", "--out", grid, "--steps", "5", "--seed", "3", "--threads", "1"]
        let r = try tributary(args)
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("sampling 10 images by DDIM (5 steps), seed 3"), r.stdout)
        XCTAssertTrue(r.stdout.contains("wrote \(grid): 118×88 pixels"), r.stdout)
        // 10 images: ⌈√10⌉ = 4 columns, 3 rows, 2-pixel gaps: 4·28 + 3·2 = 118 by 3·28 + 2·2 = 88.
        let image = try PNGImage.read(path: grid)
        XCTAssertEqual([image.width, image.height, image.channels], [118, 88, 1])
        XCTAssertEqual(image.pixels[28], 128, "the gap after the first column is mid-gray")
        XCTAssertEqual(image.pixels[28 * 118], 128, "the gap below the first row")
        XCTAssertEqual(image.pixels[87 * 118 + 117], 128, "the two empty cells of the last row")
        let firstCell = (0..<28).flatMap { y in image.pixels[(y * 118)..<(y * 118 + 28)] }
        XCTAssertGreaterThan(Set(firstCell).count, 20, "an image, not a flat cell")

        // The same seed writes the same file; another seed another one.
        let bytes = try Data(contentsOf: URL(fileURLWithPath: grid))
        XCTAssertEqual(try tributary(args).status, 0)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: grid)), bytes)
        let other = "\(dir)/other.png"
        XCTAssertEqual(try tributary(["sample", "--checkpoint", dir, "--images", "10", "--out", other, "--steps", "5", "--seed", "4",
                                      "--threads", "1"]).status, 0)
        XCTAssertNotEqual(try Data(contentsOf: URL(fileURLWithPath: other)), bytes)

        // DDPM over all 1000 timesteps, one image: a 28×28 grid.
        let ddpm = "\(dir)/ddpm.png"
        let d = try tributary(["sample", "--checkpoint", dir, "--images", "1", "--out", ddpm, "--sampler", "ddpm", "--threads", "1"])
        XCTAssertEqual(d.status, 0, d.stderr)
        XCTAssertTrue(d.stdout.contains("by DDPM"), d.stdout)
        let single = try PNGImage.read(path: ddpm)
        XCTAssertEqual([single.width, single.height, single.channels], [28, 28, 1])
    }

    func testSampleRefusesBadImageRequests() throws {
        let dir = try path("unet")
        try trainTinyUNet(dir)
        let out = "\(dir)/grid.png"
        func sample(_ extra: [String]) -> [String] { ["sample", "--checkpoint", dir, "--out", out, "--threads", "1"] + extra }
        try assertFails(sample(["--images", "0"]), ["--images must be 1…1024, got 0"])
        try assertFails(sample(["--images", "1025"]), ["--images must be 1…1024, got 1025"])
        try assertFails(["sample", "--checkpoint", try path("nowhere"), "--images", "4", "--out", out], ["no checkpoint at"])
        try assertFails(["sample", "--checkpoint", dir, "--images", "4", "--out", "\(dir)/missing/grid.png", "--threads", "1"],
                        ["cannot write \(dir)/missing/grid.png", "is not a directory"])
        try assertFails(["sample", "--checkpoint", dir, "--images", "4", "--out", dir, "--threads", "1"], ["it is a directory"])
        try assertFails(sample(["--sampler", "euler"]), ["--sampler must be ddim or ddpm, got euler"])
        try assertFails(sample(["--sampler", "ddpm", "--steps", "10"]), ["--steps applies to --sampler ddim"])
        try assertFails(sample(["--steps", "0"]), ["DDIM needs 1…1000 steps", "got 0"])
        try assertFails(sample(["--steps", "1001"]), ["DDIM needs 1…1000 steps", "got 1001"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: out), "no request above wrote a file")

        let gpt = try makeGoodCheckpoint()
        try assertFails(["sample", "--checkpoint", gpt, "--images", "4", "--out", out, "--threads", "1"],
                        ["holds a GPT, which generates text", "--images and --out are for U-Net checkpoints"])
    }
}
