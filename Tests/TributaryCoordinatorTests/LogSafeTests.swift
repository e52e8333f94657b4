import TributaryProtocol
import XCTest

/// Issue 12, finding 12: a client string must not forge or repaint log lines.
final class LogSafeTests: XCTestCase {
    func testControlCharactersAreEscapedAndLongStringsCut() {
        let forged = "bob\n2026-12-01T00:00:00Z info coordinator: job complete\u{1B}[2J\u{0}\u{202E}"
        let safe = LogSafe.escape(forged)
        XCTAssertEqual(safe, #"bob\n2026-12-01T00:00:00Z info coordinator: job complete\u{1b}[2J\u{0}\u{202e}"#)
        XCTAssertFalse(safe.unicodeScalars.contains { $0.properties.generalCategory == .control })
        XCTAssertEqual(LogSafe.escape(#"a\b"#), #"a\\b"#, "a backslash is escaped, so escapes cannot be faked")
        XCTAssertEqual(LogSafe.escape(String(repeating: "x", count: 600)).count, 513)
        XCTAssertEqual(LogSafe.escape("plain ünïcödé"), "plain ünïcödé")
    }
}
