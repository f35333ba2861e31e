import Foundation

/// The EC2 Query API (version 2016-11-15) over HTTP, signed with SigV4: the calls the EBS
/// target makes (volumes, instances, snapshots). Throttling and 5xx answers are retried with
/// full-jitter exponential backoff; every other error comes back as an `AWSError` with AWS's
/// code. Credentials come from a `CredentialChain`; nothing secret is ever logged.
public final class EC2Client: @unchecked Sendable {
    public let region: String
    /// The API's base URL: https://ec2.REGION.amazonaws.com, or the endpoint override.
    public let endpoint: String
    let http: HTTPTransport
    let credentials: @Sendable () async throws -> AWSCredentials
    public let retry: RetryPolicy
    let now: @Sendable () -> Double
    let sleep: @Sendable (Double) async throws -> Void
    static let apiVersion = "2016-11-15"

    public init(region: String, endpoint: String? = nil, http: HTTPTransport = AsyncHTTPTransport(),
                credentials: @escaping @Sendable () async throws -> AWSCredentials, retry: RetryPolicy = RetryPolicy(),
                now: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 },
                sleep: @escaping @Sendable (Double) async throws -> Void = { try await Task.sleep(nanoseconds: UInt64($0 * 1e9)) }) {
        self.region = region
        var base = endpoint ?? "https://ec2.\(region).amazonaws.com"
        while base.hasSuffix("/") { base.removeLast() }
        self.endpoint = base
        self.http = http
        self.credentials = credentials
        self.retry = retry
        self.now = now
        self.sleep = sleep
    }

    /// Calls `action` with `parameters` (EC2's flattened names: VolumeId.1, Filter.1.Name, ...);
    /// the answer's root element.
    public func call(_ action: String, _ parameters: [(String, String)] = []) async throws -> XMLTree {
        let form = Self.formEncode([("Action", action), ("Version", Self.apiVersion)] + parameters)
        let body = Array(form.utf8)
        guard let url = URLComponents(string: endpoint), let host = url.host else { throw AWSError.badEndpoint(endpoint) }
        let defaultPort = url.scheme == "https" ? 443 : 80
        let hostHeader = url.port.map { $0 == defaultPort ? host : "\(host):\($0)" } ?? host
        var attempt = 0
        while true {
            attempt += 1
            let creds = try await credentials()
            var headers = [("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")]
            let signature = try SigV4.sign(.init(method: "POST", host: hostHeader, path: url.path.isEmpty ? "/" : url.path,
                                                 headers: headers, body: body),
                                           credentials: creds, region: region, service: "ec2",
                                           amzDate: SigV4.amzDate(epochSeconds: Int64(now())))
            headers += signature.headers
            let outcome: Result<HTTPExchange.Response, Error>
            do {
                outcome = .success(try await http.send(.init(method: "POST", url: endpoint + (url.path.isEmpty ? "/" : ""),
                                                             headers: headers, body: body), timeoutSeconds: retry.callTimeoutSeconds))
            } catch { outcome = .failure(error) }
            let error: AWSError
            switch outcome {
            case .success(let r) where r.status == 200:
                return try XMLTree.parse(r.body)
            case .success(let r):
                error = AWSError.from(status: r.status, body: r.body, action: action)
            case .failure(let e):
                error = .transport(action, "\(e)")
            }
            guard error.isRetryable, attempt < retry.attempts else { throw error }
            try await sleep(retry.delay(attempt: attempt, random: Double.random(in: 0..<1)))
        }
    }
}

extension EC2Client {
    /// application/x-www-form-urlencoded as Python's urlencode writes it (space as '+', the
    /// rest of what is not unreserved as %XX): AWS takes it, and moto checks a signature over
    /// the body it re-encodes that way.
    static func formEncode(_ pairs: [(String, String)]) -> String {
        func enc(_ s: String) -> String { SigV4.encode(s, keeping: "-_.~ ").replacingOccurrences(of: " ", with: "+") }
        return pairs.map { "\(enc($0.0))=\(enc($0.1))" }.joined(separator: "&")
    }
}

/// When a failed AWS call is tried again: throttling, 5xx and transport errors, up to
/// `attempts` times, waiting a random time up to base × 2^(attempt-1) (at most `capSeconds`)
/// between (AWS's "full jitter").
public struct RetryPolicy: Sendable {
    public var attempts = 6
    public var baseSeconds = 0.2
    public var capSeconds = 20.0
    public var callTimeoutSeconds: Int64 = 30
    public init() {}

    public func delay(attempt: Int, random: Double) -> Double {
        let ceiling = min(capSeconds, baseSeconds * pow(2, Double(attempt - 1)))
        return ceiling * random
    }
}

/// An AWS call that failed: AWS's error code and message, or why no answer came.
public enum AWSError: Error, CustomStringConvertible, Equatable {
    case api(action: String, status: Int, code: String, message: String, requestID: String?)
    case transport(String, String)
    case badEndpoint(String)
    /// An answer without a field Tandem needs.
    case unexpected(String, String)

    /// AWS's code ("InvalidVolume.NotFound"), or nil when there was no API answer.
    public var code: String? { if case .api(_, _, let c, _, _) = self { c } else { nil } }

    static let throttling: Set<String> = ["Throttling", "ThrottlingException", "RequestLimitExceeded", "RequestThrottled",
                                          "TooManyRequestsException", "SlowDown", "InternalError", "InternalFailure",
                                          "ServiceUnavailable", "Unavailable", "RequestTimeout"]

    var isRetryable: Bool {
        switch self {
        case .api(_, let status, let code, _, _): status >= 500 || status == 429 || Self.throttling.contains(code)
        case .transport: true
        case .badEndpoint, .unexpected: false
        }
    }

    static func from(status: Int, body: [UInt8], action: String) -> AWSError {
        let tree = try? XMLTree.parse(body)
        let err = tree?.at("Errors", "Error") ?? tree?.child("Error") ?? (tree?.name == "Error" ? tree : nil)
        return .api(action: action, status: status, code: err?.string("Code") ?? "HTTP\(status)",
                    message: err?.string("Message") ?? String(decoding: body.prefix(200), as: UTF8.self),
                    requestID: tree?.string("RequestID") ?? tree?.string("RequestId"))
    }

    public var description: String {
        switch self {
        case .api(let action, let status, let code, let message, let id):
            "EC2 \(action): \(code): \(message) (HTTP \(status)\(id.map { ", request \($0)" } ?? ""))"
        case .transport(let action, let why): "EC2 \(action): no answer: \(why)"
        case .badEndpoint(let e): "bad EC2 endpoint URL: \(e)"
        case .unexpected(let action, let what): "EC2 \(action): the answer lacks \(what)"
        }
    }
}
