r"""Pairs of inputs through the same random networks: the correlation map and its depth scale, simulated.

:func:`simulate_correlation` measures what :func:`fastinit.theory.correlation_trajectory` predicts.
Each of ``n_networks`` networks receives ``pairs`` pairs of inputs :math:`(x_a, x_b)` of squared length
:math:`\|x\|^2 = n_0 q_0` and cosine exactly :math:`c_0` (a random plane per pair), and per layer

.. math::
    \hat q_l = \frac{\|z_a\|^2 + \|z_b\|^2}{2 n_l}, \qquad
    1 - \hat c_l = \frac{\|z_a - z_b\|^2 - (\|z_a\| - \|z_b\|)^2}{2 \|z_a\| \|z_b\|}

(the second form keeps the digits of :math:`1 - c` when :math:`c \to 1`), averaged over the pairs of a
network; means and standard errors are across networks. A tangent vector rides along each pair's first
input, :math:`\delta_{l+1} = (\phi'(z_l) \odot \hat\delta_l) W_{l+1}^T` with :math:`\hat\delta_l`
rescaled to unit mean square: :math:`\|\delta_{l+1}\|^2 / n_{l+1}` is the growth of a small perturbation
from layer l to l + 1, whose mean-field value is :math:`\chi_1(q_l) = \sigma_w^2 E[\phi'(z_l)^2]`.

All rows of a network (``2 * pairs`` inputs, ``pairs`` tangents, and in :func:`run_pairs` every
configuration of a grid) go through one BLAS GEMM per layer. A grid of :math:`(\sigma_w^2, \sigma_b^2)`
shares each network's unit draws :math:`W = \sigma_w G`, :math:`b = \sigma_b g` (common random numbers:
every configuration's network is an exact draw from its law, and neighbouring cells differ only through
:math:`\sigma_w, \sigma_b`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

import numpy as np
from scipy import optimize

from fastinit._checks import InitArgumentError, integer, real
from fastinit.theory import correlation_trajectory, criticality
from fastinit.theory._common import resolve_activation as theory_activation
from fastinit.theory._correlations import check_pair, check_sigmas

from ._activation import resolve_activation
from ._args import check_dtype, check_memory, check_seed
from ._passes import blas_threads_for
from ._results import SimulationResult
from ._schemes import (
    KIND_BIAS,
    KIND_INPUT,
    KIND_WEIGHT,
    make_weight,
    random_normal,
    resolve_scheme,
    stream,
    weight_moments,
)

__all__ = ["simulate_correlation", "CorrelationResult", "fit_depth_scale", "run_pairs", "CORRELATION_STATISTICS"]

#: Per-layer statistics of :func:`simulate_correlation`.
CORRELATION_STATISTICS = ("q", "c", "one_minus_c", "chi_1")


@dataclass(repr=False)
class CorrelationResult(SimulationResult):
    """Result of :func:`simulate_correlation`: a :class:`SimulationResult` (``q``, ``c``,
    ``one_minus_c``, ``chi_1`` per layer, with ``stderr``, ``per_network`` and ``theory``) and

    Attributes
    ----------
    fit : dict
        :func:`fit_depth_scale` of the mean simulated :math:`c_l` (``xi_c``, ``rate``, ``c_inf``,
        ``first``, ``last``); ``xi_c_networks``, the fit of each network alone, and ``xi_c_se``, their
        standard error (finite fits only); ``xi_c_theory_fit``: the same fit of the mean-field trajectory.
    asymptotic : dict
        :func:`fastinit.theory.criticality` of the configuration (``q_star, c_star, chi_1, chi_c,
        xi_q, xi_c, phase, ...``); empty without theory.
    """

    fit: dict = field(default_factory=dict)
    asymptotic: dict = field(default_factory=dict)


def fit_depth_scale(c, se=None, *, first=1):
    r"""Depth scale of the approach of :math:`c_l` to its limit: a fit of :math:`c_l = c_\infty + A r^l`.

    Near the fixed point :math:`c_l - c^* \propto \chi_c^l`. The three parameters are fitted by weighted
    least squares (``scipy.optimize.curve_fit``, :math:`\sigma_l` = ``se``) over the layers from
    ``first`` on; :math:`c_\infty` is free, so a finite network's :math:`O(1/n)` offset of its limit
    does not bend the fit, and :math:`\xi_c = -1 / \ln r`. Without a transient (``c_0`` near
    :math:`c^*`, or ``first`` past it) :math:`r = \chi_c`; otherwise the fit is an effective rate,
    which is why :func:`simulate_correlation` fits the mean-field trajectory the same way.

    Parameters
    ----------
    c : (L,) array_like
        :math:`c_l`, l = 1..L.
    se : (L,) array_like, optional
        Standard errors of ``c``; without them (or where they are 0 or NaN) the weights are equal.
    first : int
        First layer used (1-based).

    Returns
    -------
    dict
        ``xi_c`` (``inf`` when :math:`r \ge 1`; NaN when the fit fails, with fewer than 4 layers, or
        when ``c`` does not move), ``xi_c_se`` (from the fit's covariance), ``rate`` (:math:`r`),
        ``c_inf``, ``first`` and ``last`` (the layers used).

    Examples
    --------
    >>> import math
    >>> c = 0.2 + 0.7 * 0.8 ** np.arange(1, 21)        # c* = 0.2, chi_c = 0.8
    >>> f = fit_depth_scale(c)
    >>> round(f["xi_c"], 6), round(-1 / math.log(0.8), 6), round(f["c_inf"], 9)
    (4.48142, 4.48142, 0.2)
    """
    c = np.asarray(c, dtype=np.float64)
    first = integer(first, "first", minimum=1)
    out = {"xi_c": math.nan, "xi_c_se": math.nan, "rate": math.nan, "c_inf": math.nan, "first": first, "last": 0}
    l = np.arange(1, c.size + 1, dtype=np.float64)
    keep = (l >= first) & np.isfinite(c)
    x, y = l[keep], c[keep]
    if x.size < 4 or np.ptp(y) <= 1e-12:
        return out
    sig = None
    if se is not None:
        s = np.asarray(se, dtype=np.float64)[keep]
        if np.all(np.isfinite(s) & (s > 0)):
            sig = s
    # start: the last value as the limit, the rate from the first and middle deviations
    d0, dm = y[0] - y[-1], y[x.size // 2] - y[-1]
    r0 = (dm / d0) ** (1.0 / (x[x.size // 2] - x[0])) if d0 != 0 and dm / d0 > 0 else 0.7
    r0 = min(max(r0, 0.05), 0.999)
    x0 = x[0]

    def model(xx, cinf, a, r):
        return cinf + a * r ** (xx - x0)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            popt, pcov = optimize.curve_fit(model, x, y, p0=(y[-1], d0 if d0 else 1e-3, r0), sigma=sig,
                                            absolute_sigma=sig is not None,
                                            bounds=([-2.0, -4.0, 1e-6], [2.0, 4.0, 2.0]), maxfev=4000)
    except (RuntimeError, ValueError):
        return out
    r = float(popt[2])
    r_se = math.sqrt(pcov[2, 2]) if np.isfinite(pcov[2, 2]) else math.nan
    out.update(rate=r, c_inf=float(popt[0]), first=int(x[0]), last=int(x[-1]))
    if r >= 1.0:
        out["xi_c"] = math.inf
    else:
        lr = math.log(r)
        out["xi_c"] = -1.0 / lr
        out["xi_c_se"] = r_se / (r * lr * lr)
    return out


def _pair_inputs(n0, pairs, q0, c0, seed, network, dtype):
    """Rows [x_a (pairs), x_b (pairs), tangent (pairs)] of one network for each cosine in ``c0`` (K,):
    shape (K, 3 pairs, n0), exact length and cosine, the same random plane per pair for every k."""
    g = random_normal((3, pairs, n0), 0.0, 1.0, seed, stream(network, 0, KIND_INPUT), np.float64)
    e1 = g[0] / np.linalg.norm(g[0], axis=1, keepdims=True)
    u = g[1] - np.sum(g[1] * e1, axis=1, keepdims=True) * e1  # Gram-Schmidt: e2 orthogonal to e1
    nu = np.linalg.norm(u, axis=1, keepdims=True)
    e2 = np.divide(u, nu, out=np.zeros_like(u), where=nu > 0)
    r = math.sqrt(n0 * q0)
    c0 = np.asarray(c0, dtype=np.float64)[:, None, None]
    X = np.empty((c0.shape[0], 3 * pairs, n0), dtype=dtype)
    X[:, :pairs] = r * e1
    X[:, pairs:2 * pairs] = r * (c0 * e1 + np.sqrt(np.maximum(1.0 - c0 * c0, 0.0)) * e2)
    X[:, 2 * pairs:] = g[2] / np.sqrt(np.mean(g[2] ** 2, axis=1, keepdims=True))
    return X


def run_pairs(widths, act, sw, sb, *, pairs, n_networks, seed, q0, c0, dtype, scheme=None, params=None):
    """Simulate every configuration ``k`` (``sw[k]``, ``sb[k]``: standard deviations; ``c0`` a number or
    one cosine per configuration) at once.

    Without ``scheme`` the weights are ``sw[k] * N(0, 1/n_in)`` (``fastinit.init.normal_``); with it they
    are ``fastinit.init.<scheme>_(**params)`` and ``sw`` must be ``[1.0]``. Biases ``sb[k] * N(0, 1)``.
    Returns per-network arrays ``q``, ``one_minus_c`` (shape ``(n_networks, K, L)``) and ``chi_1``
    (NaN at layer L). Arguments are trusted (the public functions check them).
    """
    sw = np.asarray(sw, dtype=np.float64)
    sb = np.asarray(sb, dtype=np.float64)
    K, L, P = sw.size, len(widths) - 1, pairs
    phi, dphi, p = act.phi, act.dphi, act.param
    shape = (n_networks, K, L)
    out = {"q": np.full(shape, np.nan), "one_minus_c": np.full(shape, np.nan), "chi_1": np.full(shape, np.nan)}
    for net in range(n_networks):
        A = _pair_inputs(widths[0], P, q0, np.broadcast_to(c0, (K,)), seed, net, dtype)
        for l in range(L):
            n_in, n_out = widths[l], widths[l + 1]
            if scheme is None:
                W = make_weight((n_out, n_in), "normal", {"mean": 0.0, "std": 1.0 / math.sqrt(n_in)}, seed,
                                stream(net, l + 1, KIND_WEIGHT), dtype)
            else:
                W = make_weight((n_out, n_in), scheme, params, seed, stream(net, l + 1, KIND_WEIGHT), dtype)
            b = random_normal((n_out,), 0.0, 1.0, seed, stream(net, l + 1, KIND_BIAS), np.float64)
            # small GEMMs on one BLAS thread: OpenBLAS's spinning workers and the Numba fill's would
            # otherwise wait on each other (blas_threads_for, fastinit.sim._passes)
            with blas_threads_for(2.0 * K * 3 * P * n_in * n_out):
                Z = np.matmul(A.reshape(K * 3 * P, n_in), W.T).reshape(K, 3 * P, n_out)
            Z *= sw.astype(dtype)[:, None, None]
            Z[:, :2 * P] += (sb[:, None] * b[None, :]).astype(dtype)[:, None, :]
            za, zb, dz = Z[:, :P], Z[:, P:2 * P], Z[:, 2 * P:]
            na = np.einsum("kpn,kpn->kp", za, za, dtype=np.float64)
            nb = np.einsum("kpn,kpn->kp", zb, zb, dtype=np.float64)
            diff = za - zb
            dd = np.einsum("kpn,kpn->kp", diff, diff, dtype=np.float64)
            sa, sb_ = np.sqrt(na), np.sqrt(nb)
            with np.errstate(invalid="ignore", divide="ignore"):
                omc = (dd - (na - nb) ** 2 / (sa + sb_) ** 2) / (2.0 * sa * sb_)
                omc = np.clip(omc, 0.0, 2.0)  # a zero vector (ReLU, tiny width) leaves NaN: no correlation
                out["one_minus_c"][net, :, l] = np.nanmean(omc, axis=1) if np.any(np.isfinite(omc)) else np.nan
            out["q"][net, :, l] = (na + nb).mean(axis=1) / (2.0 * n_out)
            m2 = np.einsum("kpn,kpn->kp", dz, dz, dtype=np.float64) / n_out
            if l > 0:
                out["chi_1"][net, :, l - 1] = m2.mean(axis=1)
            if l + 1 < L:  # the next layer's rows
                if A.shape[2] != n_out:
                    A = np.empty((K, 3 * P, n_out), dtype=dtype)
                A[:, :2 * P] = phi(Z[:, :2 * P], p)
                with np.errstate(invalid="ignore", divide="ignore"):
                    scale = np.where(m2 > 0, 1.0 / np.sqrt(m2), 0.0).astype(dtype)
                A[:, 2 * P:] = dphi(za, p) * dz * scale[:, :, None]
    return out


def _mean_se(a):
    """Mean and standard error across networks (axis 0), NaN where no network has a value."""
    n = a.shape[0]
    with warnings.catch_warnings(), np.errstate(invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns (chi_1 at layer L)
        m = np.nanmean(a, axis=0)
        se = np.nanstd(a, axis=0, ddof=1) / math.sqrt(n) if n > 1 else np.full(a.shape[1:], np.nan)
    return m, se


def simulate_correlation(depth, width, *, activation="tanh", activation_param=None, sigma_w2=None,
                         sigma_b2=0.0, init=None, init_params=None, q0=1.0, c0=0.0, pairs=32, n_networks=4,
                         seed=0, input_dim=None, dtype="float64", theory=True, fit_first=1):
    r"""Two inputs at a time through the same random networks: :math:`q_l`, :math:`c_l`, :math:`\chi_1`, :math:`\xi_c`.

    See the module docstring for what is measured. The weights are either
    :math:`\mathcal N(0, \sigma_w^2 / n_{l-1})` (``sigma_w2``) or any scheme of :func:`simulate_mlp`
    (``init``, ``init_params``; then :math:`\sigma_w^2 = n_{l-1} \mathrm{Var}\,W`); biases are
    :math:`\mathcal N(0, \sigma_b^2)` per unit. The mean-field prediction of every statistic is
    :func:`fastinit.theory.correlation_trajectory`, and the fitted depth scale of the simulated
    :math:`c_l` (:func:`fit_depth_scale`) is reported beside the same fit of the prediction and beside
    the asymptotic :math:`\xi_c` of :func:`fastinit.theory.criticality`.

    Degenerate settings: ``c0 = 1`` (identical inputs) gives :math:`c_l = 1` exactly and a NaN fit;
    ``sigma_w2 = 0`` with ``sigma_b2 > 0`` gives :math:`c_l = 1` from layer 1; both 0, ``c0`` outside
    [-1, 1], ``q0 <= 0`` and ``width < 2`` (one unit's "correlation" is a sign) are errors. A pair whose
    pre-activation is exactly the zero vector (ReLU without bias at a tiny width) has no correlation
    and is left out of its network's mean.

    Parameters
    ----------
    depth, width : int
        Layers L and units per layer (``width >= 2``); ``input_dim`` defaults to ``width``.
    activation, activation_param
        A registry activation name, as in :func:`simulate_mlp` (user functions are not accepted here), and
        its parameter.
    sigma_w2 : float, optional
        Weight variance times fan-in; give it or ``init``.
    sigma_b2 : float
        Bias variance.
    init, init_params : optional
        A weight scheme of :func:`simulate_mlp` instead of ``sigma_w2``.
    q0, c0 : float
        The inputs' squared length per coordinate (> 0) and their cosine (in [-1, 1]).
    pairs : int
        Pairs of inputs per network.
    n_networks : int
        Independent networks (>= 2 for standard errors and a weighted fit).
    seed : int
    dtype : {"float64", "float32"}
        GEMM precision (float64 by default: :math:`1 - c_l` is followed down to ~1e-12).
    theory : bool
        Attach the mean-field trajectory, its fit and :func:`~fastinit.theory.criticality`.
    fit_first : int
        First step of the depth-scale fit.

    Returns
    -------
    CorrelationResult

    Examples
    --------
    >>> r = simulate_correlation(8, 256, activation="tanh", sigma_w2=1.5, sigma_b2=0.05, c0=0.2,
    ...                          pairs=16, n_networks=4, seed=0)
    >>> r.theory["c"].round(3)
    array([0.226, 0.257, 0.31 , 0.37 , 0.429, 0.483, 0.533, 0.577])
    >>> bool(np.all(np.abs(r.c - r.theory["c"]) < 0.03))
    True
    >>> r.asymptotic["phase"], round(r.asymptotic["xi_c"], 2)
    ('ordered', 15.79)
    """
    sa = resolve_activation(activation, activation_param, None)
    if not isinstance(sa.spec, str):
        raise InitArgumentError("activation: simulate_correlation takes a registry activation name")
    act = theory_activation(sa.spec, sa.theory_param)
    L = integer(depth, "depth", minimum=1)
    n = integer(width, "width", minimum=1)
    if n < 2:
        raise InitArgumentError("width must be >= 2: with one unit the correlation of two pre-activations is "
                                "their sign (+-1), not an estimate of c_l")
    n0 = n if input_dim is None else integer(input_dim, "input_dim", minimum=1)
    widths = [n0] + [n] * L
    P = integer(pairs, "pairs", minimum=1)
    N = integer(n_networks, "n_networks", minimum=1)
    seed = check_seed(seed)
    dt = check_dtype(dtype)
    q0, c0 = check_pair(q0, c0)
    fit_first = integer(fit_first, "fit_first", minimum=1)
    if (init is None) == (sigma_w2 is None):
        raise InitArgumentError("give either sigma_w2 (Gaussian weights) or init (a weight scheme), not both"
                                if init is not None else "give sigma_w2 (Gaussian weights) or init (a weight scheme)")
    scheme = params = None
    sb2 = real(sigma_b2, "sigma_b2", minimum=0.0)
    if init is not None:
        name, scheme, params = resolve_scheme(init, init_params, dt)
        mom = [weight_moments((widths[l + 1], widths[l]), scheme, params) for l in range(L)]
        sw2 = [widths[l] * v for l, (_, v) in enumerate(mom)]
        if any(m != 0.0 for m, _ in mom) or max(sw2) - min(sw2) > 1e-12 * max(sw2):
            raise InitArgumentError(f"init={name!r}: the correlation map needs zero-mean weights with the same "
                                    f"sigma_w^2 = fan_in * Var W in every layer")
        sw2 = sw2[0]
        check_sigmas(sw2, sb2)
        sw_std = 1.0
    else:
        sw2, _ = check_sigmas(sigma_w2, sb2)
        sw_std = math.sqrt(sw2)
    check_memory(3 * 3 * P * max(widths) * dt.itemsize + 2 * max(widths) ** 2 * 8,
                 f"width {n}, pairs {P}")
    per = run_pairs(widths, act, [sw_std], [math.sqrt(sb2)], pairs=P, n_networks=N, seed=seed, q0=q0, c0=c0,
                    dtype=dt, scheme=scheme, params=params)
    per = {k: v[:, 0, :] for k, v in per.items()}
    per["c"] = 1.0 - per["one_minus_c"]
    stats, stderr = {}, {}
    for k in CORRELATION_STATISTICS:
        stats[k], stderr[k] = _mean_se(per[k])
    fit = fit_depth_scale(stats["c"], stderr["c"], first=fit_first)
    # the regression's own error ignores that a network's c_l wander together over layers: the standard
    # error reported is the spread of the networks' separate fits
    xs = np.array([fit_depth_scale(per["c"][k], first=fit_first)["xi_c"] for k in range(N)])
    fit["xi_c_networks"] = xs
    ok = xs[np.isfinite(xs)]
    fit["xi_c_se"] = float(ok.std(ddof=1) / math.sqrt(ok.size)) if ok.size >= 2 else math.nan
    th, asym = {}, {}
    if theory:
        t = correlation_trajectory(act, sw2, sb2, depth=L, q0=q0, c0=c0)
        chi = np.append(t["chi_1"][:-1], np.nan)
        th = {"q": t["q"], "c": t["c"], "one_minus_c": t["D"] / t["q"], "chi_1": chi}
        fit["xi_c_theory_fit"] = fit_depth_scale(t["c"], first=fit_first)["xi_c"]
        asym = criticality(act, sw2, sb2)
    config = {"depth": L, "width": n, "input_dim": n0, "activation": act.name, "activation_param": act.param,
              "sigma_w2": sw2, "sigma_b2": sb2, "init": init, "init_params": params, "q0": q0, "c0": c0,
              "pairs": P, "n_networks": N, "seed": seed, "dtype": dt.name}
    return CorrelationResult(np.arange(1, L + 1), stats, stderr, per, th, config, fit=fit, asymptotic=asym)
