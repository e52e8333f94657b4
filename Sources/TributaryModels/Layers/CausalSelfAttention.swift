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

    /// What forward keeps for backward.
    public struct Activations: Sendable {
        public let qkv: Tensor    // [B, T, 3C]
        public let probs: Tensor  // [B, H, T, T]
        public let heads: Tensor  // [B, T, C], attention output before c_proj

        public init(batch b: Int, sequence t: Int, channels c: Int, heads h: Int, allocator: TensorAllocator) throws {
            qkv = try Tensor(shape: [b, t, 3 * c], allocator: allocator)
            probs = try Tensor(shape: [b, h, t, t], allocator: allocator)
            heads = try Tensor(shape: [b, t, c], allocator: allocator)
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
            dHeads = try Tensor(shape: [b, t, c], allocator: allocator)
            dQKV = try Tensor(shape: [b, t, 3 * c], allocator: allocator)
            scores = try Tensor(shape: [threads, AttentionKernels.scratchPerThread(sequence: t)], allocator: allocator)
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
