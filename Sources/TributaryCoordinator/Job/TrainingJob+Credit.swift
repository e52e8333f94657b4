import TributaryProtocol

/// A worker's own credit (`GET /v1/workers/me`): its line of the worker list, and its rank
/// among all volunteers by samples, from the same copy `GET /v1/workers` serves.
extension TrainingJob {
    public nonisolated func credit(of worker: String) async throws -> WorkerCredit {
        guard let credit = Self.credit(of: worker, among: try await cachedWorkers()) else {
            throw JobError.unknownWorker(worker)
        }
        return credit
    }

    /// `id`'s credit among `all`, ranked by samples: 1 for the most, equal samples share a
    /// rank and the next rank skips as many (1, 2, 2, 4); nil when `all` has no such worker.
    public static func credit(of id: String, among all: [WorkerSummary]) -> WorkerCredit? {
        guard let mine = all.first(where: { $0.id == id }) else { return nil }
        let ahead = all.filter { $0.samples > mine.samples }.count
        let total = all.reduce(0) { $0 + max(0, $1.samples) }
        return WorkerCredit(worker: mine, rank: ahead + 1, volunteers: all.count, jobSamples: total,
                            share: total > 0 ? Double(max(0, mine.samples)) / Double(total) : 0)
    }
}
