import TributaryTensor

/// Single-head self-attention over the pixels of an NCHW image, with a residual: DDPM's
/// AttnBlock (and latent diffusion's, whose names it keeps: `norm`, `q`, `k`, `v`,
/// `proj_out`, all 1×1 convolutions, weight `[C, C, 1, 1]`):
///
///     h = GroupNorm(x);  Q, K, V = q(h), k(h), v(h)        (each [C, N], N = H·W)
///     out = x + proj_out(V · softmax(Qᵀ·K / √C)ᵀ)
///
/// Attention is not causal (every pixel sees every pixel), so the GPT's causal kernel does
/// not apply; with channel-major images the products are plain sgemms per image. Meant for
/// low resolutions: it keeps an N×N matrix per image.
public struct SpatialSelfAttention: Sendable {
    public let norm: GroupNorm
    public let q: Conv2d, k: Conv2d, v: Conv2d
    public let projection: Conv2d
    public let channels: Int

    public init(name: String, channels: Int, groups: Int, parameters f: ParameterFactory, device: any ComputeDevice) throws {
        norm = try GroupNorm(name: "\(name).norm", channels: channels, groups: groups, parameters: f, device: device)
        func pointwise(_ suffix: String) throws -> Conv2d {
            try Conv2d(name: "\(name).\(suffix)", inChannels: channels, outChannels: channels, kernelSize: 1, bias: true,
                       parameters: f, device: device)
        }
        q = try pointwise("q")
        k = try pointwise("k")
        v = try pointwise("v")
        projection = try pointwise("proj_out")
        self.channels = channels
    }

    /// The parameters `init` makes, in creation order, known without allocating them.
    public static func parameterSpecs(name: String, channels: Int) -> [ParameterSpec] {
        GroupNorm.parameterSpecs(name: "\(name).norm", channels: channels).all
            + ["q", "k", "v", "proj_out"].flatMap {
                Conv2d.parameterSpecs(name: "\(name).\($0)", inChannels: channels, outChannels: channels, kernelSize: 1, bias: true).all
            }
    }

    public var parameters: [Parameter] { norm.parameters + q.parameters + k.parameters + v.parameters + projection.parameters }

    public func initialize(_ rng: inout SeededRandom) {
        for conv in [q, k, v, projection] { conv.initialize(&rng) }
    }

    /// What forward keeps for backward and the scratch of both passes, for `batch` images
    /// of height × width. The four 1×1 convolutions share one geometry, so one scratch.
    public struct Activations: Sendable {
        public let batch: Int
        let normalized: Tensor, stats: GroupNorm.Activations
        let queries: Tensor, keys: Tensor, values: Tensor
        let probabilities: Tensor, attended: Tensor
        let scratch: Conv2d.Scratch
        let gradAttended: Tensor, gradQueries: Tensor, gradKeys: Tensor, gradValues: Tensor
        let gradScores: Tensor, gradNormalized: Tensor

        public init(for layer: SpatialSelfAttention, batch b: Int, height: Int, width: Int) throws {
            let a = layer.q.device.allocator, s = Self.shapes(channels: layer.channels, batch: b, height: height, width: width)
            batch = b
            normalized = try Tensor(shape: s.image, allocator: a)
            stats = try GroupNorm.Activations(batch: b, groups: layer.norm.groups, allocator: a)
            queries = try Tensor(shape: s.image, allocator: a)
            keys = try Tensor(shape: s.image, allocator: a)
            values = try Tensor(shape: s.image, allocator: a)
            probabilities = try Tensor(shape: s.scores, allocator: a)
            attended = try Tensor(shape: s.image, allocator: a)
            scratch = try Conv2d.Scratch(for: layer.q, batch: b, height: height, width: width)
            gradAttended = try Tensor(shape: s.image, allocator: a)
            gradQueries = try Tensor(shape: s.image, allocator: a)
            gradKeys = try Tensor(shape: s.image, allocator: a)
            gradValues = try Tensor(shape: s.image, allocator: a)
            gradScores = try Tensor(shape: s.scores, allocator: a)
            gradNormalized = try Tensor(shape: s.image, allocator: a)
        }

        static func shapes(channels c: Int, batch b: Int, height: Int, width: Int) -> (image: [Int], scores: [Int]) {
            ([b, c, height, width], [b, height * width, height * width])
        }

        /// What `init` takes from the allocator, known without a layer (memory planning).
        public static func byteCount(channels c: Int, groups: Int, batch b: Int, height: Int, width: Int) -> Int {
            let s = shapes(channels: c, batch: b, height: height, width: width)
            let g = ConvolutionGeometry(inChannels: c, outChannels: c, kernelHeight: 1, kernelWidth: 1, stride: 1, padding: 0,
                                        height: height, width: width)
            return TensorShapes.byteCount(Array(repeating: s.image, count: 10) + [s.scores, s.scores])
                + GroupNorm.Activations.byteCount(batch: b, groups: groups) + Conv2d.Scratch.byteCount(geometry: g, batch: b)
        }
    }

