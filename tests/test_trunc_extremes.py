"""Truncated normals far in a tail and on intervals tiny against std, against an exact reference.

The reference is the truncated law itself, evaluated with mpmath at 40 significant digits (the
CDF) and 80 (the moments) (:class:`Law`): its CDF through the survival function of the side the
interval lies on, its mean and variance from the normal density at the bounds. Nothing in it
comes from fastinit.

* KS: the sample is compared with the law of the *stored* value (X rounded to the nearest value
  of the dtype, then clamped into the representable values inside [a, b], which is what the
  kernels write): its CDF at a stored value v is F(midpoint between v and the next value up).
  The KS statistic D then has a two-sided p-value from ``scipy.stats.kstwo`` (conservative for a
  discrete law). Threshold p > 1e-3 at fixed seeds (1 in 1000 for a correct sampler).
* The bound's own value: the number of values stored exactly on ``a`` is Binomial(n, q) with q
  the exact mass that rounds onto it; more than ``binom.isf(1e-6, n, q)`` fails (p < 1e-6). This
  is what a sampler that loses the offset from the bound gets wrong first.
* Mean excess over the bound: |mean(x - a) - E[X - a]| < 5 sd(mean) (two-sided p = 5.7e-7), sd
  from the exact variance, plus the bias the dtype's rounding may add (half a spacing at the
  largest value that matters).

The small tier (n = 10 000) always runs; ``@pytest.mark.slow`` runs n = 100 000 for KS and
4 000 000 for the counts and means (where 5 sd of the mean excess is 0.25 % of it).
"""

import hashlib
import json
import math

import ml_dtypes
import mpmath
import numpy as np
import pytest
from scipy import stats

import fastinit
from _subproc import run_python
from fastinit import _fill
from fastinit._lib import SIMD_LEVELS, lib

SEED = 20241217
DPS = 80          # moments: the variance of a tiny interval cancels ~35 digits
CDF_DPS = 40      # the CDF: the mass of a tiny interval is 1e-17 of what it is taken from
SMALL = 10_000
LARGE_KS, LARGE = 100_000, 4_000_000   # the slow tier: KS (one mpmath CDF per value) and counts

# (mean, std, a, b): far tails (mode 5) and tiny intervals (mode 6) of the issue, one-sided ones
# far out on either side, and a shifted and scaled one.
FAR = [(0.0, 1.0, 150.0, 151.0), (0.0, 1.0, 500.0, 501.0), (0.0, 1.0, 1000.0, 1001.0),
       (0.0, 1.0, 1e4, math.inf), (0.0, 1.0, -math.inf, -1000.0), (3.0, 0.5, -math.inf, -47.0),
       (-2.0, 0.25, 35.0, 35.5)]
TINY = [(0.0, 1e13, -1.0, 1.0), (0.0, 1e17, -1.0, 1.0), (5.0, 1e15, 2.0, 2.5), (0.0, 1.0, 3.0, 3.0 + 2e-7),
        (0.0, 1.0, -20.0 - 1e-6, -20.0)]


class Law:
    """N(mean, std^2) truncated to [a, b], evaluated exactly (mpmath, DPS digits)."""

    def __init__(self, mean, std, a, b):
        with mpmath.workdps(DPS):
            self.mean, self.std = mpmath.mpf(mean), mpmath.mpf(std)
            self.alpha, self.beta = self._z(a), self._z(b)
            # take probabilities from the side the interval lies on, so that no mass cancels
            self.upper = self.alpha + self.beta >= 0
            self.lo, self.hi = (self._tail(self.alpha), self._tail(self.beta))
            self.mass = self.lo - self.hi

    def _z(self, x):
        return (mpmath.mpf(x) - self.mean) / self.std

    def _tail(self, z):
        """S(z) = P(Z > z) on the upper side, -Phi(z) on the lower one: cdf = (lo - tail) / mass."""
        if self.upper:
            return mpmath.erfc(z / mpmath.sqrt(2)) / 2
        return -mpmath.erfc(-z / mpmath.sqrt(2)) / 2

    def cdf(self, x):
        """P(X <= x) for a float or mpf x."""
        with mpmath.workdps(CDF_DPS):
            z = min(max(self._z(x), self.alpha), self.beta)
            return float((self.lo - self._tail(z)) / self.mass)

    def moments(self):
        """(E[X], Var[X]) as mpf, from phi and z phi at the bounds (0 at an infinite one)."""
        with mpmath.workdps(DPS):
            ends = [(mpmath.mpf(0), mpmath.mpf(0)) if mpmath.isinf(z) else (mpmath.npdf(z), z * mpmath.npdf(z))
                    for z in (self.alpha, self.beta)]
            m1 = (ends[0][0] - ends[1][0]) / self.mass
            var = 1 + (ends[0][1] - ends[1][1]) / self.mass - m1**2
            return self.mean + self.std * m1, self.std**2 * var


