"""LayerNorm residual stacks and convolutional stacks: the simulators against torch, against the fully-connected
simulator, and against their mean-field theory (thresholds from the sampling law, p-values beside them)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import stdtrit

from fastinit import Generator, InitArgumentError
from fastinit._activations import get_activation
from fastinit.sim import delta_orthogonal_, simulate_cnn, simulate_mlp, simulate_resnet
from fastinit.sim._conv import conv_forward, conv_input_grad
from fastinit.sim._resnet import layer_norm, layer_norm_backward, resnet_pass
from fastinit.sim._schemes import KIND_INPUT, KIND_SEED_G, KIND_WEIGHT, random_normal, stream
from fastinit.theory import conv_theory, mlp_theory, resnet_theory


def t_crit(k, p):
    """Two-sided Student-t critical value: |mean - mu| / se exceeds it with probability p (k networks)."""
    return float(stdtrit(k - 1, 1.0 - p / 2))


def assert_t(res, name, idx, p=1e-4, rel_bias=0.0):
    """The mean over networks agrees with the theory at the given layers: |m - th| <= t_{p/m} se + rel_bias |th|
    (Bonferroni over the m = len(idx) layers; ``rel_bias`` the finite-width allowance where one is stated)."""
    m, se, th = (np.atleast_1d(res.stats[name]), np.atleast_1d(res.stderr[name]),
                 np.atleast_1d(res.theory[name]))
    tc = t_crit(res.n_networks, p / len(idx))
    for i in idx:
        assert abs(m[i] - th[i]) <= tc * se[i] + rel_bias * abs(th[i]), (name, i + 1, m[i], th[i], se[i], tc)


# ------------------------------------------------------------------------------------------
# LayerNorm backward and the whole block against torch autograd
def _torch():
    """torch, or skip: it is optional (the tests that compare with autograd or its convolutions need it)."""
    return pytest.importorskip("torch")


def test_layer_norm_backward_matches_autograd():
    T = _torch()
    rng = np.random.default_rng(0)
    t = rng.standard_normal((7, 33)) * 3 + 1
    g = rng.standard_normal((7, 33))
    u, sig, s2 = layer_norm(t, 1e-5)
    tt = T.tensor(t, requires_grad=True)
    ut = T.nn.functional.layer_norm(tt, (33,), eps=1e-5)
    (ut * T.tensor(g)).sum().backward()
    np.testing.assert_allclose(u, ut.detach().numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer_norm_backward(g, u, sig), tt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(s2, t.var(axis=1), rtol=1e-12)


@pytest.mark.parametrize("norm", ["pre", "post", "none"])
@pytest.mark.parametrize("block", ["linear", "mlp"])
def test_resnet_pass_gradients_match_autograd(norm, block):
    """Every gradient statistic of one network equals torch autograd's on the same weights (float64)."""
    T = _torch()
    F = T.nn.functional
    rng = np.random.default_rng(1)
    B, n, m, L, alpha, eps = 5, 12, 20, 3, 0.7, 1e-5
    m = m if block == "mlp" else n
    x = rng.standard_normal((B, n))
    Ws = [rng.standard_normal((m, n)) / np.sqrt(n) for _ in range(L)]
    bs = [rng.standard_normal(m) * 0.1 for _ in range(L)]
    W2s = [rng.standard_normal((n, m)) / np.sqrt(m) for _ in range(L)] if block == "mlp" else None
    b2s = [rng.standard_normal(n) * 0.1 for _ in range(L)] if block == "mlp" else None
    G = rng.standard_normal((B, n))
    act = get_activation("tanh")
    final = norm == "pre"
    st = resnet_pass(x, Ws, bs, W2s, b2s, act, norm, alpha, eps, final, G, True)

    xt = T.tensor(x, requires_grad=True)
    h, hs, zs, ws1, ws2 = xt, [], [], [], []
    for j in range(L):
        W = T.tensor(Ws[j], requires_grad=True)
        ws1.append(W)
        inp = F.layer_norm(h, (n,), eps=eps) if norm == "pre" else h
        z = inp @ W.T + T.tensor(bs[j])
        z.retain_grad()
        zs.append(z)
        y = T.tanh(z)
        if block == "mlp":
            W2 = T.tensor(W2s[j], requires_grad=True)
            ws2.append(W2)
            y = y @ W2.T + T.tensor(b2s[j])
        h = h + alpha * y
        if norm == "post":
            h = F.layer_norm(h, (n,), eps=eps)
        h.retain_grad()
        hs.append(h)
    out = F.layer_norm(h, (n,), eps=eps) if final else h
    (out * T.tensor(G)).sum().backward()
    for j in range(L):
        assert st["grad_h_m2"][j] == pytest.approx(float((hs[j].grad ** 2).mean()), rel=1e-10)
        assert st["grad_preact_m2"][j] == pytest.approx(float((zs[j].grad ** 2).mean()), rel=1e-10)
    assert st["grad_input_m2"] == pytest.approx(float((xt.grad ** 2).mean()), rel=1e-10)


