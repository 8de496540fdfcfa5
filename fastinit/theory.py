r"""Mean-field predictions for randomly initialised networks.

This module computes, for a fully-connected network at initialisation, the infinite-width
("mean-field") values of every statistic :mod:`fastinit.sim` measures, plus the classical
closed forms (He, Glorot, SELU, deep linear/orthogonal nets) and the second-moment-preserving
gains.  The conventions are those of ``shared/reference/theory.md`` §0:

.. math::
    z_l = a_{l-1} W_l^\top + b_l, \qquad a_l = \phi(z_l), \qquad l = 1..L, \qquad a_0 = x,

``W_l`` has ``n_l x n_{l-1}`` i.i.d. zero-mean entries of variance :math:`s_l^2` and
:math:`\sigma_w^2 := n_{l-1} s_l^2`.  The per-sample loss is :math:`\ell_b = \sum_k G_{bk} a_{L,bk}`
with :math:`G` i.i.d. :math:`\mathcal N(0, 1)`.

Gaussian expectations :math:`E[f(\mu + \sqrt v\,\xi)]`, :math:`\xi \sim \mathcal N(0,1)`, are
computed by one of three rules (``method=``):

``"hermite"``
    probabilists' Gauss-Hermite (``numpy.polynomial.hermite_e.hermegauss``).  Spectrally
    accurate for smooth ``f`` at moderate ``v``; only algebraically convergent at kinks.
``"split"``
    composite Gauss-Legendre on :math:`\xi \in [-12, 12]` (the tail beyond carries
    :math:`< 10^{-31}` of the mass), split at the kinks of ``phi`` and at the points where
    ``phi`` changes shape, so each panel sees an analytic integrand.  Accurate to about
    ``1e-13`` for every registered activation at any ``v``.
``"trapezoid"``
    the dense trapezoid of theory.md §3 (``h = 1e-3`` on ``[-12, 12]``), kept as an
    independent cross-check.

``"auto"`` (the default) uses Gauss-Hermite with 160 nodes for smooth activations when
``v <= 1`` and ``|mu| <= 2`` (error below ``1e-12`` there, measured 3.9e-13 for tanh; tanh's poles at
:math:`\pm i\pi/2` make Gauss-Hermite lose digits quickly beyond, e.g. ``6.5e-9`` at
``v = 2``) and ``"split"`` otherwise.
Two-dimensional expectations (correlation map, per-unit variance, dead units) condition on
one variable and integrate the other with the split rule, so steps of ``phi'`` and kinks are
integrated exactly.

Examples
--------
>>> from fastinit import theory
>>> r = theory.mlp_theory([100] * 11, "relu", weight_var=2 / 100, batch=1000)
>>> [round(float(x), 4) for x in r["preact_var"][:3]]       # He preserves E[z^2] = Var z
[2.0, 2.0, 2.0]
>>> round(float(r["post_var"][0]), 4)                       # 2 (pi - 1) / (2 pi)
0.6817
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
from numpy.polynomial.hermite_e import hermegauss
from numpy.polynomial.legendre import leggauss
from scipy import optimize, special

from ._activations import SELU_ALPHA, SELU_LAMBDA, Activation, get_activation

__all__ = [
    "GainReport",
    "activation_moments",
    "backward_m2",
    "chi1",
    "correlation_map",
    "depth_scales",
    "fixed_point",
    "fuss_catalan_moment",
    "gain_preserving",
    "gaussian_expectation",
    "he_analysis",
    "length_map",
    "length_map_slope",
    "linear_net_sv2_moments",
    "mlp_theory",
    "p_dead",
    "relu_cross_moment",
    "relu_moments",
    "rnn_theory",
    "selu_constants",
    "selu_fixed_point",
    "selu_moments",
    "torch_gain",
]

_SQRT2PI = math.sqrt(2.0 * math.pi)
_XI_MAX = 12.0  # standard-normal pdf(12) = 5.3e-32: the truncated tail is below double precision
_GL_X, _GL_W = leggauss(16)  # 16-point Gauss-Legendre on each panel
_GL8_X, _GL8_W = leggauss(8)  # for phi(m+h) - phi(m-h) = h * int_{-1}^{1} phi'(m + h t) dt
_PANELS = 3  # panels per segment between consecutive break points
# Break points in xi that shape the rule to the Gaussian weight itself.
_XI_GRID = np.array([-8.0, -4.0, -2.0, 0.0, 2.0, 4.0, 8.0])
_HERMITE_N = 160  # hermegauss nodes for "auto" on smooth activations (error < 1e-12 for v <= 1)
_TRAP_H = 1e-3  # theory.md §3: dense trapezoid step on [-12, 12]

# Points (in z) where each activation changes shape; kinks must be among them.
_FEATURES = {
    "linear": (),
    "relu": (0.0,),
    "leaky_relu": (0.0,),
    "tanh": (-5.0, -2.5, -1.0, 0.0, 1.0, 2.5, 5.0),
    "sigmoid": (-10.0, -5.0, -2.0, 0.0, 2.0, 5.0, 10.0),
    "selu": (-6.0, -2.0, 0.0),
    "gelu": (-6.0, -3.0, -1.5, 0.0, 1.5, 3.0, 6.0),
    "silu": (-10.0, -5.0, -2.0, 0.0, 2.0, 5.0, 10.0),
    "softplus": (-10.0, -5.0, -2.0, 0.0, 2.0, 5.0, 10.0),
}

# torch.nn.init.calculate_gain (theory.md §5); None where torch raises "Unsupported nonlinearity".
_TORCH_GAIN = {
    "linear": lambda a: 1.0,
    "relu": lambda a: math.sqrt(2.0),
    "leaky_relu": lambda a: math.sqrt(2.0 / (1.0 + a * a)),
    "tanh": lambda a: 5.0 / 3.0,
    "sigmoid": lambda a: 1.0,
    "selu": lambda a: 0.75,
}


# ======================================================================================
# Quadrature engine
# ======================================================================================
def _features(act):
    feats = _FEATURES.get(act.name, act.kinks)
    if act.name == "softplus":  # softplus(beta z)/beta changes shape on the scale 1/beta
        feats = tuple(f / act.param for f in feats)
    return np.asarray(feats, dtype=np.float64)


def _panel_rule(breaks, half=False, panels=_PANELS):
    """Composite Gauss-Legendre rule for E[g(xi)], xi ~ N(0, 1), split at ``breaks``.

    ``breaks`` has shape ``(..., nb)`` (may contain inf/nan); returns nodes and weights of
    shape ``(..., M)``; weights include the normal density.  ``half=True`` covers
    ``[0, 12]`` only (for even integrands; the caller doubles the sum).
    """
    b = np.nan_to_num(np.asarray(breaks, dtype=np.float64), nan=0.0, posinf=_XI_MAX, neginf=-_XI_MAX)
    lo_edge = 0.0 if half else -_XI_MAX
    b = np.clip(b, lo_edge, _XI_MAX)
    shp = b.shape[:-1]
    gpts = _XI_GRID[_XI_GRID > 0] if half else _XI_GRID
    grid = np.broadcast_to(gpts, shp + gpts.shape)
    ends = np.full(shp + (1,), _XI_MAX)
    edges = np.sort(np.concatenate([np.full(shp + (1,), lo_edge), b, grid, ends], axis=-1), axis=-1)
    lo, width = edges[..., :-1], np.diff(edges, axis=-1)
    t = ((np.arange(panels)[:, None] + 0.5 * (_GL_X[None, :] + 1.0)) / panels).ravel()
    wt = np.tile(_GL_W / (2.0 * panels), panels)
    xi = lo[..., :, None] + width[..., :, None] * t
    w = width[..., :, None] * wt * np.exp(-0.5 * xi * xi) / _SQRT2PI
    return xi.reshape(shp + (-1,)), w.reshape(shp + (-1,))


@functools.lru_cache(maxsize=16)
def _fixed_rule(method, n=None):
    if method == "hermite":
        x, w = hermegauss(n or _HERMITE_N)
        return x, w / _SQRT2PI
    x = np.arange(-_XI_MAX, _XI_MAX + _TRAP_H / 2, _TRAP_H)
    w = np.full(x.shape, _TRAP_H) * np.exp(-0.5 * x * x) / _SQRT2PI
    w[0] *= 0.5
    w[-1] *= 0.5
    return x, w


def _expect(fun, mu, v, feats, method="split", n=None):
    """E[fun(mu + sqrt(v) xi)] for broadcastable arrays ``mu``, ``v``; ``fun`` vectorised."""
    mu, v = np.broadcast_arrays(np.asarray(mu, dtype=np.float64), np.asarray(v, dtype=np.float64))
    s = np.sqrt(np.maximum(v, 0.0))
    if method in ("hermite", "trapezoid"):
        xi, w = _fixed_rule(method, n)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            br = (feats - mu[..., None]) / s[..., None]
        xi, w = _panel_rule(br)
    z = mu[..., None] + s[..., None] * xi
    return np.sum(fun(z) * w, axis=-1)


def _auto_method(act, mu, v, method):
    if method != "auto":
        return method
    smooth = len(act.kinks) == 0
    if smooth and np.all(np.asarray(v) <= 1.0) and np.all(np.abs(mu) <= 2.0):
        return "hermite"
    return "split"


def gaussian_expectation(f, mean=0.0, var=1.0, breaks=(), method="split", n=None):
    r"""Expectation of ``f`` under a normal law, :math:`E[f(\mu + \sqrt{v}\,\xi)]`.

    .. math::
        E[f(\mu + \sqrt v \xi)] = \int f(\mu + \sqrt v x)\, \frac{e^{-x^2/2}}{\sqrt{2\pi}}\, dx

    Parameters
    ----------
    f : callable
        Vectorised function of a float64 array.
    mean, var : float or array_like
        :math:`\mu` and :math:`v \ge 0` (broadcast together).
    breaks : sequence of float
        Points in ``z`` where ``f`` has a kink or jump (``"split"`` integrates each side
        separately, so convergence stays spectral).
    method : {"split", "hermite", "trapezoid"}
        Quadrature rule (see the module docstring).
    n : int, optional
        Number of Gauss-Hermite nodes (default 160).

    Returns
    -------
    float or numpy.ndarray

    Examples
    --------
    >>> import numpy as np
    >>> relu2 = lambda z: np.maximum(z, 0) ** 2
    >>> round(float(gaussian_expectation(relu2, 0.0, 3.0, breaks=(0.0,))), 12)   # v / 2
    1.5
    """
    if method not in ("split", "hermite", "trapezoid"):
        raise ValueError(f"method must be 'split', 'hermite' or 'trapezoid', got {method!r}")
    out = _expect(f, mean, var, np.asarray(breaks, dtype=np.float64), method, n)
    return float(out) if np.ndim(out) == 0 else out


def _act(activation, param=None):
    if isinstance(activation, Activation) and param is None:
        return activation
    return get_activation(activation, param)


# ======================================================================================
# Closed forms
# ======================================================================================
def relu_moments(mean=0.0, var=1.0, slope=0.0):
    r"""Closed-form Gaussian moments of ReLU / leaky ReLU.

    For :math:`z \sim \mathcal N(\mu, s^2)`, :math:`m = \mu/s` and leaky slope :math:`a`
    (:math:`a = 0` is ReLU), with :math:`\Phi, \varphi` the normal cdf and pdf:

    .. math::
        E[\mathrm{relu}\, z] = \mu\Phi(m) + s\varphi(m), \quad
        E[\mathrm{relu}^2 z] = (\mu^2 + s^2)\Phi(m) + \mu s \varphi(m), \quad
        E[\mathrm{relu}'^2] = \Phi(m)

    and :math:`\mathrm{leaky}(z) = \mathrm{relu}(z) - a\,\mathrm{relu}(-z)`.

    Parameters
    ----------
    mean, var : float
        Mean and variance of the pre-activation (``var > 0``).
    slope : float
        Negative slope ``a`` of leaky ReLU (0 for ReLU).

    Returns
    -------
    dict
        ``mean`` (E phi), ``m2`` (E phi^2), ``var``, ``dphi_m2`` (E phi'^2), ``dphi_mean``.

    Examples
    --------
    >>> r = relu_moments(0.0, 1.0)
    >>> round(r["mean"], 6), r["m2"], round(r["var"], 6)     # 1/sqrt(2 pi), 1/2, (pi-1)/(2 pi)
    (0.398942, 0.5, 0.340845)
    """
    s = math.sqrt(var)
    m = mean / s
    cdf, cdfm = special.ndtr(m), special.ndtr(-m)
    pdf = math.exp(-0.5 * m * m) / _SQRT2PI
    e_pos = mean * cdf + s * pdf  # E[relu(z)]
    e_neg = -mean * cdfm + s * pdf  # E[relu(-z)]
    m2_pos = (mean * mean + var) * cdf + mean * s * pdf
    m2_neg = (mean * mean + var) * cdfm - mean * s * pdf
    e1 = e_pos - slope * e_neg
    m2 = m2_pos + slope * slope * m2_neg
    return {
        "mean": float(e1),
        "m2": float(m2),
        "var": float(m2 - e1 * e1),
        "dphi_m2": float(cdf + slope * slope * cdfm),
        "dphi_mean": float(cdf + slope * cdfm),
    }


def _relu_dcross(v, D):
    """(1/2) E[(relu u1 - relu u2)^2] for zero-mean (u1, u2), Var v, v - Cov = D (arc-cosine)."""
    if v <= 0.0:
        return 0.0
    sh = math.sqrt(min(max(D / (2.0 * v), 0.0), 1.0))  # sin(t/2), cos t = c = 1 - D/v
    t = 2.0 * math.asin(sh)
    if t < 0.1:  # t cos t - sin t without cancellation
        t2 = t * t
        g = -t * t2 * (1.0 / 3.0 - t2 * (1.0 / 30.0 - t2 * (1.0 / 840.0 - t2 / 45360.0)))
    else:
        g = t * math.cos(t) - math.sin(t)
    return v / (2.0 * math.pi) * (2.0 * math.pi * sh * sh + g)


def relu_cross_moment(var, c):
    r"""Arc-cosine kernel: :math:`E[\mathrm{relu}(u_1)\,\mathrm{relu}(u_2)]` for zero-mean inputs.

    .. math::
        E[\mathrm{relu}\,u_1\, \mathrm{relu}\,u_2] = \frac{v}{2\pi}\left(\sin\theta + (\pi - \theta)\cos\theta\right),
        \qquad \cos\theta = c

    (Cho & Saul 2009), with :math:`\mathrm{Var}\,u_i = v`, :math:`\mathrm{corr}(u_1, u_2) = c`.

    Parameters
    ----------
    var : float
        Common variance ``v``.
    c : float
        Correlation in ``[-1, 1]``.

    Returns
    -------
    float

    Examples
    --------
    >>> round(relu_cross_moment(1.0, 0.0), 6)       # 1/(2 pi): uncorrelated inputs
    0.159155
    >>> relu_cross_moment(2.0, 1.0)                 # c = 1 gives E[relu^2] = v/2
    1.0
    """
    t = math.acos(min(max(c, -1.0), 1.0))
    return var / (2.0 * math.pi) * (math.sin(t) + (math.pi - t) * math.cos(t))


def selu_moments(mean=0.0, var=1.0):
    r"""Closed-form Gaussian moments of SELU (Klambauer et al. 2017, eqs. 4-5).

    With :math:`s = \sqrt v`, :math:`\lambda, \alpha` the published constants:

    .. math::
        E[\mathrm{selu}] = \lambda\left[\mu\Phi(\tfrac{\mu}{s}) + s\varphi(\tfrac{\mu}{s})
            + \alpha e^{\mu + v/2}\Phi(-\tfrac{\mu + v}{s}) - \alpha\Phi(-\tfrac{\mu}{s})\right]

        E[\mathrm{selu}^2] = \lambda^2\left[(\mu^2 + v)\Phi(\tfrac{\mu}{s}) + \mu s\varphi(\tfrac{\mu}{s})
            + \alpha^2\left(e^{2\mu + 2v}\Phi(-\tfrac{\mu + 2v}{s}) - 2e^{\mu + v/2}\Phi(-\tfrac{\mu + v}{s})
            + \Phi(-\tfrac{\mu}{s})\right)\right]

        E[\mathrm{selu}'^2] = \lambda^2\left[\Phi(\tfrac{\mu}{s}) + \alpha^2 e^{2\mu + 2v}\Phi(-\tfrac{\mu + 2v}{s})\right]

    Parameters
    ----------
    mean, var : float
        Mean and variance (> 0) of the pre-activation.

    Returns
    -------
    dict
        ``mean``, ``m2``, ``var``, ``dphi_m2``.

    Examples
    --------
    >>> r = selu_moments(0.0, 1.0)
    >>> round(r["mean"], 8), round(r["m2"], 8), round(r["dphi_m2"], 6)   # the fixed point
    (0.0, 1.0, 1.071575)
    """
    lam, al = SELU_LAMBDA, SELU_ALPHA
    s = math.sqrt(var)
    m = mean / s
    cdf, pdf = special.ndtr(m), math.exp(-0.5 * m * m) / _SQRT2PI
    t1 = math.exp(mean + 0.5 * var) * special.ndtr(-(mean + var) / s)
    t2 = math.exp(2.0 * mean + 2.0 * var) * special.ndtr(-(mean + 2.0 * var) / s)
    e1 = lam * (mean * cdf + s * pdf + al * t1 - al * special.ndtr(-m))
    m2 = lam**2 * ((mean * mean + var) * cdf + mean * s * pdf + al * al * (t2 - 2.0 * t1 + special.ndtr(-m)))
    d2 = lam**2 * (cdf + al * al * t2)
    return {"mean": float(e1), "m2": float(m2), "var": float(m2 - e1 * e1), "dphi_m2": float(d2)}


def selu_constants():
    r"""SELU's ``alpha`` and ``lambda`` from the closed form of the (0, 1) fixed point.

    From the authors' ``getSELUparameters.ipynb`` (theory.md §5), with
    :math:`E = \mathrm{erfc}(1/\sqrt2)`:

    .. math::
        \alpha = -\frac{\sqrt{2/\pi}}{E e^{1/2} - 1}, \qquad
        \lambda = (1 - \sqrt e E)\sqrt{\frac{2\pi}{2 + \pi - 2\sqrt e(2+\pi)E + e\pi E^2
            + 2e^2\mathrm{erfc}(\sqrt 2)}}

    Returns
    -------
    tuple of float
        ``(alpha, lambda)``.

    Examples
    --------
    >>> a, l = selu_constants()
    >>> round(a, 12), round(l, 12)
    (1.673263242354, 1.050700987355)
    """
    E = special.erfc(1.0 / math.sqrt(2.0))
    e = math.e
    alpha = -math.sqrt(2.0 / math.pi) / (E * math.sqrt(e) - 1.0)
    den = 2.0 + math.pi - 2.0 * math.sqrt(e) * (2.0 + math.pi) * E + e * math.pi * E**2 + 2.0 * e**2 * special.erfc(math.sqrt(2.0))
    lam = (1.0 - math.sqrt(e) * E) * math.sqrt(2.0 * math.pi / den)
    return float(alpha), float(lam)


def selu_fixed_point(mean0=0.5, var0=2.0, omega=0.0, tau=1.0, tol=1e-13, maxiter=10_000):
    r"""Fixed point of SELU's mean/variance map with weight moments ``omega``, ``tau``.

    Klambauer et al.'s map: an input with per-unit mean :math:`\mu` and variance :math:`\nu`
    gives pre-activations :math:`z \sim \mathcal N(\mu\omega, \nu\tau)` with
    :math:`\omega = \sum_j w_j` and :math:`\tau = \sum_j w_j^2`; the new mean and variance are
    :math:`E[\mathrm{selu}\,z]` and :math:`\mathrm{Var}[\mathrm{selu}\,z]`.  LeCun-normal weights
    give :math:`\omega = 0, \tau = 1` (in expectation), whose fixed point is (0, 1).

    Parameters
    ----------
    mean0, var0 : float
        Starting mean and variance.
    omega, tau : float
        Weight sum and sum of squares.

    Returns
    -------
    tuple of float
        ``(mean, var, jacobian)`` with the 2x2 Jacobian of the map at the fixed point.

    Examples
    --------
    >>> m, v, J = selu_fixed_point()
    >>> round(m, 10), round(v, 10)
    (0.0, 1.0)
    """

    def step(mu, nu):
        r = selu_moments(mu * omega, nu * tau)
        return r["mean"], r["var"]

    mu, nu = float(mean0), float(var0)
    for _ in range(maxiter):
        mu2, nu2 = step(mu, nu)
        if abs(mu2 - mu) < tol and abs(nu2 - nu) < tol:
            mu, nu = mu2, nu2
            break
        mu, nu = mu2, nu2
    h = 1e-6
    J = np.empty((2, 2))
    for j, (dm, dn) in enumerate(((h, 0.0), (0.0, h))):
        p, q = step(mu + dm, nu + dn), step(mu - dm, nu - dn)
        J[:, j] = [(p[0] - q[0]) / (2 * h), (p[1] - q[1]) / (2 * h)]
    return mu, nu, J


def he_analysis(widths, slope=0.0, mode="fan_in", input_m2=1.0):
    r"""He et al.'s closed-form analysis of a (leaky) ReLU net with He weights.

    Weight variance :math:`s_l^2 = 2 / ((1 + a^2) n)` with :math:`n = n_{l-1}` (``fan_in``)
    or :math:`n_l` (``fan_out``).  With zero bias, exactly at any width (theory.md §7.1):

    .. math::
        E[z_l^2] = n_{l-1} s_l^2 E[a_{l-1}^2], \quad
        E[a_l^2] = \tfrac{1 + a^2}{2} E[z_l^2], \quad
        E[\delta_l^2] = \tfrac{1+a^2}{2} E[g_l^2], \quad E[g_{l-1}^2] = n_l s_l^2 E[\delta_l^2]

    so ``fan_in`` keeps :math:`E[z_l^2] = 2 E[x^2]/(1+a^2)` at every layer and ``fan_out``
    keeps the backward second moment.  What stays constant is the second moment; the
    variance of :math:`a_l` is :math:`E[z^2]\,(1 + a^2)/2 - (1-a)^2 E[z^2]/(2\pi)`.

    Parameters
    ----------
    widths : sequence of int
        ``[n_0, ..., n_L]``.
    slope : float
        Leaky-ReLU negative slope ``a`` (0 for ReLU).
    mode : {"fan_in", "fan_out"}
    input_m2 : float
        :math:`E[x^2]`.

    Returns
    -------
    dict of numpy.ndarray
        ``weight_var``, ``preact_m2``, ``post_m2``, ``post_mean``, ``post_var``,
        ``grad_preact_m2`` (length L) and ``grad_input_m2`` (length 1).

    Examples
    --------
    >>> r = he_analysis([100] * 11)
    >>> r["preact_m2"][[0, 9]], round(float(r["post_var"][9]), 4)
    (array([2., 2.]), 0.6817)
    """
    n = _check_widths(widths)
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"mode must be 'fan_in' or 'fan_out', got {mode!r}")
    L = len(n) - 1
    k = (1.0 + slope * slope) / 2.0
    fan = n[:-1] if mode == "fan_in" else n[1:]
    s2 = 2.0 / ((1.0 + slope * slope) * fan)
    zm2, am2 = np.empty(L), np.empty(L)
    prev = input_m2
    for l in range(L):
        zm2[l] = n[l] * s2[l] * prev
        am2[l] = k * zm2[l]
        prev = am2[l]
    mean = (1.0 - slope) * np.sqrt(zm2 / (2.0 * math.pi))
    d = np.empty(L)
    g = 1.0
    for l in range(L - 1, -1, -1):
        d[l] = k * g
        g = n[l + 1] * s2[l] * d[l]
    return {
        "weight_var": s2,
        "preact_m2": zm2,
        "post_m2": am2,
        "post_mean": mean,
        "post_var": am2 - mean**2,
        "grad_preact_m2": d,
        "grad_input_m2": np.array([g]),
    }


def fuss_catalan_moment(depth, k):
    r"""k-th moment of the Fuss-Catalan law: :math:`\frac{1}{Lk+1}\binom{(L+1)k}{k}`.

    This is :math:`\lim_{N\to\infty} E[\frac1N \mathrm{tr}((M^\top M)^k)]` for a product
    :math:`M` of ``L = depth`` independent ``N x N`` Gaussian matrices with entry variance
    ``1/N`` (squared singular values of a deep linear net with LeCun/Glorot weights).

    Parameters
    ----------
    depth : int
    k : int

    Returns
    -------
    float

    Examples
    --------
    >>> [fuss_catalan_moment(L, 2) - 1 for L in (1, 2, 5, 10)]   # variance = L
    [1.0, 2.0, 5.0, 10.0]
    """
    return math.comb((depth + 1) * k, k) / (depth * k + 1)


def linear_net_sv2_moments(depth, gain=1.0, kind="gaussian"):
    r"""Mean and variance of the squared singular values of a deep linear net at init.

    ``kind="gaussian"``: i.i.d. weights with entry variance :math:`g^2/N` (wide limit),
    :math:`E[s^2] = g^{2L}`, :math:`\mathrm{Var}[s^2] = g^{4L} L` (Fuss-Catalan).
    ``kind="orthogonal"``: every singular value equals :math:`g^L` (Saxe et al. 2014), so the
    variance is 0 (dynamical isometry).

    Parameters
    ----------
    depth : int
    gain : float
    kind : {"gaussian", "orthogonal"}

    Returns
    -------
    tuple of float
        ``(mean, variance)``.

    Examples
    --------
    >>> linear_net_sv2_moments(10), linear_net_sv2_moments(10, kind="orthogonal")
    ((1.0, 10.0), (1.0, 0.0))
    """
    g2L = float(gain) ** (2 * depth)
    if kind == "gaussian":
        return g2L, g2L * g2L * (fuss_catalan_moment(depth, 2) - 1.0)
    if kind == "orthogonal":
        return g2L, 0.0
    raise ValueError(f"kind must be 'gaussian' or 'orthogonal', got {kind!r}")


# ======================================================================================
# One-dimensional maps
# ======================================================================================
def activation_moments(activation, mean=0.0, var=1.0, param=None, method="auto", n=None):
    r"""Gaussian moments of an activation at :math:`z \sim \mathcal N(\mu, v)`.

    .. math::
        E[\phi], \; E[\phi^2], \; \mathrm{Var}\,\phi, \; E[\phi'^2], \; E[\phi'], \; E[\phi''\phi]

    ``Var`` is integrated as :math:`E[(\phi - E\phi)^2]` (no cancellation).  ReLU and leaky
    ReLU use :func:`relu_moments` unless ``method`` is given explicitly.

    Parameters
    ----------
    activation : str or Activation
    mean, var : float
    param : float, optional
        Activation parameter (leaky slope, softplus beta).
    method : {"auto", "split", "hermite", "trapezoid"}
    n : int, optional
        Gauss-Hermite nodes.

    Returns
    -------
    dict of float
        ``mean``, ``m2``, ``var``, ``dphi_m2``, ``dphi_mean``, ``phi_d2phi``.

    Examples
    --------
    >>> r = activation_moments("tanh")
    >>> round(r["m2"], 6), round(r["dphi_m2"], 6), round(r["dphi_mean"], 6)
    (0.394294, 0.464403, 0.605706)
    """
    act = _act(activation, param)
    mean, var = float(mean), float(var)
    if var <= 0.0:
        f = float(act.f(mean))
        d = float(act.df(mean))
        return {"mean": f, "m2": f * f, "var": 0.0, "dphi_m2": d * d, "dphi_mean": d, "phi_d2phi": float(act.d2f(mean)) * f}
    if method == "auto" and act.name in ("relu", "leaky_relu"):
        r = relu_moments(mean, var, act.param if act.name == "leaky_relu" else 0.0)
        r["phi_d2phi"] = 0.0
        return r
    meth = _auto_method(act, mean, var, method)
    feats = _features(act)
    p = act.param

    def ev(fun):
        return float(_expect(fun, mean, var, feats, meth, n))

    m1 = ev(lambda z: act.phi(z, p))
    return {
        "mean": m1,
        "m2": ev(lambda z: act.phi(z, p) ** 2),
        "var": ev(lambda z: (act.phi(z, p) - m1) ** 2),
        "dphi_m2": ev(lambda z: act.dphi(z, p) ** 2),
        "dphi_mean": ev(lambda z: act.dphi(z, p)),
        "phi_d2phi": ev(lambda z: act.phi(z, p) * act.d2phi(z, p)),
    }


def length_map(q, activation, sigma_w2, sigma_b2=0.0, bias_mean=0.0, param=None):
    r"""Poole et al.'s length map: the next layer's pre-activation variance.

    .. math::
        q_l = \sigma_w^2 \, E_\xi\!\left[\phi(\mu + \sqrt{q_{l-1}}\,\xi)^2\right] + \sigma_b^2

    Parameters
    ----------
    q : float
        Pre-activation variance of the previous layer.
    activation : str or Activation
    sigma_w2 : float
        :math:`\sigma_w^2 = n_{l-1} s_l^2`.
    sigma_b2 : float
        Variance of a random bias.
    bias_mean : float
        Constant bias :math:`\mu` (the pre-activation mean).
    param : float, optional

    Returns
    -------
    float

    Examples
    --------
    >>> round(length_map(1.0, "tanh", 1.0), 6)
    0.394294
    """
    return sigma_w2 * _phi_m2(_act(activation, param), bias_mean, q) + sigma_b2


def _phi_m2(act, mu, v):
    """E[phi(mu + sqrt(v) xi)^2] only (the length map's inner loop)."""
    if v <= 0.0:
        return float(act.f(mu)) ** 2
    if act.name in ("relu", "leaky_relu", "linear"):
        return relu_moments(mu, v, 1.0 if act.name == "linear" else (act.param if act.name == "leaky_relu" else 0.0))["m2"]
    p = act.param
    return float(_expect(lambda z: act.phi(z, p) ** 2, mu, v, _features(act), _auto_method(act, mu, v, "auto")))


def chi1(activation, sigma_w2, q, bias_mean=0.0, param=None):
    r""":math:`\chi_1 = \sigma_w^2 E[\phi'(\mu + \sqrt q\,\xi)^2]`: per-layer gradient growth.

    It is also the slope of the correlation map at :math:`c = 1` (Schoenholz et al. 2017).

    Parameters
    ----------
    activation : str or Activation
    sigma_w2 : float
    q : float
        Pre-activation variance (usually the fixed point q*).
    bias_mean : float
    param : float, optional

    Returns
    -------
    float

    Examples
    --------
    >>> round(chi1("selu", 1.0, 1.0), 6)
    1.071575
    """
    return sigma_w2 * activation_moments(activation, bias_mean, q, param)["dphi_m2"]


def length_map_slope(activation, sigma_w2, q, bias_mean=0.0, param=None):
    r"""Slope :math:`dq_l/dq_{l-1}` of the length map, by Gaussian integration by parts.

    .. math::
        \frac{dq_l}{dq_{l-1}} = \chi_1 + \sigma_w^2 E[\phi''(\sqrt q\,\xi)\,\phi(\sqrt q\,\xi)]

    The Dirac parts of :math:`\phi''` at ReLU/SELU kinks multiply :math:`\phi(0) = 0`.

    Parameters
    ----------
    activation : str or Activation
    sigma_w2, q, bias_mean : float
    param : float, optional

    Returns
    -------
    float

    Examples
    --------
    >>> round(length_map_slope("selu", 1.0, 1.0), 4)
    0.7826
    """
    r = activation_moments(activation, bias_mean, q, param)
    return sigma_w2 * (r["dphi_m2"] + r["phi_d2phi"])


def fixed_point(activation, sigma_w2, sigma_b2=0.0, bias_mean=0.0, param=None, q0=1.0, tol=1e-14, maxiter=5000):
    r"""Stable fixed point :math:`q^*` of the length map reached from ``q0``.

    Iterates :func:`length_map` from ``q0`` and polishes the result with Brent's method.
    Returns ``0.0`` when the iteration collapses to zero (e.g. tanh at
    :math:`\sigma_w^2 \le 1`, :math:`\sigma_b = 0`), ``inf`` when it diverges, and ``q0``
    itself for maps that are the identity (ReLU at :math:`\sigma_w^2 = 2`, linear at 1).
    Unstable fixed points (GELU/SiLU at ``g_pre``) are never returned; evaluate
    :func:`length_map` there directly.

    Parameters
    ----------
    activation : str or Activation
    sigma_w2, sigma_b2, bias_mean : float
    param : float, optional
    q0 : float
        Starting pre-activation variance, e.g. :math:`\sigma_w^2 E[x^2]` for the first layer.

    Returns
    -------
    float

    Examples
    --------
    >>> round(fixed_point("tanh", (5 / 3) ** 2, q0=(5 / 3) ** 2), 5)    # torch's tanh gain
    1.17848
    """
    act = _act(activation, param)

    def F(q):
        return length_map(q, act, sigma_w2, sigma_b2, bias_mean) - q

    q = float(q0)
    if abs(F(q)) <= 1e-13 * max(q, 1.0) and abs(F(2 * q)) <= 2e-13 * max(q, 1.0):
        return q  # the map is the identity here (ReLU at 2, linear at 1)
    for _ in range(maxiter):
        q_new = F(q) + q
        if not math.isfinite(q_new) or q_new > 1e300:
            return math.inf
        if q_new < 1e-150 * max(float(q0), 1.0):
            return 0.0  # collapsed to the trivial fixed point
        step = abs(q_new - q)
        q = q_new
        if step <= tol * max(q, 1e-300):
            return q
        if step <= 1e-6 * q:
            # close to the attracting point: polish with Brent on a bracket around it
            lo, hi = q * (1 - 1e-4), q * (1 + 1e-4)
            if F(lo) * F(hi) < 0:
                return optimize.brentq(F, lo, hi, xtol=1e-300, rtol=4 * np.finfo(float).eps)
    if q < 1e-8 and F(q) < 0:
        return 0.0
    return q


def correlation_map(c, activation, sigma_w2, q, sigma_b2=0.0, param=None):
    r"""Poole et al.'s correlation map at fixed length :math:`q`.

    .. math::
        c_l = \frac{\sigma_w^2 E[\phi(u_1)\phi(u_2)] + \sigma_b^2}{q_l}, \quad
        (u_1, u_2) \sim \mathcal N\!\left(0, q\begin{pmatrix}1 & c\\ c & 1\end{pmatrix}\right),
        \quad q_l = \sigma_w^2 E[\phi(u_1)^2] + \sigma_b^2

    ReLU uses the arc-cosine kernel (:func:`relu_cross_moment`).

    Parameters
    ----------
    c : float
        Input correlation.
    activation : str or Activation
    sigma_w2, q, sigma_b2 : float
    param : float, optional

    Returns
    -------
    float

    Examples
    --------
    >>> round(correlation_map(0.0, "relu", 2.0, 1.0), 6)     # 1/pi
    0.31831
    """
    act = _act(activation, param)
    m2 = activation_moments(act, 0.0, q)["m2"]
    qn = sigma_w2 * m2 + sigma_b2
    dm = _dmap(act, 0.0, q, q * (1.0 - c))  # (1/2) E[(phi u1 - phi u2)^2] = m2 - E[phi u1 phi u2]
    return (sigma_w2 * (m2 - dm) + sigma_b2) / qn


# ======================================================================================
# Two-dimensional maps
# ======================================================================================
def _odd_diff(act, m, h):
    """phi(m + h) - phi(m - h) without cancellation for small h (integral of phi')."""
    p = act.param
    out = act.phi(m + h, p) - act.phi(m - h, p)
    small = np.abs(h) < 0.02
    for k in act.kinks:
        small &= np.abs(m - k) > np.abs(h)
    if np.any(small):
        mm, hh = np.broadcast_arrays(m, h)
        ms, hs = mm[small], hh[small]
        acc = np.zeros_like(hs)
        for x, w in zip(_GL8_X, _GL8_W):
            acc += w * act.dphi(ms + hs * x, p)
        out = np.array(out, dtype=np.float64, copy=True)
        out[small] = hs * acc
    return out


def _dmap(act, mu, v, D, closed=True):
    r"""(1/2) E[(phi(u1) - phi(u2))^2] with u_{1,2} = mu + sqrt(v - D/2) z1 +- sqrt(D/2) z2.

    ``v - D`` is the covariance of (u1, u2); this tracks D = v - C with no cancellation
    (theory.md §3).  The inner integrand is even in z2, so only z2 >= 0 is integrated.
    ``closed=False`` skips the ReLU arc-cosine shortcut (for tests).
    """
    if D <= 0.0 or v <= 0.0:
        return 0.0
    if act.name == "linear":
        return float(D)
    if closed and act.name == "relu" and mu == 0.0:
        return _relu_dcross(v, D)
    feats = _features(act)
    s1 = math.sqrt(max(v - 0.5 * D, 0.0))
    s2 = math.sqrt(0.5 * D)
    if not act.kinks and D < 1e-9 * v:
        # deep in the ordered phase: (1/2)E[(phi(m+h) - phi(m-h))^2] = D E[phi'(m)^2] (1 + O(D)),
        # the next term being (D^2/2) E[phi' phi'''] -- one 1-D integral instead of a 2-D one
        p = act.param
        return float(D * _expect(lambda z: act.dphi(z, p) ** 2, mu, s1 * s1, feats, "split"))
    zb = feats
    if act.kinks:
        # the inner integral changes shape within a few s2 of a kink: break the outer rule there
        k = np.array([-8.0, -4.0, -2.0, -1.0, 1.0, 2.0, 4.0, 8.0]) * s2
        zb = np.concatenate([feats, (np.asarray(act.kinks)[:, None] + k[None, :]).ravel()])
    with np.errstate(divide="ignore", invalid="ignore"):
        xi1, w1 = _panel_rule(((zb - mu) / s1)[None, :], panels=2)
    xi1, w1 = xi1[0], w1[0]
    m = mu + s1 * xi1
    br = np.abs(feats[None, :] - m[:, None]) / s2
    if br.shape[1] == 0:
        br = np.zeros((m.size, 1))
    xi2, w2 = _panel_rule(br, half=True, panels=2)
    diff = _odd_diff(act, m[:, None], s2 * xi2)
    inner = np.sum(diff * diff * w2, axis=1)  # 2 (half range) x 1/2
    return float(np.sum(inner * w1))


def _expect2(act, f, g, mu, v, C):
    """E[f(u1) g(u2)], (u1, u2) ~ N(mu, [[v, C], [C, v]]), by conditioning on u1."""
    feats = _features(act)
    s = math.sqrt(v)
    c = min(max(C / v, -1.0), 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        xi1, w1 = _panel_rule(((feats - mu) / s)[None, :])
    xi1, w1 = xi1[0], w1[0]
    u1 = mu + s * xi1
    inner = _expect(g, mu + c * s * xi1, np.full(xi1.shape, v * (1.0 - c * c)), feats, "split")
    return float(np.sum(f(u1) * inner * w1))


def depth_scales(activation, sigma_w2, sigma_b2=0.0, param=None, q0=1.0):
    r"""Fixed points and depth scales of Schoenholz et al. (2017).

    .. math::
        \xi_q^{-1} = -\ln\left(\chi_1 + \sigma_w^2 E[\phi''\phi]\right), \quad
        \xi_c^{-1} = -\ln \chi_c, \quad \chi_c = \sigma_w^2 E[\phi'(u_1)\phi'(u_2)]\big|_{c^*},
        \quad \xi_\nabla^{-1} = -\ln \chi_1

    :math:`c^*` is the stable fixed point of the correlation map reached from ``c = 0``
    (:math:`c^* = 1` in the ordered phase, where :math:`\chi_c = \chi_1`).  Depth scales are
    ``inf`` when the corresponding slope is 1 and are reported for ``|ln|`` (a depth over
    which a deviation grows by ``e``) when the slope exceeds 1.

    Parameters
    ----------
    activation : str or Activation
    sigma_w2, sigma_b2 : float
    param : float, optional
    q0 : float
        Start of the length-map iteration.

    Returns
    -------
    dict of float
        ``q_star``, ``c_star``, ``chi_1``, ``chi_c``, ``slope_q``, ``xi_q``, ``xi_c``, ``xi_grad``.

    Examples
    --------
    >>> d = depth_scales("tanh", 4.0, 0.05)            # chaotic phase
    >>> round(d["chi_1"], 4), round(d["c_star"], 4), round(d["xi_c"], 2)
    (1.3424, 0.1651, 6.98)
    """
    act = _act(activation, param)
    q = fixed_point(act, sigma_w2, sigma_b2, q0=q0)
    if q == 0.0 or not math.isfinite(q):
        r = activation_moments(act, 0.0, 0.0)
        c1 = sigma_w2 * r["dphi_m2"]
        return {"q_star": q, "c_star": 1.0, "chi_1": c1, "chi_c": c1, "slope_q": c1,
                "xi_q": _xi(c1), "xi_c": _xi(c1), "xi_grad": _xi(c1)}
    c1 = chi1(act, sigma_w2, q)
    slope = length_map_slope(act, sigma_w2, q)
    if c1 <= 1.0 + 1e-12:
        # ordered phase or its boundary: c = 1 is the attracting fixed point, chi_c = chi_1
        cstar, chic = 1.0, c1
    else:
        # chaotic phase: iterate the correlation map on D = q (1 - c) from c = 0
        def G(D):
            return sigma_w2 * _dmap(act, 0.0, q, D) - D

        D = q
        for _ in range(5000):
            Dn = G(D) + D
            step = abs(Dn - D)
            D = Dn
            if step <= 1e-6 * q:
                break
        lo, hi = D * (1 - 1e-4), min(D * (1 + 1e-4), 2 * q)
        if G(lo) * G(hi) < 0:  # polish the attracting point with Brent
            D = optimize.brentq(G, lo, hi, xtol=1e-300, rtol=1e-14)
        cstar = 1.0 - D / q
        chic = sigma_w2 * _expect2(act, lambda z: act.df(z), lambda z: act.df(z), 0.0, q, q * cstar)
    return {"q_star": q, "c_star": cstar, "chi_1": c1, "chi_c": chic, "slope_q": slope,
            "xi_q": _xi(slope), "xi_c": _xi(chic), "xi_grad": _xi(c1)}


def _xi(r):
    if r <= 0:
        return 0.0
    lr = math.log(r)
    return math.inf if abs(lr) < 1e-12 else 1.0 / abs(lr)


def p_dead(mean, C, D, batch):
    r"""Probability that a unit is inactive (``z <= 0``) for every one of ``batch`` samples.

    With the unit's offset :math:`m \sim \mathcal N(\mu, C)` shared by the batch and
    independent per-sample parts :math:`e_b \sim \mathcal N(0, D)`, :math:`D = v - C`:

    .. math::
        P_\text{dead} = E_m\!\left[\Phi\!\left(-m/\sqrt D\right)^B\right]

    Parameters
    ----------
    mean : float
        Pre-activation mean :math:`\mu` (the bias).
    C : float
        Covariance of the unit between two different samples (clipped at 0).
    D : float
        :math:`v - C`.
    batch : int
        ``B``.

    Returns
    -------
    float

    Examples
    --------
    >>> round(p_dead(0.0, 0.0, 1.0, 3), 12)       # independent samples: (1/2)^3
    0.125
    """
    B = int(batch)
    C = max(float(C), 0.0)
    D = max(float(D), 0.0)
    if D == 0.0:
        return float(special.ndtr(-mean / math.sqrt(C))) if C > 0 else float(mean <= 0.0)
    sD = math.sqrt(D)
    if C == 0.0:
        return float(np.exp(B * special.log_ndtr(-mean / sD)))
    sC = math.sqrt(C)
    ys = np.array([-2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0])
    xi, w = _panel_rule(((-ys * sD - mean) / sC)[None, :])
    m = mean + sC * xi[0]
    return float(np.sum(np.exp(B * special.log_ndtr(-m / sD)) * w[0]))


# ======================================================================================
# Gains
# ======================================================================================
@dataclass(frozen=True)
class GainReport:
    """Second-moment-preserving gains of one activation, next to torch's value.

    Attributes
    ----------
    activation : str
    param : float
    torch_gain : float or None
        ``torch.nn.init.calculate_gain`` (None where torch raises ValueError).
    m2 : float
        :math:`E[\\phi(\\xi)^2]`, :math:`\\xi \\sim \\mathcal N(0,1)`.
    g_pre : float
        :math:`g^2 E[\\phi(\\xi)^2] = 1`: q* = 1 is then a fixed point (LSUV's limit).
    g_post : float
        :math:`E[\\phi(g\\xi)^2] = 1` (NaN for bounded phi).
    g_naive_var : float
        :math:`g^2 \\mathrm{Var}\\,\\phi(\\xi) = 1` (the lecture notes' logic; not a fixed point).
    chi1_pre, slope_pre : float
        :math:`\\chi_1` and length-map slope at ``g_pre``, q = 1.
    chi1_post, slope_post : float
        The same at ``g_post``, q = g_post^2.
    torch_q_star, torch_post_m2, torch_chi1, torch_slope : float
        Fixed point reached with ``torch_gain`` from a unit-variance input, E[a^2], chi_1 and
        slope there (NaN without a torch gain).
    """

    activation: str
    param: float
    torch_gain: float | None
    m2: float
    g_pre: float
    g_post: float
    g_naive_var: float
    chi1_pre: float
    slope_pre: float
    chi1_post: float
    slope_post: float
    torch_q_star: float
    torch_post_m2: float
    torch_chi1: float
    torch_slope: float


def torch_gain(activation, param=None):
    r"""torch's ``calculate_gain`` for a registered activation (own table, theory.md §5).

    linear 1, sigmoid 1, tanh 5/3, relu :math:`\sqrt2`, leaky_relu
    :math:`\sqrt{2/(1+a^2)}` (default ``a = 0.01``), selu 3/4.

    Parameters
    ----------
    activation : str or Activation
    param : float, optional

    Returns
    -------
    float or None
        None for gelu, silu and softplus, where torch raises ``ValueError``.

    Examples
    --------
    >>> round(torch_gain("leaky_relu"), 5), torch_gain("gelu")
    (1.41414, None)
    """
    act = _act(activation, param)
    fn = _TORCH_GAIN.get(act.name)
    return None if fn is None else float(fn(act.param))


def gain_preserving(activation, param=None):
    r"""Gains that preserve the second moment, beside torch's ``calculate_gain``.

    .. math::
        g_\text{pre}^2\, E[\phi(\xi)^2] = 1, \qquad E[\phi(g_\text{post}\xi)^2] = 1

    With :math:`\sigma_w^2 = g_\text{pre}^2` the length map has :math:`q^* = 1` as a fixed
    point; with :math:`g_\text{post}`, unit-second-moment inputs are already at
    :math:`q^* = g_\text{post}^2` and every post-activation has :math:`E[a^2] = 1`
    (theory.md §6).  Neither need be *stable*: check ``slope_pre < 1``.

    Parameters
    ----------
    activation : str or Activation
    param : float, optional

    Returns
    -------
    GainReport

    Examples
    --------
    >>> r = gain_preserving("tanh")
    >>> round(r.g_pre, 6), r.torch_gain, round(r.torch_q_star, 5)
    (1.592537, 1.6666666666666667, 1.17848)
    """
    act = _act(activation, param)
    r1 = activation_moments(act, 0.0, 1.0)
    g_pre = 1.0 / math.sqrt(r1["m2"])
    g_naive = 1.0 / math.sqrt(r1["var"])
    chi_pre = g_pre**2 * r1["dphi_m2"]
    slope_pre = g_pre**2 * (r1["dphi_m2"] + r1["phi_d2phi"])
    if act.bounded:
        g_post = chi_post = slope_post = math.nan
    else:
        def F(lg):
            return math.log(_phi_m2(act, 0.0, math.exp(2 * lg)))
        g_post = math.exp(optimize.brentq(F, math.log(1e-3), math.log(1e3), xtol=1e-15, rtol=1e-15))
        rp = activation_moments(act, 0.0, g_post**2)
        chi_post = g_post**2 * rp["dphi_m2"]
        slope_post = g_post**2 * (rp["dphi_m2"] + rp["phi_d2phi"])
    tg = torch_gain(act)
    if tg is None:
        tq = tm2 = tchi = tsl = math.nan
    else:
        tq = fixed_point(act, tg * tg, q0=tg * tg)  # first layer: q_1 = g^2 E[x^2] = g^2
        rt = activation_moments(act, 0.0, tq)
        tm2, tchi, tsl = rt["m2"], tg * tg * rt["dphi_m2"], tg * tg * (rt["dphi_m2"] + rt["phi_d2phi"])
    return GainReport(act.name, act.param, tg, r1["m2"], g_pre, g_post, g_naive, chi_pre, slope_pre,
                      chi_post, slope_post, tq, tm2, tchi, tsl)


# ======================================================================================
# Whole networks
# ======================================================================================
def _check_widths(widths):
    try:
        n = np.asarray(widths)
    except Exception:  # pragma: no cover - defensive
        raise ValueError(f"widths must be a sequence of positive ints, got {widths!r}") from None
    if n.ndim != 1 or n.size < 2 or not np.issubdtype(n.dtype, np.integer) or np.any(n < 1):
        raise ValueError(f"widths must be a sequence [n_0, ..., n_L] of >= 2 positive ints, got {widths!r}")
    return n.astype(np.float64)


def _per_layer(x, L, name, nonneg=True):
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 0:
        a = np.full(L, float(a))
    if a.shape != (L,):
        raise ValueError(f"{name} must be a scalar or have length L = {L}, got shape {a.shape}")
    if not np.all(np.isfinite(a)) or (nonneg and np.any(a < 0)):
        raise ValueError(f"{name} must be finite{' and >= 0' if nonneg else ''}, got {x!r}")
    return a


def backward_m2(widths, weight_var, dphi_m2, seed_m2=1.0):
    r"""Backward recursion of gradient second moments (theory.md §2.3).

    .. math::
        E[\delta_L^2] = E[\phi'(z_L)^2] E[G^2], \quad
        E[\delta_l^2] = E[\phi'(z_l)^2] E[g_l^2], \quad
        E[g_{l-1}^2] = n_l s_l^2 E[\delta_l^2]

    Parameters
    ----------
    widths : sequence of int
        ``[n_0, ..., n_L]``.
    weight_var : float or array_like
        Per-entry weight variance :math:`s_l^2` (scalar or length L).
    dphi_m2 : float or array_like
        :math:`E[\phi'(z_l)^2]` per layer.
    seed_m2 : float
        :math:`E[G^2]`.

    Returns
    -------
    tuple of numpy.ndarray
        ``(grad_preact_m2, grad_input_m2)``, lengths L and 1.

    Examples
    --------
    >>> d, g0 = backward_m2([512, 256], 2 / 512, 0.5)     # fan_in scaling: x n_l/n_{l-1}
    >>> d, g0
    (array([0.5]), array([0.5]))
    """
    n = _check_widths(widths)
    L = n.size - 1
    s2 = _per_layer(weight_var, L, "weight_var")
    dp = _per_layer(dphi_m2, L, "dphi_m2")
    d = np.empty(L)
    g = float(seed_m2)
    for l in range(L - 1, -1, -1):
        d[l] = dp[l] * g
        g = n[l + 1] * s2[l] * d[l]
    return d, np.array([g])


_KEYS = ("preact_mean", "preact_var", "preact_m2", "post_mean", "post_var", "post_m2", "preact_unitvar",
         "frac_inactive", "frac_dead_units", "frac_saturated", "grad_preact_m2", "grad_weight_m2_per_sample",
         "grad_weight_m2_batchmean", "grad_bias_m2_per_sample")


def mlp_theory(widths, activation, param=None, *, weight_var, bias_mean=0.0, bias_var=0.0, input_mean=0.0,
               input_std=1.0, batch=None, residual_scale=None):
    r"""Mean-field prediction of every per-layer statistic of :func:`fastinit.sim.simulate_mlp`.

    Forward (theory.md §2.1-2.2), with :math:`\sigma_{w,l}^2 = n_{l-1}s_l^2`, bias
    :math:`b_l \sim \mathcal N(\mu_l, \sigma_{b,l}^2)` (constant bias: variance 0):

    .. math::
        v_l = \sigma_{w,l}^2 E[a_{l-1}^2] + \sigma_{b,l}^2, \qquad
        C_l = \sigma_{w,l}^2 E[a_{l-1}a'_{l-1}] + \sigma_{b,l}^2, \qquad
        D_l = v_l - C_l = \sigma_{w,l}^2 \tfrac12 E[(a_{l-1} - a'_{l-1})^2]

    where primes denote a *different* input; :math:`E[a_0^2] = \mu_x^2 + \sigma_x^2`,
    :math:`E[a_0 a_0'] = \mu_x^2`.  ``D`` is propagated directly (no cancellation).
    Backward (§2.3), gradient independence:
    :math:`E[\delta_l^2] = E[\phi'(z_l)^2]E[g_l^2]`, :math:`E[g_{l-1}^2] = n_l s_l^2 E[\delta_l^2]`,
    :math:`E[g_L^2] = E[G^2] = 1`.

    Parameters
    ----------
    widths : sequence of int
        ``[n_0, ..., n_L]``.
    activation : str or Activation
        Applied at every layer, the last one included.
    param : float, optional
        Activation parameter.
    weight_var : float or array_like
        Per-entry weight variance :math:`s_l^2` (scalar or length L), e.g. ``2/fan_in``.
    bias_mean, bias_var : float or array_like
        Mean and variance of the bias entries (scalar or length L).
    input_mean, input_std : float
        Inputs are i.i.d. :math:`\mathcal N(\mu_x, \sigma_x^2)` per entry and per sample.
    batch : int, optional
        Batch size ``B``; needed for ``preact_unitvar``, ``frac_dead_units`` and
        ``grad_weight_m2_batchmean`` (NaN without it).
    residual_scale : float, optional
        :math:`\alpha`: residual net :math:`h_l = h_{l-1} + \alpha\phi(h_{l-1}W_l^\top + b_l)`,
        all widths equal.  Mean-field treatment: the coordinate :math:`h_{l-1,i}` is
        independent of the branch :math:`\phi(z_{l,i})` (``z_{l,i}`` is a fresh Gaussian given
        the norm of ``h_{l-1}``), so
        :math:`E[h_l] = E[h_{l-1}] + \alpha E\phi`,
        :math:`E[h_l^2] = E[h_{l-1}^2] + 2\alpha E[h_{l-1}]E\phi + \alpha^2E\phi^2`,
        :math:`D^h_l = D^h_{l-1} + \alpha^2\tfrac12E[(\phi(u_1) - \phi(u_2))^2]`; backward
        :math:`\delta_l = \alpha\phi'(z_l)g_l`,
        :math:`E[g_{l-1}^2] = E[g_l^2](1 + \alpha^2 n s_l^2 E\phi'^2)` (cross term zero by
        gradient independence).  ``post_*`` then describe :math:`h_l`, and the weight gradient
        uses :math:`E[h_{l-1}^2]`.

    Returns
    -------
    dict of numpy.ndarray
        Length-L arrays (layer l = 1..L):

        ``preact_mean``, ``preact_var``, ``preact_m2``
            :math:`\mu_l`, :math:`v_l`, :math:`v_l + \mu_l^2` (pooled over entries).
        ``post_mean``, ``post_var``, ``post_m2``
            :math:`E\phi`, :math:`\mathrm{Var}\,\phi`, :math:`E\phi^2` (pooled).
        ``preact_unitvar``
            Mean over units of the across-batch variance, :math:`(1-1/B)D_l`: a *different*
            quantity from the pooled ``preact_var``.
        ``frac_inactive``
            :math:`P(z \le 0) = \Phi(-\mu_l/\sqrt{v_l})`.
        ``frac_dead_units``
            :math:`E_m[\Phi(-m/\sqrt{D_l})^B]`, :math:`m\sim\mathcal N(\mu_l, C_l)` (:func:`p_dead`).
        ``frac_saturated``
            tanh :math:`P(|z| > \operatorname{atanh} 0.99)`, sigmoid :math:`P(|z| > \operatorname{logit} 0.99)`,
            NaN for other activations.
        ``grad_preact_m2``
            :math:`E[\delta_l^2]`.
        ``grad_weight_m2_per_sample``, ``grad_weight_m2_batchmean``
            :math:`E[\delta_l^2]E[a_{l-1}^2]` and the same divided by ``B`` (the cross-sample
            terms vanish because ``G`` is independent across samples).
        ``grad_bias_m2_per_sample``
            :math:`E[\delta_l^2]`.

        and ``grad_input_m2``, a length-1 array :math:`E[(\partial\ell/\partial x)^2]`.

    Raises
    ------
    ValueError
        Bad widths, negative variances, wrong lengths, ``batch < 1``, or unequal widths
        with ``residual_scale``.

    Examples
    --------
    >>> r = mlp_theory([256, 512, 512], "relu", weight_var=[2 / 256, 2 / 512])
    >>> r["preact_var"], r["grad_preact_m2"]
    (array([2., 2.]), array([0.5, 0.5]))
    """
    act = _act(activation, param)
    n = _check_widths(widths)
    L = n.size - 1
    s2 = _per_layer(weight_var, L, "weight_var")
    bm = _per_layer(bias_mean, L, "bias_mean", nonneg=False)
    bv = _per_layer(bias_var, L, "bias_var")
    if not (math.isfinite(input_mean) and math.isfinite(input_std) and input_std >= 0):
        raise ValueError(f"input_std must be finite and >= 0 (and input_mean finite), got {input_mean!r}, {input_std!r}")
    if batch is not None and (isinstance(batch, bool) or int(batch) != batch or batch < 1):
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    res = residual_scale is not None
    if res:
        if not math.isfinite(residual_scale):
            raise ValueError(f"residual_scale must be finite, got {residual_scale!r}")
        if np.any(n != n[0]):
            raise ValueError(f"residual_scale needs all widths equal, got widths={list(map(int, n))}")
    alpha = float(residual_scale) if res else 1.0

    out = {k: np.full(L, np.nan) for k in _KEYS}
    sw2 = n[:-1] * s2
    # incoming stream: first moment, second moment, D = (1/2) E[(a - a')^2]
    A1, A2, AD = float(input_mean), input_mean**2 + input_std**2, input_std**2
    prev_m2 = np.empty(L)
    dphi2 = np.empty(L)
    for l in range(L):
        prev_m2[l] = A2
        v = sw2[l] * A2 + bv[l]
        D = sw2[l] * AD
        C = v - D
        mu = bm[l]
        r = activation_moments(act, mu, v)
        out["preact_mean"][l] = mu
        out["preact_var"][l] = v
        out["preact_m2"][l] = v + mu * mu
        dphi2[l] = r["dphi_m2"]
        s = math.sqrt(v)
        with np.errstate(divide="ignore"):
            out["frac_inactive"][l] = special.ndtr(-mu / s) if s > 0 else float(mu <= 0.0)
        if act.saturation is not None:
            T = act.saturation
            if s > 0:
                out["frac_saturated"][l] = special.ndtr((-T - mu) / s) + special.ndtr((mu - T) / s)
            else:
                out["frac_saturated"][l] = float(abs(mu) > T)
        if batch is not None:
            out["preact_unitvar"][l] = (1.0 - 1.0 / batch) * D
            out["frac_dead_units"][l] = p_dead(mu, C, D, batch)
        dphi = _dmap(act, mu, v, D)
        if res:
            A2 = A2 + 2.0 * alpha * A1 * r["mean"] + alpha**2 * r["m2"]
            A1 = A1 + alpha * r["mean"]
            AD = AD + alpha**2 * dphi
            out["post_mean"][l], out["post_m2"][l] = A1, A2
            out["post_var"][l] = A2 - A1 * A1
        else:
            A1, A2, AD = r["mean"], r["m2"], dphi
            out["post_mean"][l], out["post_m2"][l], out["post_var"][l] = r["mean"], r["m2"], r["var"]
    # backward
    g = 1.0  # E[G^2]
    for l in range(L - 1, -1, -1):
        d = alpha**2 * dphi2[l] * g
        out["grad_preact_m2"][l] = d
        g = (g if res else 0.0) + n[l + 1] * s2[l] * d
    out["grad_bias_m2_per_sample"] = out["grad_preact_m2"].copy()
    out["grad_weight_m2_per_sample"] = out["grad_preact_m2"] * prev_m2
    if batch is not None:
        out["grad_weight_m2_batchmean"] = out["grad_weight_m2_per_sample"] / batch
    out["grad_input_m2"] = np.array([g])
    return out


def rnn_theory(width, T, activation, weight_var, h0_std, param=None, *, h0_mean=0.0, input_var=0.0,
               bias_mean=0.0, bias_var=0.0):
    r"""Untied mean-field prediction for a vanilla RNN :math:`h_t = \phi(h_{t-1}W^\top + x_tU^\top + b)`.

    Treats the recurrent matrix as freshly drawn at every step (the "untied" approximation):

    .. math::
        v_t = n s^2 E[h_{t-1}^2] + \sigma_{in}^2 + \sigma_b^2, \quad
        E[h_t^2] = E[\phi(\mu_b + \sqrt{v_t}\xi)^2], \quad
        E[g_{t-1}^2] = n s^2 E[\phi'(z_t)^2] E[g_t^2]

    for the loss :math:`\ell = \sum_k U_{bk} h_{T,bk}` with :math:`U` i.i.d. :math:`\mathcal N(0,1)`
    (so :math:`E[g_T^2] = 1`), :math:`g_t = \partial\ell/\partial h_t`.

    For a tied orthogonal ``W`` both predictions hold closely: an orthogonal tanh RNN
    (n = 128, T = 50) follows the forward map to about 1.3% and the BPTT ratio
    :math:`E[g_0^2]` to about 2% (0.0145 measured vs 0.01433 here; the "factor 2" of
    theory.md §7.7 compares with 0.0303, which is an off-by-one that uses
    :math:`E[\phi'(z_t)^2]` for t = 2..T+1, docs/theory.md §5.9). Gaussian, uniform and
    orthogonal ``W`` with the same entry variance give the same prediction, but **for a tied
    Gaussian W it is not reliable**: reusing ``W`` at every step breaks gradient independence,
    and the measured BPTT ratio is several times the prediction (3-9x, depending on whether
    one takes the median or the mean over networks) and the forward norm is larger too.

    Parameters
    ----------
    width : int
        Hidden size ``n``.
    T : int
        Number of steps.
    activation : str or Activation
    weight_var : float
        Entry variance :math:`s^2` of ``W`` (``1/n`` for Xavier on a square matrix and for
        orthogonal with gain 1).
    h0_std : float
        :math:`h_0 \sim \mathcal N(\mu_0, \sigma_0^2)`.
    param : float, optional
    h0_mean : float
    input_var : float
        Variance the input term :math:`x_tU^\top` adds to each pre-activation (0 = no input).
    bias_mean, bias_var : float

    Returns
    -------
    dict of numpy.ndarray
        ``h_m2`` and ``h_norm`` (:math:`\sqrt{n E[h_t^2]}`), length ``T + 1`` for
        ``t = 0..T``; ``preact_var`` (length T, ``t = 1..T``); ``grad_h_m2``, length ``T + 1``,
        :math:`E[g_t^2]` with ``grad_h_m2[T] = 1``.

    Examples
    --------
    >>> r = rnn_theory(128, 50, "tanh", 1 / 128, 1.0)
    >>> round(float(r["h_norm"][0]), 3), round(float(r["h_norm"][50]), 3)    # sqrt(128) at t=0
    (11.314, 1.144)
    """
    act = _act(activation, param)
    if isinstance(width, bool) or int(width) != width or width < 1:
        raise ValueError(f"width must be a positive int, got {width!r}")
    if isinstance(T, bool) or int(T) != T or T < 1:
        raise ValueError(f"T must be a positive int, got {T!r}")
    for name, val in (("weight_var", weight_var), ("h0_std", h0_std), ("input_var", input_var), ("bias_var", bias_var)):
        if not (math.isfinite(val) and val >= 0):
            raise ValueError(f"{name} must be finite and >= 0, got {val!r}")
    T = int(T)
    sw2 = width * weight_var
    h2 = np.empty(T + 1)
    h2[0] = h0_mean**2 + h0_std**2
    v = np.empty(T)
    dp = np.empty(T)
    for t in range(T):
        v[t] = sw2 * h2[t] + input_var + bias_var
        r = activation_moments(act, bias_mean, v[t])
        h2[t + 1] = r["m2"]
        dp[t] = r["dphi_m2"]
    g = np.empty(T + 1)
    g[T] = 1.0
    for t in range(T, 0, -1):
        g[t - 1] = sw2 * dp[t - 1] * g[t]
    return {"h_m2": h2, "h_norm": np.sqrt(width * h2), "preact_var": v, "grad_h_m2": g}
