// 16-lane float vectors (GNU vector extensions) and the transcendental functions of
// TributaryTensor's FastMath, for the kernel bodies. The same 16-lane code compiles to
// one zmm register under AVX-512, two ymm under AVX2 and four xmm on baseline x86-64;
// lane order, and hence every rounding, is the same in all three.
#ifndef TRIBUTARY_CKERNELS_VECTORMATH_H
#define TRIBUTARY_CKERNELS_VECTORMATH_H

#include <stdint.h>
#include <string.h>

// Every helper is inlined into its kernel, so no 64-byte vector crosses a call and the
// ABI warnings about passing them without AVX-512 do not apply.
#pragma clang diagnostic ignored "-Wpsabi"

#define CK_INLINE static inline __attribute__((always_inline))
#define CK_LANES 16

typedef float v16 __attribute__((vector_size(64)));
typedef int32_t vi16 __attribute__((vector_size(64)));
typedef float v8 __attribute__((vector_size(32)));
typedef float v4 __attribute__((vector_size(16)));
// Unaligned, aliasing-safe view for loads and stores.
typedef float v16u __attribute__((vector_size(64), aligned(4), may_alias));

CK_INLINE v16 splat(float x) { return (v16){0} + x; }
CK_INLINE v16 load(const float *p) { return *(const v16u *)p; }
CK_INLINE void store(float *p, v16 v) { *(v16u *)p = v; }

/// The first n (< 16) values at p, the other lanes `pad`.
CK_INLINE v16 load_tail(const float *p, long n, float pad) {
    v16 v = splat(pad);
    memcpy(&v, p, (size_t)n * sizeof(float));
    return v;
}
CK_INLINE void store_tail(float *p, v16 v, long n) { memcpy(p, &v, (size_t)n * sizeof(float)); }

/// Lanes where mask is all ones take a, the others b.
CK_INLINE v16 select(vi16 mask, v16 a, v16 b) { return (v16)(((vi16)a & mask) | ((vi16)b & ~mask)); }

/// Lanes below n all ones (for masking a tail's padding out of a sum).
CK_INLINE vi16 lanes_below(long n) {
    const vi16 iota = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    return iota < (int32_t)n;
}

/// Σ lanes in a fixed pairwise order (the same in every variant).
CK_INLINE float hsum(v16 v) {
    v8 a = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) + __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
    v4 b = __builtin_shufflevector(a, a, 0, 1, 2, 3) + __builtin_shufflevector(a, a, 4, 5, 6, 7);
    return (b[0] + b[2]) + (b[1] + b[3]);
}

CK_INLINE float hmax(v16 v) {
    float m = v[0];
    for (int i = 1; i < CK_LANES; i++) m = v[i] > m ? v[i] : m;
    return m;
}

/// exp, as FastMath.exp: 2^n · p(r), Cody–Waite reduction, degree-6 polynomial; relative
/// error below 2e-7 over [-87.3, 88.3] (inputs are clamped to it).
CK_INLINE v16 vexp(v16 x) {
    const v16 lo = splat(-87.3f), hi = splat(88.3f);
    v16 c = select(x < lo, lo, x);
    c = select(c > hi, hi, c);
    const v16 magic = splat(12582912.0f); // 1.5 · 2^23: adding it rounds to an integer
    v16 t = c * 1.44269504f + magic;
    v16 n = t - magic;
    v16 r = c - n * 0.693145751953125f;
    r = r - n * 1.428606765330187045e-06f;
    v16 p = splat(1.0f / 720.0f);
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    vi16 ni = (vi16)t - 0x4B400000;
    vi16 scaleBits = (ni + 127) << 23;
    return p * (v16)scaleBits;
}

/// tanh(x) = 1 − 2 / (exp(2x) + 1): saturates cleanly for large |x|.
CK_INLINE v16 vtanh(v16 x) {
    v16 e = vexp(x + x);
    return 1.0f - 2.0f / (e + 1.0f);
}

#endif
