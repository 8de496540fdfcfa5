r"""Deep convolutional stacks (:func:`simulate_cnn`): circular padding, stride 1, equal channels, 1-D or 2-D,
computed as im2col + one GEMM per layer (backward: the same with the flipped, transposed kernel), and the
delta-orthogonal kernel of Xiao et al. (2018) (:func:`delta_orthogonal_`).

Arrays are channels-last, ``(N, *spatial, c)``, so a convolution is ``cols @ W.reshape(c, c K).T`` with
``cols[(n, p), (i, t)] = a[n, p + t - left, i]`` (circular), ``left = (k - 1) // 2`` per axis (torch's
``padding="same"`` split), exactly what ``torch.nn.functional.conv1d/conv2d`` computes on the input padded
circularly by ``(left, k - 1 - left)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from fastinit import init as fi
from fastinit._checks import InitArgumentError, integer, real
from fastinit._generator import Generator
from fastinit.theory._architectures import CNN_STATISTICS, conv_theory, corr_pattern
from fastinit.theory._common import resolve_activation as theory_activation

from ._activation import resolve_activation
from ._args import check_array, check_dtype, check_memory, network_args
from ._mlp import blas_threads
from ._results import SimulationResult, summarise
from ._schemes import (
    KIND_BIAS,
    KIND_INPUT,
    KIND_SEED_G,
    KIND_WEIGHT,
    make_weight,
    random_normal,
    resolve_scheme,
    stream,
    weight_moments,
)

__all__ = ["simulate_cnn", "CNNResult", "delta_orthogonal_", "conv_forward", "conv_input_grad", "CNN_STATISTICS"]

_DELTA = ("delta_orthogonal", "delta_orth")


@dataclass(repr=False)
class CNNResult(SimulationResult):
    """Result of :func:`simulate_cnn` (see :class:`~fastinit.sim.SimulationResult`).

    ``profiles["corr_profile"]`` (with ``input_corr``): shape ``(L, *spatial)``, the mean over networks of
    each position's correlation between the two inputs of a pair; ``theory_profiles`` its prediction.
    """

    profiles: dict = field(default_factory=dict)
    theory_profiles: dict = field(default_factory=dict)

    def to_table(self, stats=None, every=1, fmt="{:.4g}"):
        """Text table, one row per layer (default columns: ``preact_var``, ``post_m2``, ``grad_preact_m2``
        and, with pairs, ``corr`` and ``corr_pattern``)."""
        if stats is None:
            stats = ["preact_var", "post_m2", "grad_preact_m2"]
            if np.isfinite(self.stats["corr"]).any():
                stats += ["corr", "corr_pattern"]
        return super().to_table(stats=list(stats), every=every, fmt=fmt)


def delta_orthogonal_(w, gain=1.0, generator=None):
    r"""Fill a 3-D/4-D convolution kernel ``(c_out, c_in, k[, k])`` with a delta-orthogonal kernel.

    Xiao et al. (2018), algorithm 1 with a plain orthogonal matrix at the centre: every tap is zero
    except the centre one, :math:`W[:, :, c] = \text{gain}\cdot H` with :math:`H` a random
    ``(c_out, c_in)`` matrix with orthonormal rows or columns (:func:`fastinit.init.orthogonal_`). It is
    built as :math:`W = H \cdot D`, the channel contraction of ``H`` with the identity convolution
    ``D = fastinit.init.dirac_`` on ``(c_in, c_in, k[, k])``, so the centre is ``dirac_``'s (``k // 2``
    per axis). A circular stride-1 convolution with this kernel is the fully-connected layer ``H`` applied
    at every position.

    Parameters
    ----------
    w : numpy.ndarray
        ``(c_out, c_in, k)`` or ``(c_out, c_in, k, k)``, float32 or float64, odd ``k``. Overwritten.
    gain : float
    generator : fastinit.Generator, optional

    Returns
    -------
    numpy.ndarray
        ``w`` itself.

    Raises
    ------
    TypeError
        ``w`` is not a numpy array.
    InitArgumentError
        ``w`` not 3-D/4-D, or an even kernel size (the identity would sit off-centre).

    Examples
    --------
    >>> import numpy as np, fastinit
    >>> from fastinit.sim import delta_orthogonal_
    >>> w = delta_orthogonal_(np.empty((4, 4, 3)), generator=fastinit.Generator(0))
    >>> float(np.abs(w[:, :, [0, 2]]).max())                    # only the centre tap
    0.0
    >>> bool(np.allclose(w[:, :, 1] @ w[:, :, 1].T, np.eye(4)))
    True
    """
    if not isinstance(w, np.ndarray):
        raise TypeError(f"w must be a numpy array (c_out, c_in, k[, k]), got {type(w).__name__}")
    if w.ndim not in (3, 4):
        raise InitArgumentError(f"w must be 3-D or 4-D (c_out, c_in, k[, k]), got shape {w.shape}")
    ks = w.shape[2:]
    if any(k % 2 == 0 for k in ks):
        raise InitArgumentError(f"kernel_size must be odd for a delta-orthogonal kernel (the identity sits at "
                                f"the centre tap), got {ks}")
    gain = real(gain, "gain")
    H = np.empty(w.shape[:2], dtype=w.dtype)
    fi.orthogonal_(H, gain, generator=generator)
    D = fi.dirac_(np.empty((w.shape[1], w.shape[1]) + ks, dtype=w.dtype))
    w[...] = np.tensordot(H, D, axes=(1, 0))
    return w


def _cols(a, k, left):
    """im2col of channels-last ``a`` (N, *spatial, c): (N * S, c * k^d), circular, ordered (channel, taps)."""
    d = a.ndim - 2
    pad = [(0, 0)] + [(left, k - 1 - left)] * d + [(0, 0)]
    ap = np.pad(a, pad, mode="wrap")
    win = sliding_window_view(ap, (k,) * d, axis=tuple(range(1, d + 1)))  # (N, *spatial, c, k[, k])
    return win.reshape(-1, a.shape[-1] * k ** d)


def conv_forward(a, W):
    """Circular, stride-1 convolution of channels-last ``a`` (N, *spatial, c_in) with the torch-layout kernel
    ``W`` (c_out, c_in, k[, k]): (N, *spatial, c_out)."""
    k = W.shape[2]
    z = _cols(a, k, (k - 1) // 2) @ W.reshape(W.shape[0], -1).T
    return z.reshape(a.shape[:-1] + (W.shape[0],))


def conv_input_grad(delta, W):
    """Gradient of :func:`conv_forward` with respect to its input: the correlation of ``delta`` with the
    flipped, transposed kernel, padded ``(k - 1 - left, left)``."""
    k = W.shape[2]
    d = W.ndim - 2
    Wf = np.ascontiguousarray(np.flip(W.swapaxes(0, 1), axis=tuple(range(2, 2 + d))))
    g = _cols(delta, k, k - 1 - (k - 1) // 2) @ Wf.reshape(Wf.shape[0], -1).T
    return g.reshape(delta.shape[:-1] + (W.shape[1],))


def _pooled(a):
    a64 = a.astype(np.float64, copy=False).reshape(-1)
    m = float(a64.mean())
    return m, float(a64 @ a64) / a64.size


def cnn_pass(x, Ws, bs, act, G, backward, rho):
    """One network forward (and backward): per-layer statistics and, for pairs, the correlation profiles."""
    L = len(Ws)
    dt = x.dtype
    st = {s: np.full(L, np.nan) for s in CNN_STATISTICS if s != "grad_input_m2"}
    st["grad_input_m2"] = np.nan
    paired = rho is not None
    prof = np.empty((L,) + x.shape[1:-1]) if paired else None
    zs = []
    a = x
    for l in range(L):
        z = conv_forward(a, Ws[l])
        z += bs[l].astype(dt)
        m, m2 = _pooled(z)
        st["preact_mean"][l], st["preact_m2"][l], st["preact_var"][l] = m, m2, m2 - m * m
        st["frac_inactive"][l] = float(np.count_nonzero(z <= 0)) / z.size
        a = act.f(z).astype(dt, copy=False)
        st["post_m2"][l] = _pooled(a)[1]
        if paired:
            B = z.shape[0] // 2
            z1 = z[:B].astype(np.float64)
            z2 = z[B:].astype(np.float64)
            ax = (0, z.ndim - 1)
            c = (z1 * z2).sum(axis=ax) / np.sqrt((z1 * z1).sum(axis=ax) * (z2 * z2).sum(axis=ax))
            prof[l] = c
            st["corr"][l], st["corr_spread"][l] = float(c.mean()), float(c.std())
            st["corr_pattern"][l] = float(corr_pattern(c, rho))
        zs.append(z)
    if backward:
        g = np.asarray(G, dtype=dt).reshape(a.shape)
        for l in range(L - 1, -1, -1):
            delta = g * act.df(zs[l]).astype(dt, copy=False)
            st["grad_preact_m2"][l] = _pooled(delta)[1]
            g = conv_input_grad(delta, Ws[l])
        st["grad_input_m2"] = _pooled(g)[1]
    return st, prof


def _spatial(spatial):
    if isinstance(spatial, (int, np.integer)) and not isinstance(spatial, bool):
        return (integer(spatial, "spatial", minimum=1),)
    if not isinstance(spatial, (tuple, list)):
        raise TypeError(f"spatial must be an int (1-D) or a tuple of 1 or 2 ints (2-D), got {spatial!r}")
    if len(spatial) not in (1, 2):
        raise InitArgumentError(f"spatial must be an int (1-D) or a tuple of 1 or 2 ints (2-D), got {spatial!r}")
    return tuple(integer(s, f"spatial[{i}]", minimum=1) for i, s in enumerate(spatial))


def _input_corr(input_corr, sp):
    if input_corr is None:
        return None
    if isinstance(input_corr, str):
        if input_corr != "cosine":
            raise InitArgumentError(f"input_corr must be a number, an array of shape spatial or 'cosine', "
                                    f"got {input_corr!r}")
        p = np.arange(sp[0]).reshape((-1,) + (1,) * (len(sp) - 1))
        rho = np.broadcast_to(0.5 + 0.4 * np.cos(2 * np.pi * p / sp[0]), sp).copy()
    elif np.ndim(input_corr) == 0:
        rho = np.full(sp, real(input_corr, "input_corr"))
    else:
        rho = check_array(input_corr, "input_corr", sp).astype(np.float64)
    if np.any(np.abs(rho) > 1):
        raise InitArgumentError("input_corr: correlations must lie in [-1, 1]")
    return rho


def simulate_cnn(*, depth, channels, kernel_size=3, spatial=32, batch=64, activation="tanh", activation_param=None,
                 activation_derivative=None, init="kaiming_normal", init_params=None, bias="zeros", bias_value=0.0,
                 bias_std=0.0, input_mean=0.0, input_std=1.0, input_corr=None, n_networks=1, seed=0,
                 backward=True, dtype="float32", theory=True):
    r"""Simulate a deep stack of circular, stride-1 convolutions at initialization, layer by layer.

    .. math::
        z_l = W_l \star a_{l-1} + b_l, \qquad a_l = \phi(z_l), \qquad a_0 = x,

    ``channels`` in and out at every layer, kernel ``k`` (``k x k`` in 2-D), spatial size kept by circular
    padding. Kernels come from :mod:`fastinit.init` by name with torch's conventions on
    ``(c, c, k[, k])`` (``fan_in = c k^d``: ``kaiming_normal``, ``xavier_normal``, ``orthogonal`` of the
    flattened ``(c, c k^d)`` matrix, ...) or are ``"delta_orthogonal"`` (:func:`delta_orthogonal_`,
    ``init_params={"gain": g}``). Inputs are i.i.d. :math:`\mathcal N(\mu_x, \sigma_x^2)`; backward the loss is
    :math:`\sum G \cdot a_L` with :math:`G` i.i.d. N(0, 1).

    With ``input_corr`` the batch is ``batch`` *pairs* :math:`(x, x')` with
    :math:`x' - \mu_x = \rho(p)(x - \mu_x) + \sqrt{1 - \rho(p)^2}\,\sigma_x \xi` at each position ``p``, and
    ``corr`` is the mean over positions of :math:`c_l(p) = \sum z z' / \sqrt{\sum z^2 \sum z'^2}` (sums over
    pairs and channels at ``p``), ``corr_spread`` their standard deviation over positions (biased upwards by
    sampling noise), ``corr_pattern`` the component of :math:`c_l(p)` along the input's pattern
    :math:`\rho(p)` (:func:`fastinit.theory.corr_pattern`: how much of the input's spatial pattern survives;
    unbiased, NaN for a constant :math:`\rho`), ``res.profiles["corr_profile"]`` the whole profile.

    Statistics (pooled over every entry of a layer, mean over networks): ``preact_mean/var/m2``,
    ``post_m2``, ``frac_inactive``, ``corr``, ``corr_spread``, ``corr_pattern`` (NaN without pairs),
    ``grad_preact_m2`` and the scalar ``grad_input_m2``. ``res.theory`` is :func:`fastinit.theory.conv_theory`.

    Parameters
    ----------
    depth, channels : int
    kernel_size : int
        ``k`` (odd for ``"delta_orthogonal"``).
    spatial : int or tuple of int
        ``s`` (1-D) or ``(s1, s2)`` (2-D).
    batch : int
        Inputs (pairs with ``input_corr``).
    input_corr : float, array of shape ``spatial``, or "cosine", optional
        Per-position correlation of the pairs; ``"cosine"`` is :math:`0.5 + 0.4\cos(2\pi p_1/s_1)`.
    activation, activation_param, activation_derivative, init, init_params, bias, bias_value, bias_std,
    input_mean, input_std, n_networks, seed, backward, dtype, theory :
        As :func:`simulate_mlp` (biases are per channel).

    Returns
    -------
    CNNResult

    Raises
    ------
    TypeError, ValueError
        A bad argument, named in the message (even ``kernel_size`` with ``"delta_orthogonal"``,
        ``spatial=(4, 4, 4)``, ``input_corr`` outside [-1, 1], ...).
    MemoryError
        The estimate (``depth x batch x S x channels`` stored pre-activations plus the im2col buffer of
        ``batch x S x channels x k^d``) exceeds the available memory.

    Examples
    --------
    At the tanh critical point :math:`\sigma_w^2 = 1`, 60 layers: a delta-orthogonal stack keeps the spatial
    pattern of the pairs' correlation, Gaussian kernels average it away (theory.md §2.10).

    >>> from fastinit.sim import simulate_cnn
    >>> kw = dict(depth=60, channels=64, kernel_size=3, spatial=16, batch=32, input_corr="cosine", seed=0)
    >>> d = simulate_cnn(init="delta_orthogonal", **kw)
    >>> g = simulate_cnn(init="xavier_normal", **kw)
    >>> round(float(d.corr_pattern[-1]), 3), round(float(d.theory["corr_pattern"][-1]), 3)
    (0.269, 0.274)
    >>> round(float(g.corr_pattern[-1]), 3), round(float(g.theory["corr_pattern"][-1]), 3)
    (0.007, 0.012)
    """
    L = integer(depth, "depth", minimum=1)
    c = integer(channels, "channels", minimum=1)
    k = integer(kernel_size, "kernel_size", minimum=1)
    sp = _spatial(spatial)
    B = integer(batch, "batch", minimum=1)
    dt = check_dtype(dtype)
    sact = resolve_activation(activation, activation_param, activation_derivative)
    act = theory_activation(sact.spec, sact.theory_param)
    d = len(sp)
    shape = (c, c) + (k,) * d
    if not isinstance(init, str):
        raise TypeError(f"init must be a weight-scheme name, got {type(init).__name__}")
    delta = init.strip().lower().rstrip("_").replace("-", "_") in _DELTA
    if delta:
        if k % 2 == 0:
            raise InitArgumentError(f"kernel_size must be odd for init='delta_orthogonal' (the identity sits at "
                                    f"the centre tap), got {k}")
        extra = set(init_params or {}) - {"gain"}
        if extra:
            raise InitArgumentError(f"init_params: {sorted(extra)} not parameters of init='delta_orthogonal' "
                                    f"(allowed: gain)")
        key, gain = "delta_orthogonal", real((init_params or {}).get("gain", 1.0), "init_params['gain']")
        scheme = params = None
    else:
        key, scheme, params = resolve_scheme(init, init_params, dt)
    bias, bias_value, bias_std, input_mean, input_std, n_networks, seed = network_args(
        bias, bias_value, bias_std, input_mean, input_std, n_networks, seed)
    rho = _input_corr(input_corr, sp)
    S = int(np.prod(sp))
    N = 2 * B if rho is not None else B
    check_memory((L * N * S * c + N * S * c * k ** d * 2 + 6 * N * S * c) * dt.itemsize,
                 f"simulate_cnn(depth={L}, channels={c}, kernel_size={k}, spatial={sp}, batch={N}, dtype={dt.name})")

    per = {s: [] for s in CNN_STATISTICS}
    profs = []
    for net in range(n_networks):
        with blas_threads(N * S, [c * k ** d, c]):  # one BLAS thread for small GEMMs (see _passes)
            Ws = []
            for l in range(L):
                sid = stream(net, l + 1, KIND_WEIGHT)
                if delta:
                    g = Generator(seed).set_state((seed, sid))
                    Ws.append(delta_orthogonal_(np.empty(shape, dtype=dt), gain, generator=g))
                else:
                    Ws.append(make_weight(shape, scheme, params, seed, sid, dt))
            bs = [random_normal((c,), 0.0, bias_std, seed, stream(net, l + 1, KIND_BIAS), np.float64)
                  if bias == "normal" else np.full(c, bias_value) for l in range(L)]
            x = random_normal((B,) + sp + (c,), input_mean, input_std, seed, stream(net, 0, KIND_INPUT), dt)
            if rho is not None:
                xi = random_normal((B,) + sp + (c,), 0.0, input_std, seed, stream(net, 1, KIND_INPUT), dt)
                r = rho[None, ..., None]
                x2 = input_mean + r * (x - input_mean) + np.sqrt(1.0 - r * r) * xi
                x = np.concatenate([x, x2.astype(dt)])
            G = random_normal(x.shape, 0.0, 1.0, seed, stream(net, 0, KIND_SEED_G), dt) if backward else None
            with np.errstate(over="ignore", invalid="ignore", under="ignore"):
                st, prof = cnn_pass(x, Ws, bs, act, G, backward, rho)
        for s in CNN_STATISTICS:
            per[s].append(st[s])
        if prof is not None:
            profs.append(prof)
    per = {s: np.array(v, dtype=np.float64) for s, v in per.items()}
    stats, stderr = summarise(per, CNN_STATISTICS)
    config = dict(depth=L, channels=c, kernel_size=k, spatial=sp, batch=B, paired=rho is not None,
                  activation=sact.name, activation_param=sact.param, init=key,
                  init_params={"gain": gain} if delta else params, bias=bias, bias_value=bias_value,
                  bias_std=bias_std, input_mean=input_mean, input_std=input_std, n_networks=n_networks, seed=seed,
                  backward=bool(backward), dtype=dt.name)
    th = {s: (np.array(np.nan) if s == "grad_input_m2" else np.full(L, np.nan)) for s in CNN_STATISTICS}
    th_prof = {}
    if theory:
        if delta:
            wm, sw2 = 0.0, gain ** 2
        else:
            wm, wv = weight_moments(shape, scheme, params)
            sw2 = wv * c * k ** d
        if wm != 0.0:
            config["theory_note"] = "mean-field theory needs zero-mean weights"
        else:
            t = conv_theory(c, L, k, d, act, sigma_w2=sw2, bias_mean=bias_value if bias == "constant" else 0.0,
                            bias_var=bias_std ** 2, input_mean=input_mean, input_std=input_std, delta=delta,
                            input_corr=rho)
            th = {s: t[s] for s in CNN_STATISTICS}
            if "corr_profile" in t:
                th_prof["corr_profile"] = t["corr_profile"]
            config["theory_note"] = ""
    res = CNNResult(np.arange(1, L + 1), stats, stderr, per, th, config, [], "layer")
    if profs:
        res.profiles["corr_profile"] = np.mean(profs, axis=0)
    res.theory_profiles.update(th_prof)
    return res
