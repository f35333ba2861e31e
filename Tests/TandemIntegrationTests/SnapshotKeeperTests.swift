import Foundation
import Testing
import TandemAWS

/// Snapshots against moto (SigV4 checked) with a clock the test controls: taken on schedule with
/// Tandem's tags, pruned as configured, and nobody else's snapshot touched; the archive tier
/// and the waits against a scripted stand-in (the installed moto has no archive-tier calls and
/// completes everything at once).
@Suite struct SnapshotKeeperTests {
    @Test func scheduledSnapshotsArePrunedAndOnlyTandemsOwn() async throws {
        let lab = try AWSLab(volumes: "data:1:attach")
        defer { lab.stop() }
        let ec2 = lab.client()
        var policy = SnapshotPolicy()
        policy.everyMinutes = 60
        policy.keepLast = 2
        let vol = lab.volume("data")
        let keeper = SnapshotKeeper(ec2: ec2, resource: "r0", volumeID: vol, policy: policy, extraTags: ["team": "db"])
        let neighbour = SnapshotKeeper(ec2: ec2, resource: "r1", volumeID: vol, policy: policy)
        let operators = try await ec2.createSnapshot(volumeID: vol, description: "the operator's own", tags: [:])
        let r1 = try await neighbour.take(.init(generation: 0x1234, epoch: 1, time: 1_700_000_000, consistency: "crash-consistent"))
        let t0 = 1_800_000_000.0
        var last: Double?
        var taken: [String] = []
        // Five hours in ten-minute steps of the test's clock.
        for minute in stride(from: 0, through: 300, by: 10) {
            let now = t0 + Double(minute) * 60
            guard policy.scheduledDue(now: now, lastScheduled: last) else { continue }
            taken.append(try await keeper.take(.init(generation: 0xABCD_EF00, epoch: UInt32(minute), time: now, consistency: "crash-consistent")).id)
            last = now
            _ = try await keeper.prune(now: now)
        }
        #expect(taken.count == 6, "one an hour over five hours, the first at once: \(taken.count)")
        let kept = try await keeper.list()
        #expect(kept.map(\.id) == Array(taken.suffix(2).reversed()), "\(kept.map(\.id)) of \(taken)")
        let newest = try #require(kept.first)
        #expect(newest.tags["tandem:generation"] == "ABCDEF00" && newest.tags["tandem:epoch"] == "300" && newest.tags["team"] == "db"
                && newest.tags["tandem:time"] == "\(Int(t0) + 300 * 60).000" && newest.tags["tandem:consistency"] == "crash-consistent", "\(newest.tags)")
        // The operator's snapshot and the other resource's are still there.
        let all = Set(try await ec2.describeSnapshots().map(\.id))
        #expect(all.contains(operators.id) && all.contains(r1.id), "pruning touched a snapshot Tandem did not take for r0")
    }

    @Test func olderSnapshotsGoToTheArchiveTier() async throws {
        let t0 = 1_800_000_000
        func item(_ id: String, _ t: Int, _ tier: String) -> String {
            "<item><snapshotId>\(id)</snapshotId><volumeId>vol-1</volumeId><status>completed</status><storageTier>\(tier)</storageTier><tagSet><item><key>tandem:resource</key><value>r0</value></item><item><key>tandem:time</key><value>\(t)</value></item></tagSet></item>"
        }
        let list = "<DescribeSnapshotsResponse><snapshotSet>\(item("snap-a", t0, "standard"))\(item("snap-b", t0 - 5 * 86400, "standard"))\(item("snap-c", t0 - 10 * 86400, "archive"))\(item("snap-d", t0 - 9 * 86400, "standard"))</snapshotSet></DescribeSnapshotsResponse>"
        let ok = HTTPExchange.Response(status: 200, body: Array("<Ok/>".utf8))
        let script = ScriptedTransport([.success(.init(status: 200, body: Array(list.utf8))), .success(ok), .success(ok)])
        let ec2 = EC2Client(region: "us-east-1", http: script, credentials: { AWSCredentials(accessKeyID: "AK", secretAccessKey: "S") })
        var policy = SnapshotPolicy()
        policy.archiveAfterDays = 3
        let keeper = SnapshotKeeper(ec2: ec2, resource: "r0", volumeID: "vol-1", policy: policy)
        let r = try await keeper.prune(now: Double(t0))
        #expect(r.deleted.isEmpty && r.archived == ["snap-b", "snap-d"], "\(r)")
        let bodies = script.sent.map { String(decoding: $0.body, as: UTF8.self) }
        #expect(bodies.count == 3 && bodies[1].contains("Action=ModifySnapshotTier") && bodies[1].contains("SnapshotId=snap-b")
                && bodies[1].contains("StorageTier=archive") && bodies[2].contains("SnapshotId=snap-d"), "\(bodies)")
    }

    @Test func waitsFollowPendingStatesAndFailFastOnBadOnes() async throws {
        func volume(_ state: String) -> Result<HTTPExchange.Response, Error> {
            .success(.init(status: 200, body: Array("<DescribeVolumesResponse><volumeSet><item><volumeId>vol-1</volumeId><size>1</size><status>\(state)</status><attachmentSet/></item></volumeSet></DescribeVolumesResponse>".utf8)))
        }
        let clock = Clock()
        func client(_ script: ScriptedTransport) -> EC2Client {
            EC2Client(region: "us-east-1", http: script, credentials: { AWSCredentials(accessKeyID: "AK", secretAccessKey: "S") },
                      now: { clock.now }, sleep: { clock.now += $0 })
        }
        // creating, creating, available: done after waiting 1 + 2 s of the test's clock.
        let pending = ScriptedTransport([volume("creating"), volume("creating"), volume("available")])
        try await client(pending).waitUntilAvailable("vol-1", wait: EBSWait(limitSeconds: 60))
        #expect(pending.sent.count == 3 && clock.now == 3)
        // error: at once, without waiting.
        clock.now = 0
        let broken = ScriptedTransport([volume("creating"), volume("error")])
        await #expect(throws: EBSWait.Failure.unexpectedState("volume vol-1", "error", wanted: "available")) {
            try await client(broken).waitUntilAvailable("vol-1", wait: EBSWait(limitSeconds: 60))
        }
        #expect(clock.now == 1)
        // Never available: the limit ends it.
        clock.now = 0
        let stuck = ScriptedTransport(Array(repeating: volume("creating"), count: 20))
        await #expect { try await client(stuck).waitUntilAvailable("vol-1", wait: EBSWait(limitSeconds: 10)) } throws: { e in
            if case .timedOut(_, "creating", _, _) = e as? EBSWait.Failure { return true }
            return false
        }
        #expect(clock.now <= 10)
    }

    final class Clock: @unchecked Sendable { var now = 0.0 }
}
