import Foundation

/// A character-level vocabulary: one id per distinct Unicode scalar, ids in scalar-value order.
/// This is what nanoGPT's shakespeare_char `prepare.py` builds with `sorted(set(text))`
/// (Python strings iterate code points, i.e. Unicode scalars, not grapheme clusters),
/// so ids match that script's `meta.pkl` for the same text.
public struct CharacterVocabulary: Sendable, Codable, Equatable {
    /// One single-scalar string per id, in id order.
    public let symbols: [String]
    public var size: Int { symbols.count }

    private let scalars: [Unicode.Scalar]
    // Direct table for Latin-1 (nearly every corpus is mostly ASCII), dictionary for the rest.
    private let latin1: [Int32]
    private let others: [Unicode.Scalar: Int32]

    /// Builds the vocabulary from a list of symbols given in id order.
    /// Throws if a symbol is not exactly one Unicode scalar or appears twice.
    public init(symbols: [String]) throws {
        var scalars: [Unicode.Scalar] = []
        scalars.reserveCapacity(symbols.count)
        for (i, s) in symbols.enumerated() {
            let us = s.unicodeScalars
            guard us.count == 1, let scalar = us.first else {
                throw DatasetError(.invalidArgument,
                                   "vocabulary symbol \(i) (\(s.debugDescription)) must be exactly one Unicode scalar; rebuild the vocabulary from the corpus")
            }
            scalars.append(scalar)
        }
        try self.init(scalars: scalars)
    }

    /// The vocabulary of `text`: its distinct scalars sorted by value.
    public init(text: String) {
        var seen = Set<Unicode.Scalar>()
        for s in text.unicodeScalars { seen.insert(s) }
        // Sorted distinct scalars cannot contain duplicates, so this cannot throw.
        self.init(sortedUnique: seen.sorted { $0.value < $1.value })
    }

    init(scalars: [Unicode.Scalar]) throws {
        var seen = Set<Unicode.Scalar>()
        for (i, s) in scalars.enumerated() where !seen.insert(s).inserted {
            throw DatasetError(.invalidArgument,
                               "vocabulary symbol \(i) (\(Self.describe(s))) appears more than once; each symbol must be unique")
        }
        self.init(sortedUnique: scalars)
    }

    init(sortedUnique scalars: [Unicode.Scalar]) {
        self.scalars = scalars
        self.symbols = scalars.map { String($0) }
        var latin1 = [Int32](repeating: -1, count: 256)
        var others: [Unicode.Scalar: Int32] = [:]
        for (i, s) in scalars.enumerated() {
            if s.value < 256 { latin1[Int(s.value)] = Int32(i) } else { others[s] = Int32(i) }
        }
        self.latin1 = latin1
        self.others = others
    }

    @inline(__always)
    func id(of scalar: Unicode.Scalar) -> Int32? {
        if scalar.value < 256 {
            let id = latin1[Int(scalar.value)]
            return id >= 0 ? id : nil
        }
        return others[scalar]
    }

    /// Ids of `text`'s scalars. Throws for a scalar that is not in the vocabulary, naming it.
    public func encode(_ text: String) throws -> [Int32] {
        var out: [Int32] = []
        out.reserveCapacity(text.utf8.count)
        var offset = 0
        for s in text.unicodeScalars {
            guard let id = id(of: s) else {
                throw DatasetError(.unknownCharacter,
                                   "character \(Self.describe(s)) at position \(offset) is not in the vocabulary of \(size) symbols; use only characters from the training corpus")
            }
            out.append(id)
            offset += 1
        }
        return out
    }

    /// Text for `ids`; ids outside the vocabulary become "?".
    public func decode(_ ids: [Int32]) -> String {
        var view = String.UnicodeScalarView()
        for id in ids {
            if id >= 0, Int(id) < scalars.count { view.append(scalars[Int(id)]) } else { view.append("?") }
        }
        return String(view)
    }

    static func describe(_ s: Unicode.Scalar) -> String {
        let hex = String(s.value, radix: 16, uppercase: true)
        let padded = String(repeating: "0", count: max(0, 4 - hex.count)) + hex
        return "\(String(s).debugDescription) (U+\(padded))"
    }

    // Only the symbols are stored; the lookup tables are rebuilt.
    enum CodingKeys: String, CodingKey { case symbols }
    public init(from decoder: any Decoder) throws {
        let c = try decoder.container(keyedBy: CodingKeys.self)
        try self.init(symbols: c.decode([String].self, forKey: .symbols))
    }
    public func encode(to encoder: any Encoder) throws {
        var c = encoder.container(keyedBy: CodingKeys.self)
        try c.encode(symbols, forKey: .symbols)
    }
    public static func == (a: CharacterVocabulary, b: CharacterVocabulary) -> Bool { a.scalars == b.scalars }
}

/// A UTF-8 text file tokenised one Unicode scalar per token (nanoGPT's shakespeare_char).
public enum CharacterCorpus {
    /// Reads `path`, builds its vocabulary and returns every scalar's id.
    public static func load(path: String) throws -> (vocabulary: CharacterVocabulary, tokens: [UInt16]) {
        let bytes = try readFileBytes(path, what: "text corpus")
        do {
            return try tokenize(utf8: bytes)
        } catch let error as DatasetError {
            throw error.at(path)
        }
    }

    /// Tokenises UTF-8 bytes (the body of `load`, separate so it can be tested without files).
    static func tokenize(utf8 bytes: [UInt8]) throws -> (vocabulary: CharacterVocabulary, tokens: [UInt16]) {
        if bytes.isEmpty {
            throw DatasetError(.empty, "text corpus is empty; a character model needs some text to learn from")
        }
        // One decoding pass collects the scalars and validates UTF-8 with a useful offset.
        var scalars: [Unicode.Scalar] = []
        scalars.reserveCapacity(bytes.count)
        var decoder = UTF8()
        var iterator = bytes.makeIterator()
        var byteOffset = 0
        decoding: while true {
            switch decoder.decode(&iterator) {
            case .scalarValue(let s):
                scalars.append(s)
                byteOffset += UTF8.width(s)
            case .emptyInput:
                break decoding
            case .error:
                throw DatasetError(.invalidFormat,
                                   "text corpus is not valid UTF-8 (bad byte sequence near byte offset \(byteOffset)); convert it to UTF-8 first")
            }
        }
        var present = Set<Unicode.Scalar>()
        for s in scalars { present.insert(s) }
        if present.count > Int(UInt16.max) {
            throw DatasetError(.tooLarge,
                               "text corpus has \(present.count) distinct characters, more than the 65535 that 16-bit token ids can hold; use a subword tokenizer")
        }
        let vocabulary = CharacterVocabulary(sortedUnique: present.sorted { $0.value < $1.value })
        var tokens = [UInt16](repeating: 0, count: scalars.count)
        tokens.withUnsafeMutableBufferPointer { out in
            scalars.withUnsafeBufferPointer { input in
                for i in 0..<input.count {
                    // Every scalar is in the vocabulary built from these same scalars.
                    out[i] = UInt16(truncatingIfNeeded: vocabulary.id(of: input[i]) ?? 0)
                }
            }
        }
        return (vocabulary, tokens)
    }
}
