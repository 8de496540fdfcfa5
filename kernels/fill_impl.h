/* fill_impl.h -- the fill kernels, written once and compiled once per SIMD level.
 *
 * Included by fill_scalar.c, fill_avx2.c and fill_avx512.c, which define
 *   FI_NB      Philox blocks generated per step (vector lanes of 64 bits each)
 *   FI_SUFFIX  name suffix of this level's functions (scalar, avx2, avx512)
 * and are compiled with that level's -m flags.  The Philox rounds use GCC vector extensions
 * (one 64-bit lane per block, so the 32x32->64 multiply maps to (v)pmuludq); the float32 table
 * kernels and the float32 uniform use vector types of the level's width, the other transforms
 * are plain loops over the lanes that the compiler vectorises.  Because every file runs the
 * same IEEE operations in the same order (-ffp-contract=off, no fast-math; fused multiply-adds
 * only where written, as fi_fma / fi_fmaf), all levels produce identical bytes;
 * tests/test_kernels.py checks this in a subprocess per level.
 */
#include <stdint.h>
#include <string.h>
#include "fastinit.h"
#include "fi_math.h"
#include "normal_table.h"
#include "philox.h"

#define FI_CAT_(a, b) a##_##b
#define FI_CAT(a, b) FI_CAT_(a, b)
#define FI_FN(name) FI_CAT(name, FI_SUFFIX)


#define FI_W (4 * FI_NB)       /* 32-bit words per step */

/* This level's kernels, declared with the function types of fastinit.h: a definition below whose
 * signature differs from the header's does not compile. */
fi_raw_u32_fn FI_FN(fi_raw_u32);
fi_fill_uniform_f32_fn FI_FN(fi_fill_uniform_f32);
fi_fill_uniform_f64_fn FI_FN(fi_fill_uniform_f64);
fi_fill_normal_f32_fn FI_FN(fi_fill_normal_f32);
fi_fill_normal_f64_fn FI_FN(fi_fill_normal_f64);
fi_fill_trunc_f32_fn FI_FN(fi_fill_trunc_f32);
fi_fill_trunc_f64_fn FI_FN(fi_fill_trunc_f64);
fi_fill_trunc_table_f32_fn FI_FN(fi_fill_trunc_table_f32);
fi_fill_const_u16_fn FI_FN(fi_fill_const_u16);
fi_fill_const_u32_fn FI_FN(fi_fill_const_u32);
fi_fill_const_u64_fn FI_FN(fi_fill_const_u64);
fi_fma_f32_fn FI_FN(fi_fma_f32);

/* The transcendental transforms are long dependency chains.  Their loops handle FI_IL elements
 * FI_W / FI_IL apart per iteration (FI_K unrolls the copies before vectorisation) and the GCC build
 * schedules instructions (-fschedule-insns), so independent chains interleave and the core's
 * out-of-order window is not the limit. */
#define FI_IL 4
#define FI_K _Pragma("GCC unroll 8") for (int k = 0; k < FI_IL; k++)

/* One hardware vector of 64-bit lanes: FI_L blocks per vector, FI_G independent vectors per
 * state word (several chains hide the multiply latency). */
#if defined(__AVX512F__)
#define FI_VBYTES 64
#elif defined(__AVX2__)
#define FI_VBYTES 32
#else
#define FI_VBYTES 16
#endif
#if defined(__SSE2__)
#include <immintrin.h>
#endif
#define FI_L (FI_VBYTES / 8)
#define FI_G (FI_NB / FI_L)
#if FI_G * FI_L != FI_NB
#error "FI_NB must be a multiple of the vector's 64-bit lanes"
#endif

typedef uint64_t vu64 __attribute__((vector_size(FI_VBYTES)));

/* Low 32 bits of each lane times a 32-bit constant, full 64-bit product: (v)pmuludq.  The high
 * halves of the inputs are ignored, which lets the rounds carry garbage there (masked at the end). */
static inline vu64 fi_mul32(vu64 a, vu64 m)
{
#if FI_VBYTES == 64
    return (vu64)_mm512_mul_epu32((__m512i)a, (__m512i)m);
#elif FI_VBYTES == 32
    return (vu64)_mm256_mul_epu32((__m256i)a, (__m256i)m);
#elif defined(__SSE2__)
    return (vu64)_mm_mul_epu32((__m128i)a, (__m128i)m);
#else
    return (a & 0xffffffffull) * m;
#endif
}

/* Round keys of Philox4x32-10 for a 64-bit seed: k0 + r W0 and k1 + r W1 (mod 2^32). */
typedef struct { uint64_t k0[10], k1[10]; } fi_keys;

