/* fill_scalar.c -- the fill kernels at SIMD level "scalar" (see fill_impl.h). */
#define FI_NB 8
#define FI_SUFFIX scalar
#include "fill_impl.h"
