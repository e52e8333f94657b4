import TributaryTensor

/// GPT-2 attention: c_attn (q, k, v stacked in that order), causal softmax, c_proj.
public struct CausalSelfAttention: Sendable {
    public let cAttn: Linear
    public let cProj: Linear
    public let heads: Int
    public let channels: Int
    public let device: any ComputeDevice

    public init(name: String, channels: Int, heads: Int, bias: Bool, allocator: TensorAllocator) throws {
        try self.init(name: name, channels: channels, heads: heads, bias: bias, device: CPUDevice(allocator: allocator))
    }

    public init(name: String, channels: Int, heads: Int, bias: Bool, device: any ComputeDevice) throws {
        try self.init(name: name, channels: channels, heads: heads, bias: bias, parameters: .allocating(device.allocator),
                      device: device)
    }

    public init(name: String, channels: Int, heads: Int, bias: Bool, parameters f: ParameterFactory,
                device: any ComputeDevice) throws {
        cAttn = try Linear(name: "\(name).c_attn", inFeatures: channels, outFeatures: 3 * channels, bias: bias, parameters: f,
                           device: device)
        cProj = try Linear(name: "\(name).c_proj", inFeatures: channels, outFeatures: channels, bias: bias, parameters: f,
                           device: device)
        self.heads = heads
        self.channels = channels
        self.device = device
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

    public func forward(_ input: Tensor, into out: Tensor, saving a: Activations, batch b: Int, sequence t: Int) {
        let n = b * t
        cAttn.forward(input, into: a.qkv, rows: n)
        device.kernels.attentionForward(out: a.heads, probs: a.probs, qkv: a.qkv,
                                        batch: b, sequence: t, heads: heads, channels: channels)
        cProj.forward(a.heads, into: out, rows: n)
    }

    /// Scratch buffers backward needs, shared by every layer of a model.
    public struct Scratch: Sendable {
        public let dHeads: Tensor  // [B, T, C]
        public let dQKV: Tensor    // [B, T, 3C]
        public let scores: Tensor  // the device's attention scratch (the CPU's: per-thread [T, T])
        public let threads: Int

        public init(batch b: Int, sequence t: Int, channels c: Int, allocator: TensorAllocator) throws {
            try self.init(batch: b, sequence: t, channels: c, device: CPUDevice(allocator: allocator))
        }

        public init(batch b: Int, sequence t: Int, channels c: Int, device: any ComputeDevice) throws {
            let allocator = device.allocator
            let s = Self.shapes(batch: b, sequence: t, channels: c, scratch: device.kernels.attentionScratchShape(sequence: t))
            threads = s[2].first ?? 1
            dHeads = try Tensor(shape: s[0], allocator: allocator)
            dQKV = try Tensor(shape: s[1], allocator: allocator)
            scores = try Tensor(shape: s[2], allocator: allocator)
        }

        /// The shapes `init` allocates, in order; `scratch` is the device's attention scratch.
        static func shapes(batch b: Int, sequence t: Int, channels c: Int, scratch: [Int]) -> [[Int]] {
            [[b, t, c], [b, t, 3 * c], scratch]
        }

        /// Bytes `init` allocates on a device whose attention scratch is `scratch`
        /// (`ComputeKernels.attentionScratchShape`: the CPU's is a score matrix per thread).
        public static func byteCount(batch b: Int, sequence t: Int, channels c: Int, scratch: [Int]) -> Int {
            TensorShapes.byteCount(shapes(batch: b, sequence: t, channels: c, scratch: scratch))
        }
    }

    /// Accumulates parameter gradients; writes (or adds to) dInput.
    public func backward(dOut: Tensor, input: Tensor, saved a: Activations, scratch s: Scratch, dInput: Tensor,
                         accumulateInput: Bool, batch b: Int, sequence t: Int) {
        let n = b * t
        cProj.backward(dOut: dOut, input: a.heads, dInput: s.dHeads, rows: n)
        device.kernels.attentionBackward(dQKV: s.dQKV, dOut: s.dHeads, qkv: a.qkv, probs: a.probs, scratch: s.scores,
                                         batch: b, sequence: t, heads: heads, channels: channels)
        cAttn.backward(dOut: s.dQKV, input: input, dInput: dInput, rows: n, accumulateInput: accumulateInput)
    }
}
