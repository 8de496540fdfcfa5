r"""Two inputs through a deep random network: the correlation trajectory, the phase of a point
:math:`(\sigma_w^2, \sigma_b^2)` and the critical line :math:`\chi_1 = 1`.

Poole et al. (2016) and Schoenholz et al. (2017). Two inputs :math:`x_a, x_b \in \mathbb R^{n_0}` of
equal length :math:`q_0 = \|x\|^2 / n_0` and cosine :math:`c_0` enter a network with weights of
variance :math:`\sigma_w^2 / n_{l-1}` and biases :math:`\mathcal N(0, \sigma_b^2)`. In the mean-field
limit both pre-activations have the variance :math:`q_l` and their correlation is :math:`c_l`:

.. math::
    q_1 = \sigma_w^2 q_0 + \sigma_b^2, \qquad c_1 = \frac{\sigma_w^2 q_0 c_0 + \sigma_b^2}{q_1},

    q_l = \sigma_w^2 E[\phi(u_1)^2] + \sigma_b^2, \qquad
    c_l = \frac{\sigma_w^2 E[\phi(u_1)\phi(u_2)] + \sigma_b^2}{q_l}, \qquad
    (u_1, u_2) \sim \mathcal N\!\left(0, q_{l-1}\begin{pmatrix}1 & c_{l-1}\\ c_{l-1} & 1\end{pmatrix}\right).

The fixed points, slopes and depth scales (:math:`q^*, c^*, \chi_1, \chi_c, \xi_q, \xi_c`) are those of
:func:`fastinit.theory.depth_scales`; :func:`criticality` adds the phase and the limits where the
length map has no finite positive fixed point.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import optimize

from fastinit._checks import InitArgumentError, integer, real

from ._common import resolve_activation
from ._maps import activation_moments, depth_scales, dmap, fixed_point, length_map, phi_m2, xi_of_slope

__all__ = ["correlation_trajectory", "criticality", "critical_sigma_w2", "check_sigmas", "check_pair"]

_HOMOGENEOUS = ("relu", "leaky_relu", "linear")  # phi(k z) = k phi(z) for k > 0: the c map ignores q
_Q_SMALL, _Q_LARGE = 1e-200, 1e200  # where the limits q* -> 0 and q* -> inf are evaluated


def check_sigmas(sigma_w2, sigma_b2):
    """``(sigma_w2, sigma_b2)`` as floats ``>= 0``, not both 0 (every pre-activation would be 0)."""
    sw = real(sigma_w2, "sigma_w2", minimum=0.0)
    sb = real(sigma_b2, "sigma_b2", minimum=0.0)
    if sw == 0.0 and sb == 0.0:
        raise InitArgumentError("sigma_w2 and sigma_b2 are both 0: every pre-activation is 0 and the correlation "
                                "of two inputs is undefined (with sigma_w2 = 0 and sigma_b2 > 0 every input "
                                "gives the same bias vector: c_l = 1 from layer 1)")
    return sw, sb


def check_pair(q0, c0):
    """``(q0, c0)``: the inputs' length ``q0 > 0`` and their cosine ``c0`` in ``[-1, 1]``."""
    q0 = real(q0, "q0")
    if q0 <= 0.0:
        raise InitArgumentError(f"q0 must be > 0 (the inputs' squared length per coordinate), got {q0}")
    c0 = real(c0, "c0")
    if not -1.0 <= c0 <= 1.0:
        raise InitArgumentError(f"c0 must lie in [-1, 1] (the cosine of the two inputs), got {c0}")
    return q0, c0


