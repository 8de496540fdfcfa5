/* trunc_table.c -- the per-call quantile table of the float32 truncated normal (see fastinit.h).
 *
 * Built once per call in double precision from the exact quantile, so it costs ~300 fi_ndtri
 * evaluations; the kernels then need one Horner chain of table lookups per element and no log.
 * Compiled once (not per SIMD level) with -ffp-contract=off: the same table on every machine.
 */
#include "fastinit.h"
#include "fi_math.h"

/* Chebyshev nodes cos(pi (j + 1/2) / 9), j = 0 .. 8 (the degree-8 interpolation points). */
static const double fi_cheb_nodes[FI_TT_DEG + 1] = {
    0.984807753012208, 0.8660254037844387, 0.6427876096865394, 0.3420201433256688, 6.123233995736766e-17,
    -0.3420201433256685, -0.6427876096865394, -0.8660254037844385, -0.984807753012208};

/* Phi^-1(c0 + u c1), taken from the nearer tail: -Phi^-1(c2 + (1 - u) c1) above the median. */
static double quantile(double c0, double c1, double c2, double u)
{
    double p = c0 + u * c1;
    return p <= 0.5 ? fi_ndtri_inline(p) : -fi_ndtri_inline(c2 + (1.0 - u) * c1);
}

/* The kernels' evaluation: Horner's rule in float32 with fused multiply-adds, highest coefficient
 * first (bit for bit). */
static float horner(const float *table, int s, float t)
{
    float x = table[FI_TT_DEG * FI_TT_SEGS + s];
    for (int k = FI_TT_DEG - 1; k >= 0; k--) x = fi_fmaf(x, t, table[k * FI_TT_SEGS + s]);
    return x;
}

double fi_trunc_table(double c0, double c1, double c2, double mean, double std, float *table)
{
    enum { D = FI_TT_DEG, N = FI_TT_DEG + 1 };
    /* Monomial coefficients of the Chebyshev polynomials T_0 .. T_D (small integers, exact). */
    double tk[N][N] = {{0}};
    tk[0][0] = 1.0;
    tk[1][1] = 1.0;
    for (int k = 1; k < D; k++)
        for (int i = 0; i <= k + 1; i++)
            tk[k + 1][i] = (i > 0 ? 2.0 * tk[k][i - 1] : 0.0) - tk[k - 1][i];
    /* T_k at the nodes, by the same recurrence */
    double tn[N][N];
    for (int j = 0; j < N; j++) {
        tn[0][j] = 1.0;
        tn[1][j] = fi_cheb_nodes[j];
        for (int k = 1; k < D; k++) tn[k + 1][j] = 2.0 * fi_cheb_nodes[j] * tn[k][j] - tn[k - 1][j];
    }
    float unit[FI_TT_SIZE];                      /* the standardised table (mean 0, std 1) */
    double worst = 0.0;
    for (int s = 0; s < FI_TT_SEGS; s++) {
        /* position in the segment: t + 1/2 + 2^-24 for the kernel's t in [-1/2, 1/2) */
        double f[N], a[N], m[N];
        for (int j = 0; j < N; j++)
            f[j] = quantile(c0, c1, c2, ((double)s + 0.5 + 0.5 * fi_cheb_nodes[j] + 0x1p-24) / FI_TT_SEGS);
        for (int k = 0; k < N; k++) {            /* a_k = (2 / N) sum_j f_j T_k(xi_j), a_0 halved */
            double acc = 0.0;
            for (int j = 0; j < N; j++) acc += f[j] * tn[k][j];
            a[k] = (k == 0 ? 1.0 : 2.0) * acc / N;
        }
        for (int i = 0; i < N; i++) {            /* monomials in t = xi / 2 */
            double acc = 0.0;
            for (int k = i; k < N; k++) acc += a[k] * tk[k][i];
            m[i] = acc * (double)(1u << i);
        }
        for (int i = 0; i < N; i++) {
            unit[i * FI_TT_SEGS + s] = (float)m[i];
            table[i * FI_TT_SEGS + s] = (float)(std * m[i] + (i == 0 ? mean : 0.0));
        }
        /* the float32 evaluation against the exact quantile at 65 points, ends included */
        for (int j = 0; j <= 64; j++) {
            float t = (float)(j - 32) * 0.015625f;
            double x = quantile(c0, c1, c2, ((double)s + 0.5 + (double)t + 0x1p-24) / FI_TT_SEGS);
            double ax = x < 0 ? -x : x;
            double e = ((double)horner(unit, s, t) - x) / (ax > 1.0 ? ax : 1.0);
            e = e < 0 ? -e : e;
            worst = e > worst ? e : worst;
        }
    }
    return worst * 0x1p24;
}