static inline fi_keys fi_key_schedule(uint64_t seed)
{
    fi_keys ks;
    uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
    for (int r = 0; r < 10; r++) {
        ks.k0[r] = k0;
        ks.k1[r] = k1;
        k0 += PHILOX_W0;
        k1 += PHILOX_W1;
    }
    return ks;
}

/* Philox4x32-10 of blocks block0 .. block0 + FI_NB - 1 (mod 2^64), written in element order:
 * out[4 j + k] is word k of block block0 + j. */
static inline void philox_words(const fi_keys *ks, uint64_t stream, uint64_t block0, uint32_t *restrict out)
{
    const uint64_t lo32 = 0xffffffffull;
    const vu64 m0 = (vu64){0} + (uint64_t)PHILOX_M0, m1 = (vu64){0} + (uint64_t)PHILOX_M1;
    vu64 iota;
    for (int l = 0; l < FI_L; l++) iota[l] = (uint64_t)l;
    vu64 x0[FI_G], x1[FI_G], x2[FI_G], x3[FI_G];
    /* Round 1 apart: word 2 of the counter is the stream, the same in every lane, so its product
     * (and its XOR with the round key) is computed once. */
    const uint64_t p1 = (stream & lo32) * (uint64_t)PHILOX_M1;
    const vu64 h1 = (vu64){0} + ((p1 >> 32) ^ ks->k0[0]);
    const vu64 x3s = (vu64){0} + ((stream >> 32) ^ ks->k1[0]);
    for (int g = 0; g < FI_G; g++) {
        vu64 b = iota + (block0 + (uint64_t)(g * FI_L));
        vu64 p0 = fi_mul32(b, m0);                      /* reads the low 32 bits of b */
        x0[g] = h1 ^ (b >> 32);
        x1[g] = (vu64){0} + (p1 & lo32);
        x2[g] = (p0 >> 32) ^ x3s;
        x3[g] = p0;
    }
#pragma GCC unroll 9
    for (int r = 1; r < 10; r++) {
        for (int g = 0; g < FI_G; g++) {
            vu64 p0 = fi_mul32(x0[g], m0);
            vu64 p1 = fi_mul32(x2[g], m1);
            vu64 y0 = (p1 >> 32) ^ x1[g] ^ ks->k0[r];
            vu64 y2 = (p0 >> 32) ^ x3[g] ^ ks->k1[r];
            x1[g] = p1;
            x3[g] = p0;
            x0[g] = y0;
            x2[g] = y2;
        }
    }
    for (int g = 0; g < FI_G; g++) {
        /* lane l of A holds words 0, 1 of block l (little-endian), B words 2, 3 */
        vu64 A = (x0[g] & lo32) | (x1[g] << 32);
        vu64 B = (x2[g] & lo32) | (x3[g] << 32);
#if FI_L == 8
        vu64 lo = __builtin_shuffle(A, B, (vu64){0, 8, 1, 9, 2, 10, 3, 11});
        vu64 hi = __builtin_shuffle(A, B, (vu64){4, 12, 5, 13, 6, 14, 7, 15});
#elif FI_L == 4
        vu64 lo = __builtin_shuffle(A, B, (vu64){0, 4, 1, 5});
        vu64 hi = __builtin_shuffle(A, B, (vu64){2, 6, 3, 7});
#else
        vu64 lo = __builtin_shuffle(A, B, (vu64){0, 2});
        vu64 hi = __builtin_shuffle(A, B, (vu64){1, 3});
#endif
        memcpy(out + 4 * FI_L * g, &lo, FI_VBYTES);
        memcpy(out + 4 * FI_L * g + 2 * FI_L, &hi, FI_VBYTES);
    }
}

/* The step loop shared by all kernels.  A step makes FI_W words w[0 .. FI_W) in element order,
 * i.e. EPB = 4 / WPE elements per block (WPE = words per element).  BODY writes the step's
 * FI_NB * EPB values to `dst`: straight into the output (DIRECT, a VAL_T pointer, or NULL when the
 * output needs a conversion) for whole steps, else into `vals`, of which STORE(d, f, c) writes
 * elements f .. f + c - 1 to output elements d .. d + c - 1. */
