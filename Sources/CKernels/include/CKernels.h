// Hot elementwise and row kernels in C, compiled three times (baseline x86-64, AVX2+FMA,
// AVX-512) and chosen once at start-up by what the CPU supports, so one portable binary
// uses the widest vectors the machine has. Every variant runs the same C expressions on
// the same 16-lane vectors with floating-point contraction off, so all variants give
// bit-identical results: workers on different CPUs still compute on identical bits.
//
// Pointers may not be null unless marked nullable; lengths are element counts.
#ifndef TRIBUTARY_CKERNELS_H
#define TRIBUTARY_CKERNELS_H

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

#pragma clang assume_nonnull begin

/// The instruction-set variants, narrowest first.
typedef enum {
    CKVariantBaseline = 0,
    CKVariantAVX2 = 1,
    CKVariantAVX512 = 2,
} CKVariant;

/// The variant in use (the widest the CPU supports, unless a test forced another).
CKVariant ck_active_variant(void);
/// Whether this CPU (and its operating system) can run `variant`.
bool ck_variant_supported(CKVariant variant);
/// Test-only: makes `variant` the active one; false (and nothing changes) when unsupported.
bool ck_force_variant(CKVariant variant);
/// "baseline", "avx2" or "avx512".
const char *ck_variant_name(CKVariant variant);

/// GELU (tanh approximation): y = gelu(x + bias) per row, writing x + bias back into x.
void ck_bias_gelu_rows(float *x, float *y, const float *_Nullable bias, long rows, long columns);
/// As ck_bias_gelu_rows, but x is replaced by gelu'(x + bias) (backward then multiplies).
void ck_bias_gelu_saving_derivative_rows(float *x, float *y, const float *_Nullable bias, long rows, long columns);
/// dPre = dOut · gelu'(pre); dPre may alias dOut.
void ck_gelu_backward(float *dPre, const float *dOut, const float *pre, long count);

/// ReLU: x += bias (kept for backward; bias may be null), y = x > 0 ? x : 0, per row.
void ck_bias_relu_rows(float *x, float *y, const float *_Nullable bias, long rows, long columns);
/// dPre = pre > 0 ? dOut : 0; dPre may alias dOut.
void ck_relu_backward(float *dPre, const float *dOut, const float *pre, long count);

/// LayerNorm forward over `rows` rows of `columns`; bias may be null.
void ck_layer_norm_forward_rows(float *out, float *mean, float *rstd, const float *input, const float *weight,
                                const float *_Nullable bias, long rows, long columns, float epsilon);
/// LayerNorm backward: dInput += ∂L/∂x; dWeight += Σ dOut·x̂; dBias += Σ dOut (both per-thread partial sums).
void ck_layer_norm_backward_rows(float *dInput, float *dWeight, float *dBias, const float *dOut,
                                 const float *input, const float *weight, const float *mean, const float *rstd,
                                 long rows, long columns);

/// Softmax of one row in place; returns log Σ exp(x).
float ck_softmax_row(float *row, long count);
/// Softmax backward of one row in place: d = p · (d − Σ p·d) · scale.
void ck_softmax_backward_row(const float *p, float *d, long count, float scale);

/// One AdamW step over `count` values (PyTorch's formulation; see TributaryOptim.AdamW).
void ck_adamw(float *weight, const float *gradient, float *m, float *v, long count,
              float beta1, float beta2, float epsilon, float biasCorrection2Sqrt, float stepSize,
              float decay, float bound);

#pragma clang assume_nonnull end

#ifdef __cplusplus
}
#endif

#endif
