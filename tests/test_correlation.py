"""Tests of the correlation map (fastinit.theory._correlations) and its simulation (fastinit.sim._correlation).

Theory: closed forms (ReLU's arc-cosine kernel, the first layer, tanh's critical point sigma_w^2 = 1 at
sigma_b^2 = 0, ReLU's chi_1 = sigma_w^2 / 2) and self-consistency (c* is a fixed point of
``correlation_map``). Simulation against theory: a mean over K independent networks is compared with its
prediction within t(K-1) standard errors measured across the networks (the two-sided false-alarm
probability ``P`` of one comparison is written beside it, Bonferroni-corrected over the layers), plus,
for ratio statistics (the per-pair cosine), the O(1/n) finite-width bias a ratio of sums carries,
bounded by ``BIAS / n`` (measured below 1.5 / n for every case here at widths 256 to 2048).
"""

import math

import numpy as np
import pytest
from scipy import stats

from fastinit import InitArgumentError, theory
from fastinit.sim import fit_depth_scale, simulate_correlation
from fastinit.sim._correlation import run_pairs
from fastinit.theory._common import resolve_activation

P = 1e-4  # two-sided false-alarm probability of one whole-trajectory comparison (Bonferroni over layers)
BIAS = 3.0  # finite-width bias allowance of the cosine, BIAS / width


def t_quantile(dof, p=P, m=1):
    """|T| > t_quantile(dof, p, m) for any of m comparisons has probability <= p."""
    return float(stats.t.ppf(1 - p / (2 * m), dof))


def arccos_map(c):
    """ReLU's normalised correlation map (Cho and Saul's arc-cosine kernel of degree 1)."""
    return (math.sqrt(1 - c * c) + (math.pi - math.acos(c)) * c) / math.pi


# ------------------------------------------------------------------------------------------
# Theory
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sw2, c0", [(2.0, 0.0), (1.3, -0.6), (3.0, 0.9)])
def test_relu_trajectory_is_the_arccos_kernel(sw2, c0):
    t = theory.correlation_trajectory("relu", sw2, 0.0, depth=12, c0=c0, q0=0.7)
    want = [c0]
    for _ in range(11):
        want.append(arccos_map(want[-1]))
    np.testing.assert_allclose(t["c"], want, rtol=0, atol=1e-12)
    np.testing.assert_allclose(t["q"], 0.7 * sw2 * (sw2 / 2) ** np.arange(12), rtol=1e-12)
    np.testing.assert_allclose(t["chi_1"], sw2 / 2, rtol=1e-12)


@pytest.mark.parametrize("act, sw2, sb2", [("tanh", 1.7, 0.1), ("gelu", 2.2, 0.05), ("selu", 1.0, 0.0),
                                           ("sigmoid", 9.0, 0.2)])
def test_trajectory_first_layer_and_correlation_map(act, sw2, sb2):
    """Layer 1 is linear in the inputs; each later step is ``correlation_map`` at the previous length."""
    q0, c0 = 1.3, 0.25
    t = theory.correlation_trajectory(act, sw2, sb2, depth=5, q0=q0, c0=c0)
    assert t["q"][0] == pytest.approx(sw2 * q0 + sb2, rel=1e-14)
    assert t["c"][0] == pytest.approx((sw2 * q0 * c0 + sb2) / (sw2 * q0 + sb2), rel=1e-13)
    for k in range(1, 5):  # layer k + 1
        assert t["q"][k] == pytest.approx(theory.length_map(t["q"][k - 1], act, sw2, sb2), rel=1e-12)
        c = theory.correlation_map(t["c"][k - 1], act, sw2, t["q"][k - 1], sb2)
        assert t["c"][k] == pytest.approx(c, abs=1e-10)


@pytest.mark.parametrize("act, sw2, sb2", [("tanh", 4.0, 0.05), ("tanh", 3.0, 0.15), ("tanh", 1.8, 0.05),
                                           ("selu", 1.0, 0.05), ("selu", 1.5, 0.1)])
def test_chaotic_fixed_point_is_a_fixed_point(act, sw2, sb2):
    p = theory.criticality(act, sw2, sb2)
    assert p["phase"] == "chaotic" and 0.0 <= p["c_star"] < 1.0 and math.isfinite(p["q_star"])
    assert theory.correlation_map(p["c_star"], act, sw2, p["q_star"], sb2) == pytest.approx(p["c_star"], abs=1e-9)
    # chi_c is the slope of the map there: a central difference
    h = 1e-5
    up = theory.correlation_map(p["c_star"] + h, act, sw2, p["q_star"], sb2)
    dn = theory.correlation_map(p["c_star"] - h, act, sw2, p["q_star"], sb2)
    assert (up - dn) / (2 * h) == pytest.approx(p["chi_c"], rel=1e-5)
    assert p["xi_c"] == pytest.approx(-1 / math.log(p["chi_c"]), rel=1e-12)
    assert p["chi_1"] > 1.0


