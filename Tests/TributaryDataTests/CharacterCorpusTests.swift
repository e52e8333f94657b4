import Foundation
import XCTest
@testable import TributaryData

final class CharacterCorpusTests: XCTestCase {
    func testVocabularyIsSortedDistinctScalars() throws {
        let vocab = CharacterVocabulary(text: "hello world")
        XCTAssertEqual(vocab.symbols, [" ", "d", "e", "h", "l", "o", "r", "w"])
        XCTAssertEqual(vocab.size, 8)
        XCTAssertEqual(try vocab.encode("hello"), [3, 2, 4, 4, 5])
        XCTAssertEqual(try vocab.encode("world"), [7, 5, 6, 4, 1])
        XCTAssertEqual(vocab.decode([3, 2, 4, 4, 5, 0, 7]), "hello w")
    }

    func testScalarsNotGraphemes() throws {
        // "\r\n" is one Character in Swift but two code points in Python; ids must follow Python.
        // "e\u{301}" (e + combining acute) likewise is two scalars; U+0301 sorts after ASCII.
        let vocab = CharacterVocabulary(text: "a\r\nbe\u{301}")
        XCTAssertEqual(vocab.symbols, ["\n", "\r", "a", "b", "e", "\u{301}"])
        XCTAssertEqual(try vocab.encode("\r\ne\u{301}"), [1, 0, 4, 5])
        XCTAssertEqual(vocab.decode([4, 5]), "e\u{301}")
    }

    func testUnknownCharacterIsNamed() {
        let vocab = CharacterVocabulary(text: "abc")
        assertDatasetError(.unknownCharacter, ["\"é\"", "U+00E9", "position 1", "3 symbols"]) {
            try vocab.encode("aéb")
        }
    }

    func testDecodeOutOfRangeBecomesQuestionMark() {
        let vocab = CharacterVocabulary(text: "ab")
        XCTAssertEqual(vocab.decode([0, 2, -1, 1, 1000]), "a??b?")
    }

    func testInitSymbolsValidates() throws {
        let vocab = try CharacterVocabulary(symbols: ["z", "a", "😀"])
        XCTAssertEqual(try vocab.encode("a😀z"), [1, 2, 0])
        XCTAssertEqual(vocab.decode([2, 0]), "😀z")
        assertDatasetError(.invalidArgument, ["appears more than once", "\"a\""]) {
            try CharacterVocabulary(symbols: ["a", "b", "a"])
        }
        assertDatasetError(.invalidArgument, ["exactly one Unicode scalar"]) {
            try CharacterVocabulary(symbols: ["ab"])
        }
        assertDatasetError(.invalidArgument, ["exactly one Unicode scalar"]) {
            try CharacterVocabulary(symbols: [""])
        }
    }

    func testCodableRoundTrip() throws {
        let vocab = CharacterVocabulary(text: "To be, or not to be ☃")
        let json = try JSONEncoder().encode(vocab)
        let back = try JSONDecoder().decode(CharacterVocabulary.self, from: json)
        XCTAssertEqual(back, vocab)
        XCTAssertEqual(try back.encode("be ☃"), try vocab.encode("be ☃"))
        // A stored vocabulary with a duplicate is refused on decode.
        let bad = Data(#"{"symbols":["a","a"]}"#.utf8)
        XCTAssertThrowsError(try JSONDecoder().decode(CharacterVocabulary.self, from: bad))
    }

    func testLoadFromFile() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let path = try dir.write(Array("ba\nab€\n".utf8), "corpus.txt")
        let (vocab, tokens) = try CharacterCorpus.load(path: path)
        XCTAssertEqual(vocab.symbols, ["\n", "a", "b", "€"])
        XCTAssertEqual(tokens, [2, 1, 0, 1, 2, 3, 0])
        XCTAssertEqual(vocab.decode(tokens.map(Int32.init)), "ba\nab€\n")
    }

    func testLoadErrors() throws {
        let dir = try TemporaryDirectory()
        defer { dir.cleanup() }
        let missing = dir.file("nope.txt")
        assertDatasetError(.fileNotFound, [missing, "does not exist"]) { try CharacterCorpus.load(path: missing) }

        let empty = try dir.write([], "empty.txt")
        assertDatasetError(.empty, [empty, "empty"]) { try CharacterCorpus.load(path: empty) }

        let latin1 = try dir.write([0x61, 0x62, 0xE9, 0x63], "latin1.txt")
        assertDatasetError(.invalidFormat, [latin1, "not valid UTF-8", "byte offset 2"]) {
            try CharacterCorpus.load(path: latin1)
        }
        assertDatasetError(.unreadable, [dir.path, "directory"]) { try CharacterCorpus.load(path: dir.path) }
    }

    func testVocabularyLargerThanUInt16IsRefused() throws {
        // 65,536 distinct scalars: U+0000..U+FFFF without surrogates (2,048) plus 2,048 from plane 1.
        var view = String.UnicodeScalarView()
        for v in UInt32(0)...0xFFFF { if let s = Unicode.Scalar(v) { view.append(s) } }
        for v in UInt32(0x10000)..<0x10800 { if let s = Unicode.Scalar(v) { view.append(s) } }
        let text = String(view)
        XCTAssertEqual(text.unicodeScalars.count, 65_536)
        assertDatasetError(.tooLarge, ["65536 distinct characters"]) {
            try CharacterCorpus.tokenize(utf8: Array(text.utf8))
        }
        // One fewer fits, and the largest id is 65534.
        let (vocab, tokens) = try CharacterCorpus.tokenize(utf8: Array(String(text.unicodeScalars.dropLast()).utf8))
        XCTAssertEqual(vocab.size, 65_535)
        XCTAssertEqual(tokens.max(), 65_534)
    }
}
