// zlib (Debian: zlib1g-dev), for gzip-compressed dataset files such as MNIST's IDX.
#include <zlib.h>