def correlation_trajectory(activation, sigma_w2, sigma_b2=0.0, *, depth, q0=1.0, c0=0.0, param=None):
    r"""Mean-field length :math:`q_l` and correlation :math:`c_l` of two inputs, layer by layer.

    The map of the module docstring, iterated from the inputs' length ``q0`` and cosine ``c0``. The
    code propagates :math:`D_l = q_l (1 - c_l)` (theory.md section 2.2), so :math:`1 - c_l` keeps its
    digits when :math:`c_l \to 1`:

    .. math::
        D_1 = \sigma_w^2 q_0 (1 - c_0), \qquad
        D_l = \sigma_w^2\, \tfrac12 E\big[(\phi(u_1) - \phi(u_2))^2\big].

    Degenerate inputs have finite answers: ``c0 = 1`` (identical inputs) gives :math:`c_l = 1` at
    every layer; ``sigma_w2 = 0`` with ``sigma_b2 > 0`` gives :math:`q_l = \sigma_b^2`, :math:`c_l = 1`.
    A length that overflows (an exploding net) leaves NaN from that layer on.

    Parameters
    ----------
    activation : str or Activation
    sigma_w2, sigma_b2 : float
        Weight variance times fan-in, and the bias variance (not both 0).
    depth : int
        Number of layers L.
    q0 : float
        :math:`\|x\|^2 / n_0` of each input (> 0).
    c0 : float
        Cosine of the two inputs, in [-1, 1].
    param : float, optional
        Activation parameter.

    Returns
    -------
    dict of numpy.ndarray
        ``layer`` (1..L), ``q``, ``c``, ``D`` and ``chi_1`` (:math:`\sigma_w^2 E[\phi'(z_l)^2]`, the
        growth of a small perturbation from layer l to l + 1), each of length L.

    Examples
    --------
    >>> t = correlation_trajectory("relu", 2.0, depth=3, c0=0.0)
    >>> [round(float(c), 6) for c in t["c"]]         # the arc-cosine kernel: 0 -> 1/pi -> ...
    [0.0, 0.31831, 0.493731]
    >>> correlation_trajectory("tanh", 1.5, 0.1, depth=4, c0=1.0)["c"]
    array([1., 1., 1., 1.])
    """
    act = resolve_activation(activation, param)
    sw, sb = check_sigmas(sigma_w2, sigma_b2)
    L = integer(depth, "depth", minimum=1)
    q0, c0 = check_pair(q0, c0)
    q = np.full(L, np.nan)
    D = np.full(L, np.nan)
    chi = np.full(L, np.nan)
    qp, Dp = sw * q0 + sb, sw * q0 * (1.0 - c0)
    for l in range(L):
        if l > 0:
            qp, Dp = sw * phi_m2(act, 0.0, q[l - 1]) + sb, sw * dmap(act, 0.0, q[l - 1], D[l - 1])
        if not (math.isfinite(qp) and qp < 1e300):
            break
        q[l], D[l] = qp, min(max(Dp, 0.0), 2.0 * qp)
        chi[l] = sw * activation_moments(act, 0.0, qp)["dphi_m2"]
    with np.errstate(invalid="ignore", divide="ignore"):
        c = np.where(q > 0, 1.0 - D / q, np.nan)
    return {"layer": np.arange(1, L + 1), "q": q, "c": c, "D": D, "chi_1": chi}


def _q_and_chi1(act, sw, sb):
    """``(q*, chi_1)`` with chi_1 taken in the limit when q* is 0 or inf (ReLU's 1/2, not phi'(0)^2 = 0)."""
    q = fixed_point(act, sw, sb)
    qe = _Q_SMALL if q == 0.0 else (_Q_LARGE if math.isinf(q) else q)
    return q, sw * activation_moments(act, 0.0, qe)["dphi_m2"]


def _phase(chi):
    if abs(chi - 1.0) <= 1e-9:
        return "critical"
    return "ordered" if chi < 1.0 else "chaotic"


def criticality(activation, sigma_w2, sigma_b2=0.0, param=None):
    r"""Phase, fixed points and depth scales of one point :math:`(\sigma_w^2, \sigma_b^2)`.

    :func:`depth_scales` where the length map has a finite positive fixed point :math:`q^*`, with
    ``phase`` = ``"ordered"`` (:math:`\chi_1 < 1`: :math:`c^* = 1`, :math:`\chi_c = \chi_1`),
    ``"chaotic"`` (:math:`\chi_1 > 1`, :math:`c^* < 1`) or ``"critical"`` (:math:`|\chi_1 - 1| \le 10^{-9}`).
    Where it has none the values are limits, documented here:

    * :math:`q^* = \infty` (an unbounded :math:`\phi` whose length explodes): :math:`\chi_1 =
      \sigma_w^2 \lim_{q \to \infty} E[\phi'^2]`. The bias becomes negligible and :math:`\phi` acts as
      its positively homogeneous limit, whose normalised correlation map has slope 1 at
      :math:`c = 1`: :math:`c^* = 1`, :math:`\chi_c = 1`, :math:`\xi_c = \infty` (the correlation still
      converges, polynomially, as ReLU's does).
    * :math:`q^* = 0` (no bias, :math:`\phi(0) = 0`, shrinking length): :math:`\chi_1 =
      \sigma_w^2 \lim_{q \to 0} E[\phi'^2]` (1/2 for ReLU, :math:`\phi'(0)^2` for smooth :math:`\phi`).
      ReLU and leaky ReLU: as above (:math:`c^* = 1`, :math:`\xi_c = \infty`). Smooth :math:`\phi`
      becomes linear: :math:`c_l` settles at a limit that depends on :math:`c_0` (``c_star`` NaN),
      geometrically at the rate :math:`\chi_c = \chi_1` (:math:`c_{l+1} - c_l \propto q_l`).

    Parameters
    ----------
    activation : str or Activation
    sigma_w2, sigma_b2 : float
        ``>= 0``, not both 0.
    param : float, optional

    Returns
    -------
    dict
        ``phase`` and the floats ``q_star, c_star, chi_1, chi_c, slope_q, xi_q, xi_c, xi_grad``
        (depth scales ``inf`` for a slope of 1, see :func:`depth_scales`).

    Examples
    --------
    >>> p = criticality("tanh", 4.0, 0.05)
    >>> p["phase"], round(p["c_star"], 4), round(p["xi_c"], 2)
    ('chaotic', 0.1651, 6.98)
    >>> p = criticality("relu", 1.5)                   # length shrinks to 0; chi_1 = 1.5 / 2
    >>> p["phase"], p["q_star"], p["chi_1"], p["xi_c"]
    ('ordered', 0.0, 0.75, inf)
    """
    act = resolve_activation(activation, param)
    sw, sb = check_sigmas(sigma_w2, sigma_b2)
    q, chi = _q_and_chi1(act, sw, sb)
    if 0.0 < q < math.inf:
        out = depth_scales(act, sw, sb, q0=q)  # starts at q*: no second iteration
        out["chi_1"], out["xi_grad"] = chi, xi_of_slope(chi)
        if out["c_star"] == 1.0:  # ordered: the slope at c = 1 is chi_1 itself, to the last bit
            out["chi_c"], out["xi_c"] = chi, xi_of_slope(chi)
    else:
        out = {"q_star": q, "chi_1": chi, "xi_grad": xi_of_slope(chi)}
        homogeneous_limit = math.isinf(q) or act.name in ("relu", "leaky_relu")
        if homogeneous_limit:
            out["c_star"], out["chi_c"] = 1.0, 1.0
        elif act.name == "linear":
            out["c_star"], out["chi_c"] = math.nan, 1.0  # the identity: c_l = c_0 for ever
        else:
            out["c_star"], out["chi_c"] = math.nan, chi
        qe = _Q_LARGE if math.isinf(q) else _Q_SMALL
        out["slope_q"] = length_map(qe, act, sw, sb) / qe  # q_{l+1} / q_l in the limit
        out["xi_q"], out["xi_c"] = xi_of_slope(out["slope_q"]), xi_of_slope(out["chi_c"])
    out["phase"] = _phase(chi)
    return out