#define FI_STEP_LOOP(EPB, VAL_T, BODY, DIRECT, STORE)                                         \
    do {                                                                                      \
        const int64_t eps = (int64_t)FI_NB * (EPB);       /* elements per step */            \
        const fi_keys ks = fi_key_schedule(seed);                                             \
        uint32_t w[FI_W] __attribute__((aligned(64)));                                        \
        VAL_T vals[FI_NB * (EPB)] __attribute__((aligned(64)));                                \
        VAL_T *const direct = (DIRECT);                                                       \
        int64_t done = 0;                                                                     \
        uint64_t blk = block0;                                                                \
        int64_t first = (int64_t)skip;                                                        \
        /* With streaming stores, whole steps start at a 64-byte boundary: the first partial   \
         * step ends at the first element that is both aligned and a block's first. */        \
        int64_t peel = -1;                                                                    \
        if (fi_nt && direct != NULL && ((uintptr_t)direct % sizeof(VAL_T)) == 0)              \
            for (int64_t d = 0; d < 64; d++)                                                  \
                if (((uintptr_t)(direct + d) & 63) == 0 && (first + d) % (EPB) == 0) {        \
                    peel = d;                                                                 \
                    break;                                                                    \
                }                                                                             \
        while (done < n) {                                                                    \
            philox_words(&ks, stream, blk, w);                                                \
            int64_t pos;                                                                      \
            if (direct != NULL && first == 0 && done >= peel && n - done >= eps) {           \
                VAL_T *restrict dst = direct + done;                                          \
                const int fi_st = fi_nt && (((uintptr_t)dst & 63) == 0);                      \
                (void)fi_st;                                                                  \
                BODY;                                                                         \
                done += eps;                                                                  \
                pos = eps;                                                                    \
            } else {                                                                          \
                VAL_T *restrict dst = vals;                                                   \
                const int fi_st = 0;                                                          \
                (void)fi_st;                                                                  \
                BODY;                                                                         \
                int64_t cnt = eps - first;                                                    \
                if (done < peel && cnt > peel - done) cnt = peel - done;                      \
                if (cnt > n - done) cnt = n - done;                                           \
                STORE(done, first, cnt);                                                      \
                done += cnt;                                                                  \
                pos = first + cnt;                                                            \
            }                                                                                 \
            blk += (uint64_t)(pos / (EPB));                                                   \
            first = pos % (EPB);                                                              \
        }                                                                                     \
        FI_FENCE_IF(fi_nt);                                                                   \
    } while (0)

/* Non-temporal stores are weakly ordered: fence them before returning. */
#if defined(__SSE2__)
#define FI_FENCE_IF(c) do { if (c) _mm_sfence(); } while (0)
#else
#define FI_FENCE_IF(c) do { (void)(c); } while (0)
#endif

/* Store one vector of 32-bit values at p, streaming when fi_st (whole aligned steps only). */
#if FI_VBYTES == 64
#define FI_VSTORE(p, v) do { if (fi_st) _mm512_stream_ps((float *)(p), (__m512)(v)); else memcpy((p), &(v), 64); } while (0)
#else
#define FI_VSTORE(p, v) memcpy((p), &(v), FI_VBYTES)
#endif

/* The streaming flag out of otype (f32-family kernels). */
#define FI_SPLIT_OTYPE const int fi_nt = (otype & FI_OUT_STREAM) != 0; otype &= ~FI_OUT_STREAM

/* ---- raw words ------------------------------------------------------------------------ */

int FI_FN(fi_raw_u32)(uint64_t seed, uint64_t stream, uint64_t block0, unsigned skip, int64_t n, uint32_t *out)
{
    const int fi_nt = 0;
#define BODY_RAW memcpy(dst, w, sizeof(w))
#define STORE_RAW(d, f, c) memcpy(out + (d), vals + (f), (size_t)(c) * sizeof(uint32_t))
    FI_STEP_LOOP(4, uint32_t, BODY_RAW, out, STORE_RAW);
    return 0;
}

/* ---- 32-bit family stores ------------------------------------------------------------- */

static inline void store_f32fam(void *out, int otype, int64_t d, const float *vals, int64_t f, int64_t c)
{
    uint16_t tmp[FI_W] __attribute__((aligned(64)));
    if (otype == FI_OUT_F32) {
        memcpy((float *)out + d, vals + f, (size_t)c * sizeof(float));
        return;
    }
    if (otype == FI_OUT_F16)
        for (int i = 0; i < FI_W; i++) tmp[i] = fi_f32_to_f16(vals[i]);
    else
        for (int i = 0; i < FI_W; i++) tmp[i] = fi_f32_to_bf16(vals[i]);
    if (f == 0 && c == FI_W)
        memcpy((uint16_t *)out + d, tmp, sizeof(tmp));            /* fixed size: inlined */
    else
        memcpy((uint16_t *)out + d, tmp + f, (size_t)c * sizeof(uint16_t));
}
#define STORE_F32FAM(d, f, c) store_f32fam(out, otype, d, vals, f, c)
#define DIRECT_F32FAM (otype == FI_OUT_F32 ? (float *)out : NULL)
#define STORE_F64(d, f, c) memcpy(out + (d), vals + (f), (size_t)(c) * sizeof(double))