def test_resnet_without_norm_is_simulate_mlps_residual_net():
    """norm="none" with the linear block is simulate_mlp's residual net, and both draw every array from the same
    streams: the same networks, so the same statistics up to float64 summation order."""
    kw = dict(depth=6, width=48, batch=40, activation="tanh", init="xavier_normal", residual_scale=0.6,
              n_networks=2, seed=4, dtype="float64")
    r = simulate_resnet(norm="none", block="linear", **kw)
    m = simulate_mlp(**kw)
    pairs = {"h_mean": "post_mean", "h_var": "post_var", "h_m2": "post_m2", "preact_mean": "preact_mean",
             "preact_var": "preact_var", "preact_m2": "preact_m2", "frac_inactive": "frac_inactive",
             "grad_preact_m2": "grad_preact_m2", "grad_weight_m2_per_sample": "grad_weight_m2_per_sample",
             "grad_input_m2": "grad_input_m2"}
    for a, b in pairs.items():
        np.testing.assert_allclose(r.stats[a], m.stats[b], rtol=1e-9, atol=1e-15, err_msg=a)
        np.testing.assert_allclose(r.theory[a], m.theory[b], rtol=1e-9, atol=1e-15, err_msg=a)


def test_resnet_per_sample_weight_gradient_matches_autograd():
    """For one sample the per-sample weight gradient is the whole gradient: compare with autograd."""
    T = _torch()
    F = T.nn.functional
    rng = np.random.default_rng(2)
    n, m, L = 10, 16, 2
    x = rng.standard_normal((1, n))
    Ws = [rng.standard_normal((m, n)) / np.sqrt(n) for _ in range(L)]
    W2s = [rng.standard_normal((n, m)) / np.sqrt(m) for _ in range(L)]
    zero_m, zero_n = [np.zeros(m)] * L, [np.zeros(n)] * L
    G = rng.standard_normal((1, n))
    st = resnet_pass(x, Ws, zero_m, W2s, zero_n, get_activation("relu"), "post", 1.0, 1e-5, False, G, True)
    h = T.tensor(x)
    w1 = [T.tensor(W, requires_grad=True) for W in Ws]
    w2 = [T.tensor(W, requires_grad=True) for W in W2s]
    for j in range(L):
        h = F.layer_norm(h + T.relu(h @ w1[j].T) @ w2[j].T, (n,), eps=1e-5)
    (h * T.tensor(G)).sum().backward()
    for j in range(L):
        assert st["grad_weight_m2_per_sample"][j] == pytest.approx(float((w1[j].grad ** 2).mean()), rel=1e-10)
        assert st["grad_weight2_m2_per_sample"][j] == pytest.approx(float((w2[j].grad ** 2).mean()), rel=1e-10)


