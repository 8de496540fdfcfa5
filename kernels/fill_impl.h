/* fill_impl.h -- the fill kernels, written once and compiled once per SIMD level.
 *
 * Included by fill_scalar.c, fill_avx2.c and fill_avx512.c, which define
 *   FI_NB      Philox blocks generated per step (vector lanes of 64 bits each)
 *   FI_SUFFIX  name suffix of this level's functions (scalar, avx2, avx512)
 * and are compiled with that level's -m flags.  The Philox rounds use GCC vector extensions
 * (one 64-bit lane per block, so the 32x32->64 multiply maps to (v)pmuludq); the transforms
 * are plain loops over the lanes that the compiler vectorises.  Because every file runs the
 * same IEEE operations in the same order (-ffp-contract=off, no fast-math), all levels produce
 * identical bytes; tests/test_kernels.py checks this in a subprocess per level.
 */
#include <stdint.h>
#include <string.h>
#include "fastinit.h"
#include "fi_math.h"

#define FI_CAT_(a, b) a##_##b
#define FI_CAT(a, b) FI_CAT_(a, b)
#define FI_FN(name) FI_CAT(name, FI_SUFFIX)

#define PHILOX_M0 0xD2511F53u  /* Random123 PHILOX_M4x32_0: multiplier of words 0 */
#define PHILOX_M1 0xCD9E8D57u  /* Random123 PHILOX_M4x32_1: multiplier of word 2 */
#define PHILOX_W0 0x9E3779B9u  /* Random123 PHILOX_W32_0: golden ratio, key bump of word 0 */
#define PHILOX_W1 0xBB67AE85u  /* Random123 PHILOX_W32_1: sqrt(3) - 1, key bump of word 1 */

#define FI_W (4 * FI_NB)       /* 32-bit words per step */

typedef uint64_t vu64 __attribute__((vector_size(FI_NB * 8)));

/* Philox4x32-10 of blocks block0 .. block0 + FI_NB - 1 (mod 2^64): w[k][j] is word k of block j. */
static inline void philox_step(uint64_t seed, uint64_t stream, uint64_t block0, uint32_t w[4][FI_NB])
{
    vu64 x0, x1, x2, x3;
    const uint64_t lo32 = 0xffffffffull;
    for (int j = 0; j < FI_NB; j++) {
        uint64_t b = block0 + (uint64_t)j;
        x0[j] = b & lo32;
        x1[j] = b >> 32;
        x2[j] = stream & lo32;
        x3[j] = stream >> 32;
    }
    uint64_t k0 = seed & lo32, k1 = seed >> 32;
    for (int r = 0; r < 10; r++) {
        /* Only the low 32 bits of each lane are meaningful; the multiplies read only those. */
        vu64 p0 = (x0 & lo32) * (uint64_t)PHILOX_M0;
        vu64 p1 = (x2 & lo32) * (uint64_t)PHILOX_M1;
        vu64 y0 = (p1 >> 32) ^ x1 ^ k0;
        vu64 y2 = (p0 >> 32) ^ x3 ^ k1;
        x1 = p1;
        x3 = p0;
        x0 = y0;
        x2 = y2;
        k0 = (k0 + PHILOX_W0) & lo32;
        k1 = (k1 + PHILOX_W1) & lo32;
    }
    for (int j = 0; j < FI_NB; j++) {
        w[0][j] = (uint32_t)x0[j];
        w[1][j] = (uint32_t)x1[j];
        w[2][j] = (uint32_t)x2[j];
        w[3][j] = (uint32_t)x3[j];
    }
}

/* The step loop shared by all kernels.  A step makes FI_W words = FI_W / WPE elements
 * (WPE = words per element); STEP_BODY(w, vals) turns the words into `vals` in element order.
 * Steps that overlap the ends of [skip, skip + n) are produced into `vals` and copied partly.
 * STORE(dst, vals, first, count) writes elements first .. first + count - 1 of `vals`. */
#define FI_STEP_LOOP(EPB, VAL_T, STEP_BODY, STORE)                                            \
    do {                                                                                      \
        const int64_t eps = (int64_t)FI_NB * (EPB);       /* elements per step */            \
        uint32_t w[4][FI_NB] __attribute__((aligned(64)));                                    \
        VAL_T vals[FI_NB * (EPB)] __attribute__((aligned(64)));                                \
        int64_t done = 0;                                                                     \
        uint64_t blk = block0;                                                                \
        int64_t first = (int64_t)skip;                                                        \
        while (done < n) {                                                                    \
            philox_step(seed, stream, blk, w);                                                \
            STEP_BODY;                                                                        \
            int64_t cnt = eps - first;                                                        \
            if (cnt > n - done) cnt = n - done;                                               \
            STORE(done, first, cnt);                                                          \
            done += cnt;                                                                      \
            first = 0;                                                                        \
            blk += FI_NB;                                                                     \
        }                                                                                     \
    } while (0)

