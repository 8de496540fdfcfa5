"""Distributions of every public initialiser, in every dtype, at fixed seeds.

The expected law of each case is written from the formula (torch's fans and gains, JAX's
variance scaling), not from fastinit. Thresholds come from the sampling law and carry their
p-value; the seeds are fixed and were not searched for. Small n runs always; large n is
``@pytest.mark.slow``.

* KS: p > 0.01 at the fixed seed (JAX ``_CheckKolmogorovSmirnovCDF``). At n = 20 000 the KS
  critical distance is 1.63 / sqrt(n) = 0.0115, so swapped fans (here a 1.41x std change) or a
  wrong gain fail for certain; the rounding of float16/bfloat16 values moves the empirical CDF by
  16-bit samples are discrete, so they are compared with the law of the rounded variable
  (``_ks_pvalue``). The slow tier uses n = 2 000 000 (critical distance 0.0012).
* Moments: |mean| < 5 sd(mean) and |s^2 / sigma^2 - 1| < 5 sqrt((kappa - 1) / n), kappa the
  kurtosis of the law (two-sided p ~ 5.7e-7 each). At n = 2e6 this detects a 0.5% variance error.
"""

import functools
import math

import ml_dtypes
import numpy as np
import pytest
from scipy import stats

import fastinit

SEED = 20240601
DTYPES = [np.float16, ml_dtypes.bfloat16, np.float32, np.float64]
SMALL = (100, 200)        # n = 20 000, fan_in = 200, fan_out = 100
LARGE = (1000, 2000)      # n = 2 000 000
TRUNC_STD = 0.87962566103423978  # std of N(0, 1) truncated to (-2, 2), JAX's constant
FAN = {"fan_in": lambda fi, fo: fi, "fan_out": lambda fi, fo: fo, "fan_avg": lambda fi, fo: (fi + fo) / 2,
       "fan_geo_avg": lambda fi, fo: math.sqrt(fi * fo)}


def _u(bound):
    return stats.uniform(-bound, 2 * bound)


def _variance_scaling_2(w, g, mode, dist):
    return fastinit.variance_scaling_(w, 2.0, mode, dist, generator=g)


def _vs_law(scale, mode, dist):
    def law(fi, fo):
        v = scale / FAN[mode](fi, fo)
        if dist == "uniform":
            return _u(math.sqrt(3 * v))
        if dist == "normal":
            return stats.norm(0, math.sqrt(v))
        return stats.truncnorm(-2, 2, scale=math.sqrt(v) / TRUNC_STD)
    return law


