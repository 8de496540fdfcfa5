"""Input-output Jacobian spectra: exact J against finite differences, deep linear nets against their closed
forms, tanh at criticality against free probability, randomized against exact, degenerate input.

Distribution thresholds are k standard errors of a mean over independent networks; the two-sided
Student-t p-value of each threshold (with the number of networks minus one degrees of freedom) is
written beside it.
"""

import json
import math

import numpy as np
import pytest
from scipy import linalg

from fastinit import InitArgumentError
from fastinit._activations import get_activation
from fastinit.sim import JACOBIAN_STATISTICS, jacobian_spectrum
from fastinit.sim._schemes import KIND_BIAS, KIND_INPUT, KIND_WEIGHT, make_weight, random_normal, resolve_scheme, stream
from fastinit.theory import (
    critical_sigmas,
    fuss_catalan_moment,
    jacobian_density,
    jacobian_theory,
    linear_net_sv2_moments,
    linear_sv2_finite_width,
)

Q_STAR = 0.25  # tanh critical point of the tests: sigma_w^2 = 1.394, sigma_b^2 = 0.0081


def _critical_kw(depth, width, **kw):
    sw2, sb2 = critical_sigmas("tanh", Q_STAR)
    return dict(depth=depth, width=width, activation="tanh", sigma_w2=sw2, bias="normal", bias_std=math.sqrt(sb2),
                input_std=math.sqrt((Q_STAR - sb2) / sw2), **kw)


# ------------------------------------------------------------------------------------------
# exact J
def _network(ws, init, bias_std, seed, net=0):
    """The weights, biases and first input jacobian_spectrum builds, rebuilt from the streams."""
    _, scheme, params = resolve_scheme(init, None)
    Ws = [make_weight((ws[lay + 1], ws[lay]), scheme, params, seed, stream(net, lay + 1, KIND_WEIGHT), np.float64)
          for lay in range(len(ws) - 1)]
    bs = [random_normal((ws[lay + 1],), 0.0, bias_std, seed, stream(net, lay + 1, KIND_BIAS), np.float64)
          for lay in range(len(ws) - 1)]
    x = random_normal((1, ws[0]), 0.0, 1.0, seed, stream(net, 0, KIND_INPUT), np.float64)[0]
    return Ws, bs, x


@pytest.mark.parametrize("activation, init", [("tanh", "xavier_normal"), ("gelu", "orthogonal"),
                                              ("selu", "lecun_normal")])
def test_exact_jacobian_matches_central_differences(activation, init):
    ws = [5, 7, 6, 4]  # rectangular on purpose: J is 4 x 5, k = 4 singular values
    Ws, bs, x = _network(ws, init, 0.3, seed=11)
    act = get_activation(activation)

    def f(v):
        for W, b in zip(Ws, bs, strict=True):
            v = act.f(W @ v + b)
        return v

    h = 1e-6  # central differences: truncation ~h^2 = 1e-12, rounding ~1e-16/h = 1e-10
    J = np.column_stack([(f(x + h * e) - f(x - h * e)) / (2 * h) for e in np.eye(ws[0])])
    res = jacobian_spectrum(ws, activation=activation, init=init, bias="normal", bias_std=0.3, seed=11,
                            layers=[1, 3], method="exact")
    np.testing.assert_allclose(res.singular_values[1][0], linalg.svdvals(J), rtol=1e-7, atol=1e-9)
    J1 = act.df(Ws[0] @ x + bs[0])[:, None] * Ws[0]  # after one layer: D_1 W_1
    np.testing.assert_allclose(res.singular_values[0][0], linalg.svdvals(J1), rtol=1e-12)
    s = res.singular_values[1][0]
    assert res.mean_sv2[1] == pytest.approx(np.mean(s ** 2), rel=1e-14)
    assert res.var_sv2[1] == pytest.approx(np.var(s ** 2), rel=1e-12)
    assert res.cond[1] == pytest.approx(s[0] / s[-1], rel=1e-14)


# ------------------------------------------------------------------------------------------
# deep linear nets
@pytest.mark.parametrize("gain", [1.0, 1.1])
def test_orthogonal_linear_net_is_an_isometry(gain):
    L = 12
    res = jacobian_spectrum(depth=L, width=64, activation="linear", init="orthogonal",
                            init_params={"gain": gain}, n_networks=2, layers=[1, L])
    np.testing.assert_allclose(res.singular_values[-1], gain ** L, rtol=1e-12)   # every s = g^L
    np.testing.assert_allclose(res.cond, 1.0, rtol=1e-12)
    np.testing.assert_allclose(res.theory["var_sv2"], 0.0, atol=1e-13)  # 0 up to the quadrature's rounding
    assert res.theory["mean_sv2"][-1] == pytest.approx(gain ** (2 * L), rel=1e-12)


