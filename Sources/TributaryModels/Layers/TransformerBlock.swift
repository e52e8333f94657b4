import TributaryTensor

/// A pre-LayerNorm GPT-2 block: x + attn(ln_1(x)), then + mlp(ln_2(·)).
public struct TransformerBlock: Sendable {
    public let ln1: LayerNorm
    public let attention: CausalSelfAttention
    public let ln2: LayerNorm
    public let cFc: Linear
    public let cProj: Linear
    public let channels: Int
    public let device: any ComputeDevice

    public init(index i: Int, channels c: Int, heads: Int, bias: Bool, allocator: TensorAllocator) throws {
        try self.init(index: i, channels: c, heads: heads, bias: bias, device: CPUDevice(allocator: allocator))
    }

    public init(index i: Int, channels c: Int, heads: Int, bias: Bool, device: any ComputeDevice) throws {
        try self.init(index: i, channels: c, heads: heads, bias: bias, parameters: .allocating(device.allocator), device: device)
    }

    /// Parameters are made in `parameters`' order, which is the `block.N` shard's order.
    public init(index i: Int, channels c: Int, heads: Int, bias: Bool, parameters f: ParameterFactory,
                device d: any ComputeDevice) throws {
        let p = Self.parameterPrefix(index: i)
        ln1 = try LayerNorm(name: "\(p).ln_1", features: c, bias: bias, parameters: f, device: d)
        attention = try CausalSelfAttention(name: "\(p).attn", channels: c, heads: heads, bias: bias, parameters: f, device: d)
        ln2 = try LayerNorm(name: "\(p).ln_2", features: c, bias: bias, parameters: f, device: d)
        cFc = try Linear(name: "\(p).mlp.c_fc", inFeatures: c, outFeatures: 4 * c, bias: bias, parameters: f, device: d)
        cProj = try Linear(name: "\(p).mlp.c_proj", inFeatures: 4 * c, outFeatures: c, bias: bias, parameters: f, device: d)
        channels = c
        device = d
    }

    /// In nanoGPT's `named_parameters()` order.
    public var parameters: [Parameter] {
        ln1.parameters + attention.parameters + ln2.parameters + cFc.parameters + cProj.parameters
    }

    /// Where block `index`'s parameter names start (nanoGPT's module path).
    public static func parameterPrefix(index i: Int) -> String { "transformer.h.\(i)" }

    /// What `init` makes, in `parameters` order, without allocating it: the `block.N`
    /// shard's contents.
    public static func parameterSpecs(index i: Int, channels c: Int, bias: Bool) -> [ParameterSpec] {
        let p = parameterPrefix(index: i)
        return LayerNorm.parameterSpecs(name: "\(p).ln_1", features: c, bias: bias).all
            + CausalSelfAttention.parameterSpecs(name: "\(p).attn", channels: c, bias: bias)
            + LayerNorm.parameterSpecs(name: "\(p).ln_2", features: c, bias: bias).all
            + Linear.parameterSpecs(name: "\(p).mlp.c_fc", inFeatures: c, outFeatures: 4 * c, bias: bias).all
            + Linear.parameterSpecs(name: "\(p).mlp.c_proj", inFeatures: 4 * c, outFeatures: c, bias: bias).all
    }

    /// The residual projections whose initialisation GPT-2 scales by 1/√(2·n_layer).
    public var residualProjections: [Parameter] { [attention.cProj.weight, cProj.weight] }

    /// Everything forward keeps for backward. Given the block's input alone, forward can
    /// rebuild all of it, which is what activation checkpointing relies on.
    public struct Activations: Sendable {
        public let ln1: Tensor, ln1Mean: Tensor, ln1Rstd: Tensor
        public let attention: CausalSelfAttention.Activations
        public let mid: Tensor
        public let ln2: Tensor, ln2Mean: Tensor, ln2Rstd: Tensor
        /// gelu′ of c_fc's output (the pre-activation itself is not kept; see the device
        /// kernel `biasGELUForwardSavingDerivative`).
        public let fcGELUDerivative: Tensor
        public let fcOut: Tensor

        public init(batch b: Int, sequence t: Int, channels c: Int, heads h: Int, allocator: TensorAllocator) throws {
            let s = Self.ownShapes(batch: b, sequence: t, channels: c)
            ln1 = try Tensor(shape: s[0], allocator: allocator)
            ln1Mean = try Tensor(shape: s[1], allocator: allocator)
            ln1Rstd = try Tensor(shape: s[2], allocator: allocator)
            attention = try CausalSelfAttention.Activations(batch: b, sequence: t, channels: c, heads: h, allocator: allocator)
            mid = try Tensor(shape: s[3], allocator: allocator)
            ln2 = try Tensor(shape: s[4], allocator: allocator)
            ln2Mean = try Tensor(shape: s[5], allocator: allocator)
            ln2Rstd = try Tensor(shape: s[6], allocator: allocator)
            fcGELUDerivative = try Tensor(shape: s[7], allocator: allocator)
            fcOut = try Tensor(shape: s[8], allocator: allocator)
        }

