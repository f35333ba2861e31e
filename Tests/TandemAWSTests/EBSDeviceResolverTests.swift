import Foundation
import Testing
@testable import TandemAWS

/// Finding a volume's device by its id in a /dev and /sys tree the test builds: the by-id link,
/// the NVMe serial scan (never the enumeration order), and Xen's renamed devices.
@Suite struct EBSDeviceResolverTests {
    let root = NSTemporaryDirectory() + "ebs-tree-\(UUID().uuidString.prefix(8))"
    let id = "vol-0123456789abcdef0"

    func file(_ path: String, _ text: String = "") throws {
        let full = root + "/" + path
        try FileManager.default.createDirectory(atPath: (full as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        try text.write(toFile: full, atomically: true, encoding: .utf8)
    }

    var resolver: EBSDeviceResolver { EBSDeviceResolver(deviceRoot: root + "/dev", sysfsRoot: root + "/sys") }

    @Test func theByIDLinkWins() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        try file("dev/nvme4n1")
        try FileManager.default.createDirectory(atPath: root + "/dev/disk/by-id", withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: root + "/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0123456789abcdef0",
                                                   withDestinationPath: "../../nvme4n1")
        #expect(try resolver.resolve(volumeID: id) == root + "/dev/nvme4n1")
    }

    @Test func theNVMeSerialsAreScannedWhenTheLinkIsMissing() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        // nvme0 is another volume, nvme1 an instance-store disk with our serial but another
        // model, nvme2 ours: enumeration order must not matter.
        try file("sys/class/nvme/nvme0/serial", "vol0fedcba9876543210\n"); try file("sys/class/nvme/nvme0/model", "Amazon Elastic Block Store\n")
        try file("sys/class/nvme/nvme0/nvme0n1/size", "1")
        try file("sys/class/nvme/nvme1/serial", "vol0123456789abcdef0\n"); try file("sys/class/nvme/nvme1/model", "Amazon EC2 NVMe Instance Storage\n")
        try file("sys/class/nvme/nvme1/nvme1n1/size", "1")
        try file("sys/class/nvme/nvme2/serial", "vol0123456789abcdef0   \n"); try file("sys/class/nvme/nvme2/model", "Amazon Elastic Block Store               \n")
        try file("sys/class/nvme/nvme2/nvme2n1/size", "1")
        for d in ["nvme0n1", "nvme1n1", "nvme2n1"] { try file("dev/\(d)") }
        #expect(try resolver.resolve(volumeID: id) == root + "/dev/nvme2n1")
    }

    @Test func xenNamesComeFromTheAttachmentAndTheMapping() throws {
        defer { try? FileManager.default.removeItem(atPath: root) }
        try file("dev/xvdf")
        #expect(try resolver.resolve(volumeID: id, xenDevice: ("/dev/sdf", ["sda1", "sdf"])) == root + "/dev/xvdf")
        #expect(throws: EBSDeviceResolver.Failure.self) { try resolver.resolve(volumeID: id, xenDevice: ("/dev/sdf", ["sda1"])) }
        #expect(throws: EBSDeviceResolver.Failure.self) { try resolver.resolve(volumeID: id) }
        #expect(throws: EBSDeviceResolver.Failure.badVolumeID("vol-XYZ")) { try resolver.resolve(volumeID: "vol-XYZ") }
        #expect(EBSDeviceResolver.isVolumeID("vol-1234abcd") && !EBSDeviceResolver.isVolumeID("vol-1234abc"))
    }
}