/* ---- raw words ------------------------------------------------------------------------ */

int FI_FN(fi_raw_u32)(uint64_t seed, uint64_t stream, uint64_t block0, unsigned skip, int64_t n, uint32_t *out)
{
#define BODY_RAW                                                                              \
    for (int j = 0; j < FI_NB; j++)                                                           \
        for (int k = 0; k < 4; k++) vals[4 * j + k] = w[k][j];
#define STORE_RAW(d, f, c) memcpy(out + (d), vals + (f), (size_t)(c) * sizeof(uint32_t))
    FI_STEP_LOOP(4, uint32_t, BODY_RAW, STORE_RAW);
    return 0;
}

/* ---- 32-bit family stores ------------------------------------------------------------- */

static inline void store_f32fam(void *out, int otype, int64_t d, const float *vals, int64_t f, int64_t c)
{
    if (otype == FI_OUT_F32) {
        memcpy((float *)out + d, vals + f, (size_t)c * sizeof(float));
    } else if (otype == FI_OUT_F16) {
        uint16_t tmp[FI_W];
        for (int i = 0; i < FI_W; i++) tmp[i] = fi_f32_to_f16(vals[i]);
        memcpy((uint16_t *)out + d, tmp + f, (size_t)c * sizeof(uint16_t));
    } else {
        uint16_t tmp[FI_W];
        for (int i = 0; i < FI_W; i++) tmp[i] = fi_f32_to_bf16(vals[i]);
        memcpy((uint16_t *)out + d, tmp + f, (size_t)c * sizeof(uint16_t));
    }
}
#define STORE_F32FAM(d, f, c) store_f32fam(out, otype, d, vals, f, c)
#define STORE_F64(d, f, c) memcpy(out + (d), vals + (f), (size_t)(c) * sizeof(double))

/* 53-bit integer from two words, converted exactly to double. */
static inline double fi_u53(uint32_t hi, uint32_t lo)
{
    return (double)(hi >> 11) * 4294967296.0 + (double)(((uint64_t)(hi & 0x7ffu) << 21) | (lo >> 11));
}

/* ---- uniform -------------------------------------------------------------------------- */

int FI_FN(fi_fill_uniform_f32)(uint64_t seed, uint64_t stream, uint64_t block0, unsigned skip, int64_t n,
                               void *out, int otype, float a, float b, float lo, float hi)
{
    const float d = b - a;
#define BODY_UNI32                                                                            \
    for (int j = 0; j < FI_NB; j++)                                                           \
        for (int k = 0; k < 4; k++) {                                                         \
            float u = (float)(int32_t)(w[k][j] >> 8) * 0x1p-24f;   /* 24-bit, [0, 1) */     \
            float v = a + d * u;                                                              \
            v = v < lo ? lo : v;                                                              \
            vals[4 * j + k] = v > hi ? hi : v;                                                \
        }
    FI_STEP_LOOP(4, float, BODY_UNI32, STORE_F32FAM);
    return 0;
}

int FI_FN(fi_fill_uniform_f64)(uint64_t seed, uint64_t stream, uint64_t block0, unsigned skip, int64_t n,
                               double *out, double a, double b, double lo, double hi)
{
    const double d = b - a;
#define BODY_UNI64                                                                            \
    for (int j = 0; j < FI_NB; j++)                                                           \
        for (int k = 0; k < 2; k++) {                                                         \
            double u = fi_u53(w[2 * k][j], w[2 * k + 1][j]) * 0x1p-53;   /* 53-bit, [0, 1) */ \
            double v = a + d * u;                                                             \
            v = v < lo ? lo : v;                                                              \
            vals[2 * j + k] = v > hi ? hi : v;                                                \
        }
    FI_STEP_LOOP(2, double, BODY_UNI64, STORE_F64);
    return 0;
}

/* ---- normal (Box-Muller) -------------------------------------------------------------- */

int FI_FN(fi_fill_normal_f32)(uint64_t seed, uint64_t stream, uint64_t block0, unsigned skip, int64_t n,
                              void *out, int otype, float mean, float std)
{
#define BODY_NRM32                                                                            \
    for (int j = 0; j < FI_NB; j++)                                                           \
        for (int h = 0; h < 2; h++) {                                                         \
            /* u1 = (k + 1/2) 2^-31 in (0, 1] from the top 31 bits: r reaches sqrt(64 ln 2) */  \
            float u1 = ((float)(int32_t)(w[2 * h][j] >> 1) + 0.5f) * 0x1p-31f;               \
            float r = __builtin_sqrtf(-2.0f * fi_logf(u1));                                   \
            float c, s;                                                                       \
            fi_sincos_turn24(w[2 * h + 1][j] >> 8, &c, &s);                                   \
            vals[4 * j + 2 * h] = mean + std * (r * c);                                       \
            vals[4 * j + 2 * h + 1] = mean + std * (r * s);                                   \
        }
    FI_STEP_LOOP(4, float, BODY_NRM32, STORE_F32FAM);
    return 0;
}

