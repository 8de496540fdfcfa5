"""Length and correlation maps, their slopes, fixed points, depth scales and dead units."""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize, special

from ._closed_forms import relu_dcross, relu_moments
from ._common import resolve_activation
from ._quadrature import GL8_W, GL8_X, auto_method, expect, features, panel_rule


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
    act = resolve_activation(activation, param)
    mean, var = float(mean), float(var)
    if var <= 0.0:
        f = float(act.f(mean))
        d = float(act.df(mean))
        return {"mean": f, "m2": f * f, "var": 0.0, "dphi_m2": d * d, "dphi_mean": d,
                "phi_d2phi": float(act.d2f(mean)) * f}
    if method == "auto" and act.name in ("relu", "leaky_relu"):
        r = relu_moments(mean, var, act.param if act.name == "leaky_relu" else 0.0)
        r["phi_d2phi"] = 0.0
        return r
    meth = auto_method(act, mean, var, method)
    feats = features(act)
    p = act.param

    def ev(fun):
        return float(expect(fun, mean, var, feats, meth, n))

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
    return sigma_w2 * phi_m2(resolve_activation(activation, param), bias_mean, q) + sigma_b2


def phi_m2(act, mu, v):
    """E[phi(mu + sqrt(v) xi)^2] only (the length map's inner loop)."""
    if v <= 0.0:
        return float(act.f(mu)) ** 2
    if act.name in ("relu", "leaky_relu", "linear"):
        slope = 1.0 if act.name == "linear" else (act.param if act.name == "leaky_relu" else 0.0)
        return relu_moments(mu, v, slope)["m2"]
    p = act.param
    return float(expect(lambda z: act.phi(z, p) ** 2, mu, v, features(act), auto_method(act, mu, v, "auto")))


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
    :math:`\sigma_w^2 \le 1`, :math:`\sigma_b = 0`), ``inf`` when it diverges (also slowly, as
    ReLU's :math:`q + \sigma_b^2` at :math:`\sigma_w^2 = 2`), and ``q0``
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
    act = resolve_activation(activation, param)

    def F(q):
        return length_map(q, act, sigma_w2, sigma_b2, bias_mean) - q

    q = float(q0)
    if abs(F(q)) <= 1e-13 * max(q, 1.0) and abs(F(2 * q)) <= 2e-13 * max(q, 1.0):
        return q  # the map is the identity here (ReLU at 2, linear at 1)
    far = 1e6 * max(float(q0), 1.0)  # beyond it, check once whether the map grows geometrically
    prev = 0.0
    for it in range(maxiter):
        q_new = F(q) + q
        if not math.isfinite(q_new) or q_new > 1e300:
            return math.inf
        if q_new > far:
            far = math.inf
            if F(q_new) > 1e-9 * q_new and F(1e6 * q_new) > 1e-9 * 1e6 * q_new:
                return math.inf  # q_l grows by a factor > 1 here and a million times further: no root ahead
        if q_new < 1e-150 * max(float(q0), 1.0):
            return 0.0  # collapsed to the trivial fixed point
        step = abs(q_new - q)
        signed, prev = q_new - q, (q_new - q if it % 10 == 9 else prev)
        q = q_new
        if step <= tol * max(q, 1e-300):
            return q
        if it % 10 == 0 and it >= 20 and prev * signed > 0 and 0.5 < signed / prev < 1.0 and q > 1e-8:
            # slow monotone convergence (near a saddle-node or q* -> 0): the geometric tail
            # sum of the steps (rate r over the last 10) points near the root; take it when F
            # changes sign between here and there, so the bracket holds the root being approached
            r = (signed / prev) ** 0.1
            target = q + signed * r / (1.0 - r) * 1.1
            a, b = min(q, target), max(q, target)
            if a > 0 and F(a) * F(b) < 0:
                return optimize.brentq(F, a, b, xtol=1e-300, rtol=4 * np.finfo(float).eps)
        if step <= 1e-6 * q:
            # close to the attracting point: polish with Brent on a bracket around it
            lo, hi = q * (1 - 1e-4), q * (1 + 1e-4)
            if F(lo) * F(hi) < 0:
                return optimize.brentq(F, lo, hi, xtol=1e-300, rtol=4 * np.finfo(float).eps)
    if q < 1e-8 and F(q) < 0:
        return 0.0
    if F(q) > 0 and F(2 * q) > 0 and F(1e3 * q) > 0:
        return math.inf  # still growing after maxiter with no root ahead (e.g. ReLU at 2 with a bias)
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
    act = resolve_activation(activation, param)
    m2 = activation_moments(act, 0.0, q)["m2"]
    qn = sigma_w2 * m2 + sigma_b2
    dm = dmap(act, 0.0, q, q * (1.0 - c))  # (1/2) E[(phi u1 - phi u2)^2] = m2 - E[phi u1 phi u2]
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
        for x, w in zip(GL8_X, GL8_W, strict=True):
            acc += w * act.dphi(ms + hs * x, p)
        out = np.array(out, dtype=np.float64, copy=True)
        out[small] = hs * acc
    return out


def dmap(act, mu, v, D, closed=True):
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
        return relu_dcross(v, D)
    feats = features(act)
    s1 = math.sqrt(max(v - 0.5 * D, 0.0))
    s2 = math.sqrt(0.5 * D)
    if not act.kinks and D < 1e-9 * v:
        # deep in the ordered phase: (1/2)E[(phi(m+h) - phi(m-h))^2] = D E[phi'(m)^2] (1 + O(D)),
        # the next term being (D^2/2) E[phi' phi'''] -- one 1-D integral instead of a 2-D one
        p = act.param
        return float(D * expect(lambda z: act.dphi(z, p) ** 2, mu, s1 * s1, feats, "split"))
    zb = feats
    if act.kinks:
        # the inner integral changes shape within a few s2 of a kink: break the outer rule there
        k = np.array([-8.0, -4.0, -2.0, -1.0, 1.0, 2.0, 4.0, 8.0]) * s2
        zb = np.concatenate([feats, (np.asarray(act.kinks)[:, None] + k[None, :]).ravel()])
    with np.errstate(divide="ignore", invalid="ignore"):
        xi1, w1 = panel_rule(((zb - mu) / s1)[None, :], panels=2)
    xi1, w1 = xi1[0], w1[0]
    m = mu + s1 * xi1
    br = np.abs(feats[None, :] - m[:, None]) / s2
    if br.shape[1] == 0:
        br = np.zeros((m.size, 1))
    xi2, w2 = panel_rule(br, half=True, panels=2)
    diff = _odd_diff(act, m[:, None], s2 * xi2)
    inner = np.sum(diff * diff * w2, axis=1)  # 2 (half range) x 1/2
    return float(np.sum(inner * w1))


def _expect2(act, f, g, mu, v, C):
    """E[f(u1) g(u2)], (u1, u2) ~ N(mu, [[v, C], [C, v]]), by conditioning on u1."""
    feats = features(act)
    s = math.sqrt(v)
    c = min(max(C / v, -1.0), 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        xi1, w1 = panel_rule(((feats - mu) / s)[None, :])
    xi1, w1 = xi1[0], w1[0]
    u1 = mu + s * xi1
    inner = expect(g, mu + c * s * xi1, np.full(xi1.shape, v * (1.0 - c * c)), feats, "split")
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
    act = resolve_activation(activation, param)
    q = fixed_point(act, sigma_w2, sigma_b2, q0=q0)
    if q == 0.0 or not math.isfinite(q):
        r = activation_moments(act, 0.0, 0.0)
        c1 = sigma_w2 * r["dphi_m2"]
        return {"q_star": q, "c_star": 1.0, "chi_1": c1, "chi_c": c1, "slope_q": c1,
                "xi_q": xi_of_slope(c1), "xi_c": xi_of_slope(c1), "xi_grad": xi_of_slope(c1)}
    c1 = chi1(act, sigma_w2, q)
    slope = length_map_slope(act, sigma_w2, q)
    if c1 <= 1.0 + 1e-12:
        # ordered phase or its boundary: c = 1 is the attracting fixed point, chi_c = chi_1
        cstar, chic = 1.0, c1
    else:
        cstar, chic = correlation_fixed_point(act, sigma_w2, q)
    return {"q_star": q, "c_star": cstar, "chi_1": c1, "chi_c": chic, "slope_q": slope,
            "xi_q": xi_of_slope(slope), "xi_c": xi_of_slope(chic), "xi_grad": xi_of_slope(c1)}


def correlation_fixed_point(act, sigma_w2, q):
    r"""``(c*, chi_c)`` of the correlation map at the length fixed point ``q`` in the chaotic phase.

    With :math:`D = q (1 - c)` the map is :math:`D \mapsto \sigma_w^2 \tfrac12 E[(\phi(u_1) - \phi(u_2))^2]`.
    Its Hermite expansion :math:`f(c) = \sum_k a_k c^k` (:math:`a_k \ge 0`, :math:`f(1) = 1`) is convex
    on :math:`[0, 1]` with :math:`f(0) = a_0 \ge 0` and :math:`f(c) - c \ge a_0 (1 + |c|)` on
    :math:`[-1, 0]`, so when :math:`\chi_1 > 1` the attracting point is the one root of
    :math:`G(D) = \sigma_w^2 D_\text{map}(D) - D` in :math:`(0, q]`: found by Brent's method on a bracket
    (``G > 0`` just below ``c = 1``, ``G(q) \le 0``), not by iterating the map (hundreds of 2-D integrals
    near the critical line). ``act`` is a resolved Activation.
    """
    def G(D):
        return sigma_w2 * dmap(act, 0.0, q, D) - D

    hi = q
    g_hi = G(hi)
    if g_hi >= -1e-13 * q:  # c = 0 maps onto itself (odd phi, no bias): c* = 0
        cstar = 0.0
    else:
        lo = 1e-3 * q
        while G(lo) <= 0.0 and lo > 1e-13 * q:  # the root lies closer to c = 1
            hi, lo = lo, lo * 1e-2
        if lo <= 1e-13 * q:
            cstar = 1.0
        else:
            cstar = 1.0 - optimize.brentq(G, lo, hi, xtol=1e-300, rtol=1e-14) / q
    chic = sigma_w2 * _expect2(act, lambda z: act.df(z), lambda z: act.df(z), 0.0, q, q * cstar)
    return cstar, chic


def xi_of_slope(r):
    """Depth scale ``1 / |ln r|`` of a per-layer factor ``r`` (inf at r = 1, 0 at r <= 0)."""
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
    xi, w = panel_rule(((-ys * sD - mean) / sC)[None, :])
    m = mean + sC * xi[0]
    return float(np.sum(np.exp(B * special.log_ndtr(-m / sD)) * w[0]))