    /// out [B, C, H, W] from input of the same shape.
    public func forward(_ input: Tensor, into out: Tensor, saving a: Activations) throws {
        let image = try checkShapes(input, out, a)
        try norm.forward(input, into: a.normalized, saving: a.stats)
        try q.forward(a.normalized, into: a.queries, scratch: a.scratch)
        try k.forward(a.normalized, into: a.keys, scratch: a.scratch)
        try v.forward(a.normalized, into: a.values, scratch: a.scratch)
        let c = channels, n = image.height * image.width, scale = 1 / Float(c).squareRoot()
        for b in 0..<image.batch {
            let qb = a.queries.data + b * c * n, kb = a.keys.data + b * c * n, vb = a.values.data + b * c * n
            let p = a.probabilities.data + b * n * n
            // Scores[i, j] = Q[:, i]·K[:, j] / √C, then a softmax over keys j per query i.
            BLAS.sgemm(transA: true, m: n, n: n, k: c, alpha: scale, a: qb, lda: n, b: kb, ldb: n, c: p, ldc: n)
            for i in 0..<n { _ = SoftmaxCrossEntropyKernels.softmaxInPlace(p + i * n, n) }
            // Attended[:, i] = Σ_j V[:, j]·P[i, j]: V · Pᵀ.
            BLAS.sgemm(transB: true, m: c, n: n, k: n, a: vb, lda: n, b: p, ldb: n, c: a.attended.data + b * c * n, ldc: n)
        }
        try projection.forward(a.attended, into: out, scratch: a.scratch)
        ChannelBroadcast.addElementwise(input, to: out)
    }

    /// Parameter gradients accumulate; ∂L/∂input is written (or added to, with `accumulateInput`).
    public func backward(dOut: Tensor, input: Tensor, saved a: Activations, dInput: Tensor, accumulateInput: Bool = false) throws {
        let image = try checkShapes(input, dOut, a)
        guard dInput.shape == input.shape else { throw ModelError.batchShape("attention input gradient \(dInput.shape) for \(input.shape)") }
        if accumulateInput { ChannelBroadcast.addElementwise(dOut, to: dInput) } else { dInput.copy(from: dOut) }
        try projection.backward(dOut: dOut, input: a.attended, dInput: a.gradAttended, scratch: a.scratch)
        let c = channels, n = image.height * image.width, scale = 1 / Float(c).squareRoot()
        for b in 0..<image.batch {
            let offset = b * c * n
            let qb = a.queries.data + offset, kb = a.keys.data + offset, vb = a.values.data + offset
            let dO = a.gradAttended.data + offset, p = a.probabilities.data + b * n * n, dS = a.gradScores.data + b * n * n
            // dV = dO · P; dP = dOᵀ · V.
            BLAS.sgemm(m: c, n: n, k: n, a: dO, lda: n, b: p, ldb: n, c: a.gradValues.data + offset, ldc: n)
            BLAS.sgemm(transA: true, m: n, n: n, k: c, a: dO, lda: n, b: vb, ldb: n, c: dS, ldc: n)
            // Through the softmax, row by row: dS = P ⊙ (dP − Σ_j P·dP), times the score scale.
            for i in 0..<n {
                let pr = p + i * n, dr = dS + i * n
                var dot: Float = 0
                for j in 0..<n { dot += pr[j] * dr[j] }
                for j in 0..<n { dr[j] = scale * pr[j] * (dr[j] - dot) }
            }
            // dQ = K · dSᵀ; dK = Q · dS.
            BLAS.sgemm(transB: true, m: c, n: n, k: n, a: kb, lda: n, b: dS, ldb: n, c: a.gradQueries.data + offset, ldc: n)
            BLAS.sgemm(m: c, n: n, k: n, a: qb, lda: n, b: dS, ldb: n, c: a.gradKeys.data + offset, ldc: n)
        }
        try q.backward(dOut: a.gradQueries, input: a.normalized, dInput: a.gradNormalized, scratch: a.scratch)
        try k.backward(dOut: a.gradKeys, input: a.normalized, dInput: a.gradNormalized, scratch: a.scratch, accumulateInput: true)
        try v.backward(dOut: a.gradValues, input: a.normalized, dInput: a.gradNormalized, scratch: a.scratch, accumulateInput: true)
        try norm.backward(dOut: a.gradNormalized, input: input, saved: a.stats, dInput: dInput, accumulateInput: true)
    }

    private func checkShapes(_ input: Tensor, _ other: Tensor, _ a: Activations) throws -> ImageShape {
        let image = try ImageShape(input, "attention input")
        guard image.channels == channels, image.batch == a.batch, other.shape == input.shape, a.normalized.shape == input.shape else {
            throw ModelError.batchShape("attention over \(channels) channels got input \(input.shape), output \(other.shape), activations for \(a.normalized.shape)")
        }
        return image
    }
}
