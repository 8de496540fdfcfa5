/* fi_math.h -- branch-free elementary functions shared by every SIMD level.
 *
 * Each function is a fixed sequence of IEEE-754 operations (add, mul, fused multiply-add, div,
 * sqrt, compares and integer bit manipulation).  The files are compiled with -ffp-contract=off and without
 * -ffast-math, so the auto-vectorised AVX2/AVX-512 loops perform exactly the same roundings as
 * the portable build: the bits do not depend on the SIMD level.  No libm call is made.
 *
 * Accuracy over the domains used here (fi_logf measured exhaustively over every float in
 * [2^-44, 1]; the others against numpy/scipy; the transforms built on them are checked by
 * tests/test_stream.py):
 *   fi_logf  on [2^-44, 1]            <= 0.86 ulp  (Cephes logf polynomial, Estrin's scheme)
 *   fi_log   on (0, 1]                <= 1 ulp  (fdlibm log kernel)
 *   fi_sin/fi_cos on [-pi/4, pi/4]    <= 1 ulp  (fdlibm __kernel_sin/__kernel_cos without tail)
 *   fi_ndtri                          ~1e-16 relative (Wichura 1988, AS241 PPND16)
 */
#ifndef FI_MATH_H
#define FI_MATH_H

#include <stdint.h>
#include <string.h>

static inline uint32_t fi_f2u(float x) { uint32_t u; memcpy(&u, &x, 4); return u; }
static inline float fi_u2f(uint32_t u) { float x; memcpy(&x, &u, 4); return x; }
static inline uint64_t fi_d2u(double x) { uint64_t u; memcpy(&u, &x, 8); return u; }
static inline double fi_u2d(uint64_t u) { double x; memcpy(&x, &u, 8); return x; }

/* ---- float32 ------------------------------------------------------------------------ */

/* a * b + c rounded once (IEEE fusedMultiplyAdd): one instruction where the target has FMA.
 * Without it (the portable x86-64 build): a * b is exact in double (24 + 24 <= 53 bits; finite
 * floats neither overflow nor underflow there); s = RN(p + c) and its exact error e (Knuth's
 * TwoSum) give p + c rounded to odd -- s, or its neighbour towards e when s's last bit is even and
 * e != 0 -- and rounding that to float is the correctly rounded result, because double carries
 * 53 >= 24 + 2 bits (Boldo and Melquiond, "Emulation of FMA and correctly rounded sums: proved
 * algorithms using rounding to odd", IEEE Trans. Computers 57, 2008).  So every level gets the same
 * bits (tests/test_kernels.py checks each against exact rounding).  Finite inputs only. */
static inline float fi_fmaf(float a, float b, float c)
{
#if defined(__FMA__) || defined(__FP_FAST_FMAF)
    return __builtin_fmaf(a, b, c);
#else
    double p = (double)a * (double)b, dc = (double)c;
    double s = p + dc, bp = s - dc, bc = s - bp;
    double e = (p - bp) + (dc - bc);                       /* p + c = s + e exactly */
    uint64_t u = fi_d2u(s);
    if (e != 0.0 && !(u & 1u)) u += ((e > 0.0) == (s > 0.0)) ? 1 : (uint64_t)-1;
    return (float)fi_u2d(u);
#endif
}



/* Natural log for normal positive x (here x in [2^-32, 1]). */
static inline float fi_logf(float x)
{
    uint32_t u = fi_f2u(x);
    int32_t e = (int32_t)(u >> 23) - 126;                  /* x = m * 2^e, m in [0.5, 1) */
    float m = fi_u2f((u & 0x007fffffu) | 0x3f000000u);
    int32_t small = m < 0.70710678118654752f;              /* sqrt(1/2): fold m into [sqrt(.5), sqrt(2)) */
    e -= small;
    float f = (small ? m + m : m) - 1.0f;
    float z = f * f;
    /* Cephes logf polynomial P(f) of degree 8, evaluated by Estrin's scheme (a shallow
     * dependency chain; the rounding differs from Horner's by at most an ulp of the small term) */
    float z2 = z * z, z4 = z2 * z2;
    float q01 = 3.3333331174e-1f + -2.4999993993e-1f * f;
    float q23 = 2.0000714765e-1f + -1.6668057665e-1f * f;
    float q45 = 1.4249322787e-1f + -1.2420140846e-1f * f;
    float q67 = 1.1676998740e-1f + -1.1514610310e-1f * f;
    float p = (q01 + q23 * z) + z2 * (q45 + q67 * z) + z4 * 7.0376836292e-2f;
    float ef = (float)e;
    float y = f * z * p;
    y = y + -2.12194440e-4f * ef;                          /* ln 2 = 0.693359375 - 2.12194440e-4 */
    y = y + -0.5f * z;
    return (f + y) + 0.693359375f * ef;
}

