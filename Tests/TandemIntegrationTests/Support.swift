import Foundation
import Testing

/// Runs real programs for the integration tests.
enum Tools {
    static let packageRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    static var tandem: String {
        ProcessInfo.processInfo.environment["TANDEM_BIN"] ?? packageRoot + "/.build/debug/tandem"
    }

    static let fixtures = packageRoot + "/Tests/TandemIntegrationTests/Fixtures"
    static let helpers = packageRoot + "/Tests/TandemIntegrationTests/Helpers"

    struct Result { var status: Int32; var out: String; var err: String }

    @discardableResult
    static func run(_ exe: String, _ args: [String], env: [String: String] = [:]) throws -> Result {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: exe)
        p.arguments = args
        var environment = ProcessInfo.processInfo.environment
        for (k, v) in env { environment[k] = v }
        p.environment = environment
        let out = Pipe(), err = Pipe()
        p.standardOutput = out
        p.standardError = err
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let o = out.fileHandleForReading.readDataToEndOfFile()
        let e = err.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return Result(status: p.terminationStatus, out: String(decoding: o, as: UTF8.self), err: String(decoding: e, as: UTF8.self))
    }

    /// Python that clears the signal mask and executes argv[1:] (a test thread blocks some
    /// signals, and a child inherits the mask: PostgreSQL's backends then never wake).
    static let clearSignalMask = "import os, signal, sys; signal.pthread_sigmask(signal.SIG_SETMASK, []); os.execv(sys.argv[1], sys.argv[1:])"

    /// `run` with no signals blocked in the program, no descriptor but 0-2 open in it, and its
    /// output (both streams) through a file: a daemon it starts (PostgreSQL) inherits them, and
    /// a pipe (or Foundation's own descriptor) held open by it would hold the wait as long as
    /// the daemon lives.
    @discardableResult
    static func runUnmasked(_ exe: String, _ args: [String]) throws -> Result {
        let path = NSTemporaryDirectory() + "tandem-out-\(UUID().uuidString.prefix(8))"
        FileManager.default.createFile(atPath: path, contents: nil)
        defer { try? FileManager.default.removeItem(atPath: path) }
        guard let file = FileHandle(forWritingAtPath: path) else { throw TestFailure("cannot write \(path)") }
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        p.arguments = ["-c", clearSignalMask.replacingOccurrences(of: "os.execv", with: "os.closerange(3, 65536); os.execv"), exe] + args
        p.standardOutput = file
        p.standardError = file
        p.standardInput = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        try file.close()
        let out = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        return Result(status: p.terminationStatus, out: out, err: out)
    }

    /// Starts a long-running program with no signals blocked (test threads block some, and a
    /// child inherits the mask), so it can be stopped with SIGTERM.
    static func spawn(_ exe: String, _ args: [String], env: [String: String] = [:], output: FileHandle = .nullDevice) throws -> Process {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/python3")
        p.arguments = ["-c", clearSignalMask, exe] + args
        var environment = ProcessInfo.processInfo.environment
        for (k, v) in env { environment[k] = v }
        p.environment = environment
        p.standardOutput = output
        p.standardError = output
        p.standardInput = FileHandle.nullDevice
        try p.run()
        return p
    }

    /// `call` (bind or connect) of socket `fd` with the Unix socket address `path`.
    static func unixSocket(_ fd: Int32, _ path: String, _ call: (Int32, UnsafePointer<sockaddr>, socklen_t) -> Int32) -> Int32 {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        withUnsafeMutableBytes(of: &addr.sun_path) { p in for (i, b) in path.utf8.prefix(p.count - 1).enumerated() { p[i] = b } }
        return withUnsafePointer(to: &addr) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { call(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) } }
    }

    /// Resident memory of a process in KiB; throws when it cannot be read (never a passing 0).
    static func rssKiB(_ pid: Int32) throws -> Int {
        let s = try String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)
        guard let line = s.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
              let kib = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") else {
            throw TestFailure("no VmRSS in /proc/\(pid)/status")
        }
        return kib
    }

    static func drbdmeta(_ disk: String, _ args: String...) throws -> Result {
        try run("/usr/sbin/drbdmeta", ["--force", "0", "v08", disk, "internal"] + args)
    }

    static func tandem(_ args: String...) throws -> Result { try run(tandem, args) }

    /// A sparse file of `size` bytes.
    static func sparseFile(_ size: Int) -> String {
        let path = NSTemporaryDirectory() + "tandem-it-\(UUID().uuidString).img"
        FileManager.default.createFile(atPath: path, contents: nil)
        truncate(path, off_t(size))
        return path
    }

    /// A loop device over a new sparse file; call `detach` when done.
    static func loopDevice(_ size: Int) throws -> (device: String, file: String) {
        let file = sparseFile(size)
        let r = try run("/usr/sbin/losetup", ["-f", "--show", file])
        guard r.status == 0 else { throw TestFailure("losetup failed: \(r.err)") }
        return (r.out.trimmingCharacters(in: .whitespacesAndNewlines), file)
    }

    static func detach(_ loop: (device: String, file: String)) {
        _ = try? run("/usr/sbin/losetup", ["-d", loop.device])
        unlink(loop.file)
    }

    /// A resource file naming `disk` for node alpha.
    static func config(disk: String, device: String = "/dev/drbd0") -> String {
        let path = NSTemporaryDirectory() + "tandem-it-\(UUID().uuidString).conf"
        let text = """
            resource r0 {
              on alpha { device \(device); disk \(disk); address 127.0.0.1:7789; meta-disk internal; }
              on beta { device /dev/drbd0; disk /tmp/peer.img; address 127.0.0.2:7789; meta-disk internal; }
            }
            """
        FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
        return path
    }

    /// Dump lines that must agree between drbdmeta and Tandem: comments aside, and the v08
    /// `flags` line aside (drbdmeta 9.22 prints 0 there whatever the disk holds).
    static func comparable(_ dump: String) -> [String] {
        dump.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            .filter { line in
                let trimmed = line.trimmingCharacters(in: .whitespaces)
                // Top-level comments, indented ones (`   # at NkB` in the bitmap), and the flags line.
                return !trimmed.hasPrefix("#") && !trimmed.hasPrefix("flags 0x")
            }
    }
}

