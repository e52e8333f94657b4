/// Chooses the entries a top-k frame sends: the k largest magnitudes, in O(n).
///
/// Magnitudes are compared as their binary32 bits with the sign cleared, which orders finite
/// floats exactly as their absolute values (and puts NaN above +Inf, so nothing traps). A
/// three-level radix select (bits 30–20, 19–10, 9–0) finds the k-th largest key T: one histogram
/// pass over all n values, one pass collecting the keys of the threshold bucket, two more
/// histograms over those few, and one final pass that emits, in index order, every entry above T
/// and the lowest-indexed entries equal to T until there are k. No sort of n.
public enum TopK {
    /// k = max(1, ⌈fraction · n⌉), at most n (0 when n = 0). A product within 10⁻⁹ (relative)
    /// of an integer counts as that integer, so that 0.07 · 100 gives 7, not 8. Fractions ≤ 0
    /// (or NaN) select one entry, ≥ 1 all of them.
    public static func count(elementCount n: Int, fraction: Double) -> Int {
        guard n > 0 else { return 0 }
        guard fraction > 0 else { return 1 }
        guard fraction < 1 else { return n }
        let exact = fraction * Double(n)
        let nearest = exact.rounded()
        let k = abs(exact - nearest) <= 1e-9 * nearest ? nearest : exact.rounded(.up)
        return min(n, max(1, Int(k)))
    }

    /// The `count(elementCount:fraction:)` largest magnitudes: indices ascending, with their values.
    public static func select(values: UnsafeBufferPointer<Float>, fraction: Double) -> (indices: [UInt32], values: [Float]) {
        select(values: values, count: count(elementCount: values.count, fraction: fraction))
    }

    public static func select(values: [Float], fraction: Double) -> (indices: [UInt32], values: [Float]) {
        values.withUnsafeBufferPointer { select(values: $0, fraction: fraction) }
    }

    /// The `k` largest magnitudes (k clamped to 0...n); among equal magnitudes at the threshold
    /// the lower indices win. Indices are 32-bit, so n must be at most 2³².
    public static func select(values: UnsafeBufferPointer<Float>, count k: Int) -> (indices: [UInt32], values: [Float]) {
        let n = values.count
        precondition(n <= Int(UInt32.max) + 1, "top-k indices are 32-bit: at most 2^32 elements")
        let k = min(max(k, 0), n)
        guard k > 0, let base = values.baseAddress else { return ([], []) }
        let raw = UnsafeRawPointer(base)
        let (threshold, ties) = k == n ? (UInt32(0), n) : Self.threshold(raw, count: n, k: k)
        var selected = [Float]()
        let indices = [UInt32](unsafeUninitializedCapacity: k) { indexBuffer, indexCount in
            selected = [Float](unsafeUninitializedCapacity: k) { valueBuffer, valueCount in
                var taken = 0
                var tiesLeft = ties
                for i in 0..<n {
                    let bits = raw.loadUnaligned(fromByteOffset: i &* 4, as: UInt32.self)
                    let key = bits & 0x7FFF_FFFF
                    guard key >= threshold else { continue }
                    if key == threshold {
                        guard tiesLeft > 0 else { continue }
                        tiesLeft &-= 1
                    }
                    indexBuffer[taken] = UInt32(truncatingIfNeeded: i)
                    valueBuffer[taken] = Float(bitPattern: bits)
                    taken &+= 1
                }
                valueCount = taken
            }
            indexCount = selected.count
        }
        return (indices, selected)
    }

    /// The k-th largest key T and how many entries equal to T belong to the top k (1 ≤ k < n).
    static func threshold(_ raw: UnsafeRawPointer, count n: Int, k: Int) -> (key: UInt32, ties: Int) {
        // Level 1: bits 30–20 (2048 buckets), four interleaved histograms so that runs of equal
        // buckets (common: gradients cluster) do not serialise on one counter.
        let buckets = 2048
        let histogram = UnsafeMutablePointer<Int>.allocate(capacity: 4 * buckets)
        defer { histogram.deallocate() }
        histogram.initialize(repeating: 0, count: 4 * buckets)
        var i = 0
        while i &+ 4 <= n {
            let a = raw.loadUnaligned(fromByteOffset: i &* 4, as: SIMD4<UInt32>.self) & 0x7FFF_FFFF
            histogram[Int(a[0] &>> 20)] &+= 1
            histogram[buckets &+ Int(a[1] &>> 20)] &+= 1
            histogram[2 &* buckets &+ Int(a[2] &>> 20)] &+= 1
            histogram[3 &* buckets &+ Int(a[3] &>> 20)] &+= 1
            i &+= 4
        }
        while i < n {
            histogram[Int((raw.loadUnaligned(fromByteOffset: i &* 4, as: UInt32.self) & 0x7FFF_FFFF) &>> 20)] &+= 1
            i &+= 1
        }
        for b in 0..<buckets {
            histogram[b] = histogram[b] &+ histogram[buckets &+ b] &+ histogram[2 &* buckets &+ b] &+ histogram[3 &* buckets &+ b]
        }
        let (top, need1) = pick(histogram, buckets: buckets, k: k)

        // Collect the threshold bucket's keys; the remaining levels work on those alone.
        let candidateCount = histogram[top]
        let candidates = UnsafeMutablePointer<UInt32>.allocate(capacity: candidateCount)
        defer { candidates.deallocate() }
        var m = 0
        let prefix = UInt32(top)
        for j in 0..<n {
            let key = raw.loadUnaligned(fromByteOffset: j &* 4, as: UInt32.self) & 0x7FFF_FFFF
            if key &>> 20 == prefix {
                candidates[m] = key
                m &+= 1
            }
        }
        // Levels 2 and 3: bits 19–10, then 9–0, narrowing the candidates in place.
        var need = need1
        var key = prefix &<< 20
        var live = m
        for shift: UInt32 in [10, 0] {
            histogram.update(repeating: 0, count: 1024)
            for j in 0..<live { histogram[Int((candidates[j] &>> shift) & 0x3FF)] &+= 1 }
            let (digit, remaining) = pick(histogram, buckets: 1024, k: need)
            need = remaining
            key |= UInt32(digit) &<< shift
            var kept = 0
            for j in 0..<live where (candidates[j] &>> shift) & 0x3FF == UInt32(digit) {
                candidates[kept] = candidates[j]
                kept &+= 1
            }
            live = kept
        }
        return (key, need)
    }

    /// The bucket holding the k-th largest entry, and how many of the top k it holds.
    private static func pick(_ histogram: UnsafeMutablePointer<Int>, buckets: Int, k: Int) -> (bucket: Int, need: Int) {
        var above = 0
        var b = buckets &- 1
        while b > 0 && above &+ histogram[b] < k {
            above &+= histogram[b]
            b &-= 1
        }
        return (b, k &- above)
    }
}