@pytest.mark.parametrize("depth, gain, kind", [(1, 1.0, "gaussian"), (10, 1.0, "gaussian"), (7, 1.3, "gaussian"),
                                               (10, 1.0, "orthogonal"), (7, 0.8, "orthogonal")])
def test_theory_reduces_to_linear_closed_forms(depth, gain, kind):
    th = jacobian_theory(depth, "linear", gain ** 2, weights=kind)
    mean, var = linear_net_sv2_moments(depth, gain, kind)
    assert th["mean_sv2"][-1] == pytest.approx(mean, rel=1e-12)
    assert th["var_sv2"][-1] == pytest.approx(var, rel=1e-12, abs=1e-12)
    if kind == "gaussian":  # the variance is the Fuss-Catalan second moment minus 1, at every depth
        expect = [gain ** (4 * lay) * (fuss_catalan_moment(lay, 2) - 1) for lay in range(1, depth + 1)]
        np.testing.assert_allclose(th["var_sv2"], expect, rtol=1e-12)


def test_linear_finite_width_formula_against_wishart():
    # one layer: W W^T is Wishart, E tr((WW^T)^2)/n = 2 + 1/n exactly, and the limit is Fuss-Catalan
    for n in (1, 3, 50):
        assert linear_sv2_finite_width(1, n)[0] == pytest.approx(2 + 1 / n, rel=1e-14)
    assert linear_sv2_finite_width(6, 10 ** 9)[0] == pytest.approx(fuss_catalan_moment(6, 2), rel=1e-7)


@pytest.mark.parametrize("depth, width, n_networks, k", [(8, 48, 40, 5.0)])  # t_39 > 5: two-sided p = 1.2e-5
def test_gaussian_linear_net_second_moment(depth, width, n_networks, k):
    res = jacobian_spectrum(depth=depth, width=width, activation="linear", init="normal",
                            init_params={"std": width ** -0.5}, n_networks=n_networks, layers=[2, depth], seed=3)
    for j, lay in enumerate(res.layers):
        m2 = res.per_sample["var_sv2"][:, j] + res.per_sample["mean_sv2"][:, j] ** 2
        exact = linear_sv2_finite_width(int(lay), width)[0]       # exact at this width (Wick)
        se = m2.std(ddof=1) / math.sqrt(n_networks)
        assert abs(m2.mean() - exact) < k * se, (lay, m2.mean(), exact, se)
        # the wide-limit Fuss-Catalan moment is 1 + l; at width 48 the exact value is 3-10% above it
        assert fuss_catalan_moment(int(lay), 2) == pytest.approx(1 + lay)
        m1 = res.per_sample["mean_sv2"][:, j]  # E m1 = 1 exactly at any width
        assert abs(m1.mean() - 1) < k * m1.std(ddof=1) / math.sqrt(n_networks)


# ------------------------------------------------------------------------------------------
# tanh at criticality: orthogonal vs Gaussian
@pytest.mark.parametrize("init", ["orthogonal", "xavier_normal"])
@pytest.mark.parametrize("depth, width, n_networks, k", [(16, 128, 24, 5.0)])  # t_23 > 5: two-sided p = 4.6e-5
def test_tanh_critical_spread_matches_free_probability(init, depth, width, n_networks, k):
    res = jacobian_spectrum(**_critical_kw(depth, width), init=init, n_networks=n_networks, layers=[4, depth], seed=7)
    th = res.theory
    np.testing.assert_allclose(th["mean_sv2"], 1.0, rtol=1e-9)  # chi_1 = 1 at every layer
    # the spread grows linearly: L (E phi'^4 / (E phi'^2)^2 - 1 + s_W), s_W = 0 orthogonal, 1 Gaussian
    t = jacobian_theory(depth, "tanh", res.config["sigma_w2"], res.config["bias_std"] ** 2,
                        weights="orthogonal" if init == "orthogonal" else "gaussian",
                        input_m2=res.config["input_std"] ** 2)
    np.testing.assert_allclose(th["norm_var"], t["norm_var"][res.layers - 1], rtol=1e-12)
    # The prediction is a wide limit: its finite-width bias is O(L/n) and, for the normalised spread, small
    # (a linear Gaussian net at this size: 16.08 +- 0.61 measured over 24 nets against 16), below 2 SE here.
    for j in range(len(res.layers)):
        nv = res.per_sample["norm_var"][:, j]
        se = nv.std(ddof=1) / math.sqrt(n_networks)
        assert abs(nv.mean() - th["norm_var"][j]) < k * se, (res.layers[j], nv.mean(), th["norm_var"][j], se)


