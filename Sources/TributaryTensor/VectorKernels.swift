import CKernels

/// Which compiled variant of the C kernels (`CKernels`) runs: the widest the CPU supports,
/// chosen once when the program starts. All variants give bit-identical results (same
/// 16-lane arithmetic, no fused multiply-adds), so the choice changes speed only.
public enum VectorKernels {
    public enum Variant: Int, CaseIterable, Sendable, CustomStringConvertible {
        case baseline = 0, avx2 = 1, avx512 = 2

        var c: CKVariant {
            switch self {
            case .baseline: return CKVariantBaseline
            case .avx2: return CKVariantAVX2
            case .avx512: return CKVariantAVX512
            }
        }

        public var description: String { String(cString: ck_variant_name(c)) }
        /// Whether this CPU and its operating system can run the variant.
        public var isSupported: Bool { ck_variant_supported(c) }
    }

    /// The variant in use.
    public static var active: Variant {
        Variant(rawValue: Int(ck_active_variant().rawValue)) ?? .baseline
    }

    /// Test-only: runs `body` with `variant` active, then restores the previous one.
    /// False (and `body` not run) when the CPU cannot run it. Not thread-safe: the
    /// kernels of other threads would switch too.
    @discardableResult
    public static func withVariant(_ variant: Variant, _ body: () throws -> Void) rethrows -> Bool {
        let previous = active
        guard ck_force_variant(variant.c) else { return false }
        defer { _ = ck_force_variant(previous.c) }
        try body()
        return true
    }
}
