import TributaryWorker
import XCTest

/// `--coordinator` as volunteers paste it: the status or dashboard URL the coordinator
/// prints works (its origin is used, and the rest named once); what cannot work is refused.
final class CoordinatorAddressTests: XCTestCase {
    func testAPastedURLIsReducedToItsOrigin() throws {
        let cases: [(String, String, String?)] = [
            ("http://host:8470", "http://host:8470", nil),
            ("http://host:8470/", "http://host:8470", nil),
            ("http://host:8470/v1/status", "http://host:8470", "/v1/status"),
            ("https://Example.org/#workers", "https://Example.org", "#workers"),
            ("HTTPS://coordinator.example:443/v1/workers?limit=5", "https://coordinator.example:443", "/v1/workers?limit=5"),
            ("http://[::1]:8470/v1/status", "http://[::1]:8470", "/v1/status"),
            ("  http://10.0.0.2:8470  ", "http://10.0.0.2:8470", nil),
        ]
        for (text, origin, ignored) in cases {
            let address = try CoordinatorAddress(text)
            XCTAssertEqual(address.origin, origin, text)
            XCTAssertEqual(address.ignored, ignored, text)
        }
    }

    func testWhatCannotBeACoordinatorIsRefusedInOneLine() {
        let cases: [(String, String)] = [
            ("host:8470", "--coordinator must be an http:// or https:// URL such as http://host:8470"),
            ("ftp://host", "--coordinator must be an http:// or https:// URL"),
            ("http://", "--coordinator has no host name"),
            ("http://me:secret@host:8470", "--coordinator must not carry a user name or password"),
        ]
        for (text, message) in cases {
            XCTAssertThrowsError(try CoordinatorAddress(text), text) { error in
                XCTAssertTrue("\(error)".hasPrefix(message), "\(text): \(error)")
                XCTAssertFalse("\(error)".contains("\n"))
            }
        }
    }
}
