/// Bias + GELU (GPT-2's tanh approximation) and bias + ReLU, forward and backward, one
/// work-item per element. `hasBias` 0 ignores `bias` (OpenCL 1.2 has no null buffers;
/// the caller passes another buffer in its place).
enum ActivationSource {
    static let name = "activation"
    static let kernels = ["tb_bias_gelu_forward", "tb_bias_gelu_forward_saving_derivative", "tb_gelu_backward",
                          "tb_bias_relu_forward", "tb_relu_backward"]

    static let text = PreludeSource.text + """
    #define GELU_SCALE 0.7978845608028654f
    #define GELU_CUBIC 0.044715f

    __kernel void tb_bias_gelu_forward(VIEW(float, pre), VIEW(float, out), VIEW(const float, bias), int hasBias,
                                       int columns) {
        __global float* pre = AT(pre);
        __global float* out = AT(out);
        __global const float* bias = AT(bias);
        size_t i = get_global_id(0);
        float x = pre[i];
        if (hasBias) { x += bias[i % columns]; pre[i] = x; }
        float t = tanh(GELU_SCALE * (x + GELU_CUBIC * x * x * x));
        out[i] = 0.5f * x * (1.0f + t);
    }

    // As above, and pre is replaced by gelu'(pre + bias) for a one-multiply backward.
    __kernel void tb_bias_gelu_forward_saving_derivative(VIEW(float, pre), VIEW(float, out), VIEW(const float, bias),
                                                         int hasBias, int columns) {
        __global float* pre = AT(pre);
        __global float* out = AT(out);
        __global const float* bias = AT(bias);
        size_t i = get_global_id(0);
        float x = pre[i];
        if (hasBias) x += bias[i % columns];
        float x2 = x * x;
        float t = tanh(GELU_SCALE * (x + GELU_CUBIC * x2 * x));
        float halfOnePlusT = 0.5f * (1.0f + t);
        out[i] = x * halfOnePlusT;
        pre[i] = halfOnePlusT + 0.5f * x * (1.0f - t * t) * GELU_SCALE * (1.0f + 3.0f * GELU_CUBIC * x2);
    }

    // dPre = dOut · gelu'(pre); dPre may be dOut (each item reads before it writes).
    __kernel void tb_gelu_backward(VIEW(float, dPre), VIEW(const float, dOut), VIEW(const float, pre)) {
        __global float* dPre = AT(dPre);
        __global const float* dOut = AT(dOut);
        __global const float* pre = AT(pre);
        size_t i = get_global_id(0);
        float x = pre[i];
        float x2 = x * x;
        float t = tanh(GELU_SCALE * (x + GELU_CUBIC * x2 * x));
        float grad = 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * GELU_SCALE * (1.0f + 3.0f * GELU_CUBIC * x2);
        dPre[i] = grad * dOut[i];
    }

    __kernel void tb_bias_relu_forward(VIEW(float, pre), VIEW(float, out), VIEW(const float, bias), int hasBias,
                                       int columns) {
        __global float* pre = AT(pre);
        __global float* out = AT(out);
        __global const float* bias = AT(bias);
        size_t i = get_global_id(0);
        float x = pre[i];
        if (hasBias) { x += bias[i % columns]; pre[i] = x; }
        out[i] = x > 0.0f ? x : 0.0f;
    }

    __kernel void tb_relu_backward(VIEW(float, dPre), VIEW(const float, dOut), VIEW(const float, pre)) {
        __global float* dPre = AT(dPre);
        __global const float* dOut = AT(dOut);
        __global const float* pre = AT(pre);
        size_t i = get_global_id(0);
        dPre[i] = pre[i] > 0.0f ? dOut[i] : 0.0f;
    }
    """
}
