/// Token + position embeddings. Backward is deterministic without atomics: the host
/// groups the positions of each distinct token (in ascending order), and one work-item
/// per (distinct token, channel) adds that token's rows in that order, which is the
/// order the CPU adds them in, so dWTE matches it bit for bit; dWPE likewise adds the
/// batch's rows for each position in order.
enum EmbeddingSource {
    static let name = "embedding"
    static let kernels = ["tb_embedding_forward", "tb_embedding_backward_tokens", "tb_embedding_backward_positions"]

    static let text = PreludeSource.text + """
    __kernel void tb_embedding_forward(VIEW(float, out), VIEW(const int, tokens), VIEW(const float, wte),
                                       VIEW(const float, wpe), int sequence, int channels) {
        __global float* out = AT(out);
        __global const int* tokens = AT(tokens);
        __global const float* wte = AT(wte);
        __global const float* wpe = AT(wpe);
        size_t i = get_global_id(0);
        int n = i / channels;
        int c = i % channels;
        out[i] = wte[(size_t)tokens[n] * channels + c] + wpe[(size_t)(n % sequence) * channels + c];
    }

    // Item (u, c): dWTE[token u, c] += dOut[n, c] for u's positions n, in ascending order.
    // distinct[u] is the token; its positions are positions[starts[u] ..< starts[u + 1]].
    __kernel void tb_embedding_backward_tokens(VIEW(float, dWTE), VIEW(const float, dOut), VIEW(const int, distinct),
                                               VIEW(const int, starts), VIEW(const int, positions), int channels) {
        __global float* dWTE = AT(dWTE);
        __global const float* dOut = AT(dOut);
        __global const int* distinct = AT(distinct);
        __global const int* starts = AT(starts);
        __global const int* positions = AT(positions);
        size_t i = get_global_id(0);
        int u = i / channels;
        int c = i % channels;
        __global float* target = dWTE + (size_t)distinct[u] * channels + c;
        float s = *target;
        for (int k = starts[u]; k < starts[u + 1]; k++) s += dOut[(size_t)positions[k] * channels + c];
        *target = s;
    }

    // Item (t, c): dWPE[t, c] += dOut[b·T + t, c] for b = 0 ..< batch, in order.
    __kernel void tb_embedding_backward_positions(VIEW(float, dWPE), VIEW(const float, dOut), int batch, int sequence,
                                                  int channels) {
        __global float* dWPE = AT(dWPE);
        __global const float* dOut = AT(dOut);
        size_t i = get_global_id(0);
        int t = i / channels;
        int c = i % channels;
        float s = dWPE[i];
        for (int b = 0; b < batch; b++) s += dOut[((size_t)b * sequence + t) * channels + c];
        dWPE[i] = s;
    }
    """
}