/// A disk made of nbdkit's memory plugin behind filters (error, delay), exposed as a file by
/// nbdfuse with a loop device on it: a block device that fails or is slow on demand.
final class FilteredDisk {
    let work: String
    let device: String
    private let kit: Process
    private let fuse: Process

    /// `arguments`: nbdkit's filters and the memory plugin's size and the filters' parameters,
    /// e.g. ["--filter=delay", "memory", "256M", "delay-write=20ms"].
    init(_ arguments: [String]) throws {
        work = NSTemporaryDirectory() + "tandem-disk-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: work + "/mnt", withIntermediateDirectories: true)
        kit = try Tools.spawn("/usr/bin/nbdkit", ["-f", "--unix", work + "/sock"] + arguments)
        for _ in 0..<50 where !FileManager.default.fileExists(atPath: work + "/sock") { usleep(100_000) }
        fuse = try Tools.spawn("/usr/bin/nbdfuse", [work + "/mnt/disk", "nbd+unix:///?socket=\(work)/sock"])
        for _ in 0..<50 where !FileManager.default.fileExists(atPath: work + "/mnt/disk") { usleep(100_000) }
        let l = try Tools.run("/usr/sbin/losetup", ["-f", "--show", work + "/mnt/disk"])
        guard l.status == 0 else { kit.terminate(); fuse.terminate(); throw TestFailure("losetup: \(l.err)") }
        device = l.out.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Detaches the loop device, unmounts, stops nbdkit.
    func remove() {
        _ = try? Tools.run("/usr/sbin/losetup", ["-d", device])
        _ = try? Tools.run("/usr/bin/umount", [work + "/mnt"])
        if fuse.isRunning { fuse.terminate() }
        if kit.isRunning { kit.terminate() }
        try? FileManager.default.removeItem(atPath: work)
    }
}

/// A program whose standard output the test reads line by line while it runs.
final class PipedProcess {
    let process = Process()
    private let out = Pipe()
    private var buffered = Data()

    init(_ exe: String, _ args: [String]) throws {
        process.executableURL = URL(fileURLWithPath: exe)
        process.arguments = args
        process.standardOutput = out
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
    }

    /// The next line, or nil at the end of its output.
    func line() -> String? {
        while true {
            if let i = buffered.firstIndex(of: 0x0A) {
                let l = String(decoding: buffered[buffered.startIndex..<i], as: UTF8.self)
                buffered = Data(buffered[(i + 1)...])
                return l
            }
            let d = out.fileHandleForReading.availableData
            if d.isEmpty { return buffered.isEmpty ? nil : String(decoding: buffered, as: UTF8.self) }
            buffered += d
        }
    }
}

struct TestFailure: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

extension Tools.Result {
    /// This result, or a failure with what the command printed unless it exited 0.
    @discardableResult func checked() throws -> Tools.Result {
        guard status == 0 else { throw TestFailure("exit \(status): \(err.isEmpty ? out : err)") }
        return self
    }
}