# (id, fill(w, generator), law(fan_in, fan_out) -> scipy frozen distribution)
CASES = [
    ("uniform", lambda w, g: fastinit.uniform_(w, -0.5, 2.0, generator=g), lambda fi, fo: stats.uniform(-0.5, 2.5)),
    ("normal", lambda w, g: fastinit.normal_(w, 1.0, 3.0, generator=g), lambda fi, fo: stats.norm(1.0, 3.0)),
    ("trunc_normal", lambda w, g: fastinit.trunc_normal_(w, 0.5, 1.5, -1.0, 2.0, generator=g),
     lambda fi, fo: stats.truncnorm(-1.0, 1.0, loc=0.5, scale=1.5)),
    ("trunc_normal-tail", lambda w, g: fastinit.trunc_normal_(w, 0.0, 1.0, 3.0, math.inf, generator=g),
     lambda fi, fo: stats.truncnorm(3.0, math.inf)),
    ("trunc_normal-wide-std", lambda w, g: fastinit.trunc_normal_(w, std=5.0, generator=g),   # bounds +-2 absolute
     lambda fi, fo: stats.truncnorm(-0.4, 0.4, scale=5.0)),
    ("xavier_uniform", lambda w, g: fastinit.xavier_uniform_(w, 1.5, generator=g),
     lambda fi, fo: _u(1.5 * math.sqrt(6 / (fi + fo)))),
    ("xavier_normal", lambda w, g: fastinit.xavier_normal_(w, 1.5, generator=g),
     lambda fi, fo: stats.norm(0, 1.5 * math.sqrt(2 / (fi + fo)))),
    ("kaiming_uniform", lambda w, g: fastinit.kaiming_uniform_(w, generator=g),      # a=0 leaky_relu: gain sqrt 2
     lambda fi, fo: _u(math.sqrt(2) * math.sqrt(3 / fi))),
    ("kaiming_uniform-linear-init", lambda w, g: fastinit.kaiming_uniform_(w, a=math.sqrt(5), mode="fan_out",
                                                                           generator=g),
     lambda fi, fo: _u(1 / math.sqrt(fo))),                                         # gain^2 = 2/6
    ("kaiming_normal-relu", lambda w, g: fastinit.kaiming_normal_(w, nonlinearity="relu", generator=g),
     lambda fi, fo: stats.norm(0, math.sqrt(2 / fi))),
    ("kaiming_normal-tanh-fan_out", lambda w, g: fastinit.kaiming_normal_(w, mode="fan_out", nonlinearity="tanh",
                                                                          generator=g),
     lambda fi, fo: stats.norm(0, 5 / 3 / math.sqrt(fo))),
    ("kaiming_normal-leaky", lambda w, g: fastinit.kaiming_normal_(w, a=0.2, generator=g),
     lambda fi, fo: stats.norm(0, math.sqrt(2 / 1.04) / math.sqrt(fi))),
    ("lecun_uniform", lambda w, g: fastinit.lecun_uniform_(w, generator=g), lambda fi, fo: _u(math.sqrt(3 / fi))),
    ("lecun_normal", lambda w, g: fastinit.lecun_normal_(w, generator=g),
     lambda fi, fo: stats.truncnorm(-2, 2, scale=math.sqrt(1 / fi) / TRUNC_STD)),
] + [
    (f"variance_scaling-{mode}-{dist}",
     functools.partial(_variance_scaling_2, mode=mode, dist=dist),
     _vs_law(2.0, mode, dist))
    for mode in ("fan_in", "fan_out", "fan_avg", "fan_geo_avg") for dist in ("truncated_normal", "normal", "uniform")
]


def _sample(fill, shape, dtype, seed=SEED):
    w = fill(np.empty(shape, dtype), fastinit.Generator(seed))
    return w.astype(np.float64).ravel()


def _fans(shape):
    return shape[1], shape[0]


def _ks_pvalue(x, dtype, dist):
    """KS p-value of ``x`` against the frozen scipy law ``dist``, in the sample's precision.

    float32/float64: the plain KS test. A float16/bfloat16 sample is discrete (atoms up to 1/128
    relative apart), so it is compared with the law of the stored value: X rounded to the nearest
    representable value, then clamped into [lo, hi], the representable values inside the support
    (``hi < b`` for a uniform law, whose upper bound is excluded; this moves the mass that would
    round onto ``b`` to the value below it). Its CDF at atom v is F(midpoint above v), and 1 at hi.
    The continuous KS distribution is conservative for a discrete law.
    """
    if np.dtype(dtype).itemsize > 2:
        return stats.kstest(x, dist.cdf).pvalue
    with np.errstate(invalid="ignore"):  # NaN bit patterns
        bits = np.arange(1 << 16, dtype=np.uint16).view(dtype).astype(np.float64)
    table = np.unique(bits[np.isfinite(bits)])
    a, b = dist.support()
    lo = table[table >= a].min()
    hi = table[table < b].max() if dist.dist.name == "uniform" else table[table <= b].max()
    mids = np.concatenate([[-np.inf], (table[1:] + table[:-1]) / 2, [np.inf]])  # table[i] <- (mids[i], mids[i+1])
    u, counts = np.unique(x, return_counts=True)
    i = np.searchsorted(table, u)
    assert np.array_equal(table[i], u), "values must be representable"
    assert u.min() >= lo and u.max() <= hi, "values must lie inside the support"
    upper = np.where(u == hi, np.inf, mids[i + 1])
    lower = np.where(u == lo, -np.inf, mids[i])
    fn = np.cumsum(counts) / x.size
    fn_before = np.concatenate([[0.0], fn[:-1]])
    d = max(np.max(fn - dist.cdf(upper)), np.max(dist.cdf(lower) - fn_before), 0.0)
    return stats.kstwo.sf(d, x.size)


