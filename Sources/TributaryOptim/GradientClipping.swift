import TributaryTensor

public enum GradientClipping {
    /// Scales all gradients so their global L2 norm is at most `maxNorm` (as
    /// `torch.nn.utils.clip_grad_norm_`); returns the norm before clipping. A non-finite
    /// norm is returned unchanged and nothing is scaled: the caller must skip the step.
    @discardableResult
    public static func clipGlobalNorm(_ parameters: ParameterSet, maxNorm: Float) -> Double {
        let norm = parameters.gradientNorm()
        guard norm.isFinite, maxNorm > 0, norm > Double(maxNorm) else { return norm }
        let scale = Float(Double(maxNorm) / (norm + 1e-6))
        for p in parameters.parameters { ElementwiseKernels.scale(p.gradient.data, by: scale, count: p.count) }
        return norm
    }
}
