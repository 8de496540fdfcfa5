/* dispatch.c -- chooses the SIMD level once and forwards the public entry points.
 *
 * Detection uses CPUID plus XGETBV (the OS must save the YMM/ZMM state).  The environment
 * variable FASTINIT_SIMD=scalar|avx2|avx512 forces a level, which tests use to check that every
 * level produces the same bytes.  Also holds the scalar Philox reference and fi_ndtri.
 */
#include <stdlib.h>
#include <string.h>
#include "fastinit.h"
#include "fi_math.h"
#include "philox.h"

#if defined(__x86_64__) || defined(_M_X64) || defined(__i386__)
#define FI_X86 1
#include <cpuid.h>
#endif

/* The per-level kernels in table order: X(table field, public name, level suffix).  Every entry
 * takes its type from the header's fi_*_fn, so the table, the declarations below and the level
 * files (fill_impl.h) cannot disagree with the public signatures. */
#define FI_KERNELS(X, sfx)                                                                         \
    X(raw_u32, fi_raw_u32, sfx) X(uniform_f32, fi_fill_uniform_f32, sfx)                          \
    X(uniform_f64, fi_fill_uniform_f64, sfx) X(normal_f32, fi_fill_normal_f32, sfx)                \
    X(normal_f64, fi_fill_normal_f64, sfx) X(trunc_f32, fi_fill_trunc_f32, sfx)                    \
    X(trunc_f64, fi_fill_trunc_f64, sfx) X(trunc_table_f32, fi_fill_trunc_table_f32, sfx)          \
    X(const_u16, fi_fill_const_u16, sfx) X(const_u32, fi_fill_const_u32, sfx)                      \
    X(const_u64, fi_fill_const_u64, sfx) X(fma_f32, fi_fma_f32, sfx)

#define FI_FIELD(field, name, sfx) name##_fn *field;
#define FI_DECLARE(field, name, sfx) name##_fn name##_##sfx;
#define FI_ENTRY(field, name, sfx) .field = name##_##sfx,

typedef struct {
    FI_KERNELS(FI_FIELD, none)
} fi_table;

FI_KERNELS(FI_DECLARE, scalar)
#ifdef FI_HAVE_AVX2
FI_KERNELS(FI_DECLARE, avx2)
#endif
#ifdef FI_HAVE_AVX512
FI_KERNELS(FI_DECLARE, avx512)
#endif

static const fi_table fi_tables[3] = {
    {FI_KERNELS(FI_ENTRY, scalar)},
#ifdef FI_HAVE_AVX2
    {FI_KERNELS(FI_ENTRY, avx2)},
#else
    {FI_KERNELS(FI_ENTRY, scalar)},
#endif
#ifdef FI_HAVE_AVX512
    {FI_KERNELS(FI_ENTRY, avx512)},
#else
    {FI_KERNELS(FI_ENTRY, scalar)},
#endif
};

static int cpu_supports(int level)
{
    if (level == FI_SIMD_SCALAR) return 1;
#ifdef FI_X86
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1, fma = (c >> 12) & 1;
    if (!osxsave || !avx || !fma) return 0;         /* both vector levels use FMA3 */
    unsigned xlo, xhi;
    __asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
    int ymm_os = (xlo & 0x6) == 0x6;                /* XMM and YMM state saved by the OS */
    int zmm_os = (xlo & 0xe6) == 0xe6;              /* plus opmask and both ZMM halves */
    if (__get_cpuid_max(0, 0) < 7) return 0;
    __cpuid_count(7, 0, a, b, c, d);
    int avx2 = (b >> 5) & 1;
    int avx512 = ((b >> 16) & 1) && ((b >> 17) & 1) && ((b >> 28) & 1) && ((b >> 30) & 1) && ((b >> 31) & 1);
                                                                 /* F DQ CD BW VL */
    if (level == FI_SIMD_AVX2) {
#ifdef FI_HAVE_AVX2
        return ymm_os && avx2;
#endif
    }
    if (level == FI_SIMD_AVX512) {
#ifdef FI_HAVE_AVX512
        return zmm_os && avx512 && avx2;
#endif
    }
#endif
    return 0;
}

static int fi_level = -1;

static void choose_level(void)
{
    if (fi_level >= 0) return;
    const char *env = getenv("FASTINIT_SIMD");
    int best = cpu_supports(FI_SIMD_AVX512) ? FI_SIMD_AVX512 : cpu_supports(FI_SIMD_AVX2) ? FI_SIMD_AVX2 : FI_SIMD_SCALAR;
    int want = best;
    if (env && *env) {
        if (!strcmp(env, "scalar")) want = FI_SIMD_SCALAR;
        else if (!strcmp(env, "avx2")) want = FI_SIMD_AVX2;
        else if (!strcmp(env, "avx512")) want = FI_SIMD_AVX512;
        if (!cpu_supports(want)) want = -1;         /* reported to Python, which raises */
    }
    fi_level = want;
}

