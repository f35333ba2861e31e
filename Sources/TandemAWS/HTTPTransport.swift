import AsyncHTTPClient
import NIOCore
import NIOHTTP1

/// One HTTP exchange as the AWS clients see it: what they send and what comes back. A protocol
/// so the clients run over async-http-client in the product and over a scripted stand-in in
/// the tests that need states moto never shows (pending, throttling, errors).
public protocol HTTPTransport: Sendable {
    func send(_ request: HTTPExchange.Request, timeoutSeconds: Int64) async throws -> HTTPExchange.Response
}

public enum HTTPExchange {
    public struct Request: Sendable {
        public var method: String
        public var url: String
        public var headers: [(String, String)]
        public var body: [UInt8]
        public init(method: String, url: String, headers: [(String, String)] = [], body: [UInt8] = []) {
            self.method = method; self.url = url; self.headers = headers; self.body = body
        }
    }

    public struct Response: Sendable {
        public var status: Int
        public var body: [UInt8]
        public init(status: Int, body: [UInt8]) { self.status = status; self.body = body }
        public var text: String { String(decoding: body, as: UTF8.self) }
    }

    /// The most an AWS answer may be (EC2 answers are kilobytes; a larger one is refused).
    public static let bodyLimit = 8 << 20
}

/// HTTP over async-http-client (the maintained SwiftNIO client), on its shared event loops.
public struct AsyncHTTPTransport: HTTPTransport {
    let client: HTTPClient

    public init(client: HTTPClient = .shared) { self.client = client }

    public func send(_ request: HTTPExchange.Request, timeoutSeconds: Int64) async throws -> HTTPExchange.Response {
        var r = HTTPClientRequest(url: request.url)
        r.method = HTTPMethod(rawValue: request.method)
        for (n, v) in request.headers { r.headers.add(name: n, value: v) }
        if !request.body.isEmpty || request.method == "POST" || request.method == "PUT" {
            r.body = .bytes(ByteBuffer(bytes: request.body))
        }
        let response = try await client.execute(r, timeout: .seconds(timeoutSeconds))
        let body = try await response.body.collect(upTo: HTTPExchange.bodyLimit)
        return HTTPExchange.Response(status: Int(response.status.code), body: Array(buffer: body))
    }
}