/* 53-bit integer from two words, converted exactly to double. */
static inline double fi_u53(uint32_t hi, uint32_t lo)
{
    return (double)(hi >> 11) * 4294967296.0 + (double)(((uint64_t)(hi & 0x7ffu) << 21) | (lo >> 11));
}

/* ---- uniform float64 ------------------------------------------------------------------ */

int FI_FN(fi_fill_uniform_f64)(uint64_t seed, uint64_t stream, uint64_t block0, unsigned skip, int64_t n,
                               double *out, double a, double b, double lo, double hi)
{
    const int fi_nt = 0;
    const double d = b - a;
#define BODY_UNI64                                                                            \
    for (int e = 0; e < FI_W / 2; e++) {                                                      \
        double u = fi_u53(w[2 * e], w[2 * e + 1]) * 0x1p-53;       /* 53-bit, [0, 1) */     \
        double v = a + d * u;                                                                 \
        v = v < lo ? lo : v;                                                                  \
        dst[e] = v > hi ? hi : v;                                                             \
    }
    FI_STEP_LOOP(2, double, BODY_UNI64, out, STORE_F64);
    return 0;
}

/* ---- float32 vector kernels: helpers -------------------------------------------------------
 *
 * The float32 uniform, the normal and the truncated normal's table mode are written with GCC
 * vector types of this level's width: their lookups are in-register permutes (vpermps,
 * vpermt2ps) and their stores may stream, which auto-vectorisation does not emit; the arithmetic
 * is the same IEEE sequence on every level. */
#if FI_TT_SEGS != 32 || FI_W % (FI_IL * FI_VBYTES / 4) != 0
#error "fi_lut32 looks up 32 segments; BODY_TRNTAB takes FI_IL vectors at a time"
#endif
#define FI_VL (FI_VBYTES / 4)
typedef float vf32 __attribute__((vector_size(FI_VBYTES)));
typedef int32_t vi32 __attribute__((vector_size(FI_VBYTES)));
typedef uint32_t vu32 __attribute__((vector_size(FI_VBYTES)));

/* m ? a : b lane by lane, for all-ones / all-zeros masks m (C has no vector ?:). */
static inline vi32 fi_blend(vi32 m, vi32 a, vi32 b)
{
    return (a & m) | (b & ~m);
}

/* tab[s] for each lane's segment s in [0, 32). */
static inline vf32 fi_lut32(const float *tab, vu32 s)
{
#if FI_VBYTES == 64
    vf32 t0, t1;
    memcpy(&t0, tab, 64);
    memcpy(&t1, tab + 16, 64);
    return __builtin_shuffle(t0, t1, (vi32)s);
#elif FI_VBYTES == 32
    vf32 t0, t1, t2, t3;
    memcpy(&t0, tab, 32);
    memcpy(&t1, tab + 8, 32);
    memcpy(&t2, tab + 16, 32);
    memcpy(&t3, tab + 24, 32);
    vi32 i = (vi32)(s & 15u);
    vi32 lo = (vi32)__builtin_shuffle(t0, t1, i), hi = (vi32)__builtin_shuffle(t2, t3, i);
    return (vf32)fi_blend(-(vi32)(s >> 4), hi, lo);             /* segments 16 .. 31 from hi */
#else
    vf32 r;
    for (int l = 0; l < FI_VL; l++) r[l] = tab[s[l]];
    return r;
#endif
}

/* a * b + c rounded once, lane by lane (fi_fmaf: the same bits on every level). */
static inline vf32 fi_fma(vf32 a, vf32 b, vf32 c)
{
#if FI_VBYTES == 64
    return (vf32)_mm512_fmadd_ps((__m512)a, (__m512)b, (__m512)c);
#elif FI_VBYTES == 32
    return (vf32)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
#else
    vf32 r;
    for (int l = 0; l < FI_VL; l++) r[l] = fi_fmaf(a[l], b[l], c[l]);
    return r;
#endif
}

/* out[i] = fi_fma(a[i], b[i], c[i]): exported so that tests check every level's FMA (the portable
 * emulation above all) against exact rounding. */
int FI_FN(fi_fma_f32)(int64_t n, const float *a, const float *b, const float *c, float *out)
{
    for (int64_t i = 0; i < n; i += FI_VL) {
        size_t m = (size_t)(n - i < FI_VL ? n - i : FI_VL) * sizeof(float);
        vf32 va = {0}, vb = {0}, vc = {0};
        memcpy(&va, a + i, m);
        memcpy(&vb, b + i, m);
        memcpy(&vc, c + i, m);
        vf32 r = fi_fma(va, vb, vc);
        memcpy(out + i, &r, m);
    }
    return 0;
}