# ------------------------------------------------------------------------------------------
# Convolutions against torch
@pytest.mark.parametrize("k", [1, 3, 4, 5])
@pytest.mark.parametrize("spatial", [(9,), (6, 7)])
def test_conv_matches_torch_circular(k, spatial):
    T = _torch()
    F = T.nn.functional
    rng = np.random.default_rng(k)
    N, ci, co = 3, 4, 5
    d = len(spatial)
    a = rng.standard_normal((N,) + spatial + (ci,))
    W = rng.standard_normal((co, ci) + (k,) * d)
    left = (k - 1) // 2
    at = T.tensor(np.moveaxis(a, -1, 1).copy(), requires_grad=True)
    pad = (left, k - 1 - left) * d
    conv = F.conv1d if d == 1 else F.conv2d
    zt = conv(F.pad(at, pad, mode="circular"), T.tensor(W))
    z = conv_forward(a, W)
    np.testing.assert_allclose(z, np.moveaxis(zt.detach().numpy(), 1, -1), rtol=1e-12, atol=1e-12)
    delta = rng.standard_normal(z.shape)
    (zt * T.tensor(np.moveaxis(delta, -1, 1).copy())).sum().backward()
    np.testing.assert_allclose(conv_input_grad(delta, W), np.moveaxis(at.grad.numpy(), 1, -1), rtol=1e-12,
                               atol=1e-12)


def test_delta_orthogonal_kernel():
    w = delta_orthogonal_(np.empty((6, 4, 5, 5)), gain=2.0, generator=Generator(3))
    centre = w[:, :, 2, 2]
    np.testing.assert_allclose(centre.T @ centre, 4.0 * np.eye(4), atol=1e-12)  # orthonormal columns, gain 2
    w[:, :, 2, 2] = 0
    assert not w.any()
    with pytest.raises(InitArgumentError, match="odd"):
        delta_orthogonal_(np.empty((4, 4, 4)))
    with pytest.raises(InitArgumentError, match="3-D or 4-D"):
        delta_orthogonal_(np.empty((4, 4)))
    with pytest.raises(TypeError, match="numpy array"):
        delta_orthogonal_([[[0.0]]])


def test_delta_orthogonal_cnn_is_an_orthogonal_mlp_per_position():
    """The delta-orthogonal stack is the orthogonal fully-connected net applied at every position: with the
    same weights (the centre taps), inputs and backward seed, simulate_mlp gives the same statistics."""
    B, s, c, L, seed = 6, 8, 16, 5, 11
    res = simulate_cnn(depth=L, channels=c, kernel_size=3, spatial=s, batch=B, activation="tanh",
                       init="delta_orthogonal", init_params={"gain": 1.2}, seed=seed, dtype="float64")
    Ws = []
    for j in range(L):
        g = Generator(seed).set_state((seed, stream(0, j + 1, KIND_WEIGHT)))
        Ws.append(delta_orthogonal_(np.empty((c, c, 3)), 1.2, generator=g)[:, :, 1].copy())
    x = random_normal((B, s, c), 0.0, 1.0, seed, stream(0, 0, KIND_INPUT), np.float64).reshape(B * s, c)
    G = random_normal((B, s, c), 0.0, 1.0, seed, stream(0, 0, KIND_SEED_G), np.float64).reshape(B * s, c)
    mlp = simulate_mlp(widths=[c] * (L + 1), batch=B * s, activation="tanh", weights=Ws, x=x, G=G,
                       dtype="float64", theory=False)
    for name in ("preact_mean", "preact_var", "preact_m2", "post_m2", "frac_inactive", "grad_preact_m2",
                 "grad_input_m2"):
        np.testing.assert_allclose(res.stats[name], mlp.stats[name], rtol=1e-10, atol=1e-14, err_msg=name)
    # and the theory is mlp_theory of an orthogonal net of width c (sigma_w^2 = gain^2)
    th = mlp_theory([c] * (L + 1), "tanh", weight_var=1.2 ** 2 / c)
    np.testing.assert_allclose(res.theory["preact_var"], th["preact_var"], rtol=1e-12)


