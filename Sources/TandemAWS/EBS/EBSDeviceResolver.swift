import Foundation

/// Finds the block device of an attached EBS volume by its id, never by enumeration order:
/// - Nitro (NVMe): the udev link /dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0123...
///   (the volume id without its dash is the NVMe serial), else a scan of the NVMe controllers
///   under /sys/class/nvme for model "Amazon Elastic Block Store" and that serial;
/// - Xen: the device name of the volume's attachment (DescribeVolumes), which the instance
///   metadata's block-device mapping must also name, as the kernel shows it (/dev/sdf may be
///   /dev/xvdf).
/// The /dev and /sys roots are settable so tests build a tree around a loop device.
public struct EBSDeviceResolver: Sendable {
    public var deviceRoot: String
    public var sysfsRoot: String
    public static let nvmeModel = "Amazon Elastic Block Store"

    public init(deviceRoot: String = "/dev", sysfsRoot: String = "/sys") {
        self.deviceRoot = deviceRoot
        self.sysfsRoot = sysfsRoot
    }

    public enum Failure: Error, CustomStringConvertible, Equatable {
        case badVolumeID(String)
        case notFound(String, String)
        public var description: String {
            switch self {
            case .badVolumeID(let id): "'\(id)' is not an EBS volume id (vol- and 8 or 17 hex digits)"
            case .notFound(let id, let looked): "no block device for \(id) on this instance (looked at \(looked))"
            }
        }
    }

    /// Whether `id` is a volume id (vol- and 8 or 17 lower-case hex digits).
    public static func isVolumeID(_ id: String) -> Bool {
        guard id.hasPrefix("vol-") else { return false }
        let hex = id.dropFirst(4)
        return (hex.count == 8 || hex.count == 17) && hex.allSatisfy { ("0"..."9").contains($0) || ("a"..."f").contains($0) }
    }

    /// The device path of `volumeID`. `xenDevice`: the attachment's device name (/dev/sdf) and
    /// the block-device mapping's device names, for instances without NVMe.
    public func resolve(volumeID: String, xenDevice: (attachment: String, mapping: [String])? = nil) throws -> String {
        guard Self.isVolumeID(volumeID) else { throw Failure.badVolumeID(volumeID) }
        let serial = volumeID.replacingOccurrences(of: "-", with: "")
        let fm = FileManager.default
        var looked: [String] = []
        // 1. The udev link.
        let link = "\(deviceRoot)/disk/by-id/nvme-Amazon_Elastic_Block_Store_\(serial)"
        looked.append(link)
        if let target = try? fm.destinationOfSymbolicLink(atPath: link) {
            let path = target.hasPrefix("/") ? target : URL(fileURLWithPath: link).deletingLastPathComponent().appendingPathComponent(target).standardized.path
            if fm.fileExists(atPath: path) { return path }
        }
        // 2. The NVMe controllers' serials.
        let classDir = "\(sysfsRoot)/class/nvme"
        looked.append("\(classDir)/*/serial")
        for ctrl in ((try? fm.contentsOfDirectory(atPath: classDir)) ?? []).sorted() {
            func read(_ name: String) -> String? {
                (try? String(contentsOfFile: "\(classDir)/\(ctrl)/\(name)", encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines)
            }
            guard read("model") == Self.nvmeModel, let s = read("serial"), s == serial || s == volumeID else { continue }
            // Its namespaces: nvme1n1 (nvme1c1n1 with multipath) beside the controller's files.
            let namespaces = ((try? fm.contentsOfDirectory(atPath: "\(classDir)/\(ctrl)")) ?? [])
                .filter { $0.hasPrefix("nvme") && $0.dropFirst(4).contains("n") }.sorted()
            for ns in namespaces where fm.fileExists(atPath: "\(deviceRoot)/\(ns)") { return "\(deviceRoot)/\(ns)" }
        }
        // 3. Xen: the attachment's device name, as the mapping names it.
        if let (attachment, mapping) = xenDevice {
            let short = attachment.hasPrefix("/dev/") ? String(attachment.dropFirst(5)) : attachment
            let names = Set(mapping.map { $0.hasPrefix("/dev/") ? String($0.dropFirst(5)) : $0 })
            if names.contains(short) || names.contains(Self.xenName(short)) {
                for candidate in [short, Self.xenName(short)] {
                    looked.append("\(deviceRoot)/\(candidate)")
                    if fm.fileExists(atPath: "\(deviceRoot)/\(candidate)") { return "\(deviceRoot)/\(candidate)" }
                }
            } else {
                looked.append("the block-device mapping (\(attachment) is not in it)")
            }
        }
        throw Failure.notFound(volumeID, looked.joined(separator: ", "))
    }

    /// sdf -> xvdf (the Xen block driver's name for a requested /dev/sdf).
    static func xenName(_ name: String) -> String { name.hasPrefix("sd") ? "xvd" + name.dropFirst(2) : name }
}
