/* fastinit.h -- the one public header of the fastinit C core.
 *
 * Every function is pure: (key, counter position, n, out, parameters) in, n values out.
 * No allocation, no hidden state, no threads; the Python/Numba layer validates arguments
 * and splits work into chunks.  Return value: 0 on success.
 *
 * Each kernel's signature is written once, as a function type (fi_*_fn) below: it declares the
 * public entry point, each SIMD level's copy (fill_impl.h) and dispatch.c's table, so the
 * compiler checks every definition against it.  fastinit/_lib.py holds the one Python copy
 * (SIGNATURES), which both ctypes and the Numba layer read.
 *
 * The random stream is Philox4x32-10 exactly as Random123 defines it.  A generator call
 * addresses words with
 *     key     = (seed & 0xFFFFFFFF, seed >> 32)
 *     counter = (block & 0xFFFFFFFF, block >> 32, stream & 0xFFFFFFFF, stream >> 32)
 * and a fill starts at word/element `skip` of counter block `block0`, so any slice of a
 * logical tensor can be produced on its own.
 *
 * Element -> counter maps (documented in README "Reproducibility"):
 *   32-bit family (float32, float16, bfloat16 outputs): element e uses block e / 4, word e % 4
 *     (every transform, normals included, maps one word to one element).
 *   float64: element e uses block e / 2, words 2(e % 2) and 2(e % 2) + 1
 *     (normals: Box-Muller, the whole block -> elements 0,1).
 */
#ifndef FASTINIT_H
#define FASTINIT_H

#include <stdint.h>

#ifdef _WIN32
#define FI_API __declspec(dllexport)
#else
#define FI_API __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* Output element types of the 32-bit family. */
enum { FI_OUT_F32 = 0, FI_OUT_F16 = 1, FI_OUT_BF16 = 2 };
/* Flag or'ed into otype: float32 outputs of the uniform, normal and table-mode truncated normal
 * kernels are written with non-temporal stores (for fills much larger than the caches; the values are
 * the same).  Every f32-family kernel accepts it; the others ignore it. */
enum { FI_OUT_STREAM = 16 };

/* SIMD levels. */
enum { FI_SIMD_SCALAR = 0, FI_SIMD_AVX2 = 1, FI_SIMD_AVX512 = 2 };

/* One Philox4x32 block with `rounds` rounds (10 for Philox4x32-10): the reference. */
FI_API void fi_philox4x32_R(unsigned rounds, const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4]);

/* Raw words: out[i] = word (skip + i) % 4 of block block0 + (skip + i) / 4. */
typedef int fi_raw_u32_fn(uint64_t seed, uint64_t stream, uint64_t block0, unsigned skip, int64_t n, uint32_t *out);
FI_API fi_raw_u32_fn fi_raw_u32;

/* U[a, b): v = a + (b - a) * u with u = (w >> 8) * 2^-24, then clamped to [lo, hi] (the smallest
 * and largest values of the output type inside [a, b)), then rounded to the output type. */
typedef int fi_fill_uniform_f32_fn(uint64_t seed, uint64_t stream, uint64_t block0, unsigned skip, int64_t n,
                                   void *out, int otype, float a, float b, float lo, float hi);
FI_API fi_fill_uniform_f32_fn fi_fill_uniform_f32;
/* float64: u = ((w0 << 32 | w1) >> 11) * 2^-53. */
typedef int fi_fill_uniform_f64_fn(uint64_t seed, uint64_t stream, uint64_t block0, unsigned skip, int64_t n,
                                   double *out, double a, double b, double lo, double hi);
FI_API fi_fill_uniform_f64_fn fi_fill_uniform_f64;

/* N(mean, std^2).  float32 family: inverse CDF over octaves of the two-sided tail probability.
 * For the word w: sign = bit 0, z = w | 1, q = z 2^-32 = P(|X| > |x|); octave
 * lz = clz(z) (q in [2^-(lz+1), 2^-lz)); t = float(1 + m 2^-23) - 1.5 with m the 23 bits after
 * z's leading one; |x| = sum_k fi_normal_table[k][lz] t^k by Horner's rule in float32 with fused
 * multiply-adds (k = 7 .. 0; kernels/normal_table.h, made by kernels/fit_normal_octaves.py), value
 * = fma(std, +-|x|, mean) in float32.  float64: Box-Muller, r = sqrt(-2 ln u1), theta = 2 pi u2,
 * (r cos theta, r sin theta). */
typedef int fi_fill_normal_f32_fn(uint64_t seed, uint64_t stream, uint64_t block0, unsigned skip, int64_t n,
                                  void *out, int otype, float mean, float std);
FI_API fi_fill_normal_f32_fn fi_fill_normal_f32;
typedef int fi_fill_normal_f64_fn(uint64_t seed, uint64_t stream, uint64_t block0, unsigned skip, int64_t n,
                                  double *out, double mean, double std);
FI_API fi_fill_normal_f64_fn fi_fill_normal_f64;

