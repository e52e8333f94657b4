/// LayerNorm over the last dimension (ε = 1e-5). Row statistics: one work-group per row.
/// Weight and bias gradients: one work-item per column adding rows in order, so the sums
/// are deterministic without atomics.
enum LayerNormSource {
    static let name = "layernorm"
    static let kernels = ["tb_layer_norm_forward", "tb_layer_norm_backward_input", "tb_layer_norm_backward_parameters"]

    static let text = PreludeSource.text + """
    #define LAYER_NORM_EPSILON 1e-5f

    __kernel void tb_layer_norm_forward(VIEW(float, out), VIEW(float, mean), VIEW(float, rstd),
                                        VIEW(const float, input), VIEW(const float, weight), VIEW(const float, bias),
                                        int hasBias, int columns) {
        __global float* out = AT(out);
        __global float* mean = AT(mean);
        __global float* rstd = AT(rstd);
        __global const float* input = AT(input);
        __global const float* weight = AT(weight);
        __global const float* bias = AT(bias);
        __local float scratch[GROUP];
        int r = get_group_id(0);
        int lid = get_local_id(0);
        __global const float* x = input + (size_t)r * columns;
        __global float* o = out + (size_t)r * columns;
        float s = 0.0f;
        for (int i = lid; i < columns; i += GROUP) s += x[i];
        float m = group_sum(scratch, s) / (float)columns;
        float v = 0.0f;
        for (int i = lid; i < columns; i += GROUP) { float d = x[i] - m; v += d * d; }
        v = group_sum(scratch, v);
        float rs = 1.0f / sqrt(v / (float)columns + LAYER_NORM_EPSILON);
        for (int i = lid; i < columns; i += GROUP) {
            float y = (x[i] - m) * rs * weight[i];
            o[i] = hasBias ? y + bias[i] : y;
        }
        if (lid == 0) { mean[r] = m; rstd[r] = rs; }
    }

    // dInput += (dy·w − mean(dy·w) − x̂·mean(dy·w·x̂)) · rstd, per row.
    __kernel void tb_layer_norm_backward_input(VIEW(float, dInput), VIEW(const float, dOut), VIEW(const float, input),
                                               VIEW(const float, weight), VIEW(const float, mean),
                                               VIEW(const float, rstd), int columns) {
        __global float* dInput = AT(dInput);
        __global const float* dOut = AT(dOut);
        __global const float* input = AT(input);
        __global const float* weight = AT(weight);
        __global const float* mean = AT(mean);
        __global const float* rstd = AT(rstd);
        __local float scratch[GROUP];
        int r = get_group_id(0);
        int lid = get_local_id(0);
        size_t base = (size_t)r * columns;
        float m = mean[r], s = rstd[r];
        float sumD = 0.0f, sumDN = 0.0f;
        for (int i = lid; i < columns; i += GROUP) {
            float xhat = (input[base + i] - m) * s;
            float dn = dOut[base + i] * weight[i];
            sumD += dn;
            sumDN += dn * xhat;
        }
        float meanD = group_sum(scratch, sumD) / (float)columns;
        float meanDN = group_sum(scratch, sumDN) / (float)columns;
        for (int i = lid; i < columns; i += GROUP) {
            float xhat = (input[base + i] - m) * s;
            dInput[base + i] += (dOut[base + i] * weight[i] - meanD - xhat * meanDN) * s;
        }
    }

    // dWeight[c] += Σ_r dOut·x̂; dBias[c] += Σ_r dOut (when hasBias).
    __kernel void tb_layer_norm_backward_parameters(VIEW(float, dWeight), VIEW(float, dBias), int hasBias,
                                                    VIEW(const float, dOut), VIEW(const float, input),
                                                    VIEW(const float, mean), VIEW(const float, rstd), int rows,
                                                    int columns) {
        __global float* dWeight = AT(dWeight);
        __global float* dBias = AT(dBias);
        __global const float* dOut = AT(dOut);
        __global const float* input = AT(input);
        __global const float* mean = AT(mean);
        __global const float* rstd = AT(rstd);
        int c = get_global_id(0);
        float dw = 0.0f, db = 0.0f;
        for (int r = 0; r < rows; r++) {
            size_t i = (size_t)r * columns + c;
            float xhat = (input[i] - mean[r]) * rstd[r];
            dw += dOut[i] * xhat;
            db += dOut[i];
        }
        dWeight[c] += dw;
        if (hasBias) dBias[c] += db;
    }
    """
}
