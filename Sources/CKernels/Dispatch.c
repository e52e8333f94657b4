// Chooses the kernel variant once, when the program starts, and forwards each public
// kernel through a table of function pointers.
#include "CKernels.h"

#define CK_DECLARE(suffix) \
    void ck_bias_gelu_rows_##suffix(float *, float *, const float *, long, long); \
    void ck_bias_gelu_saving_derivative_rows_##suffix(float *, float *, const float *, long, long); \
    void ck_gelu_backward_##suffix(float *, const float *, const float *, long); \
    void ck_layer_norm_forward_rows_##suffix(float *, float *, float *, const float *, const float *, const float *, \
                                             long, long, float); \
    void ck_layer_norm_backward_rows_##suffix(float *, float *, float *, const float *, const float *, const float *, \
                                              const float *, const float *, long, long); \
    float ck_softmax_row_##suffix(float *, long); \
    void ck_softmax_backward_row_##suffix(const float *, float *, long, float); \
    void ck_adamw_##suffix(float *, const float *, float *, float *, long, float, float, float, float, float, float, float); \
    void ck_bias_relu_rows_##suffix(float *, float *, const float *, long, long); \
    void ck_relu_backward_##suffix(float *, const float *, const float *, long);

CK_DECLARE(baseline)
#if defined(__x86_64__)
CK_DECLARE(avx2)
CK_DECLARE(avx512)
#endif

typedef struct {
    void (*biasGELURows)(float *, float *, const float *, long, long);
    void (*biasGELUSavingDerivativeRows)(float *, float *, const float *, long, long);
    void (*geluBackward)(float *, const float *, const float *, long);
    void (*layerNormForwardRows)(float *, float *, float *, const float *, const float *, const float *, long, long, float);
    void (*layerNormBackwardRows)(float *, float *, float *, const float *, const float *, const float *, const float *,
                                  const float *, long, long);
    float (*softmaxRow)(float *, long);
    void (*softmaxBackwardRow)(const float *, float *, long, float);
    void (*adamw)(float *, const float *, float *, float *, long, float, float, float, float, float, float, float);
    void (*biasReLURows)(float *, float *, const float *, long, long);
    void (*reluBackward)(float *, const float *, const float *, long);
} CKTable;

#define CK_TABLE(suffix) \
    { ck_bias_gelu_rows_##suffix, ck_bias_gelu_saving_derivative_rows_##suffix, ck_gelu_backward_##suffix, \
      ck_layer_norm_forward_rows_##suffix, ck_layer_norm_backward_rows_##suffix, ck_softmax_row_##suffix, \
      ck_softmax_backward_row_##suffix, ck_adamw_##suffix, ck_bias_relu_rows_##suffix, ck_relu_backward_##suffix }

static const CKTable tables[] = {
    CK_TABLE(baseline),
#if defined(__x86_64__)
    CK_TABLE(avx2),
    CK_TABLE(avx512),
#endif
};

static CKVariant active = CKVariantBaseline;

bool ck_variant_supported(CKVariant variant) {
    switch (variant) {
    case CKVariantBaseline:
        return true;
#if defined(__x86_64__)
    case CKVariantAVX2:
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case CKVariantAVX512:
        // __builtin_cpu_supports also checks that the OS saves the zmm registers.
        __builtin_cpu_init();
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl") &&
               __builtin_cpu_supports("fma");
#endif
    default:
        return false;
    }
}

// Runs before main: the choice is made once, before any thread can call a kernel.
__attribute__((constructor)) static void ck_choose_variant(void) {
    if (ck_variant_supported(CKVariantAVX512)) active = CKVariantAVX512;
    else if (ck_variant_supported(CKVariantAVX2)) active = CKVariantAVX2;
    else active = CKVariantBaseline;
}

CKVariant ck_active_variant(void) { return active; }

bool ck_force_variant(CKVariant variant) {
    if (!ck_variant_supported(variant)) return false;
    active = variant;
    return true;
}

const char *ck_variant_name(CKVariant variant) {
    switch (variant) {
    case CKVariantBaseline: return "baseline";
    case CKVariantAVX2: return "avx2";
    case CKVariantAVX512: return "avx512";
    default: return "unknown";
    }
}

void ck_bias_gelu_rows(float *x, float *y, const float *bias, long rows, long columns) {
    tables[active].biasGELURows(x, y, bias, rows, columns);
}
void ck_bias_gelu_saving_derivative_rows(float *x, float *y, const float *bias, long rows, long columns) {
    tables[active].biasGELUSavingDerivativeRows(x, y, bias, rows, columns);
}
void ck_gelu_backward(float *dPre, const float *dOut, const float *pre, long count) {
    tables[active].geluBackward(dPre, dOut, pre, count);
}
void ck_layer_norm_forward_rows(float *out, float *mean, float *rstd, const float *input, const float *weight,
                                const float *bias, long rows, long columns, float epsilon) {
    tables[active].layerNormForwardRows(out, mean, rstd, input, weight, bias, rows, columns, epsilon);
}
void ck_layer_norm_backward_rows(float *dInput, float *dWeight, float *dBias, const float *dOut, const float *input,
                                 const float *weight, const float *mean, const float *rstd, long rows, long columns) {
    tables[active].layerNormBackwardRows(dInput, dWeight, dBias, dOut, input, weight, mean, rstd, rows, columns);
}
float ck_softmax_row(float *row, long count) { return tables[active].softmaxRow(row, count); }
void ck_softmax_backward_row(const float *p, float *d, long count, float scale) {
    tables[active].softmaxBackwardRow(p, d, count, scale);
}
void ck_adamw(float *w, const float *g, float *m, float *v, long count, float b1, float b2, float eps, float bc2Sqrt,
              float stepSize, float decay, float bound) {
    tables[active].adamw(w, g, m, v, count, b1, b2, eps, bc2Sqrt, stepSize, decay, bound);
}
void ck_bias_relu_rows(float *x, float *y, const float *bias, long rows, long columns) {
    tables[active].biasReLURows(x, y, bias, rows, columns);
}
void ck_relu_backward(float *dPre, const float *dOut, const float *pre, long count) {
    tables[active].reluBackward(dPre, dOut, pre, count);
}
