/// Causal self-attention over the packed qkv[B, T, 3C] buffer, a simple correct version:
/// forward is one work-item per (batch, head, query row); backward runs three kernels per
/// (batch, head) pair with a [T, T] scratch for dS. Scores above the diagonal are never
/// computed (the masked triangle is skipped), and probs keeps zeros there.
/// Tiled versions (local-memory blocks of Q, K, V) are a later performance step.
enum AttentionSource {
    static let name = "attention"
    static let kernels = ["tb_attention_forward", "tb_attention_backward_scores", "tb_attention_backward_query",
                          "tb_attention_backward_key_value"]

    static let text = PreludeSource.text + """
    __kernel void tb_attention_forward(VIEW(float, out), VIEW(float, probs), VIEW(const float, qkv), int sequence,
                                       int heads, int channels) {
        __global float* out = AT(out);
        __global float* probs = AT(probs);
        __global const float* qkv = AT(qkv);
        int T = sequence, C = channels, hs = channels / heads;
        int idx = get_global_id(0);
        int row = idx % T, pair = idx / T;
        int b = pair / heads, h = pair % heads;
        float scale = 1.0f / sqrt((float)hs);
        __global const float* q = qkv + (size_t)(b * T + row) * 3 * C + h * hs;
        __global const float* keys = qkv + (size_t)b * T * 3 * C + C + h * hs;
        __global const float* values = keys + C;
        __global float* p = probs + ((size_t)pair * T + row) * T;
        float mx = -INFINITY;
        for (int j = 0; j <= row; j++) {
            __global const float* k = keys + (size_t)j * 3 * C;
            float dot = 0.0f;
            for (int d = 0; d < hs; d++) dot += q[d] * k[d];
            float score = scale * dot;
            p[j] = score;
            mx = fmax(mx, score);
        }
        float s = 0.0f;
        for (int j = 0; j <= row; j++) { float e = exp(p[j] - mx); p[j] = e; s += e; }
        float inv = 1.0f / s;
        for (int j = 0; j <= row; j++) p[j] *= inv;
        for (int j = row + 1; j < T; j++) p[j] = 0.0f;
        __global float* y = out + (size_t)(b * T + row) * C + h * hs;
        for (int d = 0; d < hs; d++) {
            float acc = 0.0f;
            for (int j = 0; j <= row; j++) acc += p[j] * values[(size_t)j * 3 * C + d];
            y[d] = acc;
        }
    }

    // Pair (b, h), item = query row: dS[row, j] = P·(dP − Σ P·dP)·scale for j ≤ row, where
    // dP[row, j] = dY[row]·V[j].
    __kernel void tb_attention_backward_scores(VIEW(float, dS), VIEW(const float, dOut), VIEW(const float, qkv),
                                               VIEW(const float, probs), int b, int h, int sequence, int heads,
                                               int channels) {
        __global float* dS = AT(dS);
        __global const float* dOut = AT(dOut);
        __global const float* qkv = AT(qkv);
        __global const float* probs = AT(probs);
        int T = sequence, C = channels, hs = channels / heads;
        int row = get_global_id(0);
        float scale = 1.0f / sqrt((float)hs);
        __global const float* dy = dOut + (size_t)(b * T + row) * C + h * hs;
        __global const float* values = qkv + (size_t)b * T * 3 * C + 2 * C + h * hs;
        __global const float* p = probs + ((size_t)(b * heads + h) * T + row) * T;
        __global float* ds = dS + (size_t)row * T;
        float dot = 0.0f;
        for (int j = 0; j <= row; j++) {
            __global const float* v = values + (size_t)j * 3 * C;
            float dp = 0.0f;
            for (int d = 0; d < hs; d++) dp += dy[d] * v[d];
            ds[j] = dp;
            dot += p[j] * dp;
        }
        for (int j = 0; j <= row; j++) ds[j] = p[j] * (ds[j] - dot) * scale;
    }

    // Item (row, d): dQ[row, d] = Σ_{j ≤ row} dS[row, j]·K[j, d].
    __kernel void tb_attention_backward_query(VIEW(float, dQKV), VIEW(const float, dS), VIEW(const float, qkv), int b,
                                              int h, int sequence, int heads, int channels) {
        __global float* dQKV = AT(dQKV);
        __global const float* dS = AT(dS);
        __global const float* qkv = AT(qkv);
        int T = sequence, C = channels, hs = channels / heads;
        int row = get_global_id(0) / hs, d = get_global_id(0) % hs;
        __global const float* keys = qkv + (size_t)b * T * 3 * C + C + h * hs;
        float acc = 0.0f;
        for (int j = 0; j <= row; j++) acc += dS[(size_t)row * T + j] * keys[(size_t)j * 3 * C + d];
        dQKV[(size_t)(b * T + row) * 3 * C + h * hs + d] = acc;
    }

    // Item (j, d): dK[j, d] = Σ_{row ≥ j} dS[row, j]·Q[row, d]; dV[j, d] = Σ_{row ≥ j} P[row, j]·dY[row, d].
    __kernel void tb_attention_backward_key_value(VIEW(float, dQKV), VIEW(const float, dS), VIEW(const float, dOut),
                                                  VIEW(const float, qkv), VIEW(const float, probs), int b, int h,
                                                  int sequence, int heads, int channels) {
        __global float* dQKV = AT(dQKV);
        __global const float* dS = AT(dS);
        __global const float* dOut = AT(dOut);
        __global const float* qkv = AT(qkv);
        __global const float* probs = AT(probs);
        int T = sequence, C = channels, hs = channels / heads;
        int j = get_global_id(0) / hs, d = get_global_id(0) % hs;
        __global const float* queries = qkv + (size_t)b * T * 3 * C + h * hs;
        __global const float* p = probs + (size_t)(b * heads + h) * T * T;
        __global const float* dy = dOut + (size_t)b * T * C + h * hs;
        float dk = 0.0f, dv = 0.0f;
        for (int row = j; row < T; row++) {
            dk += dS[(size_t)row * T + j] * queries[(size_t)row * 3 * C + d];
            dv += p[(size_t)row * T + j] * dy[(size_t)row * C + d];
        }
        size_t base = (size_t)(b * T + j) * 3 * C + h * hs + d;
        dQKV[base + C] = dk;
        dQKV[base + 2 * C] = dv;
    }
    """
}
