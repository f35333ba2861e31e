import Foundation
import Testing
import TandemAWS

/// The EBS target (`disk ebs:vol-...;`) against moto_server as EC2 (SigV4 checked) and the
/// IMDSv2 stand-in as the instance, each volume a loop device found through a by-id tree the
/// test builds as udev would on a Nitro instance.
@Suite(.serialized) struct EBSTargetTests {
    /// The lab, and a loop device per volume linked as /dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_volXXXX.
    final class Volumes {
        let lab: AWSLab
        var loops: [String: (device: String, file: String)] = [:]
        let devRoot: String

        init(_ spec: [(name: String, gib: Int, how: String)]) throws {
            lab = try AWSLab(volumes: spec.map { "\($0.name):\($0.gib)\($0.how.isEmpty ? "" : ":" + $0.how)" }.joined(separator: ","))
            devRoot = lab.dir + "/dev"
            do {
                try FileManager.default.createDirectory(atPath: devRoot + "/disk/by-id", withIntermediateDirectories: true)
                for v in spec + [(name: "root", gib: 8, how: "")] {
                    let loop = try Tools.loopDevice(v.gib << 30)
                    loops[v.name] = loop
                    let id = v.name == "root" ? lab.rootVolume : lab.volume(v.name)
                    try FileManager.default.createSymbolicLink(atPath: devRoot + "/disk/by-id/nvme-Amazon_Elastic_Block_Store_" + id.replacingOccurrences(of: "-", with: ""),
                                                               withDestinationPath: loop.device)
                }
            } catch {
                stop()  // no loop device or server outlives a failed set-up
                throw error
            }
        }

        func stop() {
            for l in loops.values { Tools.detach(l) }
            lab.stop()
        }

        /// beta's `ebs` section.
        func section() -> String {
            "ebs { region us-east-1; endpoint \"\(lab.endpoint)\"; imds-endpoint \"\(lab.imdsEndpoint)\"; device-root \"\(devRoot)\"; tags \"team=db,env=test\"; }"
        }

        /// sha256 of the first and last 4 MiB of a volume's loop device (where data and meta-data would land).
        func ends(_ name: String) throws -> String {
            let l = loops[name]!
            let r = try Tools.run("/bin/sh", ["-c", "(head -c 4194304 \(l.device); tail -c 4194304 \(l.device)) | sha256sum"])
            return String(r.out.prefix(64))
        }
    }