/* ---- float64 ------------------------------------------------------------------------ */

/* Natural log for normal positive x. */
static inline double fi_log(double x)
{
    uint64_t u = fi_d2u(x);
    int64_t e = (int64_t)(u >> 52) - 1022;                 /* x = m * 2^e, m in [0.5, 1) */
    double m = fi_u2d((u & 0x000fffffffffffffull) | 0x3fe0000000000000ull);
    int64_t small = m < 0.70710678118654752440;
    e -= small;
    double f = (small ? m + m : m) - 1.0;                  /* m in [sqrt(.5), sqrt(2)) */
    double s = f / (2.0 + f);
    double z = s * s, w = z * z;
    /* fdlibm e_log.c: Lg1..Lg7 */
    double t1 = w * (3.999999999940941908e-01 + w * (2.222219843214978396e-01 + w * 1.531383769920937332e-01));
    double t2 = z * (6.666666666666735130e-01 + w * (2.857142874366239149e-01 +
                w * (1.818357216161805012e-01 + w * 1.479819860511658591e-01)));
    double R = t2 + t1;
    double hfsq = 0.5 * f * f;
    double de = (double)e;
    /* ln 2 = 6.93147180369123816490e-01 + 1.90821492927058770002e-10 */
    return de * 6.93147180369123816490e-01 - ((hfsq - (s * (hfsq + R) + de * 1.90821492927058770002e-10)) - f);
}

static inline double fi_sin_k(double x)                    /* |x| <= pi/4, fdlibm S1..S6 */
{
    double z = x * x;
    double r = 8.33333333332248946124e-03 + z * (-1.98412698298579493134e-04 +
               z * (2.75573137070700676789e-06 + z * (-2.50507602534068634195e-08 + z * 1.58969099521155010221e-10)));
    return x + z * x * (-1.66666666666666324348e-01 + z * r);
}

static inline double fi_cos_k(double x)                    /* |x| <= pi/4, fdlibm C1..C6 */
{
    double z = x * x;
    double r = z * (4.16666666666666019037e-02 + z * (-1.38888888888741095749e-03 + z * (2.48015872894767294178e-05 +
               z * (-2.75573143513906633035e-07 + z * (2.08757232129817482790e-09 + z * -1.13596475577881948265e-11)))));
    double hz = 0.5 * z;
    double w = 1.0 - hz;
    return w + (((1.0 - w) - hz) + z * r);
}

/* cos and sin of 2 pi t / 2^53 for an integer t in [0, 2^53). */
static inline void fi_sincos_turn53(uint64_t t, double *c, double *s)
{
    uint64_t q = (t + (1ull << 50)) >> 51;                 /* nearest quarter turn, 0..4 */
    int64_t f = (int64_t)t - (int64_t)(q << 51);           /* in [-2^50, 2^50] */
    double x = (double)f * 0x1.921fb54442d18p-51;          /* (pi/2) / 2^51, rounded to double */
    double sk = fi_sin_k(x), ck = fi_cos_k(x);
    uint64_t qm = q & 3u;
    double cc = (qm & 1u) ? sk : ck;
    double ss = (qm & 1u) ? ck : sk;
    *c = (qm == 1u || qm == 2u) ? -cc : cc;
    *s = (qm >= 2u) ? -ss : ss;
}

/* ---- inverse normal CDF (Wichura 1988, Algorithm AS241 PPND16) ------------------------ */

static inline double fi_ndtri_central(double q)            /* |q| <= 0.425, q = p - 1/2 */
{
    double r = 0.180625 - q * q;
    double num = ((((((2.5090809287301226727e+3 * r + 3.3430575583588128105e+4) * r + 6.7265770927008700853e+4) * r
                  + 4.5921953931549871457e+4) * r + 1.3731693765509461125e+4) * r + 1.9715909503065514427e+3) * r
                  + 1.3314166789178437745e+2) * r + 3.3871328727963666080e+0;
    double den = ((((((5.2264952788528545610e+3 * r + 2.8729085735721942674e+4) * r + 3.9307895800092710610e+4) * r
                  + 2.1213794301586595867e+4) * r + 5.3941960214247511077e+3) * r + 6.8718700749205790830e+2) * r
                  + 4.2313330701600911252e+1) * r + 1.0;
    return q * num / den;
}

