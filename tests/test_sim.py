"""Tests of fastinit.sim: the compiled simulator against the NumPy reference (identical weights),
against mean-field theory (thresholds from the sampling law, p-values beside them), the lecture
notes' worked examples, and argument errors.

Thresholds: a simulated mean over K networks is compared with its prediction using either an
exact variance formula (derived in the test) or the standard error measured across the K
networks; in the latter case the quantile is Student-t with K - 1 degrees of freedom. Every
`P_*` constant is the two-sided false-alarm probability of one comparison.
"""

import math

import numpy as np
import pytest
from numba import njit
from scipy import stats

from fastinit import sim
from fastinit._reference.sim import reference_mlp
from fastinit.sim import simulate_mlp, simulate_rnn, sweep, verdict
from fastinit.sim._schemes import make_weight, resolve_scheme

P_STRICT = 1e-5  # two-sided false-alarm probability per comparison


def t_quantile(dof, p=P_STRICT):
    """Two-sided Student-t quantile: |T| > t_quantile has probability p."""
    return float(stats.t.ppf(1 - p / 2, dof))


def z_quantile(p=P_STRICT):
    return float(stats.norm.ppf(1 - p / 2))  # p = 1e-5 -> 4.42


ALL = list(sim.MLP_STATISTICS)


def _network(widths, B, rng, dtype, wstd=None, bstd=0.1):
    L = len(widths) - 1
    Ws = [rng.normal(0, (wstd or math.sqrt(2 / widths[l])), (widths[l + 1], widths[l])).astype(dtype)
          for l in range(L)]
    bs = [rng.normal(0, bstd, widths[l + 1]) for l in range(L)]
    x = rng.normal(0.3, 1.2, (B, widths[0])).astype(dtype)
    G = rng.normal(size=(B, widths[-1])).astype(dtype)
    return Ws, bs, x, G


def _compare(res, ref, rtol, atol=0.0):
    for name in ALL:
        got = np.asarray(res.stats[name], dtype=np.float64)
        want = np.asarray(ref[name], dtype=np.float64)
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, equal_nan=True,
                                   err_msg=f"statistic {name}: simulator vs NumPy reference")


# ------------------------------------------------------------------------------------------
# Simulator == NumPy reference on identical weights
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("activation, param, residual", [
    ("tanh", None, None),
    ("tanh", None, 0.35),
    ("leaky_relu", 0.2, None),
])
def test_matches_reference_float64(activation, param, residual):
    rng = np.random.default_rng(12)
    widths = [40, 56, 48, 64] if residual is None else [48] * 5
    B = 96
    Ws, bs, x, G = _network(widths, B, rng, np.float64)
    res = simulate_mlp(widths, batch=B, activation=activation, activation_param=param,
                       residual_scale=residual, weights=Ws, biases=bs, x=x, G=G,
                       dtype="float64", theory=False)
    ref = reference_mlp(x, Ws, bs, activation, param=param, residual_scale=residual, G=G)
    # same float64 arithmetic up to summation order: 1e-9 is ~1e6 ulps of headroom
    _compare(res, ref, rtol=1e-9, atol=1e-12)


def test_matches_reference_float32():
    rng = np.random.default_rng(3)
    widths = [64, 80, 72]
    B = 128
    Ws, bs, x, G = _network(widths, B, rng, np.float32)
    res = simulate_mlp(widths, batch=B, activation="relu", weights=Ws, biases=bs, x=x, G=G,
                       dtype="float32", theory=False)
    ref = reference_mlp(x, Ws, bs, "relu", G=G, dtype=np.float32)
    # float32 storage, float64 accumulation in both; GEMM summation order may differ (~1e-6).
    # frac_* are counts of sign tests on identically rounded numbers except for entries within
    # one ulp of 0, so they get an absolute tolerance of a few entries.
    _compare(res, ref, rtol=2e-5, atol=3.0 / (B * 64))