def _check_moments(x, law, k=5.0):
    n = x.size
    mu, var, _, excess = (float(v) for v in law.stats("mvsk"))
    assert abs(x.mean() - mu) < k * math.sqrt(var / n), f"mean: expected {mu}, observed {x.mean()}"
    tol = k * math.sqrt((excess + 2) / (n - 1))   # Var(s^2)/sigma^4 = (kappa - 1)/n, kappa = excess + 3
    assert abs(x.var() / var - 1) < tol, f"variance: expected {var}, observed {x.var()}, rel tol {tol}"


@pytest.mark.filterwarnings("ignore:mean is more than 2 std")   # the far-tail case; torch warns too
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, fill, law", CASES, ids=[c[0] for c in CASES])
def test_law_small(name, fill, law, dtype):
    x = _sample(fill, SMALL, dtype)
    dist = law(*_fans(SMALL))
    p = _ks_pvalue(x, dtype, dist)
    assert p > 0.01, f"KS p = {p:.3g} (expected law {dist.dist.name}{dist.args} {dist.kwds})"
    _check_moments(x, dist)
    lo, hi = dist.support()
    assert x.min() >= lo - 1e-12 * max(1, abs(lo)) and x.max() <= hi + 1e-12 * max(1, abs(hi))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:mean is more than 2 std")   # the far-tail case; torch warns too
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name, fill, law", CASES, ids=[c[0] for c in CASES])
def test_law_large(name, fill, law, dtype):
    x = _sample(fill, LARGE, dtype)
    dist = law(*_fans(LARGE))
    p = _ks_pvalue(x, dtype, dist)
    assert p > 0.01, f"KS p = {p:.3g}"
    _check_moments(x, dist)


@pytest.mark.filterwarnings("ignore:mean is more than 2 std")
def test_ks_check_can_fail():
    """The discrete KS check rejects a bfloat16 sample of the wrong scale and the raw continuous test."""
    x = _sample(CASES[3][1], SMALL, ml_dtypes.bfloat16)   # truncnorm(3, inf): atoms 0.0156 apart near 3
    assert _ks_pvalue(x, ml_dtypes.bfloat16, stats.truncnorm(3.0, math.inf)) > 0.01
    assert _ks_pvalue(x, ml_dtypes.bfloat16, stats.truncnorm(3.0 / 1.1, math.inf, scale=1.1)) < 0.01   # 10% wider tail
    assert stats.kstest(x, stats.truncnorm(3.0, math.inf).cdf).pvalue < 0.01   # why the rounding matters


def test_moment_check_can_fail():
    """The variance test catches swapped fans and a wrong gain at the small n."""
    x = _sample(CASES[9][1], SMALL, np.float32)   # kaiming_normal relu, fan_in = 200
    with pytest.raises(AssertionError):
        _check_moments(x, stats.norm(0, math.sqrt(2 / 100)))         # fan_out instead
    with pytest.raises(AssertionError):
        _check_moments(x, stats.norm(0, 1.05 * math.sqrt(2 / 200)))  # 5% gain error


# ---- truncated normal: torch's regression tests ----------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_trunc_normal_small_std_does_not_pile_up_on_the_bounds(dtype):
    # torch issue #155588: the legacy erfinv sampler clamped 1000-sigma outliers onto +-2.
    w = fastinit.trunc_normal_(np.empty(100_000, dtype), std=0.1, generator=SEED)
    assert not (np.abs(w) >= 1.0).any()               # P(|z| > 10) ~ 1.5e-23 per value
    assert np.unique(w[:10_000]).size >= 5000