/* Lower-tail quantile as a function of r = sqrt(-ln p), p < 0.075 (returns a negative x).
 * Both rational branches are evaluated and one is selected, which keeps the loops branch-free. */
static inline double fi_ndtri_tail(double r)
{
    int far = r > 5.0;
    double t = far ? r - 5.0 : r - 1.6;
    double n0 = ((((((7.74545014278341407640e-4 * t + 2.27238449892691845833e-2) * t + 2.41780725177450611770e-1) * t
                 + 1.27045825245236838258e+0) * t + 3.64784832476320460504e+0) * t + 5.76949722146069140550e+0) * t
                 + 4.63033784615654529590e+0) * t + 1.42343711074968357734e+0;
    double d0 = ((((((1.05075007164441684324e-9 * t + 5.47593808499534494600e-4) * t + 1.51986665636164571966e-2) * t
                 + 1.48103976427480074590e-1) * t + 6.89767334985100004550e-1) * t + 1.67638483018380384940e+0) * t
                 + 2.05319162663775882187e+0) * t + 1.0;
    double n1 = ((((((2.01033439929228813265e-7 * t + 2.71155556874348757815e-5) * t + 1.24266094738807843860e-3) * t
                 + 2.65321895265761230930e-2) * t + 2.96560571828504891230e-1) * t + 1.78482653991729133580e+0) * t
                 + 5.46378491116411436990e+0) * t + 6.65790464350110377720e+0;
    double d1 = ((((((2.04426310338993978564e-15 * t + 1.42151175831644588870e-7) * t + 1.84631831751005468180e-5) * t
                 + 7.86869131145613259100e-4) * t + 1.48753612908506148525e-2) * t + 1.36929880922735805310e-1) * t
                 + 5.99832206555887937690e-1) * t + 1.0;
    double num = far ? n1 : n0, den = far ? d1 : d0;
    return -(num / den);
}

/* Phi^{-1}(p) for p in (0, 1). */
static inline double fi_ndtri_inline(double p)
{
    double q = p - 0.5;
    double aq = q < 0.0 ? -q : q;
    double xc = fi_ndtri_central(q);
    double pt = q < 0.0 ? p : 1.0 - p;                     /* tail probability, <= 0.075 when used */
    pt = pt > 1e-300 ? pt : 1e-300;                        /* keeps the discarded lane finite */
    double xt = fi_ndtri_tail(__builtin_sqrt(-fi_log(pt)));
    xt = q < 0.0 ? xt : -xt;
    return aq <= 0.425 ? xc : xt;
}

/* ---- float32 quantile for the truncated normal ------------------------------------------
 *
 * With y = 2p - 1 and w = -ln(1 - y^2), Phi^{-1}(p) = sqrt(2) erfinv(y) = y Q(w).  Q is smooth in
 * w near 0 and in s = sqrt(w) in the tails.  The two polynomials below are Chebyshev fits made for
 * fastinit (kernels/fit_trunc_quantile.py prints them); evaluated in float32 as
 * below their relative error against the exact Q is at most 3.1 x 2^-24 (central) and 3.7 x 2^-24
 * (tail).  With the rounding of y and w the quantile is within 6 x 2^-24 max(|x|, 1) (measured
 * over 2^23 words per interval; tests/test_stream.py checks 8 x 2^-24). */

static inline float fi_trunc_q_central(float w)            /* w in [0, 6.25] (|x| <~ 3.3) */
{
    float d = w - 3.125f;
    /* two Horner chains joined by d^5 (a shorter dependency chain than one Horner chain) */
    float h = 9.448842e-10f;
    h = h * d + -6.505346e-09f;
    h = h * d + -3.523319e-08f;
    h = h * d + 6.017381e-07f;
    h = h * d + -1.9605288e-06f;
    h = h * d + -1.9637439e-05f;
    float l = 2.6414898e-04f;
    l = l * d + -1.047511e-03f;
    l = l * d + -8.532955e-03f;
    l = l * d + 3.3963495e-01f;
    l = l * d + 2.3386207e+00f;
    float d2 = d * d;
    return l + (d2 * d2 * d) * h;
}

static inline float fi_trunc_q_tail(float s)               /* s = sqrt(w) in [2.5, 5] (|x| <~ 6.9) */
{
    float d = s - 3.75f;
    float h = 5.345784e-05f;
    h = h * d + -1.796866e-04f;
    h = h * d + 2.5354224e-04f;
    h = h * d + -3.3899807e-04f;
    float l = 7.520987e-04f;
    l = l * d + -1.8320453e-03f;
    l = l * d + 2.9092554e-03f;
    l = l * d + 1.4264868e+00f;
    l = l * d + 5.073497e+00f;
    float d2 = d * d;
    return l + (d2 * d2 * d) * h;
}