def test_matches_reference_user_activation():
    @njit
    def softsign(x):
        return x / (1.0 + abs(x))

    @njit
    def dsoftsign(x):
        return 1.0 / (1.0 + abs(x)) ** 2

    rng = np.random.default_rng(5)
    widths = [32, 48, 40]
    B = 64
    Ws, bs, x, G = _network(widths, B, rng, np.float64)
    res = simulate_mlp(widths, batch=B, activation=softsign, activation_derivative=dsoftsign,
                       weights=Ws, biases=bs, x=x, G=G, dtype="float64", theory=False)
    f = (lambda v: v / (1 + np.abs(v)), lambda v: 1 / (1 + np.abs(v)) ** 2)
    ref = reference_mlp(x, Ws, bs, f, G=G)
    _compare(res, ref, rtol=1e-9, atol=1e-12)


def test_reference_per_sample_identity():
    """The reference's |delta_b|^2 |a_b|^2 shortcut equals materialising every delta_b a_b^T."""
    rng = np.random.default_rng(1)
    widths = [6, 5, 4]
    Ws, bs, x, G = _network(widths, 7, rng, np.float64)
    ref = reference_mlp(x, Ws, bs, "tanh", G=G)
    a = [x]
    zs = []
    for W, b in zip(Ws, bs, strict=True):
        zs.append(a[-1] @ W.T + b)
        a.append(np.tanh(zs[-1]))
    g = G
    brute = []
    for l in (1, 0):
        delta = (1 - np.tanh(zs[l]) ** 2) * g
        brute.append((np.einsum("bi,bj->bij", delta, a[l]) ** 2).mean())
        g = delta @ Ws[l]
    np.testing.assert_allclose(ref["grad_weight_m2_per_sample"], brute[::-1], rtol=1e-12)


# ------------------------------------------------------------------------------------------
# Simulation vs theory
# ------------------------------------------------------------------------------------------
def test_layer1_second_moment_sampling_law():
    """Layer 1 of a Gaussian He/ReLU net: mean AND network-to-network spread follow the exact law.

    m = (1/(B n)) sum_b |W x_b|^2 with W (n x n0) iid N(0, s^2), x_b iid N(0, I):
    E m = n0 s^2 and Var m = 2 n0 s^4 / n + 2 n n0 (n + n0 + 1) s^4 / (B n^2)
    (Var tr(W^T W) = 2 n n0 s^4; E||W W^T||_F^2 = n n0 (n + n0 + 1) s^4, Wishart).
    A wrong gain or fan (He with fan_out at n != n0) moves the mean by >> 100 sd.
    """
    n0, n, B, K = 192, 256, 256, 40
    res = simulate_mlp([n0, n], batch=B, activation="relu", init="kaiming_normal",
                       n_networks=K, seed=2024)
    s2 = 2.0 / n0
    mean = n0 * s2
    var = 2 * n0 * s2 ** 2 / n + 2 * n * n0 * (n + n0 + 1) * s2 ** 2 / (B * n ** 2)
    per = res.per_network["preact_m2"][:, 0]
    k = z_quantile()  # p = 1e-5
    assert abs(per.mean() - mean) < k * math.sqrt(var / K), (per.mean(), mean, math.sqrt(var / K))
    # sample variance of K normal-ish values: (K-1) s^2 / var ~ chi2(K-1); two-sided p = 1e-5
    lo, hi = stats.chi2.ppf([P_STRICT / 2, 1 - P_STRICT / 2], K - 1) / (K - 1)
    ratio = per.var(ddof=1) / var
    assert lo < ratio < hi, f"variance ratio {ratio:.3f} outside [{lo:.3f}, {hi:.3f}]"
    # post-activation of layer 1: z ~ N(0, 2 |x|^2/n0) per sample: E[relu(z)^2] = E[z^2]/2
    np.testing.assert_allclose(res.theory["post_m2"][0], 1.0, rtol=1e-12)