def test_orthogonal_spread_is_smaller_by_one_per_layer():
    L = 40
    sw2, sb2 = critical_sigmas("tanh", Q_STAR)
    kw = dict(input_m2=(Q_STAR - sb2) / sw2)  # the input already at the fixed point: q_l = q* at every layer
    o = jacobian_theory(L, "tanh", sw2, sb2, weights="orthogonal", **kw)
    g = jacobian_theory(L, "tanh", sw2, sb2, weights="gaussian", **kw)
    np.testing.assert_allclose(o["q"], Q_STAR, rtol=1e-12)
    np.testing.assert_allclose(g["norm_var"] - o["norm_var"], np.arange(1, L + 1), rtol=1e-12)
    np.testing.assert_allclose(o["norm_var"], np.arange(1, L + 1) * o["norm_var"][0], rtol=1e-10)  # linear in L
    # the per-layer orthogonal slope E[phi'^4]/E[phi'^2]^2 - 1 by an independent dense quadrature
    xi = np.linspace(-12, 12, 200_001)
    w = np.exp(-xi ** 2 / 2) / np.sqrt(2 * np.pi) * (xi[1] - xi[0])
    d = 1 / np.cosh(np.sqrt(Q_STAR) * xi) ** 2
    assert o["norm_var"][0] == pytest.approx(np.sum(w * d ** 4) / np.sum(w * d ** 2) ** 2 - 1, rel=1e-9)


def test_critical_sigmas_are_critical():
    from fastinit.theory import chi1, length_map
    for act, q in [("tanh", 0.25), ("tanh", 2.0), ("selu", 1.0), ("gelu", 0.1)]:
        sw2, sb2 = critical_sigmas(act, q)
        assert chi1(act, sw2, q) == pytest.approx(1.0, rel=1e-12)
        assert length_map(q, act, sw2, sb2) == pytest.approx(q, rel=1e-12)
    with pytest.raises(InitArgumentError, match="q_star"):
        critical_sigmas("tanh", 0.0)
    with pytest.raises(InitArgumentError, match="sigma_b"):  # E[sigmoid^2] > 1/4 already: sigma_b^2 < 0
        critical_sigmas("sigmoid", 0.5)


# ------------------------------------------------------------------------------------------
# the density
def test_density_one_linear_layer_is_marchenko_pastur():
    lam = np.geomspace(1e-3, 3.99, 200)
    mp = np.sqrt((4 - lam) * lam) / (2 * np.pi * lam)  # Marchenko-Pastur at ratio 1, variance 1
    np.testing.assert_allclose(jacobian_density(1, "linear", 1.0, 1.0, lam, rel_eps=1e-9), mp, rtol=1e-6)


@pytest.mark.parametrize("kind, activation, depth", [("gaussian", "linear", 4), ("gaussian", "tanh", 4),
                                                     ("orthogonal", "tanh", 4), ("orthogonal", "tanh", 12)])
def test_density_moments_match_the_s_transform_moments(kind, activation, depth):
    # two routes through free probability: the density (solving z w S(w) = 1 + w) and the moments
    sw2, sb2 = (1.0, 0.0) if activation == "linear" else critical_sigmas("tanh", Q_STAR)
    q = 1.0 if activation == "linear" else Q_STAR
    th = jacobian_theory(depth, activation, sw2, sb2, weights=kind, input_m2=(q - sb2) / sw2)
    lam = np.geomspace(1e-8, 20 * (1 + th["norm_var"][-1]), 5000)
    rho = jacobian_density(depth, activation, sw2, q, lam, weights=kind)
    ok = np.isfinite(rho)
    assert lam[~ok].max(initial=0) < 1e-3  # Newton fails only far below the bulk (density ~ 0 there)
    lam, rho = lam[ok], rho[ok]
    # the Lorentzian smoothing (relative width 1e-5) and the grid cost ~1% in the second moment
    assert np.trapezoid(lam * rho, lam) == pytest.approx(th["mean_sv2"][-1], rel=2e-3)
    assert np.trapezoid(lam ** 2 * rho, lam) == pytest.approx(th["mean_sv2"][-1] ** 2 * (1 + th["norm_var"][-1]),
                                                              rel=1e-2)


def test_density_bad_arguments():
    with pytest.raises(InitArgumentError, match="sigma_w2"):
        jacobian_density(3, "tanh", 0.0, 1.0, [1.0])
    with pytest.raises(InitArgumentError, match="x must"):
        jacobian_density(3, "tanh", 1.0, 1.0, [0.0, 1.0])


