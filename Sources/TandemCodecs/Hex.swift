/// Zero-padded hexadecimal formatting as C's printf("%0*llX") gives it, without Foundation.
public enum Hex {
    public static func upper<T: BinaryInteger>(_ v: T, digits: Int) -> String {
        let s = String(v, radix: 16, uppercase: true)
        return s.count >= digits ? s : String(repeating: "0", count: digits - s.count) + s
    }

    public static func lower<T: BinaryInteger>(_ v: T, digits: Int) -> String {
        let s = String(v, radix: 16, uppercase: false)
        return s.count >= digits ? s : String(repeating: "0", count: digits - s.count) + s
    }
}
