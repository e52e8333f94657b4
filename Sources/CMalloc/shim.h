// The C library's malloc tuning (glibc's mallopt), so that a memory-budgeted worker's large
// buffers go back to the system when freed.
#if defined(__GLIBC__) || defined(__linux__)
#include <malloc.h>
#endif
