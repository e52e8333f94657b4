import TributaryModels
import TributaryProtocol
import XCTest

/// Kind 3 (8-bit images): a features batch of whole pixels travels as one byte per value
/// and comes back as the same floats, bit for bit; anything else stays kind 1.
final class BatchBodyTests: XCTestCase {
    private func features(_ batch: ModelBatch) -> (inputs: [Float], targets: [Int32], batch: Int)? {
        guard case let .features(x, y, b) = batch else { return nil }
        return (x, y, b)
    }

    func testWholePixelsTravelAsBytesAndComeBackBitForBit() throws {
        // Every byte value appears, in a batch of 5 images of 3 × 4 × 4 (width 48) plus a tail.
        let b = 6, width = 48
        let bytes = (0..<(b * width)).map { ($0 * 37 + 11) % 256 }
        let inputs = bytes.map { Float($0) / 255 }
        XCTAssertEqual(Set(bytes).count, 256)
        let labels: [Int32] = [0, 9, 255, 3, 1, 2]
        let batch = ModelBatch.features(inputs: inputs, targets: labels, batch: b)
        let body = try XCTUnwrap(BatchBody.encodePixels(batch))
        XCTAssertEqual(body.count, 16 + b * width + b)
        XCTAssertEqual(body[5], 3)
        XCTAssertEqual(Array(body[16..<(16 + b * width)]), bytes.map { UInt8($0) })
        XCTAssertEqual(Array(body.suffix(b)), labels.map { UInt8($0) })
        XCTAssertEqual(BatchBody.encode(batch).count, 16 + 4 * b * width + 4 * b, "kind 1 takes four times the bytes")
        let decoded = try XCTUnwrap(features(try BatchBody.decode(body, maxBatch: b, width: width)))
        XCTAssertEqual(decoded.inputs.map(\.bitPattern), inputs.map(\.bitPattern))
        XCTAssertEqual(decoded.targets, labels)
        XCTAssertEqual(decoded.batch, b)
    }

    func testValuesThatAreNotWholePixelsStayKindOne() {
        func batch(_ values: [Float], labels: [Int32] = [1]) -> ModelBatch {
            .features(inputs: values, targets: labels, batch: labels.count)
        }
        XCTAssertNotNil(BatchBody.encodePixels(batch([0, 1, 0.2, 128.0 / 255])))
        XCTAssertNil(BatchBody.encodePixels(batch([0, 0.3])), "0.3 lies between 76/255 and 77/255")
        XCTAssertNil(BatchBody.encodePixels(batch([0, (128.0 / 255).nextUp])), "one ulp off a pixel")
        XCTAssertNil(BatchBody.encodePixels(batch([0, -0.0])), "-0 would come back as +0")
        XCTAssertNil(BatchBody.encodePixels(batch([0, .nan])))
        XCTAssertNil(BatchBody.encodePixels(batch([0, 1.0039216])), "256/255 is above 1")
        XCTAssertNil(BatchBody.encodePixels(batch([0, 1], labels: [256])), "a label needs a byte")
        XCTAssertNil(BatchBody.encodePixels(batch([0, 1], labels: [-1])))
        XCTAssertNil(BatchBody.encodePixels(.tokens(inputs: [1], targets: [2], batch: 1, sequence: 1)))
    }

    func testAMalformedKindThreeBodyIsRefusedBeforeAnyValueIsRead() throws {
        let body = try XCTUnwrap(BatchBody.encodePixels(.features(inputs: [0, 1, 0, 1], targets: [4, 5], batch: 2)))
        XCTAssertNoThrow(try BatchBody.decode(body, maxBatch: 2, width: 2))
        func refused(_ bytes: [UInt8], maxBatch: Int = 2, width: Int = 2, _ why: String, line: UInt = #line) {
            XCTAssertThrowsError(try BatchBody.decode(bytes, maxBatch: maxBatch, width: width), line: line) { error in
                XCTAssertTrue("\(error)".contains(why), "\(error)", line: line)
            }
        }
        refused(Array(body.dropLast()), "does not match 2×2 8-bit pixels")
        refused(body + [0], "does not match 2×2 8-bit pixels")
        var reserved = body
        reserved[7] = 1
        refused(reserved, "reserved bytes")
        refused(body, width: 3, "the model expects 3")
        refused(body, maxBatch: 1, "outside 1...1")
    }
}
