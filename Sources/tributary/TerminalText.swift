/// Text measured and cut in terminal columns, and lines made of parts that are left out
/// or shortened, in an order they name, until the line fits its width.
enum TerminalText {
    /// The columns `text` takes on a terminal: East Asian wide and fullwidth characters and
    /// emoji take two, combining marks and zero-width formatting none, the rest one.
    static func width(_ text: some StringProtocol) -> Int {
        text.reduce(0) { $0 + width(of: $1) }
    }

    static func width(of character: Character) -> Int {
        let scalars = character.unicodeScalars
        guard let first = scalars.first else { return 0 }
        if scalars.contains(where: { $0.properties.isEmojiPresentation }) { return 2 }
        switch first.properties.generalCategory {
        case .nonspacingMark, .enclosingMark, .format, .control: return 0
        default: return isWide(first.value) ? 2 : 1
        }
    }

    /// East Asian Wide and Fullwidth blocks (Unicode's EastAsianWidth W and F, in ranges).
    static func isWide(_ v: UInt32) -> Bool {
        switch v {
        case 0x1100...0x115F, 0x2E80...0x303E, 0x3041...0x33FF, 0x3400...0x4DBF, 0x4E00...0x9FFF,
             0xA000...0xA4CF, 0xAC00...0xD7A3, 0xF900...0xFAFF, 0xFE30...0xFE4F, 0xFF00...0xFF60,
             0xFFE0...0xFFE6, 0x20000...0x2FFFD, 0x30000...0x3FFFD:
            return true
        default:
            return false
        }
    }

    /// `text` cut to at most `columns`, ending in "…" when something was cut (not after a
    /// space). `atWord`: a word cut in its last 12 columns is left out whole.
    static func clip(_ text: String, to columns: Int, atWord: Bool = false) -> String {
        guard width(text) > columns else { return text }
        guard columns > 0 else { return "" }
        var out = "", used = 0, taken = 0
        for c in text {
            let w = width(of: c)
            if used + w > columns - 1 { break }
            out.append(c)
            used += w
            taken += 1
        }
        if atWord, let next = text.dropFirst(taken).first, !next.isWhitespace,
           let space = out.lastIndex(where: \.isWhitespace), width(out[space...]) <= 12 {
            out = String(out[..<space])
        }
        while out.last?.isWhitespace == true { out.removeLast() }
        return out + "…"
    }

    /// `text` clipped to `columns` and padded with spaces to exactly that many.
    static func pad(_ text: String, to columns: Int, right: Bool = false) -> String {
        let clipped = clip(text, to: columns)
        let fill = String(repeating: " ", count: max(0, columns - width(clipped)))
        return right ? fill + clipped : clipped + fill
    }
}

/// One line of the status screen: parts written one after another. When the whole is
/// wider than the screen, a shrinkable part is cut down to its `minimumWidth`, then optional
/// parts are left out (lowest `dropOrder` first), then shrinkable parts are cut further (to
/// `floorWidth`), and last the line's end is cut with "…".
struct ScreenLine: Equatable {
    struct Part: Equatable {
        var text: String
        /// An ANSI SGR code painted on the part when colour is on.
        var style: String?
        /// Left out when the line is too wide; 1 goes first.
        var dropOrder: Int?
        /// Cut to as few as this many columns before optional parts are left out.
        var minimumWidth: Int?
        /// Shrinkable parts are cut to as few as this many columns before the line's end is.
        static let floorWidth = 8

        init(_ text: String, style: String? = nil, dropOrder: Int? = nil, minimumWidth: Int? = nil) {
            self.text = text
            self.style = style
            self.dropOrder = dropOrder
            self.minimumWidth = minimumWidth
        }
    }

    var parts: [Part]

    init(_ parts: [Part]) { self.parts = parts }
    init(_ text: String, style: String? = nil) { parts = [Part(text, style: style)] }

    var plain: String { parts.map(\.text).joined() }

    /// The line in at most `width` columns, painted when `color`.
    func fitted(_ width: Int, color: Bool) -> String {
        var kept = parts
        func total() -> Int { kept.reduce(0) { $0 + TerminalText.width($1.text) } }
        func shrink(to floor: (Int) -> Int) {
            for i in kept.indices where total() > width {
                guard let minimum = kept[i].minimumWidth else { continue }
                let own = TerminalText.width(kept[i].text)
                let target = max(floor(minimum), own - (total() - width))
                if target < own { kept[i].text = TerminalText.clip(kept[i].text, to: target, atWord: true) }
            }
        }
        shrink { $0 }
        while total() > width,
              let drop = kept.indices.compactMap({ i in kept[i].dropOrder.map { (index: i, order: $0) } })
                  .min(by: { $0.order < $1.order })?.index {
            kept.remove(at: drop)
        }
        shrink { min($0, Part.floorWidth) }
        if total() > width { kept = Self.cut(kept, to: width) }
        return kept.map { StatusScreen.paint($0.text, $0.style, color) }.joined()
    }

    /// The parts' first `width` - 1 columns and "…" (in the style of the part it ends).
    static func cut(_ parts: [Part], to width: Int) -> [Part] {
        guard width > 0 else { return [] }
        var budget = width - 1
        var out: [Part] = []
        for part in parts {
            var piece = part
            piece.text = ""
            var whole = true
            for c in part.text {
                let w = TerminalText.width(of: c)
                if w > budget {
                    whole = false
                    break
                }
                piece.text.append(c)
                budget -= w
            }
            if !whole {
                piece.text += "…"
                out.append(piece)
                return out
            }
            out.append(piece)
        }
        return out
    }
}
