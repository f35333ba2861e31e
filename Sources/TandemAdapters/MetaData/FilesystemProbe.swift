import TandemCodecs

/// Recognises signatures of common filesystems and volume formats at the start of a disk, so
/// `create-md` does not silently destroy data (internal meta-data takes the end of the disk
/// and would cut a filesystem that spans it).
public enum FilesystemProbe {
    /// The name of what the disk seems to hold, or nil for nothing recognised.
    public static func detect(on device: BlockDevice) -> String? {
        let want = Int(min(device.size, 70 * 1024))
        guard want >= 1024, let head = try? device.read(at: 0, count: want) else { return nil }
        func matches(_ offset: Int, _ sig: [UInt8]) -> Bool {
            offset + sig.count <= head.count && Array(head[offset..<(offset + sig.count)]) == sig
        }
        if matches(1080, [0x53, 0xEF]) { return "ext2/ext3/ext4" }
        if matches(0, Array("XFSB".utf8)) { return "XFS" }
        if matches(65600, Array("_BHRfS_M".utf8)) { return "btrfs" }
        if matches(4086, Array("SWAPSPACE2".utf8)) || matches(4086, Array("SWAP-SPACE".utf8)) { return "swap" }
        if matches(512, Array("LABELONE".utf8)) || matches(536, Array("LVM2 001".utf8)) { return "LVM2" }
        if matches(512, Array("EFI PART".utf8)) { return "GPT-partitioned" }
        if matches(0, [0x4C, 0x55, 0x4B, 0x53, 0xBA, 0xBE]) { return "LUKS" }
        if matches(3, Array("NTFS    ".utf8)) { return "NTFS" }
        if matches(54, Array("FAT".utf8)) || matches(82, Array("FAT32".utf8)) { return "FAT" }
        if matches(510, [0x55, 0xAA]) { return "MBR-partitioned" }
        return nil
    }
}