@pytest.mark.parametrize("activation, init", [("relu", "kaiming_normal"), ("tanh", "xavier_normal")])
def test_forward_backward_match_theory(activation, init):
    """Pooled second moments vs mean-field, within t(K-1) x standard error (p = 1e-5 each).

    ReLU/He is exact in expectation at any width (theory.md 7.1); tanh carries an O(1/n)
    mean-field bias (< ~1%, theory.md 7.1), allowed for as 2/n relative.
    """
    n, B, L, K = 384, 384, 6, 8
    res = simulate_mlp(depth=L, width=n, batch=B, activation=activation, init=init,
                       n_networks=K, seed=7)
    tq = t_quantile(K - 1)
    bias = 0.0 if activation == "relu" else 2.0 / n
    for name in ("preact_m2", "post_m2", "grad_preact_m2", "grad_weight_m2_per_sample",
                 "grad_weight_m2_batchmean", "frac_inactive"):
        got, se, th = res.stats[name], res.stderr[name], res.theory[name]
        tol = tq * se + bias * np.abs(th) + 1e-12
        assert np.all(np.abs(got - th) < tol), (name, got, th, tol)


def test_unitvar_differs_from_pooled_variance():
    """theory.md 0: per-unit variance (1-1/B)(v - C) is a different quantity from the pooled one.

    He/ReLU: pooled v stays 2 while v - C shrinks with depth (inputs align); simulation tracks
    the per-unit theory, not the pooled one.
    """
    n, B, L, K = 256, 256, 8, 6
    res = simulate_mlp(depth=L, width=n, batch=B, activation="relu", init="he",
                       n_networks=K, seed=11)
    th_unit, th_pool = res.theory["preact_unitvar"], res.theory["preact_var"]
    assert th_unit[-1] < 0.5 * th_pool[-1]
    # per-unit variance is a ratio-like statistic of a correlated Gram matrix; compare in log
    # space with the measured spread across networks, t(K-1) at p = 1e-5, plus the O(1/n)
    # noise-induced correlation shift (theory.md 7.6) of a few / n
    logs = np.log(res.per_network["preact_unitvar"])
    se = logs.std(axis=0, ddof=1) / math.sqrt(K)
    tol = t_quantile(K - 1) * se + 5.0 / n
    assert np.all(np.abs(logs.mean(axis=0) - np.log(th_unit)) < tol)
    # and the pooled variance is still ~2, far from the per-unit value at the last layer
    assert abs(res.preact_var[-1] - 2.0) < t_quantile(K - 1) * res.stderr["preact_var"][-1]


def test_residual_matches_theory():
    """Residual ReLU with GPT-2 branch scale 1/sqrt(2L): h second moment grows, bounded."""
    n, B, L, K = 256, 256, 8, 6
    alpha = 1 / math.sqrt(2 * L)
    res = simulate_mlp(depth=L, width=n, batch=B, activation="relu", init="he",
                       residual_scale=alpha, n_networks=K, seed=5)
    tq = t_quantile(K - 1)
    for name in ("post_m2", "preact_m2", "grad_preact_m2"):
        got, se, th = res.stats[name], res.stderr[name], res.theory[name]
        assert np.all(np.abs(got - th) < tq * se + 3.0 / n * th), (name, got, th)


# ------------------------------------------------------------------------------------------
# The notes' worked examples
# ------------------------------------------------------------------------------------------
def test_notes_example2_he_preserves_second_moment_not_variance():
    """Notes, Example 2: 10-layer ReLU net, width 100, He init, x ~ N(0, 1).

    The notes propagate Var(a) and predict Var(z_2) = 1.3632, Var(z_3) = 0.9290 (decaying).
    He init preserves E[z^2] = 2 (Var(z) here, zero bias): the simulation rejects the notes.
    Layer 1 of the notes is right: Var(a_1) = 2 (pi - 1) / (2 pi) = 0.6816.
    """
    K = 16
    res = simulate_mlp(depth=10, width=100, batch=1000, activation="relu", init="he",
                       n_networks=K, seed=3)
    tq = t_quantile(K - 1)
    for l, notes_value in ((1, 1.3632), (2, 0.9290)):
        got, se = res.preact_var[l], res.stderr["preact_var"][l]
        assert abs(got - 2.0) < tq * se, (l, got, se)
        assert abs(got - notes_value) > tq * se
    assert abs(res.post_var[0] - 2 * (math.pi - 1) / (2 * math.pi)) < tq * res.stderr["post_var"][0]


