/* fill_avx512.c -- the fill kernels at SIMD level "avx512" (see fill_impl.h). */
#define FI_NB 32
#define FI_SUFFIX avx512
#include "fill_impl.h"
