import Foundation
import TributaryTensor

/// Linear → ReLU → … → Linear with softmax cross-entropy. Parameter names match a
/// PyTorch `nn.Sequential` stored as `net` (`net.0.weight`, `net.2.weight`, …).
public final class MLPClassifier: TrainableModel, @unchecked Sendable {
    // Unchecked: the activation cache is mutated by forward/backward; driven by one task at a time.
    public let config: MLPConfig
    public let layers: [Linear]
    public let parameters: ParameterSet
    public let allocator: TensorAllocator
    public let device: any ComputeDevice
    var cache: Cache? // internal for tests that inspect pre-activations

    /// On the CPU, computing into `allocator`.
    public convenience init(config: MLPConfig, seed: UInt64 = 1337, allocator: TensorAllocator = .shared) throws {
        try self.init(config: config, seed: seed, device: CPUDevice(allocator: allocator))
    }

    public init(config: MLPConfig, seed: UInt64 = 1337, device: any ComputeDevice) throws {
        try config.validate()
        self.config = config
        self.device = device
        allocator = device.allocator
        let sizes = config.layerSizes
        layers = try (0..<(sizes.count - 1)).map { i in
            try Linear(name: Self.layerName(i), inFeatures: sizes[i], outFeatures: sizes[i + 1], bias: true, device: device)
        }
        parameters = ParameterSet(layers.flatMap(\.parameters))
        initialize(seed: seed)
    }

    /// PyTorch's default Linear initialisation: U(−1/√in, 1/√in) for weights and biases.
    public func initialize(seed: UInt64) {
        var rng = SeededRandom(seed: seed)
        for layer in layers {
            let bound = 1 / Float(layer.inFeatures).squareRoot()
            for p in layer.parameters {
                p.gradient.zero()
                let d = p.value.data
                for i in 0..<p.count { d[i] = (rng.nextUnitFloat() * 2 - 1) * bound }
            }
        }
    }

    /// Linear `i`'s name: `net.0`, `net.2`, … (the ReLUs take the odd indices).
    public static func layerName(_ i: Int) -> String { "net.\(2 * i)" }

    /// Bytes of the activation cache for a batch of `b` rows (what `Cache` allocates).
    public static func activationBytes(config: MLPConfig, batch b: Int) -> Int {
        let s = Cache.shapes(sizes: config.layerSizes, batch: b)
        return TensorShapes.byteCount([s.input] + s.pre + s.post + [s.losses, s.dA, s.dB])
    }

    final class Cache: @unchecked Sendable {
        let batch: Int
        let input: Tensor
        let pre: [Tensor]   // per layer, before activation ([batch, out]); the last is the logits
        let post: [Tensor]  // per hidden layer, after ReLU
        let losses: Tensor
        let dA: Tensor, dB: Tensor
        var targets: [Int32] = []

        init(model: MLPClassifier, batch b: Int) throws {
            let s = Self.shapes(sizes: model.config.layerSizes, batch: b), a = model.allocator
            batch = b
            input = try Tensor(shape: s.input, allocator: a)
            pre = try s.pre.map { try Tensor(shape: $0, allocator: a) }
            post = try s.post.map { try Tensor(shape: $0, allocator: a) }
            losses = try Tensor(shape: s.losses, allocator: a)
            dA = try Tensor(shape: s.dA, allocator: a)
            dB = try Tensor(shape: s.dB, allocator: a)
        }

        /// The shapes `init` allocates: the one source of `activationBytes`.
        static func shapes(sizes: [Int], batch b: Int)
            -> (input: [Int], pre: [[Int]], post: [[Int]], losses: [Int], dA: [Int], dB: [Int]) {
            let widest = sizes.max() ?? 1
            return ([b, sizes.first ?? 0], sizes.dropFirst().map { [b, $0] }, sizes.dropFirst().dropLast().map { [b, $0] },
                    [b], [b, widest], [b, widest])
        }
    }