def _neighbour(v, dtype, up):
    return np.nextafter(np.array(v, dtype), np.array(np.inf if up else -np.inf, dtype))


def ks_pvalue(x, dtype, law, a, b):
    """Two-sided KS p-value of the stored sample x against the law of the stored value."""
    dtype = np.dtype(dtype)
    lo, hi = _fill._ceil_to(a, dtype), _fill._floor_to(b, dtype)
    u, counts = np.unique(np.asarray(x, dtype), return_counts=True)
    assert u[0] >= lo and u[-1] <= hi, "values must lie inside [a, b]"
    fn = np.cumsum(counts) / counts.sum()
    fn_before = np.concatenate([[0.0], fn[:-1]])
    d = 0.0
    for v, f, f0 in zip(u.astype(np.float64), fn, fn_before, strict=True):
        with mpmath.workdps(CDF_DPS):   # F at the midpoints to the neighbours: the rounding's cells
            above = (mpmath.mpf(v) + mpmath.mpf(float(_neighbour(v, dtype, True)))) / 2
            below = (mpmath.mpf(v) + mpmath.mpf(float(_neighbour(v, dtype, False)))) / 2
            upper = 1.0 if v == hi else law.cdf(above)
            lower = 0.0 if v == lo else law.cdf(below)
        d = max(d, f - upper, lower - f0)
    return float(stats.kstwo.sf(d, counts.sum()))


def _sample(case, dtype, n, stream=0):
    return _fill.fill_trunc_normal(np.empty(n, dtype), *case, SEED, stream)


def _nearer_bound(case):
    mean, std, a, b = case
    return a if (a - mean) + (b - mean) >= 0 else b


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", FAR + TINY)
def test_uses_an_offset_mode(case, dtype):
    """Each case here takes the far-tail (5) or tiny-interval (6) kernel mode."""
    assert _fill.trunc_params(*case, single=dtype != np.float64)[0] == (5 if case in FAR else 6)


def _ks(case, dtype, n):
    x = _sample(case, dtype, n)
    assert np.isfinite(x).all()
    p = ks_pvalue(x, dtype, Law(*case), case[2], case[3])
    assert p > 1e-3, p       # p < 1e-3 with probability 1e-3 for a correct sampler


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", FAR + TINY)
def test_ks_against_mpmath(case, dtype):
    _ks(case, dtype, SMALL)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", FAR + TINY)
def test_ks_against_mpmath_large(case, dtype):
    _ks(case, dtype, LARGE_KS)


def _atom_at_bound(case, dtype, n):
    mean, std, a, b = case
    bound = _nearer_bound(case)
    x = _sample(case, dtype, n, stream=1)
    law = Law(*case)
    with mpmath.workdps(DPS):
        mid = (mpmath.mpf(bound) + mpmath.mpf(float(_neighbour(bound, dtype, bound == a)))) / 2
        q = law.cdf(mid) if bound == a else 1.0 - law.cdf(mid)
    limit = stats.binom.isf(1e-6, n, q)   # P(count > limit) < 1e-6
    count = int(np.count_nonzero(x == bound))
    assert count <= limit, (count, limit, q)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", [c for c in FAR if math.isfinite(_nearer_bound(c))])
def test_few_values_on_the_bound(case, dtype):
    _atom_at_bound(case, dtype, SMALL)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", [c for c in FAR if math.isfinite(_nearer_bound(c))])
def test_few_values_on_the_bound_large(case, dtype):
    _atom_at_bound(case, dtype, LARGE)


def _mean_excess(case, dtype, n):
    bound = _nearer_bound(case)
    x = _sample(case, dtype, n, stream=2).astype(np.float64)
    mean, var = Law(*case).moments()
    with mpmath.workdps(DPS):
        excess = float(abs(mean - mpmath.mpf(bound)))
        sd = float(mpmath.sqrt(var))
    got = float(np.mean(np.abs(x - bound)))
    # rounding to the dtype moves each value by at most half a spacing at the largest |x|
    rounding = 0.5 * float(np.spacing(np.array(np.max(np.abs(x)), dtype)))
    assert abs(got - excess) < 5 * sd / math.sqrt(n) + rounding, (got, excess, sd)   # p = 5.7e-7


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", [c for c in FAR + TINY if math.isfinite(_nearer_bound(c))])
def test_mean_excess_over_the_bound(case, dtype):
    _mean_excess(case, dtype, SMALL)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("case", [c for c in FAR + TINY if math.isfinite(_nearer_bound(c))])
