import Foundation
import Testing
import TandemAWS

/// The EC2 client, IMDSv2 and the credential chain against moto_server with SigV4 checking on
/// and the IMDSv2 stand-in; retries against a scripted transport (moto never throttles).
@Suite struct EC2ClientTests {
    @Test func signedCallsReachMotoAndErrorsKeepTheirCodes() async throws {
        let lab = try AWSLab(volumes: "data:2:attach,spare:1")
        defer { lab.stop() }
        let ec2 = lab.client()
        let vols = try await ec2.describeVolumes(ids: [lab.volume("data")])
        try #require(vols.count == 1)
        #expect(vols[0].sizeGiB == 2 && vols[0].state == "in-use" && vols[0].availabilityZone == "us-east-1a")
        #expect(vols[0].attachments.map(\.instanceID) == [lab.instance] && vols[0].attachments.first?.device == "/dev/sdf")
        #expect(try await ec2.describeVolumes(ids: [lab.volume("spare")]).first?.attachments.isEmpty == true)
        let inst = try await ec2.describeInstance(id: lab.instance)
        #expect(inst.availabilityZone == "us-east-1a" && inst.blockDevices[inst.rootDeviceName] == lab.rootVolume, "\(inst)")
        // A wrong secret is refused by moto's signature check: the signature is what it checks.
        let wrong = lab.client(credentials: AWSCredentials(accessKeyID: lab.accessKey, secretAccessKey: lab.secretKey + "x"))
        await #expect { _ = try await wrong.describeVolumes(ids: [lab.volume("data")]) } throws: { ($0 as? AWSError)?.code == "AuthFailure" }
        await #expect { _ = try await ec2.describeVolumes(ids: ["vol-0123456789abcdef0"]) } throws: {
            ($0 as? AWSError)?.code == "InvalidVolume.NotFound"
        }
        // Tags and snapshots round-trip.
        let snap = try await ec2.createSnapshot(volumeID: lab.volume("data"), description: "t", tags: ["tandem:resource": "r0", "k": "v w"])
        let found = try await ec2.describeSnapshots(tag: ("tandem:resource", "r0"))
        #expect(found.map(\.id) == [snap.id] && found.first?.tags["k"] == "v w" && found.first?.volumeID == lab.volume("data"))
        try await ec2.deleteSnapshot(id: snap.id)
        #expect(try await ec2.describeSnapshots(tag: ("tandem:resource", "r0")).isEmpty)
    }

    @Test func credentialsComeFromTheEnvironmentTheSharedFileOrTheInstanceRole() async throws {
        let lab = try AWSLab(volumes: "data:1:attach")
        defer { lab.stop() }
        let imds = InstanceMetadata(endpoint: lab.imdsEndpoint)
        let env = try await CredentialChain(environment: ["AWS_ACCESS_KEY_ID": "AKENV", "AWS_SECRET_ACCESS_KEY": "s"], metadata: imds).credentials()
        #expect(env.accessKeyID == "AKENV" && env.sessionToken == nil)
        let file = lab.dir + "/credentials"
        try "[default]\naws_access_key_id = AKDEF\naws_secret_access_key = d\n\n[backup]\naws_access_key_id=\(lab.accessKey)\naws_secret_access_key = \(lab.secretKey)\n"
            .write(toFile: file, atomically: true, encoding: .utf8)
        let shared = try await CredentialChain(environment: ["AWS_SHARED_CREDENTIALS_FILE": file, "AWS_PROFILE": "backup"], metadata: imds).credentials()
        #expect(shared == lab.credentials)
        // Nothing in the environment or a file: the instance role through IMDSv2, and moto
        // (checking signatures) takes a call signed with those temporary credentials.
        let clock = Clock()
        let chain = CredentialChain(environment: ["HOME": lab.dir + "/nowhere"], metadata: imds, now: { clock.now })
        let role = try await chain.credentials()
        #expect(role.sessionToken != nil && role.accessKeyID == (lab.setup["role"] as! [String: String])["AccessKeyId"])
        let viaRole = EC2Client(region: "us-east-1", endpoint: lab.endpoint, credentials: { try await chain.credentials() })
        #expect(try await viaRole.describeVolumes(ids: [lab.volume("data")]).count == 1)
        // Cached until five minutes before they expire, then fetched again.
        let served = try Self.imdsCount(lab)
        _ = try await chain.credentials()
        #expect(try Self.imdsCount(lab) == served, "fetched again long before expiry")
        clock.now = try #require(role.expiration) - 200
        _ = try await chain.credentials()
        #expect(try Self.imdsCount(lab) > served, "not fetched again 200 s before expiry")
        // Who and where the instance is.
        let id = try await imds.identity()
        #expect(id == InstanceMetadata.Identity(instanceID: lab.instance, region: "us-east-1", availabilityZone: "us-east-1a"))
        // No secret in any description.
        #expect(!"\(role)".contains(role.secretAccessKey) && !"\(role)".contains(role.sessionToken!))
    }

    /// No IMDS at the address: a clear error naming it (each call has a 2 s limit; the time is
    /// not asserted: in the parallel suite a test's continuation can wait minutes for a thread).
    @Test func anUnreachableMetadataServiceIsAClearError() async throws {
        let port = Cluster.reservePorts()
        let imds = InstanceMetadata(endpoint: "http://127.0.0.1:\(port)")
        await #expect { _ = try await imds.identity() } throws: { e in
            guard case .unreachable = e as? InstanceMetadata.Failure else { return false }
            return "\(e)".contains("127.0.0.1:\(port)") && "\(e)".contains("unreachable")
        }
    }

    @Test func throttlingAndServerErrorsAreRetriedWithJitterOthersAreNot() async throws {
        let throttled = HTTPExchange.Response(status: 503, body: Array("<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>slow down</Message></Error></Errors><RequestID>r1</RequestID></Response>".utf8))
        let ok = HTTPExchange.Response(status: 200, body: Array("<DescribeVolumesResponse><volumeSet/></DescribeVolumesResponse>".utf8))
        let bad = HTTPExchange.Response(status: 400, body: Array("<Response><Errors><Error><Code>InvalidParameterValue</Code><Message>no</Message></Error></Errors></Response>".utf8))
        let script = ScriptedTransport([.success(throttled), .success(throttled), .failure(TestFailure("connection reset")), .success(ok)])
        let sleeps = Recorder()
        let ec2 = EC2Client(region: "us-east-1", endpoint: "https://ec2.us-east-1.amazonaws.com", http: script,
                            credentials: { AWSCredentials(accessKeyID: "AK", secretAccessKey: "S") },
                            sleep: { sleeps.add($0) })
        #expect(try await ec2.describeVolumes(ids: []).isEmpty)
        #expect(script.sent.count == 4)
        let s = sleeps.values
        #expect(s.count == 3 && zip(s, [0.2, 0.4, 0.8]).allSatisfy { $0 >= 0 && $0 <= $1 }, "\(s)")
        #expect(script.sent.allSatisfy { r in r.headers.contains { $0.0 == "Authorization" && $0.1.hasPrefix("AWS4-HMAC-SHA256 Credential=AK/") } })
        // A client error is not retried; the code and request id reach the caller.
        let once = ScriptedTransport([.success(bad)])
        let ec2b = EC2Client(region: "us-east-1", http: once, credentials: { AWSCredentials(accessKeyID: "AK", secretAccessKey: "S") },
                             sleep: { _ in Issue.record("slept before a non-retryable error") })
        await #expect { _ = try await ec2b.describeVolumes(ids: []) } throws: { ($0 as? AWSError)?.code == "InvalidParameterValue" }
        #expect(once.sent.count == 1)
        // Throttled every time: it gives up after the policy's attempts.
        let always = ScriptedTransport(Array(repeating: .success(throttled), count: 10))
        var policy = RetryPolicy()
        policy.attempts = 4
        let ec2c = EC2Client(region: "us-east-1", http: always, credentials: { AWSCredentials(accessKeyID: "AK", secretAccessKey: "S") },
                             retry: policy, sleep: { _ in })
        await #expect { _ = try await ec2c.describeVolumes(ids: []) } throws: { ($0 as? AWSError)?.code == "RequestLimitExceeded" }
        #expect(always.sent.count == 4)
    }

    static func imdsCount(_ lab: AWSLab) throws -> Int {
        Int(try Tools.run("/usr/bin/curl", ["-sf", lab.imdsEndpoint + "/count"]).out) ?? -1
    }

    final class Clock: @unchecked Sendable { var now = Date().timeIntervalSince1970 }

    final class Recorder: @unchecked Sendable {
        let lock = NSLock()
        var list: [Double] = []
        func add(_ v: Double) { lock.withLock { list.append(v) } }
        var values: [Double] { lock.withLock { list } }
    }
}

/// A transport that answers from a script, in order, and keeps what was sent.
final class ScriptedTransport: HTTPTransport, @unchecked Sendable {
    let lock = NSLock()
    var script: [Result<HTTPExchange.Response, Error>]
    var sent: [HTTPExchange.Request] = []
    init(_ script: [Result<HTTPExchange.Response, Error>]) { self.script = script }
    func send(_ request: HTTPExchange.Request, timeoutSeconds: Int64) async throws -> HTTPExchange.Response {
        let next: Result<HTTPExchange.Response, Error> = lock.withLock {
            sent.append(request)
            return script.isEmpty ? .failure(TestFailure("script exhausted")) : script.removeFirst()
        }
        return try next.get()
    }
}
