import Testing
@testable import TandemCodecs

@Suite struct OutOfSyncBitmapTests {
    /// The running count of set bits and nextSet agree with a plain model under random changes.
    @Test func countAndSearchMatchAModel() {
        var rng = SeededRandom.make(13)
        let bits: UInt64 = 70_001
        var bm = OutOfSyncBitmap(bitCount: bits)
        var model = [Bool](repeating: false, count: Int(bits))
        for _ in 0..<2000 {
            let a = UInt64.random(in: 0..<bits, using: &rng), n = UInt64.random(in: 0...300, using: &rng)
            let r = a..<min(bits, a + n)
            switch Int.random(in: 0..<3, using: &rng) {
            case 0: bm.set(r); for i in r { model[Int(i)] = true }
            case 1: bm.clear(r); for i in r { model[Int(i)] = false }
            default:
                let w = [UInt64.random(in: 0...UInt64.max, using: &rng), UInt64.random(in: 0...UInt64.max, using: &rng)]
                let at = Int(a / 64)
                bm.merge(words: w, at: at)
                for (k, word) in w.enumerated() {
                    for b in 0..<64 where word >> UInt64(b) & 1 == 1 {
                        let i = (at + k) * 64 + b
                        if i < Int(bits) { model[i] = true }
                    }
                }
            }
            #expect(bm.setCount == UInt64(model.filter { $0 }.count), "\(SeededRandom.replay)")
        }
        let probe = UInt64.random(in: 0..<bits, using: &rng)
        let expected = model[Int(probe)...].firstIndex(of: true).map { UInt64($0) }
        #expect(bm.nextSet(from: probe) == expected)
        let reloaded = OutOfSyncBitmap(bitCount: bits, onDiskBytes: bm.onDiskBytes())
        #expect(reloaded.setCount == bm.setCount)
    }
}