def test_mean_excess_over_the_bound_large(case, dtype):
    _mean_excess(case, dtype, LARGE)


def test_the_issue_cases():
    """trunc_normal_(x, 0, 1, 1000, 1001) in float64: E[X - 1000] = 9.99998e-4 (mpmath), no value on
    1000 (q = 5.6e-11 per value); std = 1e13 and 1e17 on [-1, 1]: all values distinct (a continuous
    law: P(any collision) < n^2 max_atom < 1e-7) and spread over [-1, 1]."""
    with pytest.warns(UserWarning, match="more than 2 std"):   # as torch warns
        x = fastinit.trunc_normal_(np.empty(SMALL), 0.0, 1.0, 1000.0, 1001.0, generator=SEED)
    assert np.count_nonzero(x == 1000.0) == 0
    excess = float(Law(0.0, 1.0, 1000.0, 1001.0).moments()[0]) - 1000.0
    assert abs(excess - 9.99998e-4) < 1e-9
    assert abs((x - 1000.0).mean() - excess) < 5 * 1e-3 / math.sqrt(SMALL)   # sd < 1e-3, p = 5.7e-7
    for std in (1e13, 1e17):
        y = fastinit.trunc_normal_(np.empty(SMALL), 0.0, std, -1.0, 1.0, generator=SEED)
        assert len(np.unique(y)) == SMALL
        # U(-1, 1) to within 1e-26: each quarter of [-1, 1] holds n/4 +- 5 sd (p = 5.7e-7)
        counts = np.histogram(y, bins=4, range=(-1, 1))[0]
        assert np.all(np.abs(counts - SMALL / 4) < 5 * math.sqrt(SMALL * 0.25 * 0.75)), counts


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_extreme_parameters_stay_finite_and_inside(dtype):
    """(a - mean) / std beyond the doubles, a width of one subnormal step, huge and tiny std: the
    values are finite, inside [a, b], and where the law is a point within rounding, that point."""
    big = 2.0**100   # 1.3e30, a float32 value
    cases = [((-big, 1e-300, big, math.inf), big),         # alpha = 2.5e330: X - a ~ std / alpha
             ((3.0, 1e-300, 1.0, 2.0), 2.0),               # 1e300 std below b
             ((0.0, 1e300, -big, big), None), ((0.0, 1e-300, -big, big), None),
             ((big, 1e20, -math.inf, -big), -big)]         # 2.5e10 std out: b - X ~ std / alpha = 4e9
    if dtype == np.float64:   # a - mean overflows: alpha from a / std - mean / std
        cases.append(((-1e308, 1e-300, 1e308, math.inf), 1e308))
    for (mean, std, a, b), point in cases:
        x = _fill.fill_trunc_normal(np.empty(1000, dtype), mean, std, a, b, SEED, 4).astype(np.float64)
        assert np.isfinite(x).all() and x.min() >= a and x.max() <= b, (mean, std, a, b)
        # the kernel's constants too (a NaN there can hide behind the clamp, which takes lo for NaN)
        assert np.isfinite(_fill.trunc_params(mean, std, a, b, single=dtype == np.float32)[1:4]).all()
        if point is not None:
            assert np.all(x == point), (mean, std, a, b, x[:3])


@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16])
@pytest.mark.parametrize("case", FAR + TINY)
def test_16bit_types_are_the_float32_values_rounded(case, dtype):
    """float16 and bfloat16 take the law of the float32 values (checked above) rounded to nearest
    even, kept inside [a, b]: the kernel clamps to the 16-bit type's extreme values inside, then rounds."""
    mean, std, a, b = case
    if dtype == np.float16 and max(abs(v) for v in (mean, a, b) if math.isfinite(v)) > 65504:
        pytest.skip("beyond float16")
    x32 = _sample(case, np.float32, 5000)
    got = _sample(case, dtype, 5000)
    dt = np.dtype(dtype)
    lo, hi = _fill._ceil_to(a, dt), _fill._floor_to(b, dt)
    expected = np.clip(x32.astype(dtype).astype(np.float64), lo, hi).astype(dtype)
    assert (got.view(np.uint16) == expected.view(np.uint16)).all()