@pytest.mark.parametrize("shape, scheme, params, std, bound", [
    ((512, 256), "xavier_normal", None, math.sqrt(2 / 768), None),        # notes Ex.1 (a): 0.0510
    ((512, 256), "xavier_uniform", None, math.sqrt(2 / 768), math.sqrt(6 / 768)),   # 0.0884
    ((512, 256), "kaiming_normal", {"nonlinearity": "relu"}, math.sqrt(2 / 256), None),  # 0.0884
    ((512, 256), "kaiming_uniform", {"nonlinearity": "relu"}, math.sqrt(2 / 256), math.sqrt(6 / 256)),
    ((256, 1024), "xavier_uniform", None, math.sqrt(2 / 1280), math.sqrt(6 / 1280)),  # Problem 2: 0.0685
    ((256, 1024), "kaiming_normal", {"nonlinearity": "relu"}, math.sqrt(2 / 1024), None),  # 0.0442
])
def test_notes_example1_weight_scales(shape, scheme, params, std, bound):
    key, sch, prm = resolve_scheme(scheme, params)
    w = make_weight(shape, sch, prm, seed=1, stream=1, dtype=np.float64)
    n = w.size
    # normal: Var(s^2)/sigma^4 = 2/(n-1); uniform: (kurtosis - 1)/n = 0.8/n
    rel_sd = math.sqrt(0.8 / n) if bound else math.sqrt(2 / (n - 1))
    assert abs(w.var() / std ** 2 - 1) < z_quantile() * rel_sd
    if bound:
        assert np.abs(w).max() <= bound


def test_notes_example3_rnn_orthogonal_vs_gaussian():
    """Notes, Example 3 (tanh RNN, n = 128, T = 50).

    The orthogonal W follows the (untied) mean-field length map; a Gaussian W with the same
    entry variance 1/n has a LARGER norm at T, not a smaller one as the notes suggest (powers
    of one Gaussian matrix grow: E||W^t h||^2 ~ (t + 1)||h||^2).
    """
    K = 64  # the gap varies a lot between Gaussian matrices (sd ~0.7 for a mean ~0.7)
    # batch 64: the norm at T is set by the matrix, the batch only averages over h0
    o = simulate_rnn(128, 50, batch=64, init="orthogonal", n_networks=K, seed=0)
    g = simulate_rnn(128, 50, batch=64, init="normal", init_params={"std": 128 ** -0.5},
                     n_networks=K, seed=0)
    tq = t_quantile(K - 1)
    # untied forward prediction: theory.md 7.7 reports agreement to ~1.3% for orthogonal tanh
    rel = np.abs(o.h_m2[1:] / o.theory["h_m2"][1:] - 1)
    assert np.all(rel < 0.03 + tq * o.stderr["h_m2"][1:] / o.h_m2[1:]), rel.max()
    # paired over networks (same h0 stream); one-sided t(K-1) at p = 1e-5 / 2
    diff = g.per_network["h_norm"][:, -1] - o.per_network["h_norm"][:, -1]
    assert diff.mean() > tq * diff.std(ddof=1) / math.sqrt(K), diff
    # BPTT: the untied value is prod_{t=1..T} E[tanh'(z_t)^2] = 0.014335; the 0.0303 of
    # shared/reference/theory.md 7.7 multiplies t = 2..T+1 (docs/theory.md 5.9). The tied
    # orthogonal W follows 0.01433 (same 3% finite-width allowance as the forward pass)...
    np.testing.assert_allclose(o.theory["grad_h_m2"][0], 0.0143348, rtol=1e-5)
    got, se = o.grad_h_m2[0], o.stderr["grad_h_m2"][0]
    assert abs(got / o.theory["grad_h_m2"][0] - 1) < 0.03 + tq * se / got, (got, se)
    assert abs(got / 0.0303 - 1) > 0.03 + tq * se / got  # the same rule rejects 0.0303
    # ...while a tied Gaussian W does not (gradient independence fails): its per-network
    # log-ratio is far above 0 (geometric mean ~3.4x), t(K-1) at p = 1e-5
    lg = np.log(g.per_network["grad_h_m2"][:, 0] / g.theory["grad_h_m2"][0])
    assert lg.mean() > tq * lg.std(ddof=1) / math.sqrt(K), lg


