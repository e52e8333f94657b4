import TributaryCompression
import TributaryProtocol

/// How many bytes the worker reads of each answer before refusing it (issue 12, finding
/// 6: a 700 MiB manifest was buffered whole). Each limit is what the request can honestly
/// return, so a hostile coordinator cannot make the worker hold more than that.
public enum ResponseLimit {
    /// JSON answers besides the manifest (registration, job, lease, commit, receipts) and
    /// problem bodies: 1 MiB. The largest honest one is a registration, whose job holds the
    /// model's arguments: an MLP with the most hidden layers a worker accepts (10,000, at
    /// most 20 characters each) is about 210 KB of JSON.
    public static let json = 1 << 20

    /// The manifest of a model cut as `layout`: twice what its JSON takes with every number
    /// at its widest (20 characters), plus 64 KiB. A coordinator writing it compactly (ours,
    /// ~1.1 KB per GPT block) stays under half of this; pretty-printed JSON (indentation,
    /// one shape value per line) under the whole. A 10,000-block GPT's is about 30 MiB.
    public static func manifest(_ layout: ShardLayout) -> Int {
        let number = 20
        var bytes = 64 + number + 128                             // {"shards":[…],"version":N,"delta_codec":"…"}
        for shard in layout.shards {
            // {"byte_size":N,"content_hash":"…","element_count":N,"name":"…","tensors":[…],"delta_byte_size":N},
            bytes += 96 + 3 * number + 64 + 20 + shard.name.utf8.count
            for slot in shard.tensors {
                // {"name":"…","offset":N,"shape":[N,…]},
                bytes += 40 + slot.name.utf8.count + number + (number + 1) * slot.shape.count
            }
        }
        return 2 * bytes + (64 << 10)
    }

    /// A shard body of `elements` values: the largest fp32 tensor frame of that many (the
    /// coordinator serves fp32 frames, zstd-compressed or not, and zstd's bound is above
    /// the raw size), and never more than the whole memory budget.
    public static func shard(elements: Int, budget: Int?) -> Int {
        min(TensorFrame.maximumBodySize(elementCount: elements, codec: .fp32), budget ?? .max)
    }

    /// A batch body of at most `samples` samples of `width` values: its header and 8 bytes
    /// per value (token inputs and targets, the larger of the two formats), and never more
    /// than the whole memory budget (the decoded batch takes as much again).
    public static func batch(samples: Int, width: Int, budget: Int?) -> Int {
        let (values, o1) = samples.multipliedReportingOverflow(by: width)
        let (bytes, o2) = values.multipliedReportingOverflow(by: 8)
        let (total, o3) = bytes.addingReportingOverflow(BatchBody.headerSize)
        return min(o1 || o2 || o3 ? .max : total, budget ?? .max)
    }
}
