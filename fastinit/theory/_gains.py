"""Gains: torch's table beside the second-moment-preserving ones (theory.md §5-6)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from scipy import optimize

from fastinit.init import calculate_gain

from ._common import resolve_activation
from ._maps import activation_moments, fixed_point, phi_m2


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
    r"""torch's ``calculate_gain`` for a registered activation (:func:`fastinit.init.calculate_gain`, theory.md §5).

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
    act = resolve_activation(activation, param)
    try:
        return float(calculate_gain(act.name, act.param))
    except ValueError:  # gelu, silu, softplus: "Unsupported nonlinearity"
        return None


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
    act = resolve_activation(activation, param)
    r1 = activation_moments(act, 0.0, 1.0)
    g_pre = 1.0 / math.sqrt(r1["m2"])
    g_naive = 1.0 / math.sqrt(r1["var"])
    chi_pre = g_pre**2 * r1["dphi_m2"]
    slope_pre = g_pre**2 * (r1["dphi_m2"] + r1["phi_d2phi"])
    if act.bounded:
        g_post = chi_post = slope_post = math.nan
    else:
        def F(lg):
            return math.log(phi_m2(act, 0.0, math.exp(2 * lg)))
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