        /// The shapes `init` allocates itself, in order (the attention's are its own).
        static func ownShapes(batch b: Int, sequence t: Int, channels c: Int) -> [[Int]] {
            let n = b * t
            return [[n, c], [n], [n], [n, c], [n, c], [n], [n], [n, 4 * c], [n, 4 * c]]
        }

        /// Bytes `init` allocates: what a memory plan counts per kept block.
        public static func byteCount(batch b: Int, sequence t: Int, channels c: Int, heads h: Int) -> Int {
            TensorShapes.byteCount(ownShapes(batch: b, sequence: t, channels: c))
                + CausalSelfAttention.Activations.byteCount(batch: b, sequence: t, channels: c, heads: h)
        }
    }

    /// Backward scratch, shared by all blocks.
    public struct Scratch: Sendable {
        public let dLN: Tensor
        public let dFc: Tensor
        public let attention: CausalSelfAttention.Scratch

        public init(batch b: Int, sequence t: Int, channels c: Int, allocator: TensorAllocator) throws {
            try self.init(batch: b, sequence: t, channels: c, device: CPUDevice(allocator: allocator))
        }

        public init(batch b: Int, sequence t: Int, channels c: Int, device: any ComputeDevice) throws {
            let allocator = device.allocator
            let s = Self.ownShapes(batch: b, sequence: t, channels: c)
            dLN = try Tensor(shape: s[0], allocator: allocator)
            dFc = try Tensor(shape: s[1], allocator: allocator)
            attention = try CausalSelfAttention.Scratch(batch: b, sequence: t, channels: c, device: device)
        }

        static func ownShapes(batch b: Int, sequence t: Int, channels c: Int) -> [[Int]] { [[b * t, c], [b * t, 4 * c]] }

        /// Bytes `init` allocates on a device whose attention scratch is `attentionScratch`.
        public static func byteCount(batch b: Int, sequence t: Int, channels c: Int, attentionScratch: [Int]) -> Int {
            TensorShapes.byteCount(ownShapes(batch: b, sequence: t, channels: c))
                + CausalSelfAttention.Scratch.byteCount(batch: b, sequence: t, channels: c, scratch: attentionScratch)
        }
    }

    public func forward(_ x: Tensor, into y: Tensor, saving a: Activations, batch b: Int, sequence t: Int) {
        let n = b * t, c = channels
        ln1.forward(x, into: a.ln1, mean: a.ln1Mean, rstd: a.ln1Rstd, rows: n)
        attention.forward(a.ln1, into: a.mid, saving: a.attention, batch: b, sequence: t)
        device.kernels.accumulate(a.mid, x, count: n * c)
        ln2.forward(a.mid, into: a.ln2, mean: a.ln2Mean, rstd: a.ln2Rstd, rows: n)
        cFc.forward(a.ln2, into: a.fcGELUDerivative, rows: n, addBias: false)
        device.kernels.biasGELUForwardSavingDerivative(preToDerivative: a.fcGELUDerivative, out: a.fcOut,
                                                       bias: cFc.bias?.value, rows: n, columns: 4 * c)
        cProj.forward(a.fcOut, into: y, rows: n)
        device.kernels.accumulate(y, a.mid, count: n * c)
    }

    /// On entry `dResidual` holds ∂L/∂y; on exit ∂L/∂x. Parameter gradients accumulate.
    public func backward(dResidual: Tensor, input x: Tensor, saved a: Activations, scratch s: Scratch,
                         batch b: Int, sequence t: Int) {
        let n = b * t
        cProj.backward(dOut: dResidual, input: a.fcOut, dInput: s.dFc, rows: n)
        device.kernels.multiply(s.dFc, by: a.fcGELUDerivative, count: n * 4 * channels)
        cFc.backward(dOut: s.dFc, input: a.ln2, dInput: s.dLN, rows: n)
        ln2.backward(dOut: s.dLN, input: a.mid, mean: a.ln2Mean, rstd: a.ln2Rstd, dInput: dResidual, rows: n)
        attention.backward(dOut: dResidual, input: a.ln1, saved: a.attention, scratch: s.attention,
                           dInput: s.dLN, accumulateInput: false, batch: b, sequence: t)
        ln1.backward(dOut: s.dLN, input: x, mean: a.ln1Mean, rstd: a.ln1Rstd, dInput: dResidual, rows: n)
    }
}
