import TributaryTensor

/// Encoded shard updates on their way to the coordinator, sent one after another in the
/// order they were finished while the compute goes on with the next shards. Queued bytes
/// are reserved in the device's allocator (they count against the memory budget) and
/// limited to `capacity`: a producer that would exceed it waits for the oldest upload.
actor UploadQueue {
    private let capacity: Int
    private let allocator: TensorAllocator
    private let send: @Sendable (String, [UInt8]) async throws -> Void
    private var inFlight: [(bytes: Int, task: Task<Void, any Error>)] = []
    private var queuedBytes = 0
    private(set) var bytesSent = 0

    init(capacity: Int, allocator: TensorAllocator, send: @escaping @Sendable (String, [UInt8]) async throws -> Void) {
        self.capacity = capacity
        self.allocator = allocator
        self.send = send
    }

    /// Queues `body` for `shard`; waits while the queue is full. Throws the first failed
    /// upload's error.
    func submit(_ shard: String, _ body: [UInt8]) async throws {
        while !inFlight.isEmpty && queuedBytes + body.count > capacity { try await collectOldest() }
        try allocator.reserveBytes(body.count)
        let previous = inFlight.last?.task, allocator = allocator, send = send, bytes = body.count
        let task = Task<Void, any Error> {
            defer { allocator.releaseBytes(bytes) }
            try await previous?.value      // in order, and nothing after a failure
            try Task.checkCancellation()
            try await send(shard, body)
        }
        inFlight.append((bytes, task))
        queuedBytes += bytes
    }

    private func collectOldest() async throws {
        guard !inFlight.isEmpty else { return }
        let (bytes, task) = inFlight.removeFirst()
        queuedBytes -= bytes
        do {
            try await Self.awaitCancelling(task)
            bytesSent += bytes
        } catch {
            cancelAll()
            throw error
        }
    }

    /// Waits until everything queued is uploaded.
    func finish() async throws {
        while !inFlight.isEmpty { try await collectOldest() }
    }

    /// Waits for an upload; if the waiting unit is cancelled (its lease was lost), the
    /// upload is cancelled with it instead of running on to its timeout.
    private static func awaitCancelling(_ task: Task<Void, any Error>) async throws {
        try await withTaskCancellationHandler { try await task.value } onCancel: { task.cancel() }
    }

    /// Abandons what is still queued (the unit failed).
    func cancelAll() {
        for entry in inFlight { entry.task.cancel() }
        inFlight = []
        queuedBytes = 0
    }
}
