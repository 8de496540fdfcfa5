r"""Plain NumPy reference of :mod:`fastinit.sim` (slow, obvious, float64 by default).

The functions take explicit weight matrices, so tests can run the compiled simulator and this
reference on identical networks and compare to floating-point tolerance, and benchmarks can
time the same computation done the straightforward way (one NumPy expression per statistic).

Conventions are those of ``shared/reference/theory.md`` section 0:

.. math::
    z_l = a_{l-1} W_l^T + b_l, \qquad a_l = \phi(z_l), \qquad a_0 = x,

or, for residual nets, :math:`h_l = h_{l-1} + \alpha\,\phi(h_{l-1} W_l^T + b_l)` with the
``post_*`` statistics describing :math:`h_l`. The per-sample loss is
:math:`\ell_b = \sum_k G_{bk}\, a_{L,bk}`.

Examples
--------
>>> import numpy as np
>>> from fastinit._reference.sim import reference_mlp
>>> rng = np.random.default_rng(0)
>>> Ws = [rng.normal(0, np.sqrt(2 / 64), (64, 64)) for _ in range(3)]
>>> x = rng.normal(size=(128, 64))
>>> G = rng.normal(size=(128, 64))
>>> out = reference_mlp(x, Ws, [np.zeros(64)] * 3, "relu", G=G)
>>> out["preact_m2"].shape
(3,)
"""

from __future__ import annotations

import numpy as np

from fastinit._activations import get_activation

__all__ = ["reference_mlp", "reference_rnn"]


def _act(activation, param):
    """(phi, dphi, saturation threshold) as NumPy callables of one array."""
    if isinstance(activation, tuple):
        f, df = activation
        return f, df, None
    act = get_activation(activation, param)
    return (lambda v: act.phi(v, act.param)), (lambda v: act.dphi(v, act.param)), act.saturation


def reference_mlp(x, weights, biases, activation, param=None, residual_scale=None, G=None,
                  backward=True, dtype=np.float64):
    """Per-layer statistics of one MLP, computed with plain NumPy.

    Parameters
    ----------
    x : (B, n_0) array_like
    weights : list of (n_l, n_{l-1}) array_like
    biases : list of (n_l,) array_like
    activation : str or (callable, callable)
        A registry name, or NumPy ``(phi, dphi)`` of one array.
    param : float, optional
        Activation parameter (leaky slope, softplus beta).
    residual_scale : float, optional
        If given, ``h_l = h_{l-1} + residual_scale * phi(h_{l-1} W_l^T + b_l)``.
    G : (B, n_L) array_like, optional
        Backward seed; required when ``backward``.
    dtype : numpy dtype
        Working precision (float64 by default, the way a researcher would write it).

    Returns
    -------
    dict
        Every statistic of :func:`fastinit.sim.simulate_mlp` for this one network.
    """
    phi, dphi, sat = _act(activation, param)
    a = np.asarray(x, dtype=dtype)
    B = a.shape[0]
    L = len(weights)
    res = residual_scale is not None
    zs, posts = [], [a]
    st = {k: [] for k in ("preact_mean", "preact_var", "preact_m2", "post_mean", "post_var",
                          "post_m2", "preact_unitvar", "preact_unitspread", "frac_inactive", "frac_dead_units",
                          "frac_saturated")}
    for l in range(L):
        W = np.asarray(weights[l], dtype=dtype)
        z = (a @ W.T + np.asarray(biases[l], dtype=np.float64)).astype(dtype)
        f = phi(z)
        a = (a + residual_scale * f if res else f).astype(dtype)
        st["preact_mean"].append(z.mean())
        st["preact_var"].append(z.var())
        st["preact_m2"].append((z.astype(np.float64) ** 2).mean())
        st["post_mean"].append(a.mean())
        st["post_var"].append(a.var())
        st["post_m2"].append((a.astype(np.float64) ** 2).mean())
        st["preact_unitvar"].append(z.var(axis=0).mean())
        st["preact_unitspread"].append(z.var(axis=1).mean())
        st["frac_inactive"].append((z <= 0).mean())
        st["frac_dead_units"].append((z <= 0).all(axis=0).mean())
        st["frac_saturated"].append((np.abs(z) > sat).mean() if sat is not None else np.nan)
        zs.append(z)
        posts.append(a)
    out = {k: np.array(v, dtype=np.float64) for k, v in st.items()}
    if not backward:
        return out
    g = np.asarray(G, dtype=dtype)
    gp, gws, gwb = [], [], []
    for l in range(L - 1, -1, -1):
        W = np.asarray(weights[l], dtype=dtype)
        delta = (residual_scale if res else 1.0) * dphi(zs[l]) * g
        delta = delta.astype(dtype)
        aprev = posts[l]
        gp.append((delta.astype(np.float64) ** 2).mean())
        # per-sample weight gradient delta_b a_b^T: its squared Frobenius norm is
        # |delta_b|^2 |a_b|^2 (materialising all B outer products would need B n_l n_{l-1} floats)
        d64, a64 = delta.astype(np.float64), aprev.astype(np.float64)
        gws.append(((d64 ** 2).sum(1) * (a64 ** 2).sum(1)).mean() / (W.shape[0] * W.shape[1]))
        dW = delta.T @ aprev / B
        gwb.append((dW.astype(np.float64) ** 2).mean())
        g_new = delta @ W
        g = (g + g_new if res else g_new).astype(dtype)
    out["grad_preact_m2"] = np.array(gp[::-1])
    out["grad_bias_m2_per_sample"] = np.array(gp[::-1])
    out["grad_weight_m2_per_sample"] = np.array(gws[::-1])
    out["grad_weight_m2_batchmean"] = np.array(gwb[::-1])
    out["grad_input_m2"] = np.array((g.astype(np.float64) ** 2).mean())
    return out


