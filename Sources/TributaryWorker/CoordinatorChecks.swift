import Foundation
import TributaryCompression
import TributaryProtocol

/// What a worker accepts from a coordinator, which may be a stranger's server (issue 12):
/// the numbers in a job are checked here before anything is planned, allocated or fetched
/// from them. The model's own sizes are its family's `validate`.
public enum WorkerLimits {
    /// Samples in one unit. A unit is one worker's share of a round (jobs use 4 to a few
    /// hundred); past 65,536 its batch alone would outgrow a volunteer's machine, and the
    /// planner's work grows with it.
    public static let maximumUnitSamples = 1 << 16
}

extension JobDescription {
    /// Throws `WorkerError.fatal` naming the first field no honest coordinator sends.
    func checkForWorker() throws(WorkerError) {
        func refuse(_ why: String) -> WorkerError {
            .fatal("the coordinator's job cannot run on this worker: \(why); ask its operator to fix the job")
        }
        guard (1...WorkerLimits.maximumUnitSamples).contains(samplesPerUnit) else {
            throw refuse("samples_per_unit is \(samplesPerUnit), outside 1...\(WorkerLimits.maximumUnitSamples)")
        }
        guard microBatchSize >= 1 else { throw refuse("micro_batch_size is \(microBatchSize), not positive") }
        guard Zstd.levels.contains(zstdLevel) else {
            throw refuse("zstd_level is \(zstdLevel), outside \(Zstd.levels.lowerBound)...\(Zstd.levels.upperBound)")
        }
    }
}
