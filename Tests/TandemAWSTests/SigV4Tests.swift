import Foundation
import Testing
import TandemCodecs
@testable import TandemAWS

/// SigV4 against its oracle, botocore's SigV4Auth (pip): requests the test generates from a
/// seed (query strings and paths with characters that need encoding, repeated parameters and
/// headers, white space in header values, session tokens or none, several regions, services
/// and dates) must give byte for byte the canonical request, string to sign and Authorization
/// header botocore gives. botocore missing is a failure, never a skip.
@Suite struct SigV4Tests {
    static let helper = URL(fileURLWithPath: #filePath).deletingLastPathComponent().path + "/Helpers/botocore-sign.py"

    struct Case { var request: SigV4.Request; var credentials: AWSCredentials; var region: String; var service: String; var epoch: Int64 }

    static func cases(count: Int, seed: UInt64) -> [Case] {
        var rng = SplitMix64(seed: seed)
        func pick<T>(_ a: [T]) -> T { a[Int(rng.next() % UInt64(a.count))] }
        let pieces = ["a", "Z9", " ", "+", "=", "&", "/", "~", "*", "%", "ü", "東", "-_.", "'", "!", "(", ":", "@", ""]
        func text(_ n: Int) -> String { (0..<n).map { _ in pick(pieces) }.joined() }
        return (0..<count).map { i in
            let host = pick(["ec2.us-east-1.amazonaws.com", "127.0.0.1:5799", "ebs.eu-west-1.amazonaws.com", "localhost:8080"])
            let path = pick(["/", "/snapshots/snap-0123/blocks/7", "/a b/c~d/./e/../f", "//double//slash/", "/ü/x%20y", "", "/x/.."])
            var query: [(String, String)] = []
            for _ in 0..<Int(rng.next() % 6) { query.append((text(1 + Int(rng.next() % 4)), text(Int(rng.next() % 5)))) }
            if rng.next() % 3 == 0, let q = query.first { query.append((q.0, text(2))) }  // a repeated key
            var headers: [(String, String)] = []
            if rng.next() % 2 == 0 { headers.append(("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")) }
            if rng.next() % 2 == 0 { headers.append(("X-Custom", "  spaced   out\tvalue  ")) }
            if rng.next() % 3 == 0 { headers.append(("X-Multi", "one")); headers.append(("x-multi", "two  three")) }
            if rng.next() % 2 == 0 { headers.append(("User-Agent", "tandem/\(i)")) }
            let body = rng.next() % 2 == 0 ? [] : Array("Action=DescribeVolumes&Version=2016-11-15&VolumeId.1=vol-\(i)".utf8)
            let creds = AWSCredentials(accessKeyID: "AKIA\(Hex.upper(rng.next() % 1_000_000, digits: 12))",
                                       secretAccessKey: "s3cr+t/\(text(4))\(rng.next())",
                                       sessionToken: rng.next() % 2 == 0 ? nil : "FwoGZXIvYXdzE/\(rng.next())+token==")
            return Case(request: SigV4.Request(method: pick(["GET", "POST", "PUT", "delete"]), host: host, path: path,
                                               query: query, headers: headers, body: body),
                        credentials: creds, region: pick(["us-east-1", "eu-west-1", "ap-southeast-2", "us-gov-west-1"]),
                        service: pick(["ec2", "ebs", "sts"]), epoch: Int64(946_684_800 + rng.next() % 1_300_000_000))
        }
    }

    @Test func signaturesEqualBotocores() throws {
        let cases = Self.cases(count: 300, seed: 0x5167_0004)
        var lines = ""
        var mine: [SigV4.Signature] = []
        for c in cases {
            let date = SigV4.amzDate(epochSeconds: c.epoch)
            mine.append(try SigV4.sign(c.request, credentials: c.credentials, region: c.region, service: c.service, amzDate: date))
            var o: [String: Any] = [
                "method": c.request.method, "host": c.request.host, "path": c.request.path,
                "query": c.request.query.map { [$0.0, $0.1] }, "headers": c.request.headers.map { [$0.0, $0.1] },
                "body": c.request.body.map { Hex.lower($0, digits: 2) }.joined(), "key": c.credentials.accessKeyID,
                "secret": c.credentials.secretAccessKey, "region": c.region, "service": c.service,
                "amzDate": date, "epoch": c.epoch,
            ]
            if let t = c.credentials.sessionToken { o["token"] = t }
            lines += String(decoding: try JSONSerialization.data(withJSONObject: o), as: UTF8.self) + "\n"
        }
        let file = NSTemporaryDirectory() + "sigv4-\(UUID().uuidString).jsonl"
        try lines.write(toFile: file, atomically: true, encoding: .utf8)
        defer { unlink(file) }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", Self.helper, file]
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        try p.run()
        let data = out.fileHandleForReading.readDataToEndOfFile()
        let errText = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        try #require(p.terminationStatus == 0, "botocore oracle failed (scripts/test installs botocore): \(errText)")
        let answers = String(decoding: data, as: UTF8.self).split(separator: "\n")
        try #require(answers.count == cases.count)
        var differ = 0
        for (i, line) in answers.enumerated() {
            let b = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: String]
            #expect(b["stamp"] == SigV4.amzDate(epochSeconds: cases[i].epoch), "case \(i): timestamp")
            if b["canonicalRequest"] != mine[i].canonicalRequest || b["stringToSign"] != mine[i].stringToSign
                || b["authorization"] != mine[i].authorization {
                differ += 1
                if differ <= 3 {
                    Issue.record("case \(i) differs:\nbotocore:\n\(b["canonicalRequest"] ?? "")\n---\nmine:\n\(mine[i].canonicalRequest)\n\(b["authorization"] ?? "")\n\(mine[i].authorization)")
                }
            }
        }
        #expect(differ == 0, "\(differ) of \(cases.count) signatures differ from botocore's")
        // The cases cover what they claim to.
        #expect(cases.contains { $0.credentials.sessionToken != nil } && cases.contains { $0.credentials.sessionToken == nil })
        #expect(cases.contains { $0.request.encodedQuery.contains("%E6%9D%B1") && $0.request.encodedQuery.contains("%2B") })
        #expect(Set(cases.map(\.region)).count == 4 && Set(cases.map { $0.epoch / 86400 }).count > 200)
    }

    /// AWS's published example (IAM ListUsers, from the SigV4 documentation): a known answer
    /// that needs no oracle.
    @Test func awsDocumentationExample() throws {
        let r = SigV4.Request(method: "GET", host: "iam.amazonaws.com", path: "/",
                              query: [("Action", "ListUsers"), ("Version", "2010-05-08")],
                              headers: [("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")])
        let s = try SigV4.sign(r, credentials: AWSCredentials(accessKeyID: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"),
                               region: "us-east-1", service: "iam", amzDate: "20150830T123600Z")
        #expect(s.authorization == "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/iam/aws4_request, SignedHeaders=content-type;host;x-amz-date, Signature=5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7")
    }

    @Test func credentialsNeverPrintTheirSecrets() {
        let c = AWSCredentials(accessKeyID: "AKIAEXAMPLE", secretAccessKey: "very-secret", sessionToken: "token-secret")
        let text = "\(c) \(String(describing: c)) \(String(reflecting: c))"
        #expect(!text.contains("very-secret") && !text.contains("token-secret") && text.contains("AKIAEXAMPLE"), "\(text)")
    }
}