    /// A real two-daemon replication whose secondary's disk is `ebs:vol-...`: found by id,
    /// checked, and byte-identical to the primary at the end.
    @Test func replicatesToAVolumeNamedByID() throws {
        let v = try Volumes([("data", 1, "attach")])
        defer { v.stop() }
        let c = try Cluster(.init(size: 256 << 20, disk: "c-max-rate 400M; resync-rate 400M; c-plan-ahead 0;",
                                  betaDevice: "ebs:" + v.lab.volume("data"), betaHostExtra: v.section()))
        defer { c.shutdown() }
        try c.start()
        try #require(try Tools.run("/usr/bin/qemu-io", ["-f", "raw", "-c", "write -P 0x6b 1M 8M", "-c", "write -P 0x21 200M 3M", c.uri("alpha")]).status == 0)
        try c.waitInSync()
        let size = try c.status("beta")["size-kib"] as? Int ?? 0
        #expect(size == (try c.status("alpha")["data-area-kib"] as? Int), "the volume (1 GiB) takes the primary's size")
        let a = try Tools.run("/bin/sh", ["-c", "head -c \(size * 1024) \(c.disk("alpha")) | sha256sum"]).out.prefix(64)
        let b = try Tools.run("/bin/sh", ["-c", "head -c \(size * 1024) \(v.loops["data"]!.device) | sha256sum"]).out.prefix(64)
        #expect(a == b, "the EBS volume's loop device differs from the primary")
        #expect(c.log("beta").contains("disk \(v.loops["data"]!.device)"), "\(c.log("beta").prefix(1500))")
        // `dump` prints the ebs section back.
        let dump = try c.tandem("beta", "dump", "r0")
        #expect(dump.out.contains("disk") && dump.out.contains("ebs:" + v.lab.volume("data")) && dump.out.contains("ebs {")
                && dump.out.contains("imds-endpoint"), "\(dump.out)")
    }

    /// A volume that does not exist, is attached to another instance, is not attached, is the
    /// root volume, or an instance whose metadata cannot be read: one clear line from both
    /// create-md and up, and no volume's device written.
    @Test func refusalsWriteNothing() throws {
        let v = try Volumes([("data", 1, "attach"), ("elsewhere", 1, "other"), ("loose", 1, "")])
        defer { v.stop() }
        let c = try Cluster(.init(size: 64 << 20, betaDevice: "ebs:" + v.lab.volume("data"), betaHostExtra: v.section(), createMetaData: false))
        defer { c.shutdown() }
        let closed = Cluster.reservePorts()
        let cases: [(id: String, imds: String?, expect: String)] = [
            ("vol-0123456789abcdef0", nil, "vol-0123456789abcdef0 does not exist in us-east-1"),
            (v.lab.volume("elsewhere"), nil, "is attached to \(v.lab.otherInstance)"),
            (v.lab.volume("loose"), nil, "is not attached to this instance \(v.lab.instance)"),
            (v.lab.rootVolume, nil, "is the root volume of this instance"),
            (v.lab.volume("data"), "http://127.0.0.1:\(closed)", "cannot tell which instance this is"),
            ("vol-12", nil, "'vol-12' is not an EBS volume id"),
        ]
        let conf = "\(c.dir)/beta.conf"
        let original = try String(contentsOfFile: conf, encoding: .utf8)
        var hashes: [String: String] = [:]
        for name in v.loops.keys { hashes[name] = try v.ends(name) }
        for k in cases {
            var text = original.replacingOccurrences(of: "ebs:" + v.lab.volume("data"), with: "ebs:" + k.id)
            if let i = k.imds { text = text.replacingOccurrences(of: v.lab.imdsEndpoint, with: i) }
            try text.write(toFile: conf, atomically: true, encoding: .utf8)
            for verb in ["create-md", "up"] {
                let r = verb == "up" ? try c.tandem("beta", "up", "r0") : try c.tandem("beta", "create-md", "--force", "r0")
                #expect(r.status != 0 && r.err.contains(k.expect), "\(verb) \(k.id): \(r.status) \(r.err)")
                #expect(r.err.split(separator: "\n").count == 1, "more than one line: \(r.err)")
            }
        }
        for (name, h) in hashes { #expect(try v.ends(name) == h, "\(name)'s device was written") }
        // The secret of the credentials appears nowhere.
        #expect(!c.log("beta").contains(v.lab.secretKey))
    }

    /// The EBS writer: 4 KiB writes in flight together reach the volume as fewer, larger I/Os
    /// (merged per batch, up to 256 KiB), through a descriptor opened with O_DIRECT, with
    /// overlapping writes applied as their order says; the volume ends byte-identical.
    @Test func writesReachTheVolumeMergedAndDirect() throws {
        let v = try Volumes([("data", 1, "attach")])
        defer { v.stop() }
        let c = try Cluster(.init(size: 64 << 20, betaDevice: "ebs:" + v.lab.volume("data"), betaHostExtra: v.section()))
        defer { c.shutdown() }
        try c.start()
        func counts() throws -> (writes: Int, ios: Int) {
            let s = try c.status("beta")
            return (s["disk-writes"] as? Int ?? -1, s["disk-write-ios"] as? Int ?? -1)
        }
        let before = try counts()
        try #require(before.writes >= 0, "no disk-writes in beta's status")
        // 1024 4 KiB writes at consecutive offsets, all in flight at once; then 256 that
        // overwrite every other one of the first 512.
        let offsets = (0..<1024).map { "\($0 * 4096 + (8 << 20))" } + (0..<256).map { "\($0 * 8192 + (8 << 20))" }
        let r = try Tools.run("/usr/bin/python3", [Tools.helpers + "/aio-writes.py", c.uri("alpha"), "60"] + offsets)
        #expect(r.status == 0 && r.out.contains("\"failed\": []"), "\(r.out.suffix(300)) \(r.err)")
        try c.waitInSync()
        let after = try counts()
        let writes = after.writes - before.writes, ios = after.ios - before.ios
        #expect(writes >= 1280 && ios > 0 && ios * 2 <= writes, "\(writes) writes took \(ios) I/Os: not merged")
        let bytes = try #require(try c.status("alpha")["size-kib"] as? Int) * 1024
        let beta = String(try Tools.run("/bin/sh", ["-c", "head -c \(bytes) \(v.loops["data"]!.device) | sha256sum"]).out.prefix(64))
        #expect(beta == (try c.dataHash("alpha", bytes: bytes)), "the volume differs from the primary")
        // The daemon writes the volume through a descriptor with O_DIRECT (octal 040000).
        let pid = try #require(c.pid("beta"))
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []
        let direct = fds.contains { fd in
            guard (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(fd)")) == v.loops["data"]!.device,
                  let info = try? String(contentsOfFile: "/proc/\(pid)/fdinfo/\(fd)", encoding: .utf8),
                  let line = info.split(separator: "\n").first(where: { $0.hasPrefix("flags:") }),
                  let flags = Int(line.split(separator: "\t").last ?? "", radix: 8) else { return false }
            return flags & 0o40000 != 0
        }
        #expect(direct, "no O_DIRECT descriptor on \(v.loops["data"]!.device)")
    }

    /// A volume smaller than the data the primary holds: the primary refuses it with the sizes
    /// (as DRBD: "the peer's disk is too small"), and no data reaches the volume.
    @Test func aVolumeSmallerThanThePrimarysDataIsRefused() throws {
        let v = try Volumes([("data", 1, "attach")])
        defer { v.stop() }
        let c = try Cluster(.init(size: (1 << 30) + (256 << 20), startup: "wfc-timeout 10;",
                                  betaDevice: "ebs:" + v.lab.volume("data"), betaHostExtra: v.section()))
        defer { c.shutdown() }
        try c.up("alpha")
        try c.tandem("alpha", "primary", "--force", "r0").checked()
        try #require(try Tools.run("/usr/bin/qemu-io", ["-f", "raw", "-c", "write -P 0x6b 0 4M", c.uri("alpha")]).status == 0)
        let before = try Tools.run("/bin/sh", ["-c", "head -c 1073741824 \(v.loops["data"]!.device) | tail -c 1072693248 | head -c 268435456 | sha256sum; head -c 16777216 \(v.loops["data"]!.device) | sha256sum"]).out
        try c.up("beta")
        try c.wait("alpha", timeout: 30, "refused") { s in
            (s["last-error"] as? String ?? "").contains("the peer's disk is too small") && s["connection"] as? String == "StandAlone"
        }
        let after = try Tools.run("/bin/sh", ["-c", "head -c 1073741824 \(v.loops["data"]!.device) | tail -c 1072693248 | head -c 268435456 | sha256sum; head -c 16777216 \(v.loops["data"]!.device) | sha256sum"]).out
        #expect(before == after, "data reached the volume")
        #expect(try c.status("beta")["resync-data-kib"] as? Int == 0)
    }
}
