r"""Residual stacks with LayerNorm (:func:`simulate_resnet`): pre-LN, post-LN or no norm, a one-layer or a
two-layer (transformer MLP) branch, forward statistics per block and back-propagated gradient second moments.

GEMMs go through NumPy (BLAS) in the simulation dtype; LayerNorm's statistics and every reported statistic are
accumulated in float64. LayerNorm has no affine part (equal to torch's at its init values, weight 1 and bias 0).
"""

from __future__ import annotations

import numpy as np

from fastinit._checks import InitArgumentError, integer, real
from fastinit.theory._architectures import RESNET_STATISTICS, resnet_theory
from fastinit.theory._common import resolve_activation as theory_activation

from ._activation import resolve_activation
from ._args import check_array, check_dtype, check_memory, network_args
from ._mlp import blas_threads
from ._results import SimulationResult, summarise
from ._schemes import (
    KIND_BIAS,
    KIND_BIAS2,
    KIND_INPUT,
    KIND_SEED_G,
    KIND_WEIGHT,
    KIND_WEIGHT2,
    make_weight,
    random_normal,
    resolve_scheme,
    stream,
    weight_moments,
)

__all__ = ["simulate_resnet", "ResNetResult", "layer_norm", "layer_norm_backward", "RESNET_STATISTICS"]


class ResNetResult(SimulationResult):
    """Result of :func:`simulate_resnet` (see :class:`~fastinit.sim.SimulationResult`); index: blocks 1..L."""

    def to_table(self, stats=("h_var", "branch_var", "grad_h_m2", "grad_weight_m2_per_sample"), every=1,
                 fmt="{:.4g}"):
        """Text table, one row per block: ``value ±se [theory]`` (see :meth:`SimulationResult.to_table`)."""
        return super().to_table(stats=list(stats), every=every, fmt=fmt)


def layer_norm(t, eps):
    r"""LayerNorm over the last axis without affine part: ``(u, sigma, s2)``.

    :math:`u = (t - \bar t)/\sigma`, :math:`\sigma = \sqrt{s^2 + \epsilon}`, :math:`s^2` the per-row
    variance (ddof 0, as torch), computed in float64; ``u`` has ``t``'s dtype.
    """
    t64 = t.astype(np.float64, copy=False)
    mean = t64.mean(axis=1, keepdims=True)
    d = t64 - mean
    s2 = np.einsum("ij,ij->i", d, d) / t.shape[1]
    sigma = np.sqrt(s2 + eps)
    return (d / sigma[:, None]).astype(t.dtype, copy=False), sigma, s2


def layer_norm_backward(g, u, sigma):
    r"""Gradient through :func:`layer_norm`: :math:`(g - \bar g - u\,\overline{g u})/\sigma` per row."""
    g64 = g.astype(np.float64, copy=False)
    u64 = u.astype(np.float64, copy=False)
    gm = g64.mean(axis=1, keepdims=True)
    gu = np.einsum("ij,ij->i", g64, u64)[:, None] / g.shape[1]
    return ((g64 - gm - u64 * gu) / sigma[:, None]).astype(g.dtype, copy=False)


def _moments(a):
    """(mean, second moment, variance) of every entry, in float64 (the variance from the centred copy)."""
    c = a.astype(np.float64).reshape(-1)
    m = float(c.mean())
    c -= m
    var = float(c @ c) / c.size
    return m, var + m * m, var


def _rowsq(a):
    a64 = a.astype(np.float64, copy=False)
    return np.einsum("ij,ij->i", a64, a64)