def test_odd_activation_without_bias_has_c_star_zero():
    p = theory.criticality("tanh", 4.0, 0.0)
    assert p["phase"] == "chaotic" and p["c_star"] == 0.0


def test_ordered_phase():
    p = theory.criticality("tanh", 1.5, 0.05)
    assert p["phase"] == "ordered" and p["c_star"] == 1.0 and p["chi_c"] == p["chi_1"] < 1
    assert p["xi_c"] == pytest.approx(-1 / math.log(p["chi_1"]), rel=1e-12)


def test_relu_limits():
    """q* = 0 (sigma_w^2 < 2, no bias) and q* = inf (sigma_w^2 > 2): chi_1 is still sigma_w^2 / 2."""
    for sw2, sb2, q in [(1.5, 0.0, 0.0), (3.0, 0.1, math.inf), (2.5, 0.0, math.inf)]:
        p = theory.criticality("relu", sw2, sb2)
        assert p["q_star"] == q
        assert p["chi_1"] == pytest.approx(sw2 / 2, rel=1e-14)
        assert p["c_star"] == 1.0 and p["xi_c"] == math.inf  # polynomial approach
    assert theory.fixed_point("relu", 2.0, 0.1) == math.inf  # q + 0.1 for ever: no fixed point
    assert theory.fixed_point("selu", 2.0, 0.1) == math.inf  # q_{l+1} / q_l -> 1.104 (was 1.4e216 at maxiter)
    assert theory.fixed_point("relu", 1.5, 0.1) == pytest.approx(0.4, rel=1e-12)


@pytest.mark.parametrize("act, sw2, sb2", [("tanh", 1.001, 0.0), ("tanh", 1.01, 0.0), ("silu", 2.274, 0.2)])
def test_fixed_point_slow_convergence(act, sw2, sb2):
    """Near q* -> 0 (tanh just above 1) and a saddle-node (SiLU) the iteration is slow; the root is exact."""
    q = theory.fixed_point(act, sw2, sb2)
    assert 0 < q < math.inf
    assert theory.length_map(q, act, sw2, sb2) == pytest.approx(q, rel=1e-12)
    if act == "tanh":  # q* = (sigma_w^2 - 1) / 2 + O(eps^2)
        assert q == pytest.approx((sw2 - 1) / 2, rel=5 * (sw2 - 1))


def test_critical_line_closed_forms():
    for sb2 in (0.0, 0.05, 0.3):
        assert theory.critical_sigma_w2("relu", sb2) == pytest.approx(2.0, abs=1e-9)
    # without bias, where q* = 0 loses stability: tanh at Poole et al.'s 1, SELU at 2 / (lambda^2 (1 + alpha^2))
    assert theory.critical_sigma_w2("tanh", 0.0) == pytest.approx(1.0, rel=1e-12)
    lam, alpha = 1.0507009873554804934, 1.6732632423543772848
    assert theory.critical_sigma_w2("selu", 0.0) == pytest.approx(2 / (lam ** 2 * (1 + alpha ** 2)), rel=1e-12)
    # GELU without bias: not at 1 / phi'(0)^2 = 4 but where q_l from q0 = 1 switches from shrinking to 0
    # (chi_1 -> sigma_w^2 / 4) to exploding (chi_1 -> sigma_w^2 / 2): the unstable fixed point q = 1 of the
    # length map, sigma_w^2 = 1 / E[gelu(xi)^2]; chi_1 jumps over 1 there
    g = theory.critical_sigma_w2("gelu", 0.0)
    assert g == pytest.approx(1 / theory.activation_moments("gelu", 0.0, 1.0)["m2"], rel=1e-5)  # a jump: ~1e-6
    assert theory.criticality("gelu", g * 0.999, 0.0)["chi_1"] == pytest.approx(g * 0.999 / 4, rel=1e-9)
    assert theory.criticality("gelu", g * 1.001, 0.0)["chi_1"] == pytest.approx(g * 1.001 / 2, rel=1e-9)
    sw = theory.critical_sigma_w2("tanh", 0.05)
    assert theory.criticality("tanh", sw, 0.05)["chi_1"] == pytest.approx(1.0, abs=1e-9)
    assert theory.criticality("tanh", sw * 0.99, 0.05)["phase"] == "ordered"
    assert theory.criticality("tanh", sw * 1.01, 0.05)["phase"] == "chaotic"
    assert math.isnan(theory.critical_sigma_w2("tanh", 0.05, bracket=(0.1, 1.0)))  # no crossing there


