// OpenBLAS's CBLAS interface plus its thread and core-type controls (Debian: libopenblas-dev).
#include <cblas.h>
