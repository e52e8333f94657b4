import Foundation
import TributaryCompression
import TributaryProtocol

/// What a worker accepts from a coordinator, which may be a stranger's server (issue 12):
/// the numbers in a job or a lease are checked here before anything is planned,
/// allocated or fetched from them. The model's own sizes are its family's `validate`.
public enum WorkerLimits {
    /// Samples in one unit. A unit is one worker's share of a round (jobs use 4 to a few
    /// hundred); past 65,536 its batch alone would outgrow a volunteer's machine, and the
    /// planner's work grows with it.
    public static let maximumUnitSamples = 1 << 16
    /// Characters of a lease id, which becomes part of request paths.
    public static let maximumLeaseIdLength = 128
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
        if let local = localSteps { try local.check(samplesPerUnit: samplesPerUnit, refuse: refuse) }
    }
}

extension LocalSteps {
    /// The inner optimization a local-rounds job asks for: sizes and hyper-parameters an honest
    /// coordinator sends (its own job file validation allows no others).
    func check(samplesPerUnit: Int, refuse: (String) -> WorkerError) throws(WorkerError) {
        guard (1...10_000).contains(steps), samplesPerUnit % steps == 0 else {
            throw refuse("local_steps.steps is \(steps); it must lie in 1...10000 and divide samples_per_unit (\(samplesPerUnit))")
        }
        guard optimizer == "adamw" || optimizer == "sgd" else {
            throw refuse("local_steps.optimizer is \(optimizer.prefix(32).debugDescription), not adamw or sgd")
        }
        let rates = [lr, minLr, weightDecay, gradClip]
        guard lr > 0, rates.allSatisfy({ $0.isFinite && $0 >= 0 }), warmupSteps >= 0, decaySteps >= 0,
              (0..<1).contains(beta1), (0..<1).contains(beta2), (0..<1).contains(momentum), !nesterov || momentum > 0 else {
            throw refuse("local_steps has an invalid inner optimizer setting (rates, betas or momentum out of range)")
        }
    }
}

extension LeaseGrant {
    /// Throws `ClientError.protocolViolation` (so the worker backs off and asks again)
    /// for a grant whose fields make no sense for `job`: a negative version or index, more
    /// samples than the job's units hold (the memory plan was made for those), a lease id
    /// that is not a plain token (it is put into request paths), a deadline long past.
    func check(for job: JobDescription, now: Date = Date()) throws(ClientError) {
        func refuse(_ why: String) -> ClientError { .protocolViolation("lease grant refused: \(why)") }
        guard Self.isPlainToken(leaseId) else {
            // Quoted and escaped: the id is the coordinator's text, on its way to a log.
            throw refuse("lease id \(leaseId.prefix(64).debugDescription) is not 1...\(WorkerLimits.maximumLeaseIdLength) letters, digits, '-' or '_'")
        }
        guard version >= 0 else { throw refuse("version \(version) is negative") }
        guard epoch >= 0, unitIndex >= 0, sampleStart >= 0 else {
            throw refuse("epoch \(epoch), unit \(unitIndex) or sample start \(sampleStart) is negative")
        }
        guard sampleCount >= 1, sampleCount <= job.samplesPerUnit else {
            throw refuse("sample count \(sampleCount) is outside 1...\(job.samplesPerUnit), the job's unit")
        }
        guard microBatchSize >= 1 else { throw refuse("micro-batch size \(microBatchSize) is not positive") }
        // A day of slack for clocks that disagree; a lease cannot have ended before it began.
        guard deadline > now.addingTimeInterval(-86_400) else {
            throw refuse("deadline \(deadline) is more than a day before this machine's clock")
        }
    }

    static func isPlainToken(_ s: String) -> Bool {
        let bytes = s.utf8
        return (1...WorkerLimits.maximumLeaseIdLength).contains(bytes.count) && bytes.allSatisfy { b in
            (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x2D || b == 0x5F
        }
    }
}
