"""Closed forms: ReLU and SELU moments, He analysis, deep linear nets (theory.md §2, §4, §7)."""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from fastinit._activations import SELU_ALPHA, SELU_LAMBDA

from ._common import check_widths
from ._quadrature import SQRT2PI


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
    pdf = math.exp(-0.5 * m * m) / SQRT2PI
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


def relu_dcross(v, D):
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

        E[\mathrm{selu}'^2] = \lambda^2\left[\Phi(\tfrac{\mu}{s})
            + \alpha^2 e^{2\mu + 2v}\Phi(-\tfrac{\mu + 2v}{s})\right]

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
    cdf, pdf = special.ndtr(m), math.exp(-0.5 * m * m) / SQRT2PI
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
    den = (2.0 + math.pi - 2.0 * math.sqrt(e) * (2.0 + math.pi) * E + e * math.pi * E**2
           + 2.0 * e**2 * special.erfc(math.sqrt(2.0)))
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
    n = check_widths(widths)
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
