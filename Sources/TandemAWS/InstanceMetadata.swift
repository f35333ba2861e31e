import Foundation

/// IMDSv2, the EC2 instance metadata service: a session token first (PUT), then each path with
/// it. Tandem asks it who and where this instance is, which volumes the block-device mapping
/// names (Xen instances), and the instance role's credentials. The base URL is settable
/// (AWS_EC2_METADATA_SERVICE_ENDPOINT, or the `ebs` section) so tests point it at a stand-in.
public final class InstanceMetadata: @unchecked Sendable {
    public static let defaultEndpoint = "http://169.254.169.254"
    public let endpoint: String
    let http: HTTPTransport
    /// Each call's limit: IMDS answers in milliseconds on an instance; off one it never does.
    let timeoutSeconds: Int64
    let lock = NSLock()
    var token: (value: String, expires: Double)?
    let now: @Sendable () -> Double

    /// Who and where this instance is.
    public struct Identity: Sendable, Equatable {
        public var instanceID: String
        public var region: String
        public var availabilityZone: String
        public init(instanceID: String, region: String, availabilityZone: String) {
            self.instanceID = instanceID; self.region = region; self.availabilityZone = availabilityZone
        }
    }

    public enum Failure: Error, CustomStringConvertible, Equatable {
        case unreachable(String, String)
        case refused(String, Int)
        public var description: String {
            switch self {
            case .unreachable(let url, let why): "instance metadata (IMDSv2) at \(url) is unreachable: \(why)"
            case .refused(let path, let status): "instance metadata (IMDSv2) answered \(path) with HTTP \(status)"
            }
        }
    }

    public init(endpoint: String? = nil, http: HTTPTransport = AsyncHTTPTransport(), timeoutSeconds: Int64 = 2,
                now: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 }) {
        let env = ProcessInfo.processInfo.environment["AWS_EC2_METADATA_SERVICE_ENDPOINT"]
        var base = endpoint ?? env ?? Self.defaultEndpoint
        while base.hasSuffix("/") { base.removeLast() }
        self.endpoint = base
        self.http = http
        self.timeoutSeconds = timeoutSeconds
        self.now = now
    }

    /// Seconds a token lives (IMDS's limit is 21600).
    static let tokenSeconds = 21600

    func sessionToken() async throws -> String {
        if let t = lock.withLock({ token }), t.expires > now() + 60 { return t.value }
        let url = endpoint + "/latest/api/token"
        let r: HTTPExchange.Response
        do {
            r = try await http.send(.init(method: "PUT", url: url, headers: [("X-aws-ec2-metadata-token-ttl-seconds", "\(Self.tokenSeconds)")]),
                                    timeoutSeconds: timeoutSeconds)
        } catch { throw Failure.unreachable(url, "\(error)") }
        guard r.status == 200, !r.body.isEmpty else { throw Failure.refused("/latest/api/token", r.status) }
        let value = r.text.trimmingCharacters(in: .whitespacesAndNewlines)
        lock.withLock { token = (value, now() + Double(Self.tokenSeconds)) }
        return value
    }

    /// The text at `path` (under /latest/), nil when IMDS says 404.
    public func get(_ path: String) async throws -> String? {
        let t = try await sessionToken()
        let url = endpoint + "/latest/" + path
        let r: HTTPExchange.Response
        do { r = try await http.send(.init(method: "GET", url: url, headers: [("X-aws-ec2-metadata-token", t)]), timeoutSeconds: timeoutSeconds) }
        catch { throw Failure.unreachable(url, "\(error)") }
        if r.status == 404 { return nil }
        guard r.status == 200 else { throw Failure.refused("/latest/" + path, r.status) }
        return r.text.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func require(_ path: String) async throws -> String {
        guard let v = try await get(path), !v.isEmpty else { throw Failure.refused("/latest/" + path, 404) }
        return v
    }

    public func identity() async throws -> Identity {
        Identity(instanceID: try await require("meta-data/instance-id"), region: try await require("meta-data/placement/region"),
                 availabilityZone: try await require("meta-data/placement/availability-zone"))
    }

    /// The block-device mapping (Xen instances): mapping name (root, ebs1, ...) to device name.
    public func blockDeviceMapping() async throws -> [String: String] {
        guard let list = try await get("meta-data/block-device-mapping/") else { return [:] }
        var out: [String: String] = [:]
        for name in list.split(separator: "\n").map({ String($0).trimmingCharacters(in: CharacterSet(charactersIn: "/ ")) }) where !name.isEmpty {
            if let dev = try await get("meta-data/block-device-mapping/\(name)") { out[name] = dev }
        }
        return out
    }

    /// The instance role's temporary credentials.
    public func roleCredentials() async throws -> AWSCredentials {
        guard let roles = try await get("meta-data/iam/security-credentials/"),
              let role = roles.split(separator: "\n").first.map(String.init), !role.isEmpty else {
            throw CredentialChain.Failure.none("the instance has no IAM role")
        }
        let json = try await require("meta-data/iam/security-credentials/\(role)")
        guard let o = try? JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any],
              let key = o["AccessKeyId"] as? String, let secret = o["SecretAccessKey"] as? String else {
            throw Failure.refused("/latest/meta-data/iam/security-credentials/\(role) (not credentials)", 200)
        }
        return AWSCredentials(accessKeyID: key, secretAccessKey: secret, sessionToken: o["Token"] as? String,
                              expiration: (o["Expiration"] as? String).flatMap(Self.parseTime))
    }

    /// "2026-12-02T07:00:00Z" as seconds since 1970.
    static func parseTime(_ s: String) -> Double? {
        let f = ISO8601DateFormatter()
        return f.date(from: s)?.timeIntervalSince1970
    }
}
