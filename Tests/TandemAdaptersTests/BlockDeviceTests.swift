import Foundation
import Testing
@testable import TandemAdapters

func tempFile(size: Int) -> String {
    let path = NSTemporaryDirectory() + "tandem-test-\(UUID().uuidString).img"
    FileManager.default.createFile(atPath: path, contents: nil)
    truncate(path, off_t(size))
    return path
}

@Suite struct BlockDeviceTests {
    @Test func fileRoundTripAndRange() throws {
        let path = tempFile(size: 1 << 20)
        defer { unlink(path) }
        let d = try FileBlockDevice(path: path)
        #expect(d.size == 1 << 20 && !d.isBlockDevice)
        try d.write([1, 2, 3, 4], at: 4096)
        try d.flush()
        #expect(try d.read(at: 4096, count: 4) == [1, 2, 3, 4])
        #expect(throws: BlockDeviceError.outOfRange(path: path, offset: (1 << 20) - 2, length: 4, size: 1 << 20)) {
            try d.write([0, 0, 0, 0], at: (1 << 20) - 2)
        }
        try d.writeZeroes(at: 4096, length: 4096)
        #expect(try d.read(at: 4096, count: 4) == [0, 0, 0, 0])
    }

    @Test func openErrorsAreTyped() throws {
        #expect(throws: BlockDeviceError.notFound(path: "/nonexistent/disk.img")) { try FileBlockDevice(path: "/nonexistent/disk.img") }
        #expect(throws: BlockDeviceError.notADisk(path: "/tmp")) { try FileBlockDevice(path: "/tmp") }
        let path = tempFile(size: 1 << 20)
        defer { unlink(path) }
        let first = try FileBlockDevice(path: path)
        #expect(throws: BlockDeviceError.busy(path: path)) { try FileBlockDevice(path: path) }
        first.close()
        _ = try FileBlockDevice(path: path)
    }

    @Test func directIORequiresAlignment() throws {
        let path = tempFile(size: 1 << 20)
        defer { unlink(path) }
        let d = try FileBlockDevice(path: path, options: .init(direct: true))
        #expect(throws: BlockDeviceError.self) { try d.write([1, 2, 3], at: 0) }
        var block = [UInt8](repeating: 0xAB, count: 4096)
        block[0] = 7
        try d.write(block, at: 8192) // Swift arrays are not 4 KiB aligned: bounced
        #expect(try d.read(at: 8192, count: 4096) == block)
    }

    /// The FUA write (pwritev2 RWF_DSYNC) reads back, checks its range like any write, and
    /// takes unaligned buffers under O_DIRECT (bounced).
    @Test func durableWritesReadBack() throws {
        let path = tempFile(size: 1 << 20)
        defer { unlink(path) }
        let d = try FileBlockDevice(path: path)
        let block = (0..<4096).map { UInt8(truncatingIfNeeded: $0 * 7) }
        try d.writeDurably(block, at: 12288)
        #expect(try d.read(at: 12288, count: 4096) == block)
        #expect(throws: BlockDeviceError.outOfRange(path: path, offset: (1 << 20) - 2048, length: 4096, size: 1 << 20)) {
            try d.writeDurably(block, at: (1 << 20) - 2048)
        }
        d.close()
        let direct = try FileBlockDevice(path: path, options: .init(direct: true))
        #expect(throws: BlockDeviceError.self) { try direct.writeDurably([1, 2, 3], at: 0) }
        try direct.writeDurably(block.reversed(), at: 4096)
        #expect(try direct.read(at: 4096, count: 4096) == block.reversed())
    }
}