def test_notes_q5_small_positive_bias_barely_changes_active_fraction():
    """Notes, Q5: a 0.01 bias on ReLU units supposedly makes "60-70% of neurons start active".

    With He init z has sd ~ sqrt(2), so P(z > 0) = Phi(0.01 / sqrt(2)) = 0.5028: the bias moves
    the active fraction by 0.3 points. The simulated inactive fraction matches theory within
    t(K-1) standard errors (p = 1e-5) and is nowhere near 0.3-0.4.
    """
    K = 6
    res = simulate_mlp(depth=5, width=256, batch=512, activation="relu", init="he", bias=0.01,
                       n_networks=K, seed=8)
    th = res.theory["frac_inactive"]
    np.testing.assert_allclose(th[0], stats.norm.cdf(-0.01 / math.sqrt(2)), rtol=1e-6)
    tol = t_quantile(K - 1) * res.stderr["frac_inactive"]
    assert np.all(np.abs(res.frac_inactive - th) < tol), (res.frac_inactive, th, tol)
    assert np.all(res.frac_inactive > 0.45)


def test_zeros_is_symmetric_and_small_vanishes():
    z = simulate_mlp(depth=6, width=64, batch=64, activation="tanh", init="zeros", bias=0.1)
    assert verdict(z)["overall"] == "symmetric"
    assert np.all(z.preact_unitspread == 0)
    c = simulate_mlp(depth=6, width=64, batch=64, activation="tanh", init="constant",
                     init_params={"val": 0.05})
    assert verdict(c)["overall"] == "symmetric"
    s = simulate_mlp(depth=8, width=64, batch=64, activation="tanh", init="small", seed=1)
    v = verdict(s)
    assert v["forward"] == "vanishing" and v["backward"] == "vanishing"
    he = simulate_mlp(depth=8, width=64, batch=64, activation="relu", init="he", seed=1)
    assert verdict(he)["overall"] == "stable"


def test_large_tanh_saturates():
    # N(0,1) weights at width 256: z has sd ~ sqrt(256 E[a^2]) >> atanh(0.99), so nearly every
    # unit is saturated: theory P(|z| > 2.6467) with v ~ 100 is ~0.8; simulation must agree
    res = simulate_mlp(depth=3, width=256, batch=128, activation="tanh", init="large",
                       n_networks=4, seed=0)
    assert np.all(res.frac_saturated[1:] > 0.7)
    np.testing.assert_allclose(res.frac_saturated, res.theory["frac_saturated"], atol=0.05)
    assert np.all(np.isnan(simulate_mlp(depth=2, width=8, batch=8).frac_saturated))


# ------------------------------------------------------------------------------------------
# Reproducibility, results, histograms, sweeps
# ------------------------------------------------------------------------------------------
def test_network_streams_do_not_depend_on_n_networks():
    a = simulate_mlp(depth=3, width=32, batch=16, n_networks=1, seed=4)
    b = simulate_mlp(depth=3, width=32, batch=16, n_networks=3, seed=4)
    for name in ALL:
        np.testing.assert_array_equal(a.per_network[name][0], b.per_network[name][0])
    c = simulate_mlp(depth=3, width=32, batch=16, n_networks=1, seed=5)
    assert not np.array_equal(a.preact_m2, c.preact_m2)


def test_results_tables_and_histograms():
    res = simulate_mlp(widths=[16, 24, 8], batch=32, histograms=True, n_networks=2, seed=0)
    recs = res.to_records()
    assert [r["layer"] for r in recs] == [1, 2]
    assert {"preact_var", "preact_var_se", "preact_var_theory", "grad_input_m2"} <= set(recs[0])
    assert "preact_var" in res.to_table()
    assert "grad_input_m2" in res.to_table(stats=["preact_var", "grad_input_m2"])
    assert [h["layer"] for h in res.histograms] == [1, 2]
    for h, n in zip(res.histograms, (24, 8), strict=True):
        assert h["preact_counts"].sum() == 32 * n and h["post_counts"].sum() == 32 * n
    lo, hi = res.ci95("preact_m2")
    assert np.all(lo <= res.preact_m2) and np.all(res.preact_m2 <= hi)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("hist_range", [None, (-0.7, 1.3)])
