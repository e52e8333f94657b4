// The kernels for CPUs with AVX2 and FMA (x86-64 only; Dispatch.c calls them only when
// the CPU says it has both). Contraction stays off so results match the other variants.
#if defined(__x86_64__)
#pragma clang fp contract(off)
#pragma clang attribute push (__attribute__((target("avx2,fma"))), apply_to = function)
#define CK_SUFFIX avx2
#include "KernelBodies.h"
#pragma clang attribute pop
#endif
