// The kernels for any x86-64 (SSE2) or other CPU: the compiler's default target.
#pragma clang fp contract(off)
#define CK_SUFFIX baseline
#include "KernelBodies.h"
