/// Strings that came from the other side of the wire, made safe for a log line: control
/// characters (a newline would forge a line; an escape sequence would repaint a terminal)
/// become `\n`, `\u{1B}` and the like, and very long ones are cut.
public enum LogSafe {
    public static func escape(_ text: some StringProtocol, limit: Int = 512) -> String {
        var out = ""
        for scalar in text.unicodeScalars.prefix(limit) {
            switch scalar {
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\\": out += "\\\\"
            default:
                if scalar.properties.generalCategory == .control || scalar.properties.generalCategory == .format {
                    out += "\\u{" + String(scalar.value, radix: 16) + "}"
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return text.unicodeScalars.count > limit ? out + "…" : out
    }
}