# ---- orthogonal_ -----------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(64, 64), (256, 128), (50, 300), (8, 4, 3, 3), (6, 2, 5)])
@pytest.mark.parametrize("dtype, atol", [(np.float64, 1e-6), (np.float32, 1e-5)])
@pytest.mark.parametrize("gain", [1.0, 3.0])
def test_orthogonal_property(shape, dtype, atol, gain):
    w = fastinit.orthogonal_(np.empty(shape, dtype), gain, generator=SEED).astype(np.float64)
    m = w.reshape(shape[0], -1)
    gram = m.T @ m if m.shape[0] >= m.shape[1] else m @ m.T
    np.testing.assert_allclose(gram, gain**2 * np.eye(gram.shape[0]), atol=atol * gain**2, rtol=0)


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16])
def test_orthogonal_low_precision(dtype):
    w = fastinit.orthogonal_(np.empty((64, 32), dtype), generator=SEED).astype(np.float64)
    np.testing.assert_allclose(w.T @ w, np.eye(32), atol=3e-2, rtol=0)   # bf16: 8-bit significand


@pytest.mark.parametrize("rows, cols", [(4, 4), (3, 5)])
def test_orthogonal_is_haar(rows, cols):
    """1000 draws: entries follow the Haar marginal, and the sign correction is present.

    A row (rows <= cols) or column of a Haar (semi-)orthogonal matrix is uniform on the sphere of
    dimension d = max(rows, cols), so each squared entry is Beta(1/2, (d-1)/2). For square Haar
    O(n) the trace has mean 0 and variance 1, so the mean of 1000 traces lies within +-5/sqrt(1000)
    with p ~ 5.7e-7; plain Householder QR without the sign fix gives a mean diagonal of about
    -0.21 (mean trace -0.84) and fails.
    """
    g = fastinit.Generator(SEED)
    draws = np.stack([fastinit.orthogonal_(np.empty((rows, cols)), generator=g) for _ in range(1000)])
    d = max(rows, cols)
    beta = stats.beta(0.5, (d - 1) / 2)
    entries = [(0, 0), (1, 2), (rows - 1, cols - 1)]
    for i, j in entries:
        p = stats.kstest(draws[:, i, j] ** 2, beta.cdf).pvalue
        assert p > 0.01, f"entry {(i, j)}: KS p = {p:.3g}"
        # symmetric law: as many positive as negative values (binomial, 5 sd)
        assert abs((draws[:, i, j] > 0).mean() - 0.5) < 5 * 0.5 / math.sqrt(1000)
    p = stats.ks_2samp(draws[:, 0, 0], draws[:, rows - 1, 1]).pvalue   # exchangeable entries
    assert p > 0.01
    if rows == cols:
        trace = np.trace(draws, axis1=1, axis2=2)
        assert abs(trace.mean()) < 5 / math.sqrt(1000)


# ---- sparse_ ---------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_sparse_values_and_pattern(dtype):
    rows, cols, sparsity, std = 10, 4000, 0.3, 0.5
    w = fastinit.sparse_(np.empty((rows, cols), dtype), sparsity, std, generator=SEED).astype(np.float64)
    zero = w == 0
    nz = w[~zero]
    assert (zero.sum(axis=0) == 3).all()
    p = _ks_pvalue(nz, dtype, stats.norm(0, std))
    assert p > 0.01, f"non-zero values: KS p = {p:.3g}"
    # every 3-subset of the 10 rows equally likely: chi-square over the C(10, 3) = 120 subsets
    codes = (zero * (1 << np.arange(rows))[:, None]).sum(axis=0)
    _, counts = np.unique(codes, return_counts=True)
    assert counts.size == math.comb(rows, 3)
    p = stats.chisquare(counts).pvalue   # df = 119, expected count 33.3 per subset
    assert p > 0.01, f"zero pattern: chi-square p = {p:.3g}"
