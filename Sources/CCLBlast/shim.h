// CLBlast's C interface: tuned BLAS (SGEMM) on OpenCL devices (Debian: libclblast-dev).
#define CL_TARGET_OPENCL_VERSION 120
#include <clblast_c.h>