def test_histograms_equal_numpy(dtype, hist_range):
    """The parallel histogram kernel gives numpy.histogram's counts and edges (range from min/max or
    given; values outside a given range are dropped, values on inner edges go right)."""
    from fastinit.sim import _passes

    rng = np.random.default_rng(3)
    z = rng.standard_normal((300, 40)).astype(dtype)
    a = np.tanh(z)
    edges = np.linspace(-0.7, 1.3, 12).astype(dtype)
    z[0, :5] = edges[[1, 3, 6, 10, 11]]  # on the edges of a given range
    h = _passes._histograms(2, np.array([0, 100, 160, 300]), 4, z, a, 11, hist_range)  # 3 blocks, 2 threads
    assert h["layer"] == 5
    for name, v in (("preact", z), ("post", a)):
        rg = hist_range or (float(v.min()), float(v.max()))  # the range as Python floats
        ref, ref_edges = np.histogram(v, bins=11, range=rg)
        np.testing.assert_array_equal(h[f"{name}_counts"], ref)
        np.testing.assert_array_equal(h[f"{name}_edges"], ref_edges)
        assert h[f"{name}_edges"].dtype == ref_edges.dtype
    z[5, 5] = np.nan  # not finite: the automatic range is (-1, 1), as before, and NaN is not counted
    h = _passes._histograms(1, np.array([0, 300]), 0, z, a, 11, None)
    ref, _ = np.histogram(z[np.isfinite(z)], bins=11, range=(-1.0, 1.0))
    np.testing.assert_array_equal(h["preact_counts"], ref)


def test_sweep_tidy_rows_and_ci():
    sw = sweep(inits=["xavier_normal", ("kaiming_normal", {"mode": "fan_out"})],
               activations=["relu"], depths=[3], widths=[16, 24], seeds=[0, 1], batch=32,
               n_networks=2)
    assert len(sw.records) == 2 * 2 * 3
    r = sw.records[0]
    assert r["n_networks"] == 4
    assert r["preact_var_ci_low"] <= r["preact_var"] <= r["preact_var_ci_high"]
    # pooled networks equal the individual seeds' runs
    one = simulate_mlp(depth=3, width=16, batch=32, init="xavier_normal", n_networks=2, seed=1)
    key = ("xavier_normal", "relu", 3, 16)
    np.testing.assert_array_equal(sw.results[key].per_network["preact_m2"][2:],
                                  one.per_network["preact_m2"])
    assert "kaiming_normal(mode=fan_out)" in sw.to_table()


def test_sweep_workers_do_not_change_numbers():
    """Concurrent runs (one thread each, single-threaded BLAS) give the same bits as one by one."""
    kw = dict(inits=["orthogonal", "small"], activations=["tanh", "relu"], depths=[3],
              widths=[24], seeds=[0, 1, 2], batch=32)
    one, two = sweep(workers=1, **kw), sweep(workers=2, **kw)
    assert list(one.results) == list(two.results)
    for key in one.results:
        for name in ALL:
            np.testing.assert_array_equal(one.results[key].per_network[name],
                                          two.results[key].per_network[name], err_msg=name)
    np.testing.assert_equal(one.records, two.records)  # NaN-aware, dict by dict


