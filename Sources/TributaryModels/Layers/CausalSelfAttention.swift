import TributaryTensor

/// GPT-2 attention: c_attn (q, k, v stacked in that order), causal softmax, c_proj.
public struct CausalSelfAttention: Sendable {
    public let cAttn: Linear
    public let cProj: Linear
    public let heads: Int
    public let channels: Int

    public init(name: String, channels: Int, heads: Int, bias: Bool, allocator: TensorAllocator) throws {
        try self.init(name: name, channels: channels, heads: heads, bias: bias, parameters: .allocating(allocator))
    }

    public init(name: String, channels: Int, heads: Int, bias: Bool, parameters f: ParameterFactory) throws {
        cAttn = try Linear(name: "\(name).c_attn", inFeatures: channels, outFeatures: 3 * channels, bias: bias, parameters: f)
        cProj = try Linear(name: "\(name).c_proj", inFeatures: channels, outFeatures: channels, bias: bias, parameters: f)
        self.heads = heads
        self.channels = channels
    }

    public var parameters: [Parameter] { cAttn.parameters + cProj.parameters }

    /// What `init` makes, in `parameters` order, without allocating it.
    public static func parameterSpecs(name: String, channels c: Int, bias: Bool) -> [ParameterSpec] {
        Linear.parameterSpecs(name: "\(name).c_attn", inFeatures: c, outFeatures: 3 * c, bias: bias).all
            + Linear.parameterSpecs(name: "\(name).c_proj", inFeatures: c, outFeatures: c, bias: bias).all
    }

    /// What forward keeps for backward.
    public struct Activations: Sendable {
        public let qkv: Tensor    // [B, T, 3C]
        public let probs: Tensor  // [B, H, T, T]
        public let heads: Tensor  // [B, T, C], attention output before c_proj

        public init(batch b: Int, sequence t: Int, channels c: Int, heads h: Int, allocator: TensorAllocator) throws {
            let s = Self.shapes(batch: b, sequence: t, channels: c, heads: h)
            qkv = try Tensor(shape: s[0], allocator: allocator)
            probs = try Tensor(shape: s[1], allocator: allocator)
            heads = try Tensor(shape: s[2], allocator: allocator)
        }

        /// The shapes `init` allocates, in order: the one source of their sizes.
        static func shapes(batch b: Int, sequence t: Int, channels c: Int, heads h: Int) -> [[Int]] {
            [[b, t, 3 * c], [b, h, t, t], [b, t, c]]
        }

        public static func byteCount(batch b: Int, sequence t: Int, channels c: Int, heads h: Int) -> Int {
            TensorShapes.byteCount(shapes(batch: b, sequence: t, channels: c, heads: h))
        }
    }

    public func forward(_ input: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>,
                        saving a: Activations, batch b: Int, sequence t: Int) {
        let n = b * t
        cAttn.forward(input, into: a.qkv.data, rows: n)
        AttentionKernels.forward(out: a.heads.data, probs: a.probs.data, qkv: a.qkv.data,
                                 batch: b, sequence: t, heads: heads, channels: channels)
        cProj.forward(a.heads.data, into: out, rows: n)
    }

    /// Scratch buffers backward needs, shared by every layer of a model.
    public struct Scratch: Sendable {
        public let dHeads: Tensor  // [B, T, C]
        public let dQKV: Tensor    // [B, T, 3C]
        public let scores: Tensor  // per-thread [T, T]
        public let threads: Int

        public init(batch b: Int, sequence t: Int, channels c: Int, allocator: TensorAllocator) throws {
            threads = ComputeThreads.count
            let s = Self.shapes(batch: b, sequence: t, channels: c, threads: threads)
            dHeads = try Tensor(shape: s[0], allocator: allocator)
            dQKV = try Tensor(shape: s[1], allocator: allocator)
            scores = try Tensor(shape: s[2], allocator: allocator)
        }

        /// The shapes `init` allocates, in order (scores: one [T, T] per compute thread).
        static func shapes(batch b: Int, sequence t: Int, channels c: Int, threads: Int) -> [[Int]] {
            [[b, t, c], [b, t, 3 * c], [threads, AttentionKernels.scratchPerThread(sequence: t)]]
        }

        /// Bytes `init` allocates with today's `ComputeThreads.count`.
        public static func byteCount(batch b: Int, sequence t: Int, channels c: Int) -> Int {
            TensorShapes.byteCount(shapes(batch: b, sequence: t, channels: c, threads: ComputeThreads.count))
        }
    }

    /// Accumulates parameter gradients; writes (or adds to) dInput.
    public func backward(dOut: UnsafePointer<Float>, input: UnsafePointer<Float>, saved a: Activations,
                         scratch s: Scratch, dInput: UnsafeMutablePointer<Float>, accumulateInput: Bool,
                         batch b: Int, sequence t: Int) {
        let n = b * t
        cProj.backward(dOut: dOut, input: a.heads.data, dInput: s.dHeads.data, rows: n)
        AttentionKernels.backward(dQKV: s.dQKV.data, dOut: s.dHeads.data, qkv: a.qkv.data, probs: a.probs.data,
                                  scratch: s.scores.data, scratchThreads: s.threads,
                                  batch: b, sequence: t, heads: heads, channels: channels)
        cAttn.backward(dOut: s.dQKV.data, input: input, dInput: dInput, rows: n, accumulateInput: accumulateInput)
    }
}
