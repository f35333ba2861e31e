import Foundation
import Testing
import TandemAWS

/// A stand-in AWS account for one test: moto_server on 127.0.0.1 as the EC2 API (with SigV4
/// checking turned on, so a wrong signature fails), set up by moto-setup.py (an IAM user and
/// key, a role's temporary credentials, an instance and volumes), and an IMDSv2 stand-in that
/// names that instance and serves the role's credentials. Every process is stopped at `stop`.
final class AWSLab {
    let motoPort: Int, imdsPort: Int
    var endpoint: String { "http://127.0.0.1:\(motoPort)" }
    var imdsEndpoint: String { "http://127.0.0.1:\(imdsPort)" }
    let setup: [String: Any]
    var processes: [Process] = []
    let dir: String

    var accessKey: String { setup["accessKey"] as! String }
    var secretKey: String { setup["secretKey"] as! String }
    var instance: String { setup["instance"] as! String }
    var otherInstance: String { setup["otherInstance"] as! String }
    var rootVolume: String { setup["rootVolume"] as! String }
    func volume(_ name: String) -> String { (setup["volumes"] as! [String: String])[name]! }
    var credentials: AWSCredentials { AWSCredentials(accessKeyID: accessKey, secretAccessKey: secretKey) }

    /// `volumes`: NAME:SIZE_GIB[:attach|:other], as moto-setup.py takes them. `mapping`: the
    /// IMDS block-device mapping (name to device). `imds`: false leaves IMDS down.
    init(volumes: String, mapping: [String: String] = [:], imds: Bool = true) throws {
        dir = NSTemporaryDirectory() + "tandem-aws-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let base = Cluster.reservePorts()
        motoPort = base
        imdsPort = base + 1
        processes.append(try Self.spawn("/usr/bin/env", ["python3", "-m", "moto.server", "-H", "127.0.0.1", "-p", "\(motoPort)"], log: dir + "/moto.log"))
        do { try Self.waitForPort(motoPort, what: "moto_server", log: dir + "/moto.log") } catch {
            for p in processes { kill(p.processIdentifier, SIGKILL) }
            throw error
        }
        let r = try Tools.run("/usr/bin/env", ["python3", Tools.helpers + "/moto-setup.py", "http://127.0.0.1:\(motoPort)", volumes])
        guard r.status == 0, let o = try? JSONSerialization.jsonObject(with: Data(r.out.utf8)) as? [String: Any] else {
            for p in processes { kill(p.processIdentifier, SIGKILL) }
            throw TestFailure("moto-setup.py: \(r.err)")
        }
        setup = o
        // SigV4 checking on from here (moto's reset-auth): only the IAM user's key signs.
        let auth = try Tools.run("/usr/bin/curl", ["-sf", "-X", "POST", "-H", "Content-Type: text/plain", "--data-binary", "0",
                                                   "http://127.0.0.1:\(motoPort)/moto-api/reset-auth"])
        guard auth.status == 0 else { stop(); throw TestFailure("moto reset-auth: \(auth.err)") }
        if imds {
            do {
                let config: [String: Any] = ["instance": o["instance"]!, "region": "us-east-1", "zone": "us-east-1a",
                                             "role": o["role"]!, "mapping": mapping]
                let path = dir + "/imds.json"
                try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: path))
                processes.append(try Self.spawn("/usr/bin/env", ["python3", Tools.helpers + "/imds-standin.py", "\(imdsPort)", path], log: dir + "/imds.log"))
                try Self.waitForPort(imdsPort, what: "the IMDS stand-in", log: dir + "/imds.log")
            } catch {
                stop()  // nothing of a lab that failed to start keeps running
                throw error
            }
        }
    }

    func stop() {
        // SIGKILL: a child of a test thread inherits its blocked signals, SIGTERM among them.
        for p in processes where p.isRunning { kill(p.processIdentifier, SIGKILL); p.waitUntilExit() }
        processes.removeAll()
        try? FileManager.default.removeItem(atPath: dir)
    }

    /// An EC2 client signing with the IAM user's key (or `credentials`).
    func client(credentials: AWSCredentials? = nil) -> EC2Client {
        let c = credentials ?? self.credentials
        return EC2Client(region: "us-east-1", endpoint: endpoint, credentials: { c })
    }

    static func spawn(_ exe: String, _ args: [String], log: String) throws -> Process {
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        let f = FileHandle(forWritingAtPath: log)!
        p.standardOutput = f
        p.standardError = f
        p.standardInput = FileHandle.nullDevice
        try p.run()
        return p
    }

    static func waitForPort(_ port: Int, what: String, log: String) throws {
        let deadline = Date().addingTimeInterval(30)
        while Cluster.portIsFree(port) {
            guard Date() < deadline else {
                throw TestFailure("\(what) did not listen on \(port): \((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
            }
            usleep(100_000)
        }
    }
}