# ------------------------------------------------------------------------------------------
# Errors name the argument
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, match", [
    (dict(widths=[8]), "widths"),
    (dict(widths=[8, 0]), "widths"),
    (dict(depth=3), "width"),
    (dict(widths=[8, 8], depth=2, width=8), "widths"),
    (dict(depth=2, width=8, batch=0), "batch"),
    (dict(depth=2, width=8, activation="swishy"), "activation"),
    (dict(depth=2, width=8, init="kaiming"), None),
    (dict(depth=2, width=8, init="glorious"), "init"),
    (dict(depth=2, width=8, init="xavier_normal", init_params={"mode": "fan_in"}), "init_params"),
    (dict(depth=2, width=8, init="kaiming_normal", init_params={"mode": "fan_avg"}), "mode"),
    (dict(depth=2, width=8, init="normal", init_params={"std": -1.0}), "std"),
    (dict(depth=2, width=8, init="constant"), "val"),
    (dict(depth=2, width=8, bias="random"), "bias"),
    (dict(depth=2, width=8, bias="normal", bias_std=-0.1), "bias_std"),
    (dict(widths=[8, 16, 8], residual_scale=0.5), "residual_scale"),
    (dict(depth=2, width=8, batch=4, G=np.zeros((4, 7))), "G"),
    (dict(depth=2, width=8, n_networks=0), "n_networks"),
    (dict(depth=2, width=8, dtype="int32"), "dtype"),
    (dict(depth=2, width=8, input_std=-1.0), "input_std"),
    (dict(depth=2, width=8, histograms=True, hist_layers=[3]), "hist_layers"),
    (dict(depth=2, width=8, weights=[np.zeros((8, 8))]), "weights"),
    (dict(depth=2, width=8, activation=lambda x: x), "activation_derivative"),
    (dict(depth=2, width=8, seed=-1), "seed"),
])
def test_bad_arguments_name_the_argument(kwargs, match):
    if match is None:  # an alias that must work
        simulate_mlp(batch=4, **kwargs)
        return
    with pytest.raises(ValueError, match=match):
        simulate_mlp(**{"batch": 4, **kwargs})


def test_rnn_and_sweep_errors():
    with pytest.raises(ValueError, match="hidden"):
        simulate_rnn(0, 5)
    with pytest.raises(ValueError, match="steps"):
        simulate_rnn(8, 0)
    with pytest.raises(ValueError, match="W"):
        simulate_rnn(8, 3, batch=4, W=np.zeros((8, 9)))
    with pytest.raises(ValueError, match="init"):
        sweep(inits=["nope"], depths=[2], widths=[4], batch=4)
    with pytest.raises(ValueError, match="seeds"):
        sweep(seeds=[], depths=[2], widths=[4], batch=4)


# ------------------------------------------------------------------------------------------
# Heavier checks of theory.md's numbers
# ------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_relu_he_width1000_unitvar_and_dead_units():
    """theory.md 0/2.2/7.8: ReLU He, B = 1000, layer 10: pooled 2.00, per-unit ~0.29, dead 0.093.

    Dead-unit counts fluctuate with the realised correlation: theory.md 7.8 gives +-0.13 for 4
    networks at width 1000.
    """
    res = simulate_mlp(depth=10, width=1000, batch=1000, activation="relu", init="he",
                       n_networks=4, seed=21)
    assert abs(res.preact_var[-1] / 2 - 1) < t_quantile(3) * res.stderr["preact_var"][-1] / 2
    assert abs(res.frac_dead_units[-1] - res.theory["frac_dead_units"][-1]) < 0.13
    assert abs(math.log(res.preact_unitvar[-1] / res.theory["preact_unitvar"][-1])) < 0.2


# ------------------------------------------------------------------------------------------
# Hardening: bad inputs fail before any work, with errors that name the argument
# ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, bad", [("weights", np.nan), ("weights", np.inf), ("x", np.nan), ("x", -np.inf)])
def test_explicit_arrays_must_be_finite(name, bad):
    rng = np.random.default_rng(0)
    Ws, bs, x, G = _network([4, 4], 3, rng, np.float64)
    arrays = {"weights": Ws, "x": x}
    target = arrays[name][0] if name == "weights" else arrays[name]
    target[0, 0] = bad
    with pytest.raises(ValueError, match=name):
        simulate_mlp([4, 4], batch=3, weights=Ws, biases=bs, x=x, G=G)


def test_rnn_W_must_be_finite_and_real():
    W = np.eye(4)
    W[1, 2] = np.nan
    with pytest.raises(ValueError, match="W"):
        simulate_rnn(4, 2, batch=3, W=W)
    with pytest.raises(TypeError, match="W"):
        simulate_rnn(4, 2, batch=3, W=np.eye(4) + 1j)