/* Truncated normal by the inverse CDF, see fastinit/_fill.py (trunc_params) for the modes:
 *   mode 0: p = c0 + u * c1,                         x = c2 * ndtri(p)            (double; c2 = sign)
 *   mode 1: lp = c0 + log(c1 + u * (1 - c1)),        x = c2 * ndtri_tail(lp)      (double, far lower tail)
 *   mode 2, 3 (fi_fill_trunc_f32 only): float32 quantile with c0 = Phi(alpha), c1 = its mass,
 *           c2 = 1 - Phi(beta); mode 2 central polynomial only, mode 3 central and tail
 *   (mode 4, the per-call quantile table, is fi_fill_trunc_table_f32 below)
 *   mode 5 (far tail, double): x = the offset t from the bound, c0 = alpha, c1 = rho, c2 (sign) = 1 - rho
 *   mode 6 (tiny interval, double): x = the position s in [0, 1], c0 = alpha, c1 = the width d
 *   (modes 5, 6: mean = the bound nearer the mean, std = +-std or +-(b - a); fi_math.h)
 * value = mean + std * x, clamped to [lo, hi], rounded to the output type. */
typedef int fi_fill_trunc_f32_fn(uint64_t seed, uint64_t stream, uint64_t block0, unsigned skip, int64_t n,
                                 void *out, int otype, int mode, double c0, double c1, double c2,
                                 double mean, double std, float lo, float hi);
FI_API fi_fill_trunc_f32_fn fi_fill_trunc_f32;
typedef int fi_fill_trunc_f64_fn(uint64_t seed, uint64_t stream, uint64_t block0, unsigned skip, int64_t n,
                                 double *out, int mode, double c0, double c1, double sign,
                                 double mean, double std, double lo, double hi);
FI_API fi_fill_trunc_f64_fn fi_fill_trunc_f64;

/* Truncated normal from a per-call table of the quantile (kernels/trunc_table.c), for float32-family
 * outputs and intervals [alpha, beta] whose quantile function is smooth enough (fi_trunc_table
 * measures it).  For the word w, the top FI_TT_SEG_BITS bits choose one of FI_TT_SEGS equal
 * segments s of the uniform, the low 23 bits the position: t = float(1 + (w & 0x7fffff) 2^-23) - 1.5
 * (exact, in [-1/2, 1/2)) stands for u = (s + t + 1/2 + 2^-24) / FI_TT_SEGS, and
 * value = sum_k table[k FI_TT_SEGS + s] t^k by Horner's rule with fused multiply-adds in float32
 * (k = FI_TT_DEG down to 0), clamped to [lo, hi]. */
#define FI_TT_SEG_BITS 5
#define FI_TT_SEGS (1 << FI_TT_SEG_BITS)
#define FI_TT_DEG 8
#define FI_TT_SIZE ((FI_TT_DEG + 1) * FI_TT_SEGS)
typedef int fi_fill_trunc_table_f32_fn(uint64_t seed, uint64_t stream, uint64_t block0, unsigned skip,
                                       int64_t n, void *out, int otype, const float *table, float lo, float hi);
FI_API fi_fill_trunc_table_f32_fn fi_fill_trunc_table_f32;
/* Builds the table of mean + std x for c0 = Phi(alpha), c1 = Phi(beta) - Phi(alpha),
 * c2 = 1 - Phi(beta) (each without cancellation): per segment, the degree-FI_TT_DEG Chebyshev
 * interpolant of the exact quantile x (fi_ndtri of the nearer tail) in monomial form, scaled and
 * rounded to float.  Returns the largest error of the float32 evaluation of the standardised
 * table (mean 0, std 1) found at 65 points per segment, in units of 2^-24 max(|x|, 1).  Every
 * operation is fixed, so the table is the same on every machine. */
FI_API double fi_trunc_table(double c0, double c1, double c2, double mean, double std, float *table);

/* First touch (kernels/memory.c): fi_prefault maps the whole pages of [addr, addr + nbytes) for
 * writing in one call (0 on success, -1 if the system cannot; the data are not changed);
 * fi_resident is 1 if the first whole page at or after addr is mapped, 0 if not, -1 unknown. */
FI_API int fi_prefault(void *addr, int64_t nbytes);
FI_API int fi_resident(const void *addr);

/* Constant fills (also the write-bandwidth yardstick of the benchmarks). */
typedef int fi_fill_const_u16_fn(int64_t n, uint16_t *out, uint16_t v);
typedef int fi_fill_const_u32_fn(int64_t n, uint32_t *out, uint32_t v);
typedef int fi_fill_const_u64_fn(int64_t n, uint64_t *out, uint64_t v);
FI_API fi_fill_const_u16_fn fi_fill_const_u16;
FI_API fi_fill_const_u32_fn fi_fill_const_u32;
FI_API fi_fill_const_u64_fn fi_fill_const_u64;

/* a[i] * b[i] + c[i] rounded once, as the float32 table kernels compute it (hardware FMA, or its
 * exact emulation on levels without one); exported for tests. */
typedef int fi_fma_f32_fn(int64_t n, const float *a, const float *b, const float *c, float *out);
FI_API fi_fma_f32_fn fi_fma_f32;

/* Inverse standard-normal CDF (Wichura AS241), exported for tests. */
FI_API double fi_ndtri(double p);

/* SIMD level selection: fi_simd_level() is the level in use (-1 if FASTINIT_SIMD asked for one
 * this CPU or build cannot run); fi_simd_set() forces one (returns -1 if the CPU or the build
 * cannot run it); fi_simd_supported() is 1 if the level can run here, else 0. */
FI_API int fi_simd_level(void);
FI_API int fi_simd_set(int level);
FI_API int fi_simd_supported(int level);

#ifdef __cplusplus
}
#endif
#endif