def test_depth_scales_c_star_matches_iteration():
    """depth_scales' bracketed c* equals the end of a long iteration of the correlation map."""
    d = theory.depth_scales("tanh", 4.0, 0.05)  # xi_c = 7: 200 steps leave e^-28 of the start
    c = 0.0
    for _ in range(200):
        c = theory.correlation_map(c, "tanh", 4.0, d["q_star"], 0.05)
    assert d["c_star"] == pytest.approx(c, abs=1e-10)


# ------------------------------------------------------------------------------------------
# Simulation vs theory
# ------------------------------------------------------------------------------------------
CASES = [  # activation, sigma_w2, sigma_b2, c0
    ("tanh", 1.5, 0.05, 0.2),     # ordered
    ("tanh", 4.0, 0.05, 0.9),     # chaotic, c* = 0.165
    ("relu", 2.0, 0.0, 0.0),      # critical, arc-cosine kernel
    ("gelu", 2.0, 0.1, -0.5),
    ("selu", 1.0, 0.0, 0.5),      # SELU's own init is (slightly) chaotic
]


@pytest.mark.parametrize("act, sw2, sb2, c0", CASES)
def test_simulation_matches_theory(act, sw2, sb2, c0):
    n, L, K = 512, 10, 12
    r = simulate_correlation(L, n, activation=act, sigma_w2=sw2, sigma_b2=sb2, c0=c0, pairs=4, n_networks=K,
                             seed=3)
    tq = t_quantile(K - 1, m=L)  # P = 1e-4 for the whole trajectory of one statistic
    for name, bias in (("q", 0.0), ("c", BIAS / n), ("chi_1", 0.0)):
        got, se, th = r.stats[name], r.stderr[name], r.theory[name]
        ok = np.isfinite(th)
        assert np.all(np.abs(got - th)[ok] <= tq * se[ok] + bias), (name, got, th, se)


def test_first_layer_length_is_unbiased():
    """Layer 1: E[q_1] = sigma_w^2 q0 + sigma_b^2 exactly (no finite-width bias): t(K-1), P = 1e-4."""
    K = 40
    r = simulate_correlation(1, 64, activation="tanh", sigma_w2=1.7, sigma_b2=0.3, q0=0.8, c0=0.3, pairs=3,
                             n_networks=K, seed=9)
    assert abs(r.q[0] - (1.7 * 0.8 + 0.3)) <= t_quantile(K - 1) * r.stderr["q"][0]


def test_depth_scale_fit_matches_theory_fit():
    """Ordered tanh: the fitted xi_c of each network vs the same fit of the mean-field trajectory.

    1 - c_l shrinks geometrically with multiplicative noise, so each network's fit is stable: the K
    per-network values are compared with t(K-1) at P = 1e-4, plus the fit's O(1/n) bias (2% here).
    """
    n, L, K = 512, 20, 10
    r = simulate_correlation(L, n, activation="tanh", sigma_w2=1.0, sigma_b2=0.1, c0=0.5, pairs=4, n_networks=K,
                             seed=1, fit_first=5)
    xs = np.array([fit_depth_scale(r.per_network["c"][k], first=5)["xi_c"] for k in range(K)])
    th = r.fit["xi_c_theory_fit"]
    assert abs(xs.mean() - th) <= t_quantile(K - 1) * xs.std(ddof=1) / math.sqrt(K) + 0.02 * th
    # past the transient (layers 5..20) the trajectory's fit is the asymptotic -1/ln chi_1 (2.691 vs 2.683)
    assert th == pytest.approx(r.asymptotic["xi_c"], rel=0.01)


def test_fit_depth_scale_recovers_an_exponential():
    ls = np.arange(1, 31)
    for cstar, r in [(0.2, 0.8), (1.0, 0.6), (-0.1, 0.95)]:
        c = cstar + (0.9 - cstar) * r ** ls
        f = fit_depth_scale(c, first=1)
        assert f["xi_c"] == pytest.approx(-1 / math.log(r), rel=1e-6)
        assert f["c_inf"] == pytest.approx(cstar, abs=1e-6)
    assert fit_depth_scale(np.full(10, 0.3))["xi_c"] != fit_depth_scale(np.full(10, 0.3))["xi_c"]  # NaN: flat
    assert math.isnan(fit_depth_scale([0.1, 0.2, 0.3])["xi_c"])  # too few layers


def test_grid_runner_equals_single_runs():
    """A grid shares each network's unit draws: configuration k equals the run of k alone."""
    act = resolve_activation("tanh")
    sw, sb = np.array([0.8, 1.5, 2.0]), np.array([0.0, 0.2, 0.4])
    kw = dict(pairs=3, n_networks=2, seed=4, q0=1.0, c0=0.4, dtype=np.float64)
    grid = run_pairs([32] * 6, act, sw, sb, **kw)
    for k in range(3):
        one = run_pairs([32] * 6, act, sw[k:k + 1], sb[k:k + 1], **kw)
        for name in grid:
            np.testing.assert_allclose(grid[name][:, k], one[name][:, 0], rtol=1e-12, atol=1e-15)


