/// `GET /v1/workers/me`: the asking worker's own credit and where it stands among the
/// job's volunteers (every worker `GET /v1/workers` lists, banned ones included).
public struct WorkerCredit: Codable, Sendable, Equatable {
    /// The worker's line of `GET /v1/workers`.
    public var worker: WorkerSummary
    /// 1 for the most samples; workers with equal samples share a rank, and the next rank
    /// skips as many (1, 2, 2, 4).
    public var rank: Int
    /// Workers ranked (the whole worker list).
    public var volunteers: Int
    /// All volunteers' samples together.
    public var jobSamples: Int
    /// The worker's samples / `jobSamples` (0 while the job has none).
    public var share: Double

    public init(worker: WorkerSummary, rank: Int, volunteers: Int, jobSamples: Int, share: Double) {
        self.worker = worker
        self.rank = rank
        self.volunteers = volunteers
        self.jobSamples = jobSamples
        self.share = share
    }

    enum CodingKeys: String, CodingKey { case worker, rank, volunteers, jobSamples = "job_samples", share }
}