# ------------------------------------------------------------------------------------------
# Theory vs simulation: residual stacks
def test_pre_ln_variance_grows_linearly_and_gradients_follow():
    """Pre-LN, transformer MLP block, ReLU, He: q_l = 1 + 2 alpha^2 l exactly at infinite width (theory.md §2.10).
    16 networks; each comparison |mean - theory| <= t se with Bonferroni p = 1e-4 over the layers compared."""
    L, alpha = 10, 0.8
    res = simulate_resnet(depth=L, width=256, batch=256, norm="pre", block="mlp", residual_scale=alpha,
                          n_networks=16, seed=5)
    np.testing.assert_allclose(res.theory["h_var"], 1 + 2 * alpha ** 2 * np.arange(1, L + 1), rtol=1e-4)
    idx = range(L)
    for name in ("h_var", "branch_var", "preact_var", "ln_in_var", "grad_h_m2", "grad_weight2_m2_per_sample"):
        assert_t(res, name, idx, p=1e-4)
    assert_t(res, "grad_input_m2", [0], p=1e-4)


def test_post_ln_keeps_unit_variance_and_flat_gradients():
    """Post-LN: h_l has per-sample variance s^2/(s^2 + eps), so the pooled variance is 1 - O(eps) at every block;
    with a ReLU MLP block the mean-field gradient is flat in depth (forward and backward gains are both 2)."""
    L = 12
    res = simulate_resnet(depth=L, width=256, batch=256, norm="post", block="mlp", n_networks=16, seed=6)
    np.testing.assert_allclose(res.h_var, 1.0, atol=1e-4)
    np.testing.assert_allclose(res.h_mean, 0.0, atol=1e-6)
    np.testing.assert_allclose(res.theory["grad_h_m2"], 1.0, rtol=1e-4)
    for name in ("branch_var", "ln_in_var", "grad_h_m2", "grad_weight2_m2_per_sample"):
        assert_t(res, name, range(L), p=1e-4)


def test_xiong_last_layer_gradient_post_constant_pre_decays():
    """Xiong et al. 2020, Theorem 1, as second moments: the last block's W_2 gradient does not depend on L for
    post-LN and falls as 1/V_L ~ 1/(2 alpha^2 L) for pre-LN with a final LayerNorm. Both predicted and measured
    (8 networks each; Bonferroni p = 1e-4 over the 4 comparisons)."""
    kw = dict(width=256, batch=256, block="mlp", n_networks=8, seed=7)
    out = {}
    for norm in ("pre", "post"):
        for L in (2, 16):
            r = simulate_resnet(depth=L, norm=norm, **kw)
            assert_t(r, "grad_weight2_m2_per_sample", [L - 1], p=1e-4 / 4)
            out[norm, L] = r.theory["grad_weight2_m2_per_sample"][-1]
    assert out["post", 2] == pytest.approx(out["post", 16], rel=1e-4)
    assert out["pre", 2] / out["pre", 16] == pytest.approx((1 + 2 * 16) / (1 + 2 * 2), rel=1e-3)


def test_resnet_finite_width_deviation_shrinks():
    """tanh linear block with post-LN: the mean-field backward misses an O(L/n) term (measured about 0.6 L/n,
    theory.md §2.10); the deviation of grad_input_m2 from the prediction shrinks as the width grows 8x. The
    shrink is asserted beyond 3 standard errors of the difference (p ~ 0.001 one-sided), and the wide net's
    deviation below a third of the narrow one's (1/n scaling predicts an eighth)."""
    dev = {}
    for n, k in ((32, 64), (256, 8)):
        r = simulate_resnet(depth=12, width=n, batch=256, norm="post", activation="tanh", n_networks=k, seed=8)
        th = float(r.theory["grad_input_m2"])
        dev[n] = (float(r.grad_input_m2) / th - 1, float(r.stderr["grad_input_m2"]) / th)
    (d32, s32), (d256, s256) = dev[32], dev[256]
    assert abs(d32) - abs(d256) > 3 * np.hypot(s32, s256), dev
    assert abs(d256) < abs(d32) / 3, dev


# ------------------------------------------------------------------------------------------
# Theory vs simulation: convolutions
@pytest.mark.parametrize("spatial", [16, (6, 6)])
def test_conv_length_map_is_the_fc_one_with_fan_in_ck(spatial):
    """Kaiming ReLU kernels: pooled preact_var = 2 at every layer (fan_in = c k^d); the backward too."""
    L = 6
    res = simulate_cnn(depth=L, channels=32, kernel_size=3, spatial=spatial, batch=16, activation="relu",
                       init="kaiming_normal", init_params={"nonlinearity": "relu"}, n_networks=12, seed=9)
    np.testing.assert_allclose(res.theory["preact_var"], 2.0, rtol=1e-12)
    for name in ("preact_m2", "post_m2", "frac_inactive", "grad_preact_m2"):
        assert_t(res, name, range(L), p=1e-4)