def resnet_pass(x, Ws, bs, W2s, b2s, act, norm, alpha, eps, final_norm, G, backward):
    """One network forward (and backward): a dict of per-block statistics (float64)."""
    L = len(Ws)
    dt = x.dtype
    B, n = x.shape
    st = {k: np.full(L, np.nan) for k in RESNET_STATISTICS if k != "grad_input_m2"}
    st["grad_input_m2"] = np.nan
    mlp = W2s is not None
    keep = []  # per block: (branch input, z, LN output, sigma) for backward
    h = x
    for l in range(L):
        u = sig = None
        if norm == "pre":
            u, sig, s2 = layer_norm(h, eps)
            st["ln_in_var"][l] = float(s2.mean())
            inp = u
        else:
            inp = h
        z = inp @ Ws[l].T
        z += bs[l].astype(dt)
        st["preact_mean"][l], st["preact_m2"][l], st["preact_var"][l] = _moments(z)
        st["frac_inactive"][l] = float(np.count_nonzero(z <= 0)) / z.size
        a = act.f(z).astype(dt, copy=False)
        if mlp:
            y = a @ W2s[l].T
            y += b2s[l].astype(dt)
        else:
            y = a
        st["branch_mean"][l], st["branch_m2"][l], st["branch_var"][l] = _moments(y)
        t = h + dt.type(alpha) * y
        if norm == "post":
            u, sig, s2 = layer_norm(t, eps)
            st["ln_in_var"][l] = float(s2.mean())
            h_new = u
        else:
            h_new = t
        st["h_mean"][l], st["h_m2"][l], st["h_var"][l] = _moments(h_new)
        keep.append((inp, z, u, sig))
        h = h_new
    if not backward:
        return st
    out = h
    uf = sf = None
    if final_norm:
        uf, sf, _ = layer_norm(h, eps)
        out = uf
    g = np.asarray(G, dtype=dt).reshape(out.shape)
    if final_norm:
        g = layer_norm_backward(g, uf, sf)
    m = Ws[0].shape[0]
    for l in range(L - 1, -1, -1):
        inp, z, u, sig = keep[l]
        st["grad_h_m2"][l] = float(_rowsq(g).sum()) / g.size
        gt = layer_norm_backward(g, u, sig) if norm == "post" else g
        gy = dt.type(alpha) * gt
        dphi = act.df(z).astype(dt, copy=False)
        if mlp:
            a = act.f(z).astype(dt, copy=False)
            st["grad_weight2_m2_per_sample"][l] = float(np.mean(_rowsq(gy) * _rowsq(a))) / (n * m)
            delta = (gy @ W2s[l]) * dphi
        else:
            delta = gy * dphi
        rd = _rowsq(delta)
        st["grad_preact_m2"][l] = float(rd.sum()) / delta.size
        st["grad_weight_m2_per_sample"][l] = float(np.mean(rd * _rowsq(inp))) / (m * n)
        gin = delta @ Ws[l]
        if norm == "pre":
            g = g + layer_norm_backward(gin, u, sig)
        else:
            g = gt + gin
    st["grad_input_m2"] = float(_rowsq(g).sum()) / g.size
    return st


