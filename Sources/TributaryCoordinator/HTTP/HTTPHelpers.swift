import Foundation
import Hummingbird
import NIOCore
import TributaryProtocol

func json<T: Encodable>(_ value: T, status: HTTPResponse.Status = .ok) throws -> Response {
    let data = try WireJSON.encoder().encode(value)
    return Response(status: status, headers: [.contentType: "application/json"],
                    body: .init(byteBuffer: ByteBuffer(bytes: data)))
}

func binary(_ bytes: [UInt8], type: String) -> Response {
    Response(status: .ok, headers: [.contentType: type], body: .init(byteBuffer: ByteBuffer(bytes: bytes)))
}

func decodeJSON<T: Decodable>(_ request: Request) async throws -> T {
    let buffer: ByteBuffer
    do {
        buffer = try await request.body.collect(upTo: CoordinatorServer.jsonLimit)
    } catch is NIOTooManyBytesError {
        throw Problem(.payloadTooLarge, detail: "JSON bodies are at most \(CoordinatorServer.jsonLimit) bytes")
    }
    do {
        return try WireJSON.decoder().decode(T.self, from: Data(buffer.readableBytesView))
    } catch let error as DecodingError {
        throw Problem(.malformedRequest, detail: "invalid \(T.self): \(describe(error))")
    } catch {
        throw Problem(.malformedRequest, detail: "invalid JSON")
    }
}

func describe(_ error: DecodingError) -> String {
    switch error {
    case let .keyNotFound(key, _): return "missing field '\(key.stringValue)'"
    case let .typeMismatch(_, ctx), let .valueNotFound(_, ctx), let .dataCorrupted(ctx):
        let path = ctx.codingPath.map(\.stringValue).joined(separator: ".")
        return path.isEmpty ? ctx.debugDescription : "field '\(path)': \(ctx.debugDescription)"
    @unknown default: return "\(error)"
    }
}

/// If-None-Match against an ETag (strong or weak form, lists, and `*`).
func matches(_ request: Request, _ etag: String) -> Bool {
    guard let header = request.headers[.ifNoneMatch] else { return false }
    return header.split(separator: ",").contains { item in
        let t = item.trimmingCharacters(in: .whitespaces)
        return t == "*" || t == etag || t == "W/" + etag
    }
}

func bearer(_ request: Request) -> String? {
    guard let value = request.headers[.authorization] else { return nil }
    let parts = value.split(separator: " ", maxSplits: 1)
    guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
    return String(parts[1]).trimmingCharacters(in: .whitespaces)
}

func versionParameter(_ context: some RequestContext) throws -> Int {
    let text = try context.parameters.require("version")
    guard let v = Int(text), v >= 0 else {
        throw Problem(.malformedRequest, detail: "version must be a non-negative integer (got \(text))")
    }
    return v
}

/// `?offset=&limit=` of a paged list: offset from 0, limit 1...`maxPage` (default `defaultPage`).
func pageParameters(_ request: Request) throws -> (offset: Int, limit: Int) {
    let query = request.uri.queryParameters
    func integer(_ key: String, default value: Int, range: ClosedRange<Int>) throws -> Int {
        guard let text = query.get(key) else { return value }
        guard let n = Int(text), range.contains(n) else {
            throw Problem(.malformedRequest, detail: "\(key) must be an integer in \(range.lowerBound)...\(range.upperBound)")
        }
        return n
    }
    return (try integer("offset", default: 0, range: 0...Int(Int32.max)),
            try integer("limit", default: Routes.defaultPage, range: 1...Routes.maxPage))
}