int fi_simd_supported(int level) { return level >= 0 && level <= 2 && cpu_supports(level); }

int fi_simd_level(void)
{
    choose_level();
    return fi_level;
}

int fi_simd_set(int level)
{
    if (!fi_simd_supported(level)) return -1;
    fi_level = level;
    return level;
}

static const fi_table *T(void)
{
    choose_level();
    return &fi_tables[fi_level < 0 ? 0 : fi_level];
}

int fi_raw_u32(uint64_t seed, uint64_t stream, uint64_t block0, unsigned skip, int64_t n, uint32_t *out)
{
    return T()->raw_u32(seed, stream, block0, skip, n, out);
}
int fi_fill_uniform_f32(uint64_t seed, uint64_t stream, uint64_t block0, unsigned skip, int64_t n, void *out,
                        int otype, float a, float b, float lo, float hi)
{
    return T()->uniform_f32(seed, stream, block0, skip, n, out, otype, a, b, lo, hi);
}
int fi_fill_uniform_f64(uint64_t seed, uint64_t stream, uint64_t block0, unsigned skip, int64_t n, double *out,
                        double a, double b, double lo, double hi)
{
    return T()->uniform_f64(seed, stream, block0, skip, n, out, a, b, lo, hi);
}
int fi_fill_normal_f32(uint64_t seed, uint64_t stream, uint64_t block0, unsigned skip, int64_t n, void *out,
                       int otype, float mean, float std)
{
    return T()->normal_f32(seed, stream, block0, skip, n, out, otype, mean, std);
}
int fi_fill_normal_f64(uint64_t seed, uint64_t stream, uint64_t block0, unsigned skip, int64_t n, double *out,
                       double mean, double std)
{
    return T()->normal_f64(seed, stream, block0, skip, n, out, mean, std);
}
int fi_fill_trunc_f32(uint64_t seed, uint64_t stream, uint64_t block0, unsigned skip, int64_t n, void *out,
                      int otype, int mode, double c0, double c1, double sign, double mean, double std, float lo,
                      float hi)
{
    return T()->trunc_f32(seed, stream, block0, skip, n, out, otype, mode, c0, c1, sign, mean, std, lo, hi);
}
int fi_fill_trunc_f64(uint64_t seed, uint64_t stream, uint64_t block0, unsigned skip, int64_t n, double *out,
                      int mode, double c0, double c1, double sign, double mean, double std, double lo, double hi)
{
    return T()->trunc_f64(seed, stream, block0, skip, n, out, mode, c0, c1, sign, mean, std, lo, hi);
}
int fi_fill_trunc_table_f32(uint64_t seed, uint64_t stream, uint64_t block0, unsigned skip, int64_t n, void *out,
                            int otype, const float *table, float lo, float hi)
{
    return T()->trunc_table_f32(seed, stream, block0, skip, n, out, otype, table, lo, hi);
}
int fi_fill_const_u16(int64_t n, uint16_t *out, uint16_t v) { return T()->const_u16(n, out, v); }
int fi_fill_const_u32(int64_t n, uint32_t *out, uint32_t v) { return T()->const_u32(n, out, v); }
int fi_fill_const_u64(int64_t n, uint64_t *out, uint64_t v) { return T()->const_u64(n, out, v); }
int fi_fma_f32(int64_t n, const float *a, const float *b, const float *c, float *out)
{
    return T()->fma_f32(n, a, b, c, out);
}

double fi_ndtri(double p) { return fi_ndtri_inline(p); }

/* The Random123 definition, one block at a time, with `rounds` rounds. */
void fi_philox4x32_R(unsigned rounds, const uint32_t ctr[4], const uint32_t key[2], uint32_t out[4])
{
    uint32_t x0 = ctr[0], x1 = ctr[1], x2 = ctr[2], x3 = ctr[3];
    uint32_t k0 = key[0], k1 = key[1];
    for (unsigned r = 0; r < rounds; r++) {
        if (r > 0) {
            k0 += PHILOX_W0;
            k1 += PHILOX_W1;
        }
        uint64_t p0 = (uint64_t)PHILOX_M0 * x0;
        uint64_t p1 = (uint64_t)PHILOX_M1 * x2;
        uint32_t y0 = (uint32_t)(p1 >> 32) ^ x1 ^ k0;
        uint32_t y2 = (uint32_t)(p0 >> 32) ^ x3 ^ k1;
        x1 = (uint32_t)p1;
        x3 = (uint32_t)p0;
        x0 = y0;
        x2 = y2;
    }
    out[0] = x0; out[1] = x1; out[2] = x2; out[3] = x3;
}