/* v clamped to [lo, hi] with the scalar rule (v < lo ? lo : v, then v > hi ? hi : v). */
static inline vf32 fi_clamp(vf32 v, vf32 lo, vf32 hi)
{
    /* (v)maxps returns its second operand unless the first is greater: the same rule */
#if FI_VBYTES == 64
    return _mm512_min_ps(hi, _mm512_max_ps(lo, v));
#elif FI_VBYTES == 32
    return _mm256_min_ps(hi, _mm256_max_ps(lo, v));
#elif defined(__SSE2__)
    return _mm_min_ps(hi, _mm_max_ps(lo, v));
#else
    v = (vf32)fi_blend(v < lo, (vi32)lo, (vi32)v);
    return (vf32)fi_blend(v > hi, (vi32)hi, (vi32)v);
#endif
}

/* Leading zeros of each lane (z != 0). */
static inline vu32 fi_clz(vu32 z)
{
#if FI_VBYTES == 64
    return (vu32)_mm512_lzcnt_epi32((__m512i)z);
#else
    /* exact without a vector lzcnt: the exponent of float(z >> 8) (< 2^24, so exact) or, when
     * that is 0, of float(z & 255) */
    vu32 hi = z >> 8;
    vf32 fh = __builtin_convertvector((vi32)hi, vf32), fl = __builtin_convertvector((vi32)(z & 255u), vf32);
    vu32 eh, el;
    memcpy(&eh, &fh, FI_VBYTES);
    memcpy(&el, &fl, FI_VBYTES);
    return (vu32)fi_blend((vi32)(hi != 0u), (vi32)(150u - (eh >> 23)), (vi32)(158u - (el >> 23)));
#endif
}

/* float(1 + m 2^-23) - 1.5 for the low 23 bits m of each lane: exact, in [-1/2, 1/2) (the
 * position variable of the table polynomials). */
static inline vf32 fi_centered23(vu32 m)
{
    vu32 one_m = (m & 0x007fffffu) | 0x3f800000u;
    vf32 t;
    memcpy(&t, &one_m, FI_VBYTES);
    return t - 1.5f;
}

/* x[k] = sum_d tab[d nseg + idx[k]] t[k]^d (d = deg .. 0) by Horner's rule with fused
 * multiply-adds, for the FI_IL vectors k at once (independent chains that overlap). */
#define FI_HORNER(x, t, LUT, tab, nseg, deg, idx)                                            \
    do {                                                                                      \
        FI_K x[k] = LUT((tab) + (deg) * (nseg), idx[k]);                                      \
        for (int d = (deg) - 1; d >= 0; d--)                                                  \
            FI_K x[k] = fi_fma(x[k], t[k], LUT((tab) + d * (nseg), idx[k]));                  \
    } while (0)

/* ---- uniform float32 (written with the vector types for its streaming stores) ----------- */

int FI_FN(fi_fill_uniform_f32)(uint64_t seed, uint64_t stream, uint64_t block0, unsigned skip, int64_t n,
                               void *out, int otype, float a, float b, float lo, float hi)
{
    FI_SPLIT_OTYPE;
    const vf32 av = (vf32){0} + a, dv = (vf32){0} + (b - a), lov = (vf32){0} + lo, hiv = (vf32){0} + hi;
#define BODY_UNI32                                                                            \
    for (int j = 0; j < FI_W; j += FI_VL) {                                                   \
        vu32 wv;                                                                              \
        memcpy(&wv, w + j, FI_VBYTES);                                                        \
        vf32 u = __builtin_convertvector((vi32)(wv >> 8), vf32) * 0x1p-24f; /* 24-bit, [0, 1) */ \
        vf32 v = fi_clamp(av + dv * u, lov, hiv);                                             \
        FI_VSTORE(dst + j, v);                                                                \
    }
    FI_STEP_LOOP(4, float, BODY_UNI32, DIRECT_F32FAM, STORE_F32FAM);
    return 0;
}

/* ---- normal -------------------------------------------------------------- */

/* The octave lookups of the normal, fast path: octave lz has probability 2^-(lz + 1), so a group
 * of FI_IL vectors almost always has every lz < FI_NRM_FAST, and then one single-source permute
 * of the table's first FI_NRM_FAST entries (vpermps) does the lookup: on Zen 4 it overlaps the
 * FMAs, where the two-source vpermt2ps of fi_lut32 competes with them.  Groups with a rarer octave
 * (AVX-512: probability 64 x 2^-16 ~ 1e-3, AVX2: 32 x 2^-8 ~ 0.12) take fi_lut32.  Either way the
 * same table entries enter the same arithmetic, so the bits do not depend on the path. */