# ------------------------------------------------------------------------------------------
# randomized vs exact
def test_randomized_equals_exact_when_krylov_space_is_full():
    kw = _critical_kw(6, 24, init="orthogonal", n_networks=2, layers=[3, 6], seed=5)
    ex = jacobian_spectrum(method="exact", **kw)
    rn = jacobian_spectrum(method="randomized", probes=4, steps=48, **kw)  # steps >= k = 24
    assert rn.method == "randomized" and rn.singular_values is None
    np.testing.assert_allclose(rn.per_sample["max_sv"], ex.per_sample["max_sv"], rtol=1e-9)
    np.testing.assert_allclose(rn.per_sample["min_sv"], ex.per_sample["min_sv"], rtol=1e-7)


@pytest.mark.parametrize("init", ["orthogonal", "xavier_normal"])
def test_randomized_moments_agree_with_exact(init):
    kw = _critical_kw(16, 256, init=init, layers=[16], seed=2)
    ex = jacobian_spectrum(method="exact", **kw)
    rn = jacobian_spectrum(method="randomized", probes=16, steps=32, **kw)
    k = 5.0  # jackknife SE over 16 probes; t_15 > 5: two-sided p = 1.6e-4
    for name in ("mean_sv2", "var_sv2"):
        diff = abs(rn.per_sample[name][0, 0] - ex.per_sample[name][0, 0])
        assert diff < k * rn.probe_stderr[name][0, 0], (name, rn.per_sample[name], ex.per_sample[name])
    smax = ex.per_sample["max_sv"][0, 0]
    # the largest Ritz value approaches s_max^2 from below (Cauchy interlacing) and quickly
    assert smax * 0.99 < rn.per_sample["max_sv"][0, 0] <= smax * (1 + 1e-10)
    assert rn.per_sample["min_sv"][0, 0] >= ex.per_sample["min_sv"][0, 0] * (1 - 1e-10)  # an upper bound of s_min
    edges, dens = rn.density(16)
    assert np.all(dens >= 0) and np.sum(dens * np.diff(edges)) == pytest.approx(1.0)


def test_auto_method_chooses_by_width():
    assert jacobian_spectrum(depth=2, width=16).method == "exact"
    from fastinit.sim._jacobian import EXACT_MAX_WIDTH
    r = jacobian_spectrum([EXACT_MAX_WIDTH + 1, 8, 8], activation="relu", init="kaiming_normal", probes=2, steps=4)
    assert r.method == "randomized"


# ------------------------------------------------------------------------------------------
# degenerate and bad input
def test_width_one_has_one_singular_value():
    res = jacobian_spectrum([1, 1, 1, 1], activation="tanh", init="xavier_normal", n_networks=3)
    assert res.singular_values[0].shape == (3, 1)
    assert np.all(res.per_sample["var_sv2"] == 0) and np.all(res.per_sample["cond"] == 1.0)
    assert np.all(np.isfinite(res.per_sample["mean_sv2"]))


@pytest.mark.parametrize("method", ["exact", "randomized"])
def test_sigma_w2_zero_gives_zero_jacobian(method):
    res = jacobian_spectrum(depth=3, width=8, activation="tanh", init="orthogonal", sigma_w2=0.0, method=method,
                            probes=2, steps=4)
    assert res.mean_sv2[0] == 0 and res.var_sv2[0] == 0 and res.max_sv[0] == 0
    assert math.isnan(res.norm_var[0]) and res.cond[0] == math.inf
    assert res.theory["mean_sv2"][0] == 0 and res.theory["var_sv2"][0] == 0 and math.isnan(res.theory["norm_var"][0])


