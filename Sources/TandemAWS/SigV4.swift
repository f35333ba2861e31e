import TandemCodecs

/// AWS Signature Version 4 (the signing of every EC2, EBS and STS call), written to give exactly
/// what botocore's SigV4Auth gives (checked against it by SigV4Tests): the canonical request,
/// the string to sign, the derived key and the Authorization header. Pure: the time comes in.
public enum SigV4 {
    /// What a signed request needs: its method, path as sent (percent-encoded where needed),
    /// query parameters (decoded; the signer encodes them), headers and body.
    public struct Request: Sendable, Equatable {
        public var method: String
        /// The URL's host, with `:port` unless the scheme's default.
        public var host: String
        public var path: String
        public var query: [(String, String)]
        public var headers: [(String, String)]
        public var body: [UInt8]

        public init(method: String, host: String, path: String = "/", query: [(String, String)] = [],
                    headers: [(String, String)] = [], body: [UInt8] = []) {
            self.method = method; self.host = host; self.path = path; self.query = query; self.headers = headers; self.body = body
        }

        public static func == (a: Request, b: Request) -> Bool {
            a.method == b.method && a.host == b.host && a.path == b.path && a.body == b.body
                && a.query.elementsEqual(b.query, by: ==) && a.headers.elementsEqual(b.headers, by: ==)
        }

        /// The query string as it goes on the wire (the same encoding the signature covers).
        public var encodedQuery: String {
            query.map { "\(SigV4.encode($0.0))=\(SigV4.encode($0.1))" }.joined(separator: "&")
        }
    }

    /// The result of signing: the headers to add and the steps (for tests and debugging;
    /// they hold no secret).
    public struct Signature: Sendable, Equatable {
        /// X-Amz-Date, X-Amz-Security-Token (temporary credentials) and Authorization.
        public var headers: [(String, String)]
        public var canonicalRequest: String
        public var stringToSign: String
        public var authorization: String

        public static func == (a: Signature, b: Signature) -> Bool {
            a.canonicalRequest == b.canonicalRequest && a.stringToSign == b.stringToSign && a.authorization == b.authorization
                && a.headers.elementsEqual(b.headers, by: ==)
        }
    }

    /// Headers never signed (botocore's list: hop-by-hop and those proxies change).
    static let unsignedHeaders: Set<String> = ["connection", "expect", "keep-alive", "proxy-authenticate", "proxy-authorization",
                                               "te", "trailer", "transfer-encoding", "upgrade", "user-agent", "x-amzn-trace-id"]