/* ---- truncated normal far in a tail or on a tiny interval (double) ----------------------
 *
 * The quantile Phi^{-1}(p) cannot serve there: far out p underflows and AS241 leaves its range
 * (|x| > ~37), and on an interval tiny against std every p rounds to a few values.  These
 * functions invert in the offset t = x - alpha from the standardised bound alpha instead, which
 * is well conditioned in both limits; fastinit/_fill.py (trunc_params) chooses them and
 * tests/test_trunc_extremes.py checks them against mpmath. */

/* ln(1 + f) for f > -1: ln(y) f / (y - 1) with y = 1 + f rounded (the division restores what
 * the rounding of y lost; a few ulps with fi_log). */
static inline double fi_log1p(double f)
{
    double y = 1.0 + f, dy = y - 1.0;
    double r = fi_log(y) * (f / (dy != 0.0 ? dy : 1.0));
    return dy != 0.0 ? r : f;
}

/* Far tail, alpha >= 30 (mode 5).  With S the normal survival function and R = S / phi Mills's
 * ratio, h(t) = -ln(S(alpha + t) / S(alpha)) = t (alpha + t/2) + ln(1 + t/alpha) + ln(g(alpha) / g(x))
 * for x = alpha + t and g(x) = x R(x) = sum_n (-1)^n (2n - 1)!! x^-2n (the asymptotic series; for
 * x >= 30 its terms up to n = 8 leave less than 17!! / 30^18 = 9e-20).  The last logarithm is
 * ln(1 + y), y = (g(alpha) - g(x)) / g(x) = (z_a - z_x) dd / g(x) with z = x^-2 and the divided
 * difference dd computed alongside Horner's rule, so h keeps its relative accuracy however small t
 * is; |y| < 2 t / alpha^3 < 1e-4 here, so y - y^2/2 + y^3/3 is exact to y^4/4 (and the term is at
 * most 3e-6 of h).  h'(t) = 1/R(x) = x / g(x). */
static inline double fi_trunc_far_step(double alpha, double ia, double lam, double t)
{
    double x = alpha + t, ix = 1.0 / x, zx = ix * ix, za = ia * ia;
    /* g(x) = p and (g(alpha) - g(x)) / (z_a - z_x) = dd, coefficients (-1)^n (2n - 1)!! */
    double p = 2027025.0, dd = 0.0;
    dd = za * dd + p; p = -135135.0 + zx * p;
    dd = za * dd + p; p = 10395.0 + zx * p;
    dd = za * dd + p; p = -945.0 + zx * p;
    dd = za * dd + p; p = 105.0 + zx * p;
    dd = za * dd + p; p = -15.0 + zx * p;
    dd = za * dd + p; p = 3.0 + zx * p;
    dd = za * dd + p; p = -1.0 + zx * p;
    dd = za * dd + p; p = 1.0 + zx * p;
    double dz = ((t * ix) * ia) * (ia + ix);                /* z_a - z_x = t (2 alpha + t) / (alpha x)^2 */
    double y = (dz * dd) / p;
    double lg = y * (1.0 - y * (0.5 - y * 0.33333333333333331));
    double h = t * (alpha + 0.5 * t) + fi_log1p(t * ia) + lg;
    return t - (h - lam) * (p * ix);                        /* Newton: (h - lam) / h' */
}

/* The element solves h(t) = lam = -ln(1 - u m), m = 1 - rho = 1 - S(beta)/S(alpha), by two Newton
 * steps from the root of t^2/2 + (alpha + 1/alpha) t = lam (relative error at most 1.8e-5, at
 * alpha = 30; one step leaves 5e-12, two leave the rounding: t within 3.6 x 2^-53 relative of
 * the exact offset for the given u at alpha = 30 to 1e8, tests/test_trunc_extremes.py).  1 - u m is formed
 * as (1 - u) + u rho (exact terms for u >= 1/2), so lam is accurate even where 1 - u m is tiny;
 * with f = -u m, ln(1 + f) = ln(y) f / (y - 1) as in fi_log1p.  ia = 1/alpha, ap = alpha + 1/alpha. */
