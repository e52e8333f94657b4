import Foundation
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// CIFAR-10 in its binary form (cifar-10-binary.tar.gz, which unpacks to cifar-10-batches-bin/):
/// files of 3073-byte records, a label byte 0…9 then 3072 pixel bytes, the red plane, the green
/// plane and the blue plane of a 32 × 32 image, each row-major from the top-left. That is
/// already the channel-major layout a U-Net reads, so a record's bytes become its row (/ 255).
public enum CIFAR10 {
    public static let geometry = ImageGeometry(channels: 3, height: 32, width: 32)
    public static let classCount = 10
    public static let pixelBytes = 3072
    public static let recordBytes = 1 + pixelBytes
    /// The folder the official archive unpacks to.
    public static let archiveFolder = "cifar-10-batches-bin"

    /// Whether `name` (a file name, no directory) is one of the dataset's batch files:
    /// `data_batch_N.bin` or `test_batch.bin`. Other `.bin` files are nanoGPT token files.
    public static func isBatchFileName(_ name: String) -> Bool {
        if name == "test_batch.bin" { return true }
        guard name.hasPrefix("data_batch_"), name.hasSuffix(".bin") else { return false }
        let number = name.dropFirst("data_batch_".count).dropLast(".bin".count)
        return !number.isEmpty && number.allSatisfy(\.isASCII) && number.allSatisfy(\.isNumber)
    }

    /// The batch files a directory holds, in the order they are loaded: the training batches
    /// `data_batch_N.bin` by N when there are any, else `test_batch.bin` alone (the test batch
    /// is never mixed into training data). nil when the directory holds neither.
    public static func batchFiles(inDirectory directory: String) -> [String]? {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        let training = names.filter { isBatchFileName($0) && $0 != "test_batch.bin" }
            .sorted { batchNumber($0) < batchNumber($1) }
        if !training.isEmpty { return training.map { "\(directory)/\($0)" } }
        return names.contains("test_batch.bin") ? ["\(directory)/test_batch.bin"] : nil
    }

    private static func batchNumber(_ name: String) -> Int {
        Int(name.dropFirst("data_batch_".count).dropLast(".bin".count)) ?? Int.max
    }

    /// Loads the records of `files`, in order. Every file's size is checked (a whole number of
    /// records) before anything is allocated; a label above 9 is refused.
    public static func load(files: [String]) throws -> LabeledImages {
        guard !files.isEmpty else {
            throw DatasetError(.invalidArgument, "no CIFAR-10 batch files given; give data_batch_N.bin or test_batch.bin files")
        }
        var total = 0
        for file in files {
            let size = try fileSize(file)
            guard size > 0, size % recordBytes == 0 else {
                throw DatasetError(.invalidFormat, path: file,
                                   "CIFAR-10 batch file is \(size) bytes, not a whole number of \(recordBytes)-byte records (label byte + 32×32×3 pixels); the file is truncated or not CIFAR-10's binary version, download cifar-10-binary.tar.gz again")
            }
            let (sum, overflow) = total.addingReportingOverflow(size / recordBytes)
            guard !overflow, !sum.multipliedReportingOverflow(by: pixelBytes).overflow else {
                throw DatasetError(.tooLarge, path: file, "CIFAR-10 batch files hold more records than can be addressed")
            }
            total = sum
        }
        var pixels = [Float](repeating: 0, count: total * pixelBytes)
        var labels = [Int32](repeating: 0, count: total)
        let scale = (0..<256).map { Float($0) / 255 }
        var first = 0
        for file in files {
            let bytes = try readFileBytes(file, what: "CIFAR-10 batch")
            let records = bytes.count / recordBytes
            // Read again in full: a file that changed since its size was checked is refused.
            guard bytes.count % recordBytes == 0, records <= total - first else {
                throw DatasetError(.invalidFormat, path: file, "CIFAR-10 batch file changed size while it was read; load it again when nothing writes to it")
            }
            let bad: (record: Int, label: UInt8)? = bytes.withUnsafeBufferPointer { src in
                pixels.withUnsafeMutableBufferPointer { px in
                    scale.withUnsafeBufferPointer { table in
                        for r in 0..<records {
                            let record = r * recordBytes, row = first + r
                            let label = src[record]
                            guard Int(label) < classCount else { return (r, label) }
                            labels[row] = Int32(label)
                            let out = row * pixelBytes
                            for i in 0..<pixelBytes { px[out + i] = table[Int(src[record + 1 + i])] }
                        }
                        return nil
                    }
                }
            }
            if let bad {
                throw DatasetError(.invalidFormat, path: file,
                                   "CIFAR-10 record \(bad.record) has label \(bad.label), outside 0…9; the file is corrupt or not CIFAR-10 (CIFAR-100's records are laid out differently), download it again")
            }
            first += records
        }
        guard first == total else {
            throw DatasetError(.invalidFormat, path: files[files.count - 1], "CIFAR-10 batch files changed size while they were read; load them again when nothing writes to them")
        }
        return LabeledImages(unchecked: total, pixelBytes, classCount, pixels, labels, geometry: geometry)
    }

    /// The size in bytes of a regular file, with an error that says what to do when it is missing.
    private static func fileSize(_ path: String) throws -> Int {
        var info = stat()
        guard stat(path, &info) == 0 else {
            let code = errno
            if code == ENOENT {
                throw DatasetError(.fileNotFound, path: path, "CIFAR-10 batch file does not exist; check the path or download cifar-10-binary.tar.gz")
            }
            throw DatasetError(.unreadable, path: path, "cannot stat CIFAR-10 batch file: \(String(cString: strerror(code)))")
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw DatasetError(.unreadable, path: path, "is not a regular file; give a CIFAR-10 batch file")
        }
        return Int(info.st_size)
    }
}