int FI_FN(fi_fill_normal_f64)(uint64_t seed, uint64_t stream, uint64_t block0, unsigned skip, int64_t n,
                              double *out, double mean, double std)
{
#define BODY_NRM64                                                                            \
    for (int j = 0; j < FI_NB; j++) {                                                         \
        /* u1 = (k + 1/2) 2^-53 in (0, 1]: r reaches sqrt(108 ln 2) */                         \
        double u1 = (fi_u53(w[0][j], w[1][j]) + 0.5) * 0x1p-53;                               \
        double r = __builtin_sqrt(-2.0 * fi_log(u1));                                         \
        uint64_t t = ((uint64_t)w[2][j] << 21) | (w[3][j] >> 11);                             \
        double c, s;                                                                          \
        fi_sincos_turn53(t, &c, &s);                                                          \
        vals[2 * j] = mean + std * (r * c);                                                   \
        vals[2 * j + 1] = mean + std * (r * s);                                               \
    }
    FI_STEP_LOOP(2, double, BODY_NRM64, STORE_F64);
    return 0;
}

/* ---- truncated normal (inverse CDF in double) ---------------------------------------- */

/* mode 0: x = ndtri(c0 + u c1); mode 1 (far lower tail, log space): x = ndtri_tail(sqrt(-lp)),
 * lp = c0 + ln(c1 + u (1 - c1)).  The mode is fixed per call, so each loop stays branch-free. */
#define TRUNC_LOOP(EPB, WORDS_TO_U, OUTV)                                                     \
    double us[FI_NB * (EPB)] __attribute__((aligned(64)));                                    \
    for (int j = 0; j < FI_NB; j++)                                                           \
        for (int k = 0; k < (EPB); k++) us[(EPB) * j + k] = WORDS_TO_U;                       \
    if (mode == 0) {                                                                          \
        for (int i = 0; i < FI_NB * (EPB); i++) {                                             \
            double x = fi_ndtri_inline(c0 + us[i] * c1);                                      \
            OUTV;                                                                             \
        }                                                                                     \
    } else {                                                                                  \
        for (int i = 0; i < FI_NB * (EPB); i++) {                                             \
            double x = fi_ndtri_tail(__builtin_sqrt(-(c0 + fi_log(c1 + us[i] * (1.0 - c1))))); \
            OUTV;                                                                             \
        }                                                                                     \
    }

int FI_FN(fi_fill_trunc_f32)(uint64_t seed, uint64_t stream, uint64_t block0, unsigned skip, int64_t n,
                             void *out, int otype, int mode, double c0, double c1, double sign,
                             double mean, double std, float lo, float hi)
{
    const double sstd = sign * std;
#define U_TRN32 (((double)w[k][j] + 0.5) * 0x1p-32)               /* (0, 1) */
#define OUT_TRN32                                                                             \
    float v = (float)(mean + sstd * x);                                                       \
    v = v < lo ? lo : v;                                                                      \
    vals[i] = v > hi ? hi : v;
#define BODY_TRN32 TRUNC_LOOP(4, U_TRN32, OUT_TRN32)
    FI_STEP_LOOP(4, float, BODY_TRN32, STORE_F32FAM);
    return 0;
}

int FI_FN(fi_fill_trunc_f64)(uint64_t seed, uint64_t stream, uint64_t block0, unsigned skip, int64_t n,
                             double *out, int mode, double c0, double c1, double sign,
                             double mean, double std, double lo, double hi)
{
    const double sstd = sign * std;
#define U_TRN64 ((fi_u53(w[2 * k][j], w[2 * k + 1][j]) + 0.5) * 0x1p-53)   /* (0, 1) */
#define OUT_TRN64                                                                             \
    double v = mean + sstd * x;                                                               \
    v = v < lo ? lo : v;                                                                      \
    vals[i] = v > hi ? hi : v;
#define BODY_TRN64 TRUNC_LOOP(2, U_TRN64, OUT_TRN64)
    FI_STEP_LOOP(2, double, BODY_TRN64, STORE_F64);
    return 0;
}

/* ---- constant fills ------------------------------------------------------------------- */

int FI_FN(fi_fill_const_u16)(int64_t n, uint16_t *out, uint16_t v)
{
    for (int64_t i = 0; i < n; i++) out[i] = v;
    return 0;
}

int FI_FN(fi_fill_const_u32)(int64_t n, uint32_t *out, uint32_t v)
{
    for (int64_t i = 0; i < n; i++) out[i] = v;
    return 0;
}

int FI_FN(fi_fill_const_u64)(int64_t n, uint64_t *out, uint64_t v)
{
    for (int64_t i = 0; i < n; i++) out[i] = v;
    return 0;
}
