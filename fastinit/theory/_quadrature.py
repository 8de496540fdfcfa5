"""Gaussian expectations E[f(mu + sqrt(v) xi)]: the quadrature rules of :mod:`fastinit.theory`."""

from __future__ import annotations

import functools
import math

import numpy as np
from numpy.polynomial.hermite_e import hermegauss
from numpy.polynomial.legendre import leggauss

SQRT2PI = math.sqrt(2.0 * math.pi)
_XI_MAX = 12.0  # standard-normal pdf(12) = 5.3e-32: the truncated tail is below double precision
_GL_X, _GL_W = leggauss(16)  # 16-point Gauss-Legendre on each panel
GL8_X, GL8_W = leggauss(8)  # for phi(m+h) - phi(m-h) = h * int_{-1}^{1} phi'(m + h t) dt
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


# ======================================================================================
# Quadrature engine
# ======================================================================================
def features(act):
    feats = _FEATURES.get(act.name, act.kinks)
    if act.name == "softplus":  # softplus(beta z)/beta changes shape on the scale 1/beta
        feats = tuple(f / act.param for f in feats)
    return np.asarray(feats, dtype=np.float64)


def panel_rule(breaks, half=False, panels=_PANELS):
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
    w = width[..., :, None] * wt * np.exp(-0.5 * xi * xi) / SQRT2PI
    return xi.reshape(shp + (-1,)), w.reshape(shp + (-1,))


@functools.lru_cache(maxsize=16)
def _fixed_rule(method, n=None):
    if method == "hermite":
        x, w = hermegauss(n or _HERMITE_N)
        return x, w / SQRT2PI
    x = np.arange(-_XI_MAX, _XI_MAX + _TRAP_H / 2, _TRAP_H)
    w = np.full(x.shape, _TRAP_H) * np.exp(-0.5 * x * x) / SQRT2PI
    w[0] *= 0.5
    w[-1] *= 0.5
    return x, w


def expect(fun, mu, v, feats, method="split", n=None):
    """E[fun(mu + sqrt(v) xi)] for broadcastable arrays ``mu``, ``v``; ``fun`` vectorised."""
    mu, v = np.broadcast_arrays(np.asarray(mu, dtype=np.float64), np.asarray(v, dtype=np.float64))
    s = np.sqrt(np.maximum(v, 0.0))
    if method in ("hermite", "trapezoid"):
        xi, w = _fixed_rule(method, n)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            br = (feats - mu[..., None]) / s[..., None]
        xi, w = panel_rule(br)
    z = mu[..., None] + s[..., None] * xi
    return np.sum(fun(z) * w, axis=-1)


def auto_method(act, mu, v, method):
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
    out = expect(f, mean, var, np.asarray(breaks, dtype=np.float64), method, n)
    return float(out) if np.ndim(out) == 0 else out