#if FI_VBYTES == 64
#define FI_NRM_FAST 16
#elif FI_VBYTES == 32
#define FI_NRM_FAST 8
#else
#define FI_NRM_FAST 32
#endif

static inline vf32 fi_lut_fast(const float *tab, vu32 s)
{
#if FI_VBYTES == 64
    return (vf32)_mm512_permutexvar_ps((__m512i)s, _mm512_load_ps(tab));
#elif FI_VBYTES == 32
    return (vf32)_mm256_permutevar8x32_ps(_mm256_load_ps(tab), (__m256i)s);
#else
    return fi_lut32(tab, s);
#endif
}

/* Nonzero when some lane of v has a bit of m set. */
static inline int fi_any_bits(vu32 v, uint32_t m)
{
#if FI_VBYTES == 64
    return _mm512_test_epi32_mask((__m512i)v, _mm512_set1_epi32((int)m)) != 0;
#elif FI_VBYTES == 32
    return !_mm256_testz_si256((__m256i)v, _mm256_set1_epi32((int)m));
#else
    uint32_t a = 0;
    for (int l = 0; l < FI_VL; l++) a |= v[l];
    return (a & m) != 0;
#endif
}

/* float32: inverse CDF over octaves of the two-sided tail probability (fastinit.h). */
int FI_FN(fi_fill_normal_f32)(uint64_t seed, uint64_t stream, uint64_t block0, unsigned skip, int64_t n,
                              void *out, int otype, float mean, float std)
{
    FI_SPLIT_OTYPE;
    const vf32 meanv = (vf32){0} + mean, stdv = (vf32){0} + std;
    const float *table = &fi_normal_table[0][0];
#define BODY_NRM32                                                                            \
    for (int j = 0; j < FI_W; j += FI_IL * FI_VL) {                                           \
        vu32 oc[FI_IL], sgn[FI_IL], ocs = (vu32){0};                                          \
        vf32 t[FI_IL], x[FI_IL];                                                              \
        FI_K {                                                                                \
            vu32 wv;                                                                          \
            memcpy(&wv, w + j + k * FI_VL, FI_VBYTES);                                        \
            vu32 z = wv | 1u;                                       /* q = z 2^-32 */        \
            oc[k] = fi_clz(z);                                      /* octave */              \
            ocs |= oc[k];                                                                     \
            sgn[k] = wv << 31;                                      /* sign: bit 0 */         \
            t[k] = fi_centered23((z << oc[k]) >> 8);      /* the 23 bits after the leading 1 */ \
        }                                                                                     \
        /* octaves are < 32: a bit at or above FI_NRM_FAST means a deep one */                \
        if (__builtin_expect(fi_any_bits(ocs, 32u - FI_NRM_FAST), 0))                         \
            FI_HORNER(x, t, fi_lut32, table, 32, 7, oc);                                      \
        else                                                                                  \
            FI_HORNER(x, t, fi_lut_fast, table, 32, 7, oc);                                   \
        FI_K {                                                                                \
            vu32 xb;                                                                          \
            memcpy(&xb, &x[k], FI_VBYTES);                                                    \
            xb ^= sgn[k];                                                                     \
            vf32 v;                                                                           \
            memcpy(&v, &xb, FI_VBYTES);                                                       \
            v = fi_fma(stdv, v, meanv);                                                       \
            FI_VSTORE(dst + j + k * FI_VL, v);                                                \
        }                                                                                     \
    }
    FI_STEP_LOOP(4, float, BODY_NRM32, DIRECT_F32FAM, STORE_F32FAM);
    return 0;
}

int FI_FN(fi_fill_normal_f64)(uint64_t seed, uint64_t stream, uint64_t block0, unsigned skip, int64_t n,
                              double *out, double mean, double std)
{
    const int fi_nt = 0;
    /* Elements 2j, 2j+1 come from the four words of block j: 0, 1 (radius), 2, 3 (angle). */
#define BODY_NRM64                                                                            \
    for (int j = 0; j < FI_NB; j++) {                                                         \
        /* u1 = (k + 1/2) 2^-53 in (0, 1]: r reaches sqrt(108 ln 2) */                         \
        double u1 = (fi_u53(w[4 * j], w[4 * j + 1]) + 0.5) * 0x1p-53;                         \
        double r = __builtin_sqrt(-2.0 * fi_log(u1));                                         \
        uint64_t t = ((uint64_t)w[4 * j + 2] << 21) | (w[4 * j + 3] >> 11);                   \
        double c, s;                                                                          \
        fi_sincos_turn53(t, &c, &s);                                                          \
        dst[2 * j] = mean + std * (r * c);                                                    \
        dst[2 * j + 1] = mean + std * (r * s);                                                \
    }
    FI_STEP_LOOP(2, double, BODY_NRM64, out, STORE_F64);
    return 0;
}

