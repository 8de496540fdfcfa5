"""Whole networks: the mean-field prediction of every simulated statistic (MLP, RNN)."""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from ._common import (
    MLP_BACKWARD_STATISTICS,
    MLP_FORWARD_STATISTICS,
    check_widths,
    per_layer,
    resolve_activation,
)
from ._maps import activation_moments, dmap, p_dead


# ======================================================================================
# Whole networks
# ======================================================================================
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
    n = check_widths(widths)
    L = n.size - 1
    s2 = per_layer(weight_var, L, "weight_var")
    dp = per_layer(dphi_m2, L, "dphi_m2")
    d = np.empty(L)
    g = float(seed_m2)
    for l in range(L - 1, -1, -1):
        d[l] = dp[l] * g
        g = n[l + 1] * s2[l] * d[l]
    return d, np.array([g])


# the per-layer statistics mlp_theory predicts (the symmetry statistic preact_unitspread is not one)
_PREDICTED = tuple(k for k in MLP_FORWARD_STATISTICS + MLP_BACKWARD_STATISTICS if k != "preact_unitspread")


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
    act = resolve_activation(activation, param)
    n = check_widths(widths)
    L = n.size - 1
    s2 = per_layer(weight_var, L, "weight_var")
    bm = per_layer(bias_mean, L, "bias_mean", nonneg=False)
    bv = per_layer(bias_var, L, "bias_var")
    if not (math.isfinite(input_mean) and math.isfinite(input_std) and input_std >= 0):
        raise ValueError(f"input_std must be finite and >= 0 (and input_mean finite), "
                         f"got {input_mean!r}, {input_std!r}")
    if batch is not None and (isinstance(batch, bool) or int(batch) != batch or batch < 1):
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    res = residual_scale is not None
    if res:
        if not math.isfinite(residual_scale):
            raise ValueError(f"residual_scale must be finite, got {residual_scale!r}")
        if np.any(n != n[0]):
            raise ValueError(f"residual_scale needs all widths equal, got widths={list(map(int, n))}")
    alpha = float(residual_scale) if res else 1.0

    out = {k: np.full(L, np.nan) for k in _PREDICTED}
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
        dphi = dmap(act, mu, v, D)
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
    act = resolve_activation(activation, param)
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