def _check_choice(value, name, choices):
    if not isinstance(value, str):
        raise TypeError(f"{name} must be one of {', '.join(map(repr, choices))}, got {type(value).__name__}")
    if value not in choices:
        raise InitArgumentError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def simulate_resnet(*, depth, width, batch=1024, norm="pre", block="linear", hidden=None, residual_scale=1.0,
                    eps=1e-5, final_norm=None, activation="relu", activation_param=None, activation_derivative=None,
                    init="kaiming_normal", init_params=None, bias="zeros", bias_value=0.0, bias_std=0.0,
                    input_mean=0.0, input_std=1.0, n_networks=1, seed=0, backward=True, G=None,
                    dtype="float32", theory=True):
    r"""Simulate deep residual stacks with LayerNorm at initialization, block by block.

    Blocks :math:`l = 1..L` on a stream of width ``n``, :math:`h_0 = x`, inputs i.i.d.
    :math:`\mathcal N(\mu_x, \sigma_x^2)`:

    .. math::
        \text{pre-LN:}\quad h_l = h_{l-1} + \alpha f(\mathrm{LN}(h_{l-1})), \qquad
        \text{post-LN:}\quad h_l = \mathrm{LN}(h_{l-1} + \alpha f(h_{l-1})),

    (``norm="none"``: :math:`h_l = h_{l-1} + \alpha f(h_{l-1})`), with the branch
    :math:`f(u) = \phi(u W_l^\top + b_l)` (``block="linear"``) or, as in a transformer's MLP,
    :math:`f(u) = \phi(u W_{1,l}^\top + b_{1,l}) W_{2,l}^\top + b_{2,l}` (``block="mlp"``, hidden width
    ``hidden``). :math:`\mathrm{LN}(t) = (t - \bar t)/\sqrt{s^2 + \epsilon}` per sample (torch's
    LayerNorm at its init values). Backward, the loss is :math:`\ell_b = \sum_k G_{bk} o_{bk}` with
    :math:`o = h_L` or :math:`\mathrm{LN}(h_L)` (``final_norm``) and :math:`G` i.i.d. N(0, 1);
    LayerNorm is differentiated by hand (:func:`layer_norm_backward`).

    Statistics (length-L arrays, pooled over ``batch x width`` entries, mean over networks):
    ``h_mean/h_var/h_m2`` of :math:`h_l`; ``ln_in_var`` the mean over samples of the per-sample variance
    entering block l's LayerNorm (:math:`h_{l-1}` pre-LN, :math:`h_{l-1} + \alpha f` post-LN; NaN for
    ``"none"``); ``preact_mean/var/m2`` and ``frac_inactive`` of the branch's first pre-activation
    :math:`z_l`; ``branch_mean/var/m2`` of :math:`f` (before :math:`\alpha`); ``grad_h_m2``
    :math:`E[(\partial\ell/\partial h_l)^2]`; ``grad_preact_m2`` :math:`E[(\partial\ell/\partial z_l)^2]`;
    ``grad_weight_m2_per_sample`` and ``grad_weight2_m2_per_sample`` the mean squared entry of the
    per-sample gradient of :math:`W_l` (:math:`W_{1,l}`) and of :math:`W_{2,l}` (NaN for the linear block);
    and the scalar ``grad_input_m2``. ``res.theory`` holds :func:`fastinit.theory.resnet_theory`.

    Parameters
    ----------
    depth, width : int
        Number of blocks L and stream width n (>= 2 with a LayerNorm).
    batch : int
    norm : {"pre", "post", "none"}
    block : {"linear", "mlp"}
    hidden : int, optional
        Hidden width of the mlp block (default ``width``; transformers use ``4 * width``).
    residual_scale : float
        :math:`\alpha`.
    eps : float
        LayerNorm's :math:`\epsilon` (> 0; torch's default 1e-5).
    final_norm : bool, optional
        LayerNorm on :math:`h_L` before the loss (default: True for pre-LN, as GPT-2 and Xiong et al. 2020,
        False otherwise).
    activation, activation_param, activation_derivative, init, init_params, bias, bias_value, bias_std,
    input_mean, input_std, n_networks, seed, backward, G, dtype, theory :
        As :func:`simulate_mlp`. Every linear of every block uses ``init`` with its torch fans
        (``W``: ``(hidden, width)``, ``W_2``: ``(width, hidden)``) and the bias spec.

    Returns
    -------
    ResNetResult

    Raises
    ------
    TypeError, ValueError
        A bad argument; the message names it (``norm="mid"``, ``eps=0``, ``width=1`` with a LayerNorm,
        ``hidden`` with the linear block, ...).
    MemoryError
        The estimated memory (about ``depth x batch x (2 width + hidden)`` entries) exceeds what is available.

    Examples
    --------
    Pre-LN, transformer MLP block with ReLU and He weights: the stream's variance grows by
    :math:`\alpha^2 \sigma_{w_2}^2 E[\mathrm{relu}(z)^2] = 2` per block, linearly in depth.

    >>> from fastinit.sim import simulate_resnet
    >>> r = simulate_resnet(depth=8, width=256, batch=256, norm="pre", block="mlp", seed=0)
    >>> r.theory["h_var"].round(3)
    array([ 3.,  5.,  7.,  9., 11., 13., 15., 17.])
    >>> r.h_var.round()                                    # one network of width 256
    array([ 3.,  5.,  7.,  8., 10., 12., 14., 16.])
    >>> bool(abs(r.h_var[-1] / 17 - 1) < 0.1)
    True
    """
    L = integer(depth, "depth", minimum=1)
    n = integer(width, "width", minimum=1)
    B = integer(batch, "batch", minimum=1)
    norm = _check_choice(norm, "norm", ("pre", "post", "none"))
    block = _check_choice(block, "block", ("linear", "mlp"))
    if norm != "none" and n < 2:
        raise InitArgumentError(f"width must be >= 2 with a LayerNorm (norm={norm!r}): one feature always "
                                f"normalises to 0, got width={n}")
    if hidden is not None and block != "mlp":
        raise InitArgumentError("hidden is the hidden width of block='mlp'; the linear block has none")
    m = n if hidden is None else integer(hidden, "hidden", minimum=1)
    alpha = real(residual_scale, "residual_scale")
    eps = real(eps, "eps", minimum=0.0)
    if eps <= 0.0:
        raise InitArgumentError(f"eps must be > 0 (LayerNorm divides by sqrt(var + eps)), got {eps!r}")
    final_norm = (norm == "pre") if final_norm is None else bool(final_norm)
    dt = check_dtype(dtype)
    sact = resolve_activation(activation, activation_param, activation_derivative)
    act = theory_activation(sact.spec, sact.theory_param)
    key, scheme, params = resolve_scheme(init, init_params, dt)
    bias, bias_value, bias_std, input_mean, input_std, n_networks, seed = network_args(
        bias, bias_value, bias_std, input_mean, input_std, n_networks, seed)
    if G is not None:
        G = check_array(G, "G", (B, n))
    check_memory((L * B * (2 * n + m) + 6 * B * max(n, m) + L * 2 * n * m) * dt.itemsize + 4 * B * max(n, m) * 8,
                 f"simulate_resnet(depth={L}, width={n}, hidden={m}, batch={B}, dtype={dt.name})")

    def bias_vec(size, k, l, kind):
        if bias == "normal":
            return random_normal((size,), 0.0, bias_std, seed, stream(k, l, kind), np.float64)
        return np.full(size, bias_value, dtype=np.float64)

    per = {s: [] for s in RESNET_STATISTICS}
    mlp = block == "mlp"
    for k in range(n_networks):
        with blas_threads(B, [n, m]):
            Ws = [make_weight((m, n), scheme, params, seed, stream(k, l + 1, KIND_WEIGHT), dt) for l in range(L)]
            W2s = ([make_weight((n, m), scheme, params, seed, stream(k, l + 1, KIND_WEIGHT2), dt)
                    for l in range(L)] if mlp else None)
        bs = [bias_vec(m, k, l + 1, KIND_BIAS) for l in range(L)]
        b2s = [bias_vec(n, k, l + 1, KIND_BIAS2) for l in range(L)] if mlp else None
        x0 = random_normal((B, n), input_mean, input_std, seed, stream(k, 0, KIND_INPUT), dt)
        Gk = G if G is not None else (
            random_normal((B, n), 0.0, 1.0, seed, stream(k, 0, KIND_SEED_G), dt) if backward else None)
        with np.errstate(over="ignore", invalid="ignore", under="ignore"), blas_threads(B, [n, m]):
            out = resnet_pass(x0, Ws, bs, W2s, b2s, act, norm, alpha, eps, final_norm, Gk, backward)
        for s in RESNET_STATISTICS:
            per[s].append(out[s])
    per = {s: np.array(v, dtype=np.float64) for s, v in per.items()}
    stats, stderr = summarise(per, RESNET_STATISTICS)
    config = dict(depth=L, width=n, hidden=m, batch=B, norm=norm, block=block, residual_scale=alpha, eps=eps,
                  final_norm=final_norm, activation=sact.name, activation_param=sact.param, init=key,
                  init_params=params, bias=bias, bias_value=bias_value, bias_std=bias_std, input_mean=input_mean,
                  input_std=input_std, n_networks=n_networks, seed=seed, backward=bool(backward), dtype=dt.name)
    th = {s: (np.array(np.nan) if s == "grad_input_m2" else np.full(L, np.nan)) for s in RESNET_STATISTICS}
    if theory:
        wm1, wv1 = weight_moments((m, n), scheme, params)
        wm2, wv2 = weight_moments((n, m), scheme, params) if mlp else (0.0, 0.0)
        if wm1 != 0.0 or wm2 != 0.0:
            config["theory_note"] = "mean-field theory needs zero-mean weights"
        else:
            th = resnet_theory(n, L, act, norm=norm, block=block, hidden=m, weight_var=wv1, weight2_var=wv2,
                               bias_mean=bias_value if bias == "constant" else 0.0, bias_var=bias_std ** 2,
                               input_mean=input_mean, input_std=input_std, residual_scale=alpha, eps=eps,
                               final_norm=final_norm)
            config["theory_note"] = ""
    return ResNetResult(np.arange(1, L + 1), stats, stderr, per, th, config, [], "layer")
