/// This build's release, for `tributary --version`, the `tributary_build_info` metric and
/// logs: a worker and a coordinator of different releases can say so.
public enum TributaryRelease {
    public static let version = "0.16.0"
}