    /// Signs `request` for `service` in `region` at `amzDate` ("YYYYMMDDTHHMMSSZ", UTC).
    public static func sign(_ request: Request, credentials: AWSCredentials, region: String, service: String,
                            amzDate: String) throws -> Signature {
        precondition(amzDate.utf8.count == 16 && amzDate.hasSuffix("Z"), "amzDate must be YYYYMMDDTHHMMSSZ")
        let sha256 = try DigestAlgorithm(named: "sha256")
        var headers = request.headers.filter { $0.0.lowercased() != "authorization" && $0.0.lowercased() != "x-amz-date" }
        var added: [(String, String)] = [("X-Amz-Date", amzDate)]
        if let t = credentials.sessionToken {
            headers.removeAll { $0.0.lowercased() == "x-amz-security-token" }
            added.append(("X-Amz-Security-Token", t))
        }
        headers += added
        // Canonical headers: lower-case names, sorted; values trimmed with inner runs of white
        // space made one space; repeated names joined with commas.
        var byName: [String: [String]] = [:]
        var order: [String] = []
        for (name, value) in headers {
            let n = name.lowercased()
            if unsignedHeaders.contains(n) { continue }
            if byName[n] == nil { order.append(n) }
            byName[n, default: []].append(value.split(whereSeparator: { $0 == " " || $0 == "\t" || $0 == "\n" || $0 == "\r" }).joined(separator: " "))
        }
        if byName["host"] == nil { byName["host"] = [request.host.lowercased()]; order.append("host") }
        let names = order.sorted()
        let canonicalHeaders = names.map { "\($0):\(byName[$0]!.joined(separator: ","))" }.joined(separator: "\n")
        let signedHeaders = names.joined(separator: ";")
        let query = request.query.map { (encode($0.0), encode($0.1)) }
            .sorted { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 < $1.1 }
            .map { "\($0.0)=\($0.1)" }.joined(separator: "&")
        let payloadHash = hex(try sha256.digest(request.body))
        let canonicalRequest = [request.method.uppercased(), encode(normalizePath(request.path), keeping: "/~"), query,
                                canonicalHeaders + "\n", signedHeaders, payloadHash].joined(separator: "\n")
        let day = String(amzDate.prefix(8))
        let scope = "\(day)/\(region)/\(service)/aws4_request"
        let stringToSign = ["AWS4-HMAC-SHA256", amzDate, scope, hex(try sha256.digest(Array(canonicalRequest.utf8)))]
            .joined(separator: "\n")
        var key = try sha256.hmac(key: Array("AWS4\(credentials.secretAccessKey)".utf8), data: Array(day.utf8))
        for part in [region, service, "aws4_request"] { key = try sha256.hmac(key: key, data: Array(part.utf8)) }
        let signature = hex(try sha256.hmac(key: key, data: Array(stringToSign.utf8)))
        let authorization = "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyID)/\(scope), SignedHeaders=\(signedHeaders), Signature=\(signature)"
        return Signature(headers: added + [("Authorization", authorization)], canonicalRequest: canonicalRequest,
                         stringToSign: stringToSign, authorization: authorization)
    }

    /// Percent-encodes every byte of the UTF-8 but the unreserved A-Z a-z 0-9 - _ . ~ (and those
    /// in `keeping`), upper-case hex, as AWS specifies (and Python's quote does).
    public static func encode(_ s: String, keeping: String = "-_.~") -> String {
        let keep = Set(keeping.utf8)
        var out = ""
        for b in s.utf8 {
            let unreserved = (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || (b >= 0x30 && b <= 0x39)
                || b == 0x2D || b == 0x5F || b == 0x2E || b == 0x7E
            if unreserved || keep.contains(b) { out.unicodeScalars.append(Unicode.Scalar(b)) }
            else { out += "%" + Hex.upper(UInt64(b), digits: 2) }
        }
        return out
    }

    /// Lower-case hex of bytes.
    static func hex(_ bytes: [UInt8]) -> String { bytes.map { Hex.lower($0, digits: 2) }.joined() }

    /// RFC 3986's dot-segment removal, with empty segments dropped as AWS wants (botocore's
    /// normalize_url_path).
    static func normalizePath(_ path: String) -> String {
        guard !path.isEmpty else { return "/" }
        var out: [Substring] = []
        for seg in path.split(separator: "/", omittingEmptySubsequences: true) where seg != "." {
            if seg == ".." { if !out.isEmpty { out.removeLast() } } else { out.append(seg) }
        }
        let first = path.hasPrefix("/") ? "/" : ""
        let last = path.hasSuffix("/") && !out.isEmpty ? "/" : ""
        return first + out.joined(separator: "/") + last
    }

    /// "YYYYMMDDTHHMMSSZ" of seconds since 1970 (UTC).
    public static func amzDate(epochSeconds: Int64) -> String {
        let days = epochSeconds >= 0 ? epochSeconds / 86400 : (epochSeconds - 86399) / 86400
        let secs = epochSeconds - days * 86400
        // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        let y = yoe + era * 400 + (m <= 2 ? 1 : 0)
        func two(_ v: Int64) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(y)\(two(m))\(two(d))T\(two(secs / 3600))\(two(secs / 60 % 60))\(two(secs % 60))Z"
    }
}