def test_conv_correlation_profile_theory():
    """Per-position correlation of the pairs over 12 layers: Gaussian kernels average it over the window (its
    pattern decays), delta-orthogonal ones do not; both predicted. 8 networks, Bonferroni p = 1e-4 over the
    layers of each statistic; corr_pattern is unbiased (sampling noise projects out), so a plain t-test."""
    L = 12
    kw = dict(depth=L, channels=64, kernel_size=3, spatial=16, batch=32, activation="tanh", input_corr="cosine",
              n_networks=8, seed=10)
    pattern = {}
    for init in ("xavier_normal", "delta_orthogonal"):
        res = simulate_cnn(init=init, **kw)
        assert_t(res, "corr", range(L), p=1e-4)
        assert_t(res, "corr_pattern", range(L), p=1e-4)
        pattern[init] = res.theory["corr_pattern"][-1]
        assert res.profiles["corr_profile"].shape == (L, 16) == res.theory_profiles["corr_profile"].shape
    assert pattern["delta_orthogonal"] > 1.5 * pattern["xavier_normal"]


@pytest.mark.slow
def test_delta_orthogonal_keeps_the_spatial_signal_over_200_layers():
    """tanh at its critical point (sigma_w^2 = 1, no bias), 200 layers: the delta-orthogonal stack keeps the
    spatial pattern of the pairs' correlation (within 10% of the input's 0.4/sqrt 2), Gaussian kernels lose it
    (below 0.05 of the delta-orthogonal one: the sampling floor of one network's pattern is ~0.005, 0.05 x 0.28 is
    ~3 of it)."""
    kw = dict(depth=200, channels=64, kernel_size=3, spatial=16, batch=32, activation="tanh", input_corr="cosine",
              seed=12, n_networks=2)
    d = simulate_cnn(init="delta_orthogonal", **kw)
    g = simulate_cnn(init="xavier_normal", **kw)
    assert d.corr_pattern[-1] == pytest.approx(0.4 / np.sqrt(2), rel=0.1)
    assert abs(g.corr_pattern[-1]) < 0.05 * d.corr_pattern[-1]
    assert d.theory["corr_pattern"][-1] > 100 * g.theory["corr_pattern"][-1]


# ------------------------------------------------------------------------------------------
# Theory functions on their own
def test_resnet_theory_closed_forms():
    # pre-LN linear block, linear activation: Var y = sigma_w^2 r with r = 1 -> V_l = 1 + alpha^2 sigma_w^2 l
    t = resnet_theory(64, 5, "linear", norm="pre", weight_var=1.5 / 64, residual_scale=0.5, eps=0.0)
    np.testing.assert_allclose(t["h_var"], 1 + 0.25 * 1.5 * np.arange(1, 6))
    # backward: G_{l-1} = G_l (1 + a/V_{l-1}) with a = alpha^2 sigma_w^2 and V_{l-1} = 1 + a (l - 1): G_0 = V_L/V_0
    # times 1/V_L from the final LayerNorm
    t = resnet_theory(64, 5, "linear", norm="pre", weight_var=1.5 / 64, residual_scale=0.5, eps=0.0, final_norm=True)
    assert float(t["grad_input_m2"]) == pytest.approx(1.0)
    # no norm = the fully-connected residual theory
    t = resnet_theory(32, 4, "tanh", norm="none", weight_var=1.0 / 32, residual_scale=0.3, input_std=1.0)
    m = mlp_theory([32] * 5, "tanh", weight_var=1.0 / 32, residual_scale=0.3)
    np.testing.assert_allclose(t["h_m2"], m["post_m2"], rtol=1e-12)
    np.testing.assert_allclose(t["grad_preact_m2"], m["grad_preact_m2"], rtol=1e-12)


