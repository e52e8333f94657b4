// The kernel bodies, included once by each variant's .c file with CK_SUFFIX set and
// (for the wide variants) a target attribute pushed over every function, so the same
// source is compiled for each instruction set. Not a normal header: no include guard.
//
// Formulas and operation order follow the Swift kernels in TributaryTensor/Kernels;
// their doc comments say what each computes.

#include <math.h>
#include "VectorMath.h"

#define CK_CAT2(a, b) a##_##b
#define CK_CAT(a, b) CK_CAT2(a, b)
#define CK_FN(name) CK_CAT(name, CK_SUFFIX)

static const float geluScale = 0.7978845608028654f; // sqrt(2/π)
static const float geluCubic = 0.044715f;

CK_INLINE v16 gelu(v16 x) {
    v16 t = vtanh(geluScale * (x + geluCubic * x * x * x));
    return 0.5f * x * (1.0f + t);
}

CK_INLINE v16 gelu_derivative(v16 x, v16 *value) {
    v16 x2 = x * x;
    v16 t = vtanh(geluScale * (x + geluCubic * x2 * x));
    v16 halfOnePlusT = 0.5f * (1.0f + t);
    *value = x * halfOnePlusT;
    return halfOnePlusT + 0.5f * x * (1.0f - t * t) * geluScale * (1.0f + (3 * geluCubic) * x2);
}

void CK_FN(ck_bias_gelu_rows)(float *x, float *y, const float *bias, long rows, long columns) {
    for (long r = 0; r < rows; r++) {
        float *p = x + r * columns, *o = y + r * columns;
        long i = 0;
        for (; i + CK_LANES <= columns; i += CK_LANES) {
            v16 v = load(p + i);
            if (bias) { v = v + load(bias + i); store(p + i, v); }
            store(o + i, gelu(v));
        }
        if (i < columns) {
            long n = columns - i;
            v16 v = load_tail(p + i, n, 0);
            if (bias) { v = v + load_tail(bias + i, n, 0); store_tail(p + i, v, n); }
            store_tail(o + i, gelu(v), n);
        }
    }
}

void CK_FN(ck_bias_gelu_saving_derivative_rows)(float *x, float *y, const float *bias, long rows, long columns) {
    for (long r = 0; r < rows; r++) {
        float *p = x + r * columns, *o = y + r * columns;
        long i = 0;
        for (; i + CK_LANES <= columns; i += CK_LANES) {
            v16 v = load(p + i), value;
            if (bias) v = v + load(bias + i);
            v16 d = gelu_derivative(v, &value);
            store(o + i, value);
            store(p + i, d);
        }
        if (i < columns) {
            long n = columns - i;
            v16 v = load_tail(p + i, n, 0), value;
            if (bias) v = v + load_tail(bias + i, n, 0);
            v16 d = gelu_derivative(v, &value);
            store_tail(o + i, value, n);
            store_tail(p + i, d, n);
        }
    }
}

void CK_FN(ck_gelu_backward)(float *dPre, const float *dOut, const float *pre, long count) {
    long i = 0;
    v16 unused;
    for (; i + CK_LANES <= count; i += CK_LANES) {
        v16 g = gelu_derivative(load(pre + i), &unused);
        store(dPre + i, g * load(dOut + i));
    }
    if (i < count) {
        long n = count - i;
        v16 g = gelu_derivative(load_tail(pre + i, n, 0), &unused);
        store_tail(dPre + i, g * load_tail(dOut + i, n, 0), n);
    }
}

