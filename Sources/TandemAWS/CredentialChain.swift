import Foundation

/// Where the keys come from, in the AWS SDKs' order: the environment (AWS_ACCESS_KEY_ID,
/// AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), the shared credentials file and profile
/// (AWS_SHARED_CREDENTIALS_FILE or ~/.aws/credentials; AWS_PROFILE or `default`), then the
/// instance role through IMDSv2. Temporary credentials are fetched again five minutes before
/// they expire.
public final class CredentialChain: @unchecked Sendable {
    let environment: [String: String]
    let metadata: InstanceMetadata?
    let now: @Sendable () -> Double
    let lock = NSLock()
    var cached: AWSCredentials?
    /// Refresh this long before expiry.
    static let refreshMargin: Double = 300

    public enum Failure: Error, CustomStringConvertible, Equatable {
        case none(String)
        case badFile(String, String)
        public var description: String {
            switch self {
            case .none(let why): "no AWS credentials: \(why) (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a shared credentials file, or give the instance a role)"
            case .badFile(let path, let why): "\(path): \(why)"
            }
        }
    }

    public init(environment: [String: String] = ProcessInfo.processInfo.environment, metadata: InstanceMetadata?,
                now: @escaping @Sendable () -> Double = { Date().timeIntervalSince1970 }) {
        self.environment = environment
        self.metadata = metadata
        self.now = now
    }

    public func credentials() async throws -> AWSCredentials {
        if let c = lock.withLock({ cached }), c.expiration.map({ $0 - Self.refreshMargin > now() }) ?? true { return c }
        let c = try await resolve()
        lock.withLock { cached = c }
        return c
    }

    func resolve() async throws -> AWSCredentials {
        if let k = environment["AWS_ACCESS_KEY_ID"], let s = environment["AWS_SECRET_ACCESS_KEY"], !k.isEmpty, !s.isEmpty {
            return AWSCredentials(accessKeyID: k, secretAccessKey: s, sessionToken: environment["AWS_SESSION_TOKEN"].flatMap { $0.isEmpty ? nil : $0 })
        }
        let profile = environment["AWS_PROFILE"] ?? "default"
        let path = environment["AWS_SHARED_CREDENTIALS_FILE"] ?? (environment["HOME"].map { "\($0)/.aws/credentials" } ?? "")
        if !path.isEmpty, FileManager.default.fileExists(atPath: path) {
            guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw Failure.badFile(path, "cannot be read") }
            if let c = try Self.fromSharedFile(text, profile: profile, path: path) { return c }
        }
        guard let metadata else { throw Failure.none("none in the environment or \(path.isEmpty ? "a shared credentials file" : path) [\(profile)]") }
        return try await metadata.roleCredentials()
    }

    /// The profile's keys from a shared credentials file (INI), nil if the profile is absent.
    static func fromSharedFile(_ text: String, profile: String, path: String) throws -> AWSCredentials? {
        var section: String?
        var values: [String: String] = [:]
        for raw in text.split(whereSeparator: \.isNewline) {
            let line = raw.trimmingCharacters(in: .whitespaces)
            if line.isEmpty || line.hasPrefix("#") || line.hasPrefix(";") { continue }
            if line.hasPrefix("[") && line.hasSuffix("]") {
                section = line.dropFirst().dropLast().trimmingCharacters(in: .whitespaces)
                continue
            }
            guard section == profile, let eq = line.firstIndex(of: "=") else { continue }
            values[line[..<eq].trimmingCharacters(in: .whitespaces).lowercased()] = line[line.index(after: eq)...].trimmingCharacters(in: .whitespaces)
        }
        guard !values.isEmpty else { return nil }
        guard let k = values["aws_access_key_id"], let s = values["aws_secret_access_key"] else {
            throw Failure.badFile(path, "profile [\(profile)] lacks aws_access_key_id or aws_secret_access_key")
        }
        return AWSCredentials(accessKeyID: k, secretAccessKey: s, sessionToken: values["aws_session_token"])
    }
}
