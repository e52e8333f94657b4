/// Softmax cross-entropy fused with the logits, in place as on the CPU. Forward: one
/// work-group per row (max, Σ exp, normalise). Backward: one item per logit.
enum SoftmaxCrossEntropySource {
    static let name = "softmax_cross_entropy"
    static let kernels = ["tb_softmax_cross_entropy_forward", "tb_softmax_cross_entropy_backward"]

    static let text = PreludeSource.text + """
    __kernel void tb_softmax_cross_entropy_forward(VIEW(float, logits), VIEW(const int, targets), VIEW(float, losses),
                                                   int classes) {
        __global float* logits = AT(logits);
        __global const int* targets = AT(targets);
        __global float* losses = AT(losses);
        __local float scratch[GROUP];
        int r = get_group_id(0);
        int lid = get_local_id(0);
        __global float* row = logits + (size_t)r * classes;
        // Read before any item overwrites the row (group_max's barriers order it).
        float targetLogit = row[targets[r]];
        float mx = -INFINITY;
        for (int i = lid; i < classes; i += GROUP) mx = fmax(mx, row[i]);
        mx = group_max(scratch, mx);
        float s = 0.0f;
        for (int i = lid; i < classes; i += GROUP) { float e = exp(row[i] - mx); row[i] = e; s += e; }
        s = group_sum(scratch, s);
        float inv = 1.0f / s;
        for (int i = lid; i < classes; i += GROUP) row[i] *= inv;
        if (lid == 0) losses[r] = (mx + log(s)) - targetLogit;
    }

    // dLogits = (p − onehot(target)) · scale, in place.
    __kernel void tb_softmax_cross_entropy_backward(VIEW(float, probabilities), VIEW(const int, targets), int classes,
                                                    float scale) {
        __global float* probabilities = AT(probabilities);
        __global const int* targets = AT(targets);
        size_t i = get_global_id(0);
        int r = i / classes;
        int c = i % classes;
        float p = probabilities[i];
        if (c == targets[r]) p -= 1.0f;
        probabilities[i] = p * scale;
    }
    """
}