/* ---- truncated normal (inverse CDF in double) ---------------------------------------- */

/* mode 0: x = ndtri(c0 + u c1); mode 1 (far lower tail, log space): x = ndtri_tail(sqrt(-lp)),
 * lp = c0 + ln(c1 + u (1 - c1)); OUTV writes mean + sstd x.  Modes 5 and 6 invert in the offset
 * from the bound (fi_math.h) and OUTV writes mean + sstd x with mean = that bound: mode 5 (far
 * tail) x = t for c0 = alpha, c1 = rho, c2 = m, sstd = +-std; mode 6 (tiny interval) x = s, the
 * position in the interval, for c0 = alpha, c1 = d, sstd = +-(b - a).  The mode is fixed per call,
 * so each loop stays branch-free.  Element e has the uniform us[e] (WPE words per element). */
#define TRUNC_LOOP(WPE, WORDS_TO_U, OUTV)                                                     \
    double us[FI_W / (WPE)] __attribute__((aligned(64)));                                     \
    for (int e = 0; e < FI_W / (WPE); e++) us[e] = WORDS_TO_U;                                \
    if (mode == 0) {                                                                          \
        for (int i = 0; i < FI_W / (WPE); i++) {                                              \
            double x = fi_ndtri_inline(c0 + us[i] * c1);                                      \
            OUTV;                                                                             \
        }                                                                                     \
    } else if (mode == 1) {                                                                   \
        for (int i = 0; i < FI_W / (WPE); i++) {                                              \
            double x = fi_ndtri_tail(__builtin_sqrt(-(c0 + fi_log(c1 + us[i] * (1.0 - c1))))); \
            OUTV;                                                                             \
        }                                                                                     \
    } else if (mode == 5) {                                                                   \
        for (int i = 0; i < FI_W / (WPE); i++) {                                              \
            double x = fi_trunc_far(c0, far_ia, far_ap, c1, c2, us[i]);                       \
            OUTV;                                                                             \
        }                                                                                     \
    } else {                                                                                  \
        for (int i = 0; i < FI_W / (WPE); i++) {                                              \
            double x = fi_trunc_narrow(&narrow, us[i]);                                       \
            OUTV;                                                                             \
        }                                                                                     \
    }

/* The per-call constants of modes 5 and 6 (computed in their own mode only). */
#define TRUNC_SETUP                                                                           \
    const double far_ia = mode == 5 ? 1.0 / c0 : 0.0, far_ap = c0 + far_ia;                   \
    fi_trunc_narrow_c narrow = {{0.0}, {0.0}, 0.0, 0.0};                                      \
    if (mode == 6) narrow = fi_trunc_narrow_setup(c0, c1)

/* float32 modes (single precision throughout, for intervals whose quantiles stay within |x| <~ 6.9):
 *   mode 2: x = y Q_central(w)        (every w <= 6.25)
 *   mode 3: x = y Q_central or Q_tail (every w <= 25; both evaluated, one selected)
 * with c0 = Phi(alpha), c1 = Phi(beta) - Phi(alpha), c2 = 1 - Phi(beta) and, for u = (k + 1/2) 2^-32,
 *   y = 2 c0 - 1 + 2 u c1 (in double, then rounded: exact near y = 0),
 *   1 + y = 2 c0 + 2 u c1 and 1 - y = 2 c2 + 2 (1 - u) c1 (sums of non-negative terms in float32,
 *   so the tail probabilities carry no cancellation), w = -ln((1 + y)(1 - y)). */
#define TRUNC_LOOP32(BOTH)                                                                    \
    for (int i0 = 0; i0 < FI_W / FI_IL; i0++) {                                               \
        FI_K {                                                                                \
        int i = i0 + k * (FI_W / FI_IL);                                                      \
        float y = (float)(ya + ((double)w[i] + 0.5) * yb);                                    \
        float uf = ((float)w[i] + 0.5f) * 0x1p-32f;                                           \
        float vf = ((float)(~w[i]) + 0.5f) * 0x1p-32f;                                        \
        float t = (pa2 + uf * d2) * (qb2 + vf * d2);                                          \
        float wv = -fi_logf(t);                                                               \
        float q = fi_trunc_q_central(wv);                                                     \
        if (BOTH) {                                                                           \
            float qt = fi_trunc_q_tail(__builtin_sqrtf(wv));                                  \
            q = wv <= 6.25f ? q : qt;                                                         \
        }                                                                                     \
        float v = meanf + stdf * (y * q);                                                     \
        v = v < lo ? lo : v;                                                                  \
        dst[i] = v > hi ? hi : v;                                                             \
        }                                                                                     \
    }