def test_networks_do_not_depend_on_how_many():
    a = simulate_correlation(5, 32, sigma_w2=1.5, n_networks=2, pairs=3, seed=7)
    b = simulate_correlation(5, 32, sigma_w2=1.5, n_networks=4, pairs=3, seed=7)
    np.testing.assert_array_equal(a.per_network["c"], b.per_network["c"][:2])


def test_init_scheme():
    """A weight scheme instead of sigma_w^2: orthogonal has sigma_w^2 = gain^2 = 1 (square layers)."""
    r = simulate_correlation(6, 128, activation="tanh", init="orthogonal", sigma_b2=0.05, n_networks=6, pairs=4,
                             seed=2, c0=0.3)
    assert r.config["sigma_w2"] == pytest.approx(1.0)
    K, L = 6, 6
    tq = t_quantile(K - 1, m=L)
    assert np.all(np.abs(r.q - r.theory["q"]) <= tq * r.stderr["q"])
    assert np.all(np.abs(r.c - r.theory["c"]) <= tq * r.stderr["c"] + BIAS / 128)


# ------------------------------------------------------------------------------------------
# Degenerate and bad input
# ------------------------------------------------------------------------------------------
def test_identical_inputs_stay_identical():
    t = theory.correlation_trajectory("tanh", 2.0, 0.1, depth=6, c0=1.0)
    np.testing.assert_array_equal(t["c"], 1.0)
    r = simulate_correlation(6, 64, activation="tanh", sigma_w2=2.0, sigma_b2=0.1, c0=1.0, n_networks=2, pairs=2)
    np.testing.assert_array_equal(r.c, 1.0)
    assert math.isnan(r.fit["xi_c"])


def test_zero_weight_variance_gives_the_bias():
    t = theory.correlation_trajectory("relu", 0.0, 0.2, depth=3, c0=-0.5)
    np.testing.assert_array_equal(t["q"], 0.2)
    np.testing.assert_array_equal(t["c"], 1.0)
    r = simulate_correlation(3, 16, activation="relu", sigma_w2=0.0, sigma_b2=0.2, c0=-0.5, n_networks=2, pairs=2)
    np.testing.assert_allclose(r.c, 1.0, rtol=0, atol=1e-15)
    assert theory.criticality("tanh", 0.0, 0.2)["chi_1"] == 0.0


@pytest.mark.parametrize("kwargs, exc, words", [
    (dict(c0=1.5), InitArgumentError, "c0 must lie in [-1, 1]"),
    (dict(c0=-1.01), InitArgumentError, "c0 must lie in [-1, 1]"),
    (dict(c0=float("nan")), InitArgumentError, "c0 must be finite"),
    (dict(q0=0.0), InitArgumentError, "q0 must be > 0"),
    (dict(sigma_w2=0.0, sigma_b2=0.0), InitArgumentError, "sigma_w2 and sigma_b2 are both 0"),
    (dict(sigma_w2=-1.0), InitArgumentError, "sigma_w2 must be >= 0"),
    (dict(sigma_w2="2"), TypeError, "sigma_w2 must be a real number"),
    (dict(width=1), InitArgumentError, "width must be >= 2"),
    (dict(init="he"), InitArgumentError, "either sigma_w2"),
    (dict(sigma_w2=None), InitArgumentError, "give sigma_w2"),
    (dict(sigma_w2=None, init="normal", init_params={"mean": 0.1, "std": 0.1}), InitArgumentError, "zero-mean"),
    (dict(sigma_w2=None, init="zeros"), InitArgumentError, "both 0"),
    (dict(pairs=0), InitArgumentError, "pairs must be >= 1"),
    (dict(activation="nope"), InitArgumentError, "activation"),
])
def test_bad_arguments(kwargs, exc, words):
    args = dict(depth=3, width=8, sigma_w2=1.0)
    args.update(kwargs)
    with pytest.raises(exc, match=None) as info:
        simulate_correlation(args.pop("depth"), args.pop("width"), **args)
    assert words in str(info.value)


def test_bad_theory_arguments():
    with pytest.raises(InitArgumentError, match=r"c0 must lie in \[-1, 1\]"):
        theory.correlation_trajectory("tanh", 1.0, depth=3, c0=2.0)
    with pytest.raises(InitArgumentError, match="both 0"):
        theory.criticality("tanh", 0.0, 0.0)
    with pytest.raises(InitArgumentError, match="depth must be >= 1"):
        theory.correlation_trajectory("tanh", 1.0, depth=0)
    with pytest.raises(InitArgumentError, match="bracket"):
        theory.critical_sigma_w2("tanh", 0.1, bracket=(2.0, 1.0))