static inline double fi_trunc_far(double alpha, double ia, double ap, double rho, double m, double u)
{
    double y = (1.0 - u) + u * rho, f = -(u * m), dy = y - 1.0;
    double lam = dy != 0.0 ? -(fi_log(y) * (f / (dy != 0.0 ? dy : 1.0))) : -f;
    double t = (2.0 * lam) / (ap + __builtin_sqrt(ap * ap + 2.0 * lam));
    t = fi_trunc_far_step(alpha, ia, lam, t);
    t = fi_trunc_far_step(alpha, ia, lam, t);
    return t > 0.0 ? t : 0.0;
}

/* Tiny interval, width d = beta - alpha <= 2^-20 max(1, |alpha|) and |alpha| < 30 (mode 6).  The
 * density of t is proportional to exp(-alpha t - t^2/2) = sum_n hc[n] t^n, hc[n] = (-1)^n He_n(alpha) / n!
 * (hc[n+1] = -(alpha hc[n] + hc[n-1]) / (n + 1)); K(t) = t sum_n hc[n] t^n / (n + 1) is its integral
 * from 0.  With alpha d <= 2^-20 30^2 the terms fall by 8.6e-4 or more, so seven (n <= 6) leave
 * less than 1e-25.  The element solves K(d s) = u K(d) for the position s in [0, 1] of x in the
 * interval by three Newton steps from s = u (the law is uniform to within alpha d; s within
 * 2.2 x 2^-53 relative of the exact position, tests/test_trunc_extremes.py). */
#define FI_TRUNC_NARROW_TERMS 7
typedef struct { double hc[FI_TRUNC_NARROW_TERMS], kc[FI_TRUNC_NARROW_TERMS], d, kd; } fi_trunc_narrow_c;

static inline fi_trunc_narrow_c fi_trunc_narrow_setup(double alpha, double d)
{
    fi_trunc_narrow_c c;
    c.hc[0] = 1.0;
    c.hc[1] = -alpha;
    for (int n = 1; n + 1 < FI_TRUNC_NARROW_TERMS; n++)
        c.hc[n + 1] = -(alpha * c.hc[n] + c.hc[n - 1]) / (double)(n + 1);
    for (int n = 0; n < FI_TRUNC_NARROW_TERMS; n++) c.kc[n] = c.hc[n] / (double)(n + 1);
    double kd = c.kc[FI_TRUNC_NARROW_TERMS - 1];
    for (int n = FI_TRUNC_NARROW_TERMS - 2; n >= 0; n--) kd = c.kc[n] + d * kd;
    c.d = d;
    c.kd = kd;
    return c;
}

static inline double fi_trunc_narrow(const fi_trunc_narrow_c *c, double u)
{
    double s = u, ukd = u * c->kd;
    for (int it = 0; it < 3; it++) {
        double t = c->d * s;
        double k = c->kc[FI_TRUNC_NARROW_TERMS - 1], dk = c->hc[FI_TRUNC_NARROW_TERMS - 1];
        for (int n = FI_TRUNC_NARROW_TERMS - 2; n >= 0; n--) {
            k = c->kc[n] + t * k;
            dk = c->hc[n] + t * dk;
        }
        s = s - (s * k - ukd) / dk;
    }
    s = s > 0.0 ? s : 0.0;
    return s < 1.0 ? s : 1.0;
}

/* ---- rounding to 16-bit types (round to nearest even) ------------------------------- */

static inline uint16_t fi_f32_to_f16(float x)
{
    uint32_t u = fi_f2u(x);
    uint32_t sign = (u >> 16) & 0x8000u;
    uint32_t a = u & 0x7fffffffu;
    /* normal range: rebias exponent 127 -> 15 and round the 13 dropped bits to nearest even */
    uint32_t nrm = (a - 0x38000000u + 0x0fffu + ((a >> 13) & 1u)) >> 13;
    /* subnormal range (|x| < 2^-14): adding 0.5 rounds |x| to a multiple of 2^-24 (RNE) */
    float fa = fi_u2f(a);
    uint32_t sub = fi_f2u(fa + 0.5f) - 0x3f000000u;
    uint32_t r = a < 0x38800000u ? sub : nrm;
    r = a >= 0x477ff000u ? 0x7c00u : r;                     /* rounds to +-inf */
    r = a > 0x7f800000u ? 0x7e00u : r;                      /* NaN */
    return (uint16_t)(sign | r);
}

static inline uint16_t fi_f32_to_bf16(float x)
{
    uint32_t u = fi_f2u(x);
    uint32_t r = (u + 0x7fffu + ((u >> 16) & 1u)) >> 16;
    r = (u & 0x7fffffffu) > 0x7f800000u ? ((u >> 16) | 0x40u) : r;   /* quiet NaN */
    return (uint16_t)r;
}

#endif