def test_complex_weights_are_refused():
    rng = np.random.default_rng(0)
    Ws, bs, x, G = _network([4, 4], 3, rng, np.float64)
    with pytest.raises(TypeError, match=r"weights\[0\]"):
        simulate_mlp([4, 4], batch=3, weights=[Ws[0] + 0.5j], biases=bs, x=x, G=G)


def test_dtype_none_is_refused():
    with pytest.raises(TypeError, match="dtype"):
        simulate_mlp(depth=1, width=4, batch=2, dtype=None)
    with pytest.raises(TypeError, match="dtype"):
        simulate_rnn(4, 2, batch=2, dtype=None)


def test_widths_string_names_the_argument():
    with pytest.raises(TypeError, match="widths"):
        simulate_mlp("abc", batch=2)


def test_wrong_types_raise_type_error():
    """The argument-check policy: a wrong type is a TypeError, a bad value a ValueError."""
    with pytest.raises(TypeError, match="batch"):
        simulate_mlp(depth=1, width=4, batch=2.5)
    with pytest.raises(TypeError, match="seed"):
        simulate_mlp(depth=1, width=4, batch=2, seed="0")
    with pytest.raises(ValueError, match="seed"):
        simulate_mlp(depth=1, width=4, batch=2, seed=1 << 64)


def test_sweep_takes_a_string_as_one_scheme():
    sw = sweep(inits="xavier_normal", activations="relu", depths=[2], widths=[4], batch=4)
    assert list(sw.results) == [("xavier_normal", "relu", 2, 4)]


def test_sweep_keeps_histograms_when_asked():
    sw = sweep(inits=["he"], activations=["tanh"], depths=[3], widths=[8], batch=16,
               histograms=True, hist_layers=[1, 3], hist_bins=7)
    (res,) = sw.results.values()
    one = simulate_mlp(depth=3, width=8, batch=16, activation="tanh", init="he", histograms=True,
                       hist_layers=[1, 3], hist_bins=7)
    assert [h["layer"] for h in res.histograms] == [1, 3]
    for h, g in zip(res.histograms, one.histograms, strict=True):
        np.testing.assert_array_equal(h["post_counts"], g["post_counts"])
        assert h["post_counts"].sum() == 16 * 8


@pytest.mark.parametrize("call", [
    lambda: simulate_mlp(depth=100, width=512, batch=1 << 40),
    lambda: simulate_rnn(512, 100, batch=1 << 40),
    lambda: sweep(inits=["he"], activations=["relu"], depths=[100], widths=[512], batch=1 << 40),
])
def test_memory_estimate_refuses_before_allocating(call):
    """Sizes that cannot fit anywhere (~10^17 bytes) are refused before any array exists: the
    error gives the estimate and the sizes (numpy would need minutes or fail in the first layer)."""
    import tracemalloc

    tracemalloc.start()
    try:
        with pytest.raises(MemoryError, match=r"GiB.*batch|batch.*GiB") as info:
            call()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert "1099511627776" in str(info.value)          # the batch is named
    assert peak < 64 << 20                              # nothing of the network was allocated


def test_statistics_do_not_depend_on_the_numba_thread_count():
    """The fused passes' reductions add in a fixed order (a parallel ``.sum()`` inside the kernels
    split its additions by thread and changed the last bits with the thread count). Layers of
    512 x 256 = 2^17 entries take the multi-threaded path; their GEMMs run on one BLAS thread."""
    import numba

    threads = numba.get_num_threads()
    if threads < 2:
        pytest.skip("needs 2 Numba threads")
    runs = []
    try:
        for t in (1, threads):
            numba.set_num_threads(t)
            runs.append(simulate_mlp(depth=3, width=256, batch=512, activation="gelu", init="he",
                                     dtype="float64", theory=False, seed=4).per_network)
    finally:
        numba.set_num_threads(threads)
    for name in ALL:
        np.testing.assert_array_equal(runs[0][name], runs[1][name], err_msg=name)