def test_conv_theory_window_average_decays_a_cosine_mode():
    """Linear activation: the correlation profile is exactly diffused by the window average; a cosine mode of
    frequency 1 on s positions shrinks by (1 + 2 cos(2 pi / s))/3 per layer with k = 3."""
    s = 16
    rho = 0.5 + 0.4 * np.cos(2 * np.pi * np.arange(s) / s)
    t = conv_theory(8, 5, 3, 1, "linear", sigma_w2=1.0, input_corr=rho)
    lam = (1 + 2 * np.cos(2 * np.pi / s)) / 3
    np.testing.assert_allclose(t["corr_spread"], 0.4 / np.sqrt(2) * lam ** np.arange(1, 6), rtol=1e-10)
    np.testing.assert_allclose(t["corr_pattern"], t["corr_spread"], rtol=1e-10)
    td = conv_theory(8, 5, 3, 1, "linear", sigma_w2=1.0, input_corr=rho, delta=True)
    np.testing.assert_allclose(td["corr_spread"], 0.4 / np.sqrt(2), rtol=1e-10)


# ------------------------------------------------------------------------------------------
# Bad input
@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(norm="mid"), InitArgumentError, "norm"),
    (dict(norm=1), TypeError, "norm"),
    (dict(block="attention"), InitArgumentError, "block"),
    (dict(hidden=32), InitArgumentError, "hidden"),
    (dict(eps=0.0), InitArgumentError, "eps"),
    (dict(eps=-1.0), InitArgumentError, "eps"),
    (dict(width=1), InitArgumentError, "width"),
    (dict(residual_scale=float("nan")), InitArgumentError, "residual_scale"),
    (dict(init="bogus"), InitArgumentError, "init"),
    (dict(depth=0), InitArgumentError, "depth"),
])
def test_resnet_bad_input(kwargs, exc, match):
    args = dict(depth=2, width=8, batch=4) | kwargs
    with pytest.raises(exc, match=match):
        simulate_resnet(**args)


def test_cnn_constant_input_corr_has_no_pattern():
    """A spatially constant correlation has no pattern to keep: corr_pattern is NaN (documented), corr is not."""
    r = simulate_cnn(depth=2, channels=8, spatial=8, batch=4, input_corr=0.3)
    assert np.isnan(r.corr_pattern).all() and np.isnan(r.theory["corr_pattern"]).all()
    assert np.isfinite(r.corr).all() and r.theory["corr"][0] == pytest.approx(0.3)


def test_resnet_degenerate_inputs_are_finite():
    """Identical input entries (input_std = 0): the first LayerNorm outputs 0 (eps > 0), a finite answer."""
    r = simulate_resnet(depth=3, width=16, batch=8, norm="pre", input_std=0.0, input_mean=1.0)
    assert np.isfinite(r.h_var).all() and np.isfinite(r.grad_input_m2)
    assert r.ln_in_var[0] == 0.0


@pytest.mark.parametrize("kwargs, exc, match", [
    (dict(init="delta_orthogonal", kernel_size=4), InitArgumentError, "kernel_size must be odd"),
    (dict(init="delta_orthogonal", init_params={"mode": "fan_in"}), InitArgumentError, "init_params"),
    (dict(spatial=(4, 4, 4)), InitArgumentError, "spatial"),
    (dict(spatial=0), InitArgumentError, "spatial"),
    (dict(spatial="8"), TypeError, "spatial"),
    (dict(input_corr=1.5), InitArgumentError, "input_corr"),
    (dict(input_corr="sine"), InitArgumentError, "input_corr"),
    (dict(input_corr=np.zeros(3)), InitArgumentError, "input_corr"),
    (dict(kernel_size=0), InitArgumentError, "kernel_size"),
    (dict(channels=0), InitArgumentError, "channels"),
    (dict(init=3), TypeError, "init"),
])
def test_cnn_bad_input(kwargs, exc, match):
    args = dict(depth=2, channels=4, spatial=8, batch=2) | kwargs
    with pytest.raises(exc, match=match):
        simulate_cnn(**args)
