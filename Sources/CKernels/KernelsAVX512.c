// The kernels for CPUs with AVX-512 (F, BW, DQ, VL) and FMA (x86-64 only; Dispatch.c calls
// them only when the CPU and operating system support them).
#if defined(__x86_64__)
#pragma clang fp contract(off)
#pragma clang attribute push (__attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,fma"))), apply_to = function)
#define CK_SUFFIX avx512
#include "KernelBodies.h"
#pragma clang attribute pop
#endif
