/* fill_avx2.c -- the fill kernels at SIMD level "avx2" (see fill_impl.h). */
#define FI_NB 16
#define FI_SUFFIX avx2
#include "fill_impl.h"