    private func forward(_ inputs: [Float], _ targets: [Int32], batch b: Int) throws -> Cache {
        guard b > 0 else { throw ModelError.batchShape("batch must be positive") }
        guard inputs.count == b * config.inputFeatures else {
            throw ModelError.batchShape("expected \(b)×\(config.inputFeatures) features, got \(inputs.count) values")
        }
        guard targets.count == b else { throw ModelError.batchShape("expected \(b) targets, got \(targets.count)") }
        try validateIDs(targets, below: config.classes, isTarget: true)
        if let cache, cache.batch != b { self.cache = nil }
        let c = try cache ?? Cache(model: self, batch: b)
        cache = c
        c.input.copy(from: inputs)
        c.targets = targets
        var x = c.input
        for (i, layer) in layers.enumerated() {
            let last = i == layers.count - 1
            layer.forward(x, into: c.pre[i], rows: b, addBias: last)
            if !last {
                device.kernels.biasReLUForward(pre: c.pre[i], out: c.post[i], bias: layer.bias?.value,
                                               rows: b, columns: layer.outFeatures)
                x = c.post[i]
            }
        }
        guard let logits = c.pre.last else { throw ModelError.invalidConfiguration("no layers") }
        device.kernels.softmaxCrossEntropyForward(logits: logits, targets: targets[...], losses: c.losses,
                                                  rows: b, classes: config.classes)
        return c
    }

    private func meanLoss(_ c: Cache) -> Double {
        var s = 0.0
        let losses = c.losses.readableData  // one read: on a GPU, one transfer
        for i in 0..<c.batch { s += Double(losses[i]) }
        return s / Double(c.batch)
    }

    public func forwardBackward(_ batch: ModelBatch, lossScale: Float = 1) throws -> Float {
        guard case let .features(inputs, targets, b) = batch else {
            throw ModelError.batchShape("an MLP classifier takes feature rows, not token batches")
        }
        let c = try forward(inputs, targets, batch: b)
        let loss = Float(meanLoss(c))
        guard let logits = c.pre.last else { return loss }
        device.kernels.softmaxCrossEntropyBackward(probabilities: logits, targets: c.targets[...], rows: b,
                                                   classes: config.classes, scale: lossScale / Float(b))
        // dOut of layer i lives in `grad`; its dInput goes to the other scratch buffer.
        var grad = logits
        var spare = (c.dA, c.dB)
        for i in stride(from: layers.count - 1, through: 0, by: -1) {
            let input = i == 0 ? c.input : c.post[i - 1]
            let dInput: Tensor? = i == 0 ? nil : spare.0
            layers[i].backward(dOut: grad, input: input, dInput: dInput, rows: b)
            if let dInput {
                device.kernels.reluBackward(dPre: dInput, dOut: dInput, pre: c.pre[i - 1],
                                            count: b * layers[i].inFeatures)
                grad = dInput
                spare = (spare.1, spare.0)
            }
        }
        try device.checkHealthy()  // a failed GPU kernel leaves garbage: never return it
        return loss
    }

    public func evaluate(_ batch: ModelBatch) throws -> Evaluation {
        guard case let .features(inputs, targets, b) = batch else {
            throw ModelError.batchShape("an MLP classifier takes feature rows, not token batches")
        }
        let c = try forward(inputs, targets, batch: b)
        guard let probs = c.pre.last else { return Evaluation(loss: 0, correct: 0, predictions: 0) }
        var correct = 0
        let rows = probs.readableData
        for r in 0..<b {
            let row = rows + r * config.classes
            var best = 0
            for j in 1..<config.classes where row[j] > row[best] { best = j }
            if best == Int(targets[r]) { correct += 1 }
        }
        try device.checkHealthy()
        return Evaluation(loss: meanLoss(c), correct: correct, predictions: b)
    }

    /// Each row's class probabilities (softmax of the logits), [b × classes]: what a
    /// classifier says of inputs that have no labels (a generator's images).
    public func classProbabilities(_ inputs: [Float], batch b: Int) throws -> [Float] {
        let c = try forward(inputs, [Int32](repeating: 0, count: b), batch: b)
        guard let probabilities = c.pre.last else { return [] }
        try device.checkHealthy()
        return Array(UnsafeBufferPointer(start: probabilities.readableData, count: b * config.classes))
    }

    public func trainingFLOPs(_ batch: ModelBatch) -> Double {
        6 * Double(config.parameterCount) * Double(batch.sampleCount)
    }
}