def critical_sigma_w2(activation, sigma_b2=0.0, param=None, bracket=(1e-3, 1e3), xtol=1e-12):
    r"""The :math:`\sigma_w^2` of the critical line at ``sigma_b2``: :math:`\chi_1(\sigma_w^2, q^*) = 1`.

    Brent's method on :math:`\chi_1 - 1` (with :math:`\chi_1` as in :func:`criticality`) inside
    ``bracket``; NaN when :math:`\chi_1 - 1` does not change sign there (no transition).

    Without bias and with :math:`\phi(0) = 0` the transition can be the birth of :math:`q^* > 0` from 0
    (tanh at :math:`\sigma_w^2 = 1`, SELU at 0.478): there :math:`\chi_1 - 1` is only
    :math:`O((\sigma_w^2 - \sigma_0^2)^2)` on the chaotic side (for tanh :math:`q^* \approx (\sigma_w^2 - 1)/2`
    cancels the first order), a root no bracketing method can place better than ~1e-3. So when
    :math:`\chi_1 - 1` changes sign across :math:`\sigma_0^2 = 1 / \lim_{q \to 0} E[\phi'^2]` (checked at
    :math:`\pm 1\%`), :math:`\sigma_0^2` is returned exactly; otherwise Brent's root, good to ~1e-9.
    Where :math:`\chi_1` jumps over 1 the jump is returned: GELU without bias crosses at
    :math:`\sigma_w^2 = 1 / E[\mathrm{gelu}(\xi)^2] = 2.35`, where :math:`q^*` reached from ``q0 = 1``
    switches from 0 (:math:`\chi_1 \to \sigma_w^2/4`) to :math:`\infty` (:math:`\chi_1 \to \sigma_w^2/2`).

    Parameters
    ----------
    activation : str or Activation
    sigma_b2 : float
    param : float, optional
    bracket : (float, float)
        Range of :math:`\sigma_w^2` searched.
    xtol : float
        Absolute tolerance of the root (a jump is found by bisection: one evaluation per halving).

    Returns
    -------
    float

    Examples
    --------
    >>> round(critical_sigma_w2("relu", 0.3), 9)       # chi_1 = sigma_w^2 / 2 whatever the bias
    2.0
    >>> round(critical_sigma_w2("tanh", 0.0), 12)      # Poole et al.: sigma_w^2 = 1 without bias
    1.0
    """
    act = resolve_activation(activation, param)
    sb = real(sigma_b2, "sigma_b2", minimum=0.0)
    lo, hi = (real(b, "bracket", minimum=0.0) for b in bracket)
    if not 0.0 < lo < hi:
        raise InitArgumentError(f"bracket must be (lo, hi) with 0 < lo < hi, got {bracket!r}")

    def f(sw):
        return _q_and_chi1(act, sw, sb)[1] - 1.0

    if sb == 0.0 and float(act.f(0.0)) == 0.0:
        # where q* = 0 loses stability: sigma_w^2 lim_{q -> 0} E[phi'^2] = 1, if chi_1 - 1 changes sign there
        s0 = 1.0 / activation_moments(act, 0.0, _Q_SMALL)["dphi_m2"]
        if lo < s0 * 0.99 and s0 * 1.01 < hi and f(s0 * 0.99) < 0.0 < f(s0 * 1.01):
            return s0
    flo, fhi = f(lo), f(hi)
    if flo == 0.0 or fhi == 0.0:
        return lo if flo == 0.0 else hi
    if not flo * fhi < 0.0:
        return math.nan
    return float(optimize.brentq(f, lo, hi, xtol=real(xtol, "xtol", minimum=1e-15), rtol=1e-10))
