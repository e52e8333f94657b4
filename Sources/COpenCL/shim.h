// OpenCL 1.2's API through the ICD loader (Debian: ocl-icd-opencl-dev). 1.2 is what every
// vendor's driver and POCL support; pinning it keeps the headers from warning about, or
// exposing, 2.x/3.x entry points an older driver lacks.
#define CL_TARGET_OPENCL_VERSION 120
#include <CL/cl.h>