void CK_FN(ck_layer_norm_forward_rows)(float *out, float *mean, float *rstd, const float *input, const float *weight,
                                       const float *bias, long rows, long c, float epsilon) {
    long full = c / CK_LANES * CK_LANES, n = c - full;
    for (long r = 0; r < rows; r++) {
        const float *x = input + r * c;
        float *o = out + r * c;
        v16 acc = splat(0);
        for (long i = 0; i < full; i += CK_LANES) acc += load(x + i);
        if (n) acc += load_tail(x + full, n, 0);
        float m = hsum(acc) / (float)c;
        v16 mv = splat(m);
        acc = splat(0);
        for (long i = 0; i < full; i += CK_LANES) { v16 d = load(x + i) - mv; acc += d * d; }
        if (n) { v16 d = load_tail(x + full, n, m) - mv; acc += d * d; }
        float s = 1.0f / sqrtf(hsum(acc) / (float)c + epsilon);
        v16 sv = splat(s);
        for (long i = 0; i < full; i += CK_LANES) {
            v16 y = (load(x + i) - mv) * sv * load(weight + i);
            if (bias) y = y + load(bias + i);
            store(o + i, y);
        }
        if (n) {
            v16 y = (load_tail(x + full, n, 0) - mv) * sv * load_tail(weight + full, n, 0);
            if (bias) y = y + load_tail(bias + full, n, 0);
            store_tail(o + full, y, n);
        }
        mean[r] = m;
        rstd[r] = s;
    }
}

void CK_FN(ck_layer_norm_backward_rows)(float *dInput, float *dWeight, float *dBias, const float *dOut,
                                        const float *input, const float *weight, const float *mean, const float *rstd,
                                        long rows, long c) {
    long full = c / CK_LANES * CK_LANES, n = c - full;
    for (long r = 0; r < rows; r++) {
        const float *x = input + r * c, *dy = dOut + r * c;
        float *dx = dInput + r * c;
        v16 mv = splat(mean[r]), sv = splat(rstd[r]);
        v16 accD = splat(0), accDN = splat(0);
        for (long i = 0; i < full; i += CK_LANES) {
            v16 xhat = (load(x + i) - mv) * sv, g = load(dy + i);
            v16 dn = g * load(weight + i);
            accD += dn;
            accDN += dn * xhat;
            store(dWeight + i, load(dWeight + i) + g * xhat);
            store(dBias + i, load(dBias + i) + g);
        }
        if (n) {
            // Padding: x = mean gives x̂ = 0 and dOut = 0, so the padded lanes add nothing.
            v16 xhat = (load_tail(x + full, n, mean[r]) - mv) * sv, g = load_tail(dy + full, n, 0);
            v16 dn = g * load_tail(weight + full, n, 0);
            accD += dn;
            accDN += dn * xhat;
            store_tail(dWeight + full, load_tail(dWeight + full, n, 0) + g * xhat, n);
            store_tail(dBias + full, load_tail(dBias + full, n, 0) + g, n);
        }
        v16 meanD = splat(hsum(accD) / (float)c), meanDN = splat(hsum(accDN) / (float)c);
        for (long i = 0; i < full; i += CK_LANES) {
            v16 xhat = (load(x + i) - mv) * sv;
            store(dx + i, load(dx + i) + (load(dy + i) * load(weight + i) - meanD - xhat * meanDN) * sv);
        }
        if (n) {
            v16 xhat = (load_tail(x + full, n, 0) - mv) * sv;
            v16 g = load_tail(dy + full, n, 0) * load_tail(weight + full, n, 0);
            store_tail(dx + full, load_tail(dx + full, n, 0) + (g - meanD - xhat * meanDN) * sv, n);
        }
    }
}

float CK_FN(ck_softmax_row)(float *row, long count) {
    long full = count / CK_LANES * CK_LANES, n = count - full;
    v16 mx = splat(-INFINITY);
    for (long i = 0; i < full; i += CK_LANES) { v16 v = load(row + i); mx = select(v > mx, v, mx); }
    if (n) { v16 v = load_tail(row + full, n, -INFINITY); mx = select(v > mx, v, mx); }
    float m = hmax(mx);
    v16 shift = splat(m), acc = splat(0);
    for (long i = 0; i < full; i += CK_LANES) {
        v16 e = vexp(load(row + i) - shift);
        store(row + i, e);
        acc += e;
    }
    v16 tail = splat(0);
    if (n) {
        tail = vexp(load_tail(row + full, n, 0) - shift);
        acc += select(lanes_below(n), tail, splat(0));
    }
    float sum = hsum(acc);
    v16 inv = splat(1.0f / sum);
    for (long i = 0; i < full; i += CK_LANES) store(row + i, load(row + i) * inv);
    if (n) store_tail(row + full, tail * inv, n);
    return m + logf(sum);
}

