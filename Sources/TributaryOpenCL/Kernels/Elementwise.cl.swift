/// Elementwise operations and the two reductions (one work-item per element).
enum ElementwiseSource {
    static let name = "elementwise"
    static let kernels = ["tb_add", "tb_accumulate", "tb_multiply", "tb_scale", "tb_add_bias",
                          "tb_accumulate_column_sums", "tb_sum_of_squares_blocks", "tb_find_nonfinite"]
    /// Values per block of `tb_sum_of_squares_blocks`: the CPU's block, so the float
    /// partial sums cover the same values before both add them in double.
    static let sumBlock = 4096

    static let text = PreludeSource.text + """
    __kernel void tb_add(VIEW(float, out), VIEW(const float, a), VIEW(const float, b)) {
        __global float* out = AT(out);
        __global const float* a = AT(a);
        __global const float* b = AT(b);
        size_t i = get_global_id(0);
        out[i] = a[i] + b[i];
    }

    __kernel void tb_accumulate(VIEW(float, y), VIEW(const float, x)) {
        __global float* y = AT(y);
        __global const float* x = AT(x);
        size_t i = get_global_id(0);
        y[i] += x[i];
    }

    __kernel void tb_multiply(VIEW(float, y), VIEW(const float, x)) {
        __global float* y = AT(y);
        __global const float* x = AT(x);
        size_t i = get_global_id(0);
        y[i] *= x[i];
    }

    __kernel void tb_scale(VIEW(float, y), float s) {
        __global float* y = AT(y);
        size_t i = get_global_id(0);
        y[i] *= s;
    }

    // x[r, c] += bias[c] (linear forward).
    __kernel void tb_add_bias(VIEW(float, x), VIEW(const float, bias), int columns) {
        __global float* x = AT(x);
        __global const float* bias = AT(bias);
        size_t i = get_global_id(0);
        x[i] += bias[i % columns];
    }

    // out[c] += Σ_r x[r, c], one item per column adding rows in order, as the CPU does:
    // deterministic, and bit-identical to it.
    __kernel void tb_accumulate_column_sums(VIEW(float, out), VIEW(const float, x), int rows, int columns) {
        __global float* out = AT(out);
        __global const float* x = AT(x);
        int c = get_global_id(0);
        float s = out[c];
        for (int r = 0; r < rows; r++) s += x[(size_t)r * columns + c];
        out[c] = s;
    }

    // partial[block] = Σ x² over values block·4096 ..< (block+1)·4096, in float; the host
    // adds the partial sums in double (CPUKernels does the same with the same blocks).
    __kernel void tb_sum_of_squares_blocks(VIEW(const float, x), int count, VIEW(float, partial)) {
        __global const float* x = AT(x);
        __global float* partial = AT(partial);
        __local float scratch[GROUP];
        int block = get_group_id(0);
        int start = block * 4096;
        int end = min(count, start + 4096);
        float s = 0.0f;
        for (int i = start + (int)get_local_id(0); i < end; i += GROUP) s += x[i] * x[i];
        s = group_sum(scratch, s);
        if (get_local_id(0) == 0) partial[block] = s;
    }

    // flag[0] = 1 when some value is NaN or ±Inf (the flag starts at 0; every writer
    // writes the same value, so the race is harmless).
    __kernel void tb_find_nonfinite(VIEW(const float, x), VIEW(int, flag)) {
        __global const float* x = AT(x);
        __global int* flag = AT(flag);
        size_t i = get_global_id(0);
        if (!isfinite(x[i])) flag[0] = 1;
    }
    """
}
