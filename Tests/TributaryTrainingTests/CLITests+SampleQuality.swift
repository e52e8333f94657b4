import Foundation
import XCTest

/// `tributary bench samples`: a classifier's judgement of a U-Net's images next to real ones.
extension CLITests {
    /// A classifier that knows the digits recognises real held-out digits and not a 2-step
    /// U-Net's noise; the table says so in numbers, and mismatched checkpoints are one line.
    func testSampleQualityJudgesGeneratedImagesNextToRealOnes() throws {
        let unet = try path("quality-unet"), classifier = try path("quality-mlp")
        try trainTinyUNet(unet)
        let trained = try tributary(["train", "--data", "builtin:digits", "--steps", "30", "--eval-interval", "0",
                                     "--out", classifier, "--threads", "1"])
        XCTAssertEqual(trained.status, 0, trained.stderr)
        let r = try tributary(["bench", "samples", "--unet", unet, "--classifier", classifier, "--data", "builtin:digits",
                               "--images", "24", "--steps", "4", "--threads", "1"])
        XCTAssertEqual(r.status, 0, r.stderr)
        func recognised(_ row: String) throws -> Double {
            let line = try XCTUnwrap(r.stdout.split(separator: "\n").first { $0.hasPrefix("| \(row) |") }, r.stdout)
            let cells = line.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
            XCTAssertEqual(cells[1], "24", "images judged")
            let classes = cells[4].split(separator: " ").compactMap { Int($0) }
            XCTAssertEqual(classes.count, 10)
            XCTAssertEqual(classes.reduce(0, +), 24)
            return try XCTUnwrap(Double(String(cells[2].dropLast())), String(line))
        }
        let real = try recognised("real, held out"), generated = try recognised("generated")
        print(r.stdout)
        XCTAssertGreaterThanOrEqual(real, 90, "the classifier recognises real digits")
        XCTAssertLessThan(generated, 50, "and not a 2-step U-Net's images")

        let swapped = try tributary(["bench", "samples", "--unet", classifier, "--classifier", unet, "--data", "builtin:digits"])
        XCTAssertEqual(swapped.status, 1)
        XCTAssertTrue(swapped.stderr.contains("holds no U-Net"), swapped.stderr)
    }
}