void CK_FN(ck_softmax_backward_row)(const float *p, float *d, long count, float scale) {
    long full = count / CK_LANES * CK_LANES, n = count - full;
    v16 acc = splat(0);
    for (long i = 0; i < full; i += CK_LANES) acc += load(p + i) * load(d + i);
    if (n) acc += load_tail(p + full, n, 0) * load_tail(d + full, n, 0);
    v16 dot = splat(hsum(acc));
    for (long i = 0; i < full; i += CK_LANES) store(d + i, load(p + i) * (load(d + i) - dot) * scale);
    if (n) store_tail(d + full, load_tail(p + full, n, 0) * (load_tail(d + full, n, 0) - dot) * scale, n);
}

CK_INLINE void adamw_lanes(float *w, const float *g, float *m, float *v, long n, float b1, float b2, float eps,
                           float bc2Sqrt, float stepSize, float decay, float bound) {
    // n == CK_LANES loads directly; a shorter tail goes through padded copies.
    v16 gi = n == CK_LANES ? load(g) : load_tail(g, n, 0);
    v16 mi = b1 * (n == CK_LANES ? load(m) : load_tail(m, n, 0)) + (1.0f - b1) * gi;
    v16 vi = b2 * (n == CK_LANES ? load(v) : load_tail(v, n, 0)) + (1.0f - b2) * gi * gi;
    v16 normalised = mi / (__builtin_elementwise_sqrt(vi) / bc2Sqrt + eps);
    // Swift's max(a, b) is `b >= a ? b : a` and min(a, b) is `b < a ? b : a`; the same
    // selects keep NaN handling identical.
    v16 lo = splat(-bound), hi = splat(bound);
    v16 clamped = select(normalised >= lo, normalised, lo);
    clamped = select(clamped < hi, clamped, hi);
    v16 wi = (n == CK_LANES ? load(w) : load_tail(w, n, 0)) * decay - stepSize * clamped;
    if (n == CK_LANES) { store(m, mi); store(v, vi); store(w, wi); }
    else { store_tail(m, mi, n); store_tail(v, vi, n); store_tail(w, wi, n); }
}

void CK_FN(ck_adamw)(float *w, const float *g, float *m, float *v, long count, float b1, float b2, float eps,
                     float bc2Sqrt, float stepSize, float decay, float bound) {
    long i = 0;
    for (; i + CK_LANES <= count; i += CK_LANES)
        adamw_lanes(w + i, g + i, m + i, v + i, CK_LANES, b1, b2, eps, bc2Sqrt, stepSize, decay, bound);
    if (i < count) adamw_lanes(w + i, g + i, m + i, v + i, count - i, b1, b2, eps, bc2Sqrt, stepSize, decay, bound);
}

void CK_FN(ck_bias_relu_rows)(float *x, float *y, const float *bias, long rows, long columns) {
    const v16 zero = splat(0);
    for (long r = 0; r < rows; r++) {
        float *p = x + r * columns, *o = y + r * columns;
        long i = 0;
        for (; i + CK_LANES <= columns; i += CK_LANES) {
            v16 v = load(p + i);
            if (bias) { v = v + load(bias + i); store(p + i, v); }
            store(o + i, select(v > zero, v, zero));
        }
        if (i < columns) {
            long n = columns - i;
            v16 v = load_tail(p + i, n, 0);
            if (bias) { v = v + load_tail(bias + i, n, 0); store_tail(p + i, v, n); }
            store_tail(o + i, select(v > zero, v, zero), n);
        }
    }
}

// A select, not a branch: the sign of a pre-activation is a coin toss, and the Swift
// loop's branch mispredicted about half the time.
void CK_FN(ck_relu_backward)(float *dPre, const float *dOut, const float *pre, long count) {
    const v16 zero = splat(0);
    long i = 0;
    for (; i + CK_LANES <= count; i += CK_LANES) store(dPre + i, select(load(pre + i) > zero, load(dOut + i), zero));
    if (i < count) {
        long n = count - i;
        store_tail(dPre + i, select(load_tail(pre + i, n, 0) > zero, load_tail(dOut + i, n, 0), zero), n);
    }
}