def reference_rnn(h0, W, activation, steps, param=None, xs=None, U=None, b=None, G=None,
                  backward=True, dtype=np.float64):
    """Per-step statistics of one recurrent net ``h_t = phi(h_{t-1} W^T + x_t U^T + b)``.

    Parameters
    ----------
    h0 : (B, n) array_like
    W : (n, n) array_like
    activation : str or (callable, callable)
    steps : int
    xs : (T, B, m) array_like, optional
        Inputs per step (``U`` must then be given, shape (n, m)).
    b : (n,) array_like, optional
    G : (B, n) array_like, optional
        Seed of ``l = sum G * h_T``.

    Returns
    -------
    dict
        ``h_m2``, ``h_norm``, ``preact_m2``, ``preact_mean``, ``post_mean`` and ``grad_h_m2``,
        each of length ``steps + 1`` (index t; entries that do not exist at t = 0 are NaN).
    """
    phi, dphi, _ = _act(activation, param)
    h = np.asarray(h0, dtype=dtype)
    W = np.asarray(W, dtype=dtype)
    T = int(steps)
    nan = np.full(T + 1, np.nan)
    h_m2, h_norm, pre_m2, pre_mean, post_mean, grad = (nan.copy() for _ in range(6))
    h_m2[0] = (h.astype(np.float64) ** 2).mean()
    h_norm[0] = np.linalg.norm(h.astype(np.float64), axis=1).mean()
    post_mean[0] = h.mean()
    zs = []
    for t in range(1, T + 1):
        z = h @ W.T
        if xs is not None:
            z = z + np.asarray(xs[t - 1], dtype=dtype) @ np.asarray(U, dtype=dtype).T
        if b is not None:
            z = z + np.asarray(b, dtype=np.float64)
        z = z.astype(dtype)
        h = phi(z).astype(dtype)
        zs.append(z)
        pre_m2[t] = (z.astype(np.float64) ** 2).mean()
        pre_mean[t] = z.mean()
        post_mean[t] = h.mean()
        h_m2[t] = (h.astype(np.float64) ** 2).mean()
        h_norm[t] = np.linalg.norm(h.astype(np.float64), axis=1).mean()
    out = {"h_m2": h_m2, "h_norm": h_norm, "preact_m2": pre_m2, "preact_mean": pre_mean,
           "post_mean": post_mean, "grad_h_m2": grad}
    if not backward:
        return out
    g = np.asarray(G, dtype=dtype)
    grad[T] = (g.astype(np.float64) ** 2).mean()
    for t in range(T, 0, -1):
        g = ((dphi(zs[t - 1]) * g).astype(dtype) @ W).astype(dtype)
        grad[t - 1] = (g.astype(np.float64) ** 2).mean()
    return out