def _kernel_uniforms(n):
    """The float64 kernel's uniforms: u = fl(k + 1/2) 2^-53 for the 53-bit k of words 2e, 2e + 1
    (k + 1/2 is rounded to a double, ties to even, exactly as in C)."""
    w = fastinit.raw_uint32(2 * n, SEED, 3).astype(np.uint64)
    k = (w[0::2] << np.uint64(32) | w[1::2]) >> np.uint64(11)
    return [(float(int(v)) + 0.5) * 2.0**-53 for v in k]


def _exact_offset(alpha, d, u):
    """The t in [0, d] with P(alpha <= Z <= alpha + t) = u P(alpha <= Z <= alpha + d): Newton's
    method in CDF_DPS digits on -ln S(alpha + t) = -ln(S(alpha) - u (S(alpha) - S(alpha + d))),
    a convex increasing function of t (S is log-concave), from t = lam S(alpha) / phi(alpha)."""
    with mpmath.workdps(CDF_DPS):
        a, u = mpmath.mpf(alpha), mpmath.mpf(u)
        sf = lambda z: mpmath.erfc(z / mpmath.sqrt(2)) / 2   # noqa: E731
        s_a = sf(a)
        log_target = mpmath.log(s_a - u * (s_a - (sf(a + mpmath.mpf(d)) if math.isfinite(d) else 0)))
        t = (mpmath.log(s_a) - log_target) * s_a / mpmath.npdf(a)
        for _ in range(100):
            step = (mpmath.log(sf(a + t)) - log_target) * sf(a + t) / mpmath.npdf(a + t)
            t += step
            if abs(step) <= abs(t) * mpmath.mpf(10) ** (5 - CDF_DPS):
                break
        return t


@pytest.mark.parametrize("alpha, d", [(30.0, 1.0), (150.0, math.inf), (1000.0, 0.01), (1e4, 1e-12), (1e8, math.inf),
                                      (0.0, 1e-9), (3.0, 1e-15), (29.0, 2.0**-21 * 29)])
def test_offset_within_a_few_ulps(alpha, d):
    """With a = 0 and mean = -alpha std the kernel writes the offset itself (mode 5: x = t; mode 6:
    x = d s): it is within 8 x 2^-53 relative of the exact offset for the kernel's own u (at most
    3.6 x 2^-53 in these cases in mode 5, 2.2 x 2^-53 in mode 6, when this test was written)."""
    n = 200
    x = _fill.fill_trunc_normal(np.empty(n), -alpha, 1.0, 0.0, d, SEED, 3)
    assert _fill.trunc_params(-alpha, 1.0, 0.0, d)[0] == (5 if alpha >= 30 else 6)
    with mpmath.workdps(CDF_DPS):
        err = max(abs((mpmath.mpf(float(v)) - _exact_offset(alpha, d, u)) / mpmath.mpf(float(v)))
                  for v, u in zip(x, _kernel_uniforms(n), strict=True))
    assert err <= 8 * 2.0**-53, float(err) / 2.0**-53


# One script per forced SIMD level: the bytes of every offset-mode case in every dtype.
_LEVEL_SCRIPT = r"""
import hashlib, json
import numpy as np, ml_dtypes
import fastinit
from fastinit import _fill
h = {}
for dt in (np.float64, np.float32, np.float16, ml_dtypes.bfloat16):
    for i, c in enumerate(json.loads('CASES')):
        a = np.empty(4099, dt)
        _fill.fill_trunc_normal(a, *c, seed=99, stream=5, offset=3)
        h[f"{i}-{np.dtype(dt).name}"] = hashlib.sha256(a.tobytes()).hexdigest()
print(json.dumps({"level": fastinit.simd_level(), "hashes": h}))
"""


def test_offset_modes_identical_at_every_simd_level():
    levels = [name for i, name in enumerate(SIMD_LEVELS) if lib.fi_simd_supported(i)]
    script = _LEVEL_SCRIPT.replace("CASES", json.dumps(FAR + TINY))
    results = {}
    for level in levels:
        proc = run_python(script, env={"FASTINIT_SIMD": level})
        assert proc.returncode == 0, proc.stderr[-2000:]
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        assert res["level"] == level
        results[level] = res["hashes"]
    assert "scalar" in results
    for level, hashes in results.items():
        diff = [k for k in hashes if hashes[k] != results["scalar"][k]]
        assert not diff, f"{level} differs from scalar in {diff}"
    # and this process (the default level) writes the same bytes
    a = np.empty(4099, np.float64)
    _fill.fill_trunc_normal(a, *FAR[2], seed=99, stream=5, offset=3)
    assert hashlib.sha256(a.tobytes()).hexdigest() == results["scalar"]["2-float64"]
