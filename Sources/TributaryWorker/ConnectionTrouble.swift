import TributaryProtocol

/// Why a request never got an answer, in a volunteer's words: the HTTP client's errors
/// (`connection reset (error set): Connection refused) (errno: 111)`) name neither the
/// cause nor what to check.
enum ConnectionTrouble {
    static func describe(_ error: any Error) -> String {
        let text = "\(error)"
        let lower = text.lowercased()
        if lower.contains("connection refused") {
            return "connection refused: nothing listens at that address (is the coordinator running, and is the port right?)"
        }
        if lower.contains("ssl") || lower.contains("tls") || lower.contains("handshake") {
            return "the TLS handshake failed (for a coordinator serving plain HTTP use http://; for a self-signed one give --ca-file)"
        }
        if lower.contains("connecttimeout") || lower.contains("connect timeout") || lower.contains("timed out")
            || lower.contains("deadlineexceeded") || lower.contains("readtimeout") {
            return "no answer in time (the coordinator or the network is down or very slow)"
        }
        if lower.contains("resolve") || lower.contains("name or service not known") || lower.contains("nodename") {
            return "the host name does not resolve (check the --coordinator URL)"
        }
        if lower.contains("unreachable") { return "the network cannot reach that address" }
        if lower.contains("reset") || lower.contains("closed") || lower.contains("eof") {
            return "the connection was closed before an answer arrived"
        }
        return LogSafe.escape(String(text.prefix(200)))
    }
}