/* Modes 0 to 3, 5 and 6; in modes 0 and 1 (double precision) c2 is the sign of the mirroring. */
int FI_FN(fi_fill_trunc_f32)(uint64_t seed, uint64_t stream, uint64_t block0, unsigned skip, int64_t n,
                             void *out, int otype, int mode, double c0, double c1, double c2,
                             double mean, double std, float lo, float hi)
{
    FI_SPLIT_OTYPE;
    if (mode == 2 || mode == 3) {
        const double ya = (2.0 * c0 - 1.0), yb = 2.0 * c1 * 0x1p-32;
        const float pa2 = (float)(2.0 * c0), qb2 = (float)(2.0 * c2), d2 = (float)(2.0 * c1);
        const float meanf = (float)mean, stdf = (float)std;
        if (mode == 2) {
#define BODY_TRN32C TRUNC_LOOP32(0)
            FI_STEP_LOOP(4, float, BODY_TRN32C, DIRECT_F32FAM, STORE_F32FAM);
        } else {
#define BODY_TRN32T TRUNC_LOOP32(1)
            FI_STEP_LOOP(4, float, BODY_TRN32T, DIRECT_F32FAM, STORE_F32FAM);
        }
        return 0;
    }
    const double sstd = mode >= 5 ? std : c2 * std;
    TRUNC_SETUP;
#define U_TRN32 (((double)w[e] + 0.5) * 0x1p-32)                   /* (0, 1) */
#define OUT_TRN32                                                                             \
    float v = (float)(mean + sstd * x);                                                       \
    v = v < lo ? lo : v;                                                                      \
    dst[i] = v > hi ? hi : v;
#define BODY_TRN32 TRUNC_LOOP(1, U_TRN32, OUT_TRN32)
    FI_STEP_LOOP(4, float, BODY_TRN32, DIRECT_F32FAM, STORE_F32FAM);
    return 0;
}

int FI_FN(fi_fill_trunc_f64)(uint64_t seed, uint64_t stream, uint64_t block0, unsigned skip, int64_t n,
                             double *out, int mode, double c0, double c1, double sign,
                             double mean, double std, double lo, double hi)
{
    const int fi_nt = 0;
    const double c2 = sign;                                  /* mode 5: m */
    const double sstd = mode >= 5 ? std : sign * std;
    TRUNC_SETUP;
#define U_TRN64 ((fi_u53(w[2 * e], w[2 * e + 1]) + 0.5) * 0x1p-53)   /* (0, 1) */
#define OUT_TRN64                                                                             \
    double v = mean + sstd * x;                                                               \
    v = v < lo ? lo : v;                                                                      \
    dst[i] = v > hi ? hi : v;
#define BODY_TRN64 TRUNC_LOOP(2, U_TRN64, OUT_TRN64)
    FI_STEP_LOOP(2, double, BODY_TRN64, out, STORE_F64);
    return 0;
}

int FI_FN(fi_fill_trunc_table_f32)(uint64_t seed, uint64_t stream, uint64_t block0, unsigned skip, int64_t n,
                                   void *out, int otype, const float *table, float lo, float hi)
{
    FI_SPLIT_OTYPE;
    const vf32 lov = (vf32){0} + lo, hiv = (vf32){0} + hi;
#define BODY_TRNTAB                                                                           \
    for (int j = 0; j < FI_W; j += FI_IL * FI_VL) {                                           \
        vu32 sg[FI_IL];                                                                       \
        vf32 t[FI_IL], x[FI_IL];                                                              \
        FI_K {                                                                                \
            vu32 wv;                                                                          \
            memcpy(&wv, w + j + k * FI_VL, FI_VBYTES);                                        \
            sg[k] = wv >> (32 - FI_TT_SEG_BITS);                                              \
            t[k] = fi_centered23(wv);                                                         \
        }                                                                                     \
        FI_HORNER(x, t, fi_lut32, table, FI_TT_SEGS, FI_TT_DEG, sg);                          \
        FI_K {                                                                                \
            vf32 v = fi_clamp(x[k], lov, hiv);                                                \
            FI_VSTORE(dst + j + k * FI_VL, v);                                                \
        }                                                                                     \
    }
    FI_STEP_LOOP(4, float, BODY_TRNTAB, DIRECT_F32FAM, STORE_F32FAM);
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