def test_zeros_scheme():
    res = jacobian_spectrum(depth=3, width=8, init="zeros")
    assert res.mean_sv2[0] == 0 and res.cond[0] == math.inf and res.theory["mean_sv2"][0] == 0


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(sigma_w2=-1.0), InitArgumentError, "sigma_w2"),
    (dict(sigma_w2="1"), TypeError, "sigma_w2"),
    (dict(init="zeros", sigma_w2=1.0), InitArgumentError, "sigma_w2"),
    (dict(method="svd"), InitArgumentError, "method"),
    (dict(layers=[0]), InitArgumentError, "layers"),
    (dict(layers=[5]), InitArgumentError, "layers"),
    (dict(layers=[]), InitArgumentError, "layers"),
    (dict(probes=1), InitArgumentError, "probes"),
    (dict(n_inputs=0), InitArgumentError, "n_inputs"),
    (dict(dtype=None), TypeError, "dtype"),
    (dict(activation="nope"), InitArgumentError, "activation|name"),
    (dict(init="nope"), InitArgumentError, "init"),
])
def test_bad_arguments_name_the_argument(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        jacobian_spectrum(**{"depth": 4, "width": 8, **kwargs})


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(depth=0), InitArgumentError, "depth"),
    (dict(sigma_w2=-0.5), InitArgumentError, "sigma_w2"),
    (dict(sigma_w2=[1.0, 2.0]), InitArgumentError, "sigma_w2"),
    (dict(weights="unitary"), InitArgumentError, "weights"),
    (dict(sigma_b2=float("nan")), InitArgumentError, "sigma_b2"),
])
def test_theory_bad_arguments(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        jacobian_theory(**{"depth": 3, "activation": "tanh", "sigma_w2": 1.0, **kwargs})


def test_statistics_names_and_table():
    res = jacobian_spectrum(depth=3, width=8, n_networks=2, layers=[1, 3])
    assert set(res.per_sample) == set(JACOBIAN_STATISTICS) and res.per_sample["mean_sv2"].shape == (2, 2)
    text = repr(res)
    assert "Var/mean^2" in text and text.count("\n") >= 4


# ------------------------------------------------------------------------------------------
# the command
def _parse(argv):
    import argparse

    from fastinit._simulate_cli import add_simulate_parser
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="command", required=True)
    add_simulate_parser(sub)
    return p.parse_args(["simulate", *argv])


def test_cli_jacobian_quick(tmp_path, capsys):
    from fastinit._simulate_cli import run_simulate
    rc = run_simulate(_parse(["--jacobian", "--quick", "--schemes", "xavier,orthogonal", "--activations",
                              "tanh,relu", "--output-dir", str(tmp_path)]))
    assert rc == 0
    text = capsys.readouterr().out
    assert "== tanh ==" in text and "== relu ==" in text and "tanh at criticality" in text
    data = json.loads((tmp_path / "jacobian.json").read_text())
    assert [(r["scheme"], r["activation"]) for r in data["runs"]] == [
        ("xavier", "tanh"), ("orthogonal", "tanh"), ("xavier", "relu"), ("orthogonal", "relu")]
    iso = data["isometry"]
    assert iso["orthogonal"]["theory"]["mean_sv2"][-1] == pytest.approx(1.0)
    for name in ("jacobian_isometry.png", "jacobian_spectra.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argv, match", [(["--width", "0"], "--width"), (["--schemes", "nope"], "--schemes"),
                                         (["--activations", "nope"], "--activations")])
def test_cli_jacobian_bad_options(tmp_path, capsys, argv, match):
    from fastinit._simulate_cli import run_simulate
    rc = run_simulate(_parse(["--jacobian", "--quick", "--output-dir", str(tmp_path / "o"), *argv]))
    assert rc == 2 and match in capsys.readouterr().err


# ------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("init", ["orthogonal", "xavier_normal"])
@pytest.mark.parametrize("depth, width, n_networks, k", [(48, 384, 16, 5.0)])  # t_15 > 5: two-sided p = 1.6e-4
def test_tanh_critical_spread_deep(init, depth, width, n_networks, k):
    res = jacobian_spectrum(**_critical_kw(depth, width), init=init, n_networks=n_networks,
                            layers=[12, 24, depth], seed=17)
    for j in range(len(res.layers)):
        nv = res.per_sample["norm_var"][:, j]
        se = nv.std(ddof=1) / math.sqrt(n_networks)
        assert abs(nv.mean() - res.theory["norm_var"][j]) < k * se, (res.layers[j], nv.mean(), se)


@pytest.mark.slow
def test_randomized_agrees_with_exact_beyond_the_exact_range():
    from fastinit.sim._jacobian import EXACT_MAX_WIDTH
    kw = _critical_kw(8, EXACT_MAX_WIDTH + 176, init="xavier_normal", layers=[8], seed=4)
    rn = jacobian_spectrum(probes=12, steps=24, **kw)
    assert rn.method == "randomized"
    ex = jacobian_spectrum(method="exact", **kw)
    k = 5.0  # jackknife SE over 12 probes; t_11 > 5: two-sided p = 4.0e-4
    for name in ("mean_sv2", "var_sv2"):
        assert abs(rn.per_sample[name][0, 0] - ex.per_sample[name][0, 0]) < k * rn.probe_stderr[name][0, 0]
    assert ex.per_sample["max_sv"][0, 0] * 0.99 < rn.per_sample["max_sv"][0, 0] <= ex.per_sample["max_sv"][0, 0] * (
        1 + 1e-10)
