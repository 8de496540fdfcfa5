r"""Finite-width fluctuations: the network-to-network spread of the pooled second moments.

The mean-field maps (:func:`fastinit.theory.mlp_theory`) give the infinite-width value of every
pooled statistic. A network of finite width draws its own value around it: :math:`\ln q_l` is close
to normal across networks, with a variance that is a sum over layers of per-layer terms of order
:math:`1/n_l`, each carried to deeper layers by the slope of the log length map (the delta method), or,
when the samples of one network spread far apart, by a fixed-seed particle model. docs/theory.md section 2.7
derives it; this module computes it.
"""

from __future__ import annotations

import functools
import math

import numpy as np
from scipy.special import ndtri

from ._common import check_widths, per_layer, resolve_activation
from ._maps import activation_moments
from ._networks import mlp_theory
from ._quadrature import expect, features, panel_rule

__all__ = ["FLUCTUATION_STATISTICS", "fluctuation_theory", "log_normal_band", "JENSEN_MAX", "ALONE_MAX"]

#: The statistics whose spread :func:`fluctuation_theory` predicts (pooled second moments).
FLUCTUATION_STATISTICS = ("preact_var", "preact_m2", "post_m2", "grad_preact_m2", "grad_bias_m2_per_sample",
                          "grad_weight_m2_per_sample", "grad_input_m2")

_H = 0.02  # step in ln v of the finite-difference curvatures (error ~ H^2 / 12 of the fourth derivative)
_C_ONE = 1e-12  # 1 - c below which two inputs count as one point (the pair integral is the 1-D one)


def log_normal_band(median, log_sd, level=0.95):
    r"""Central ``level`` interval of a log-normal law: :math:`\text{median}\cdot e^{\pm z\,\sigma}`.

    Parameters
    ----------
    median, log_sd : float or array_like
        :math:`e^{E\ln X}` and :math:`\mathrm{sd}(\ln X)`.
    level : float
        Probability inside the band, in (0, 1); ``z`` is the normal quantile of ``(1 + level)/2``.

    Returns
    -------
    tuple of numpy.ndarray
        ``(low, high)``.

    Examples
    --------
    >>> lo, hi = log_normal_band(1.0, 0.5, level=0.95)      # z = 1.96
    >>> round(float(lo), 4), round(float(hi), 4)
    (0.3753, 2.6644)
    """
    if not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level!r}")
    z = float(ndtri(0.5 + 0.5 * float(level)))
    med = np.asarray(median, dtype=np.float64)
    sd = np.asarray(log_sd, dtype=np.float64)
    return med * np.exp(-z * sd), med * np.exp(z * sd)


# ======================================================================================
# One layer: covariances of the per-unit noises
# ======================================================================================
def _funcs(act, z, mu):
    """The three per-entry functions whose unit means fluctuate: phi^2, (z - mu)^2, phi'^2; and phi'."""
    p = act.param
    d = act.dphi(z, p)
    return np.stack([act.phi(z, p) ** 2, (z - mu) ** 2, d * d]), d


def _layer_covariances(act, mu, v, c, two_d):
    r"""Moments of :math:`u_k = f_k/E f_k - 1` for :math:`f = (\phi^2, (z-\mu)^2, \phi'^2)`, :math:`z\sim N(\mu, v)`.

    Returns ``(A, P, beta, dd)``: ``A[j, k] = E[u_j u_k]`` (one entry), ``P[j, k] = E[u_j(z_1) u_k(z_2)]`` for
    two entries of correlation ``c`` (NaN unless ``two_d``), ``beta[k] = E[u_k (xi^2 - 1)]`` (the coefficient of
    the second Hermite polynomial), and ``dd = E[phi'(z_1) phi'(z_2)]`` (the correlation map's slope).
    ``None`` when a mean ``E f_k`` is 0 (a degenerate layer).
    """
    feats = features(act)
    s = math.sqrt(v)
    with np.errstate(divide="ignore", invalid="ignore"):
        xi, w = panel_rule(((feats - mu) / s)[None, :] if feats.size else np.zeros((1, 1)), panels=1)
    xi, w = xi[0], w[0]
    F, d1 = _funcs(act, mu + s * xi, mu)
    means = F @ w
    if not np.all(np.isfinite(means)) or np.any(means <= 0.0):
        return None
    U = F / means[:, None] - 1.0
    A = (U * w) @ U.T
    beta = U @ (w * (xi * xi - 1.0))
    P = np.full((3, 3), np.nan)
    dd = np.nan
    if two_d:
        if 1.0 - c <= _C_ONE:  # the two inputs coincide
            P, dd = A.copy(), float((d1 * d1) @ w)
        else:
            c = max(c, -1.0)
            cs = s * math.sqrt(max(1.0 - c * c, 0.0))
            m = mu + c * s * xi  # conditional mean of z_2 given z_1 = mu + s xi
            with np.errstate(divide="ignore", invalid="ignore"):
                br = (feats[None, :] - m[:, None]) / cs if feats.size else np.zeros((m.size, 1))
            xi2, w2 = panel_rule(br, panels=1)
            F2, d2 = _funcs(act, m[:, None] + cs * xi2, mu)
            inner = np.sum((F2 / means[:, None, None] - 1.0) * w2, axis=-1)  # (3, M1): E[u_k(z_2) | z_1]
            P = (U * w) @ inner.T
            dd = float(np.sum(d1 * w * np.sum(d2 * w2, axis=-1)))
    return A, P, beta, dd


def _noise_cov(mom, n, c, nu, rho, rho_back):
    r"""Covariances of the per-sample relative noises of one layer of width ``n``: the part shared by every
    sample of the batch and the part of each sample alone (docs/theory.md section 2.7, eq. (K)).

    The noises are those of the post-activation second moment, of the measured pre-activation variance and of
    the backward second moment. Pooled over ``B`` samples the covariance is ``shared + alone / B``.
    """
    A, P, beta, _ = mom
    bb = np.outer(beta, beta)
    if not np.all(np.isfinite(P)):  # one sample: nothing is shared
        P = np.zeros((3, 3))
        c = nu = 0.0
    shared = P + 0.5 * bb * nu - rho * 0.5 * bb * (c * c + nu)  # orthogonal rows: no second-chaos part
    alone = A - P - 0.5 * bb * nu - rho * 0.5 * bb * (1.0 - c * c - nu)  # one sample's variance minus a pair's
    alone[2, 2] += 2.0 * A[2, 2] + 2.0 - 2.0 * rho_back  # the Gaussian backward signal g = sqrt(gamma) xi
    return shared / n, alone / n


# ======================================================================================
# Whole network
# ======================================================================================
def fluctuation_theory(widths, activation, param=None, *, weight_var, bias_mean=0.0, bias_var=0.0, input_mean=0.0,
                       input_std=1.0, batch=1, orthogonal=False, mean_field=None):
    r"""Network-to-network spread of the pooled second moments of a finite-width MLP.

    Across independently initialised networks, each pooled statistic :math:`X` of
    :func:`fastinit.sim.simulate_mlp` (pre-activation variance :math:`q_l`, post-activation and gradient
    second moments) is close to log-normal. To second order in the noise (docs/theory.md section 2.7):

    .. math::
        y_l = S_l\,y_{l-1} + \varepsilon_l, \qquad
        S_l = \frac{d\ln E[\phi(z_l)^2]}{d\ln E[a_{l-1}^2]} = \frac{\tau_l\,(E[\phi'^2] + E[\phi\phi''])}{E[\phi^2]},
        \qquad \tau_l = \sigma_w^2 E[a_{l-1}^2]

    with :math:`y_l = \ln(\overline{a_l^2}/E[a_l^2])` and :math:`\varepsilon_l` the relative noise of a mean over
    :math:`n_l` units, :math:`\mathrm{Var}\,\varepsilon_l \approx (E\phi^4/(E\phi^2)^2 - 1)/n_l` for one input;
    the batch, the correlation between inputs and orthogonal weights change it (eq. (K) of the docs).
    The backward pass adds :math:`\psi_l = \psi_{l+1} + R_l x_l + \varepsilon'_l` with
    :math:`R_l = d\ln E[\phi'^2]/d\ln v_l`. For ReLU with He weights and one input this is Hanin and Rolnick's
    :math:`\mathrm{Var}\ln q_l = 2/n_0 + 5\sum_{k<l}1/n_k + 2/n_l`.

    Parameters
    ----------
    widths : sequence of int
        ``[n_0, ..., n_L]``.
    activation : str or Activation
    param : float, optional
    weight_var, bias_mean, bias_var : float or array_like
        As :func:`mlp_theory` (zero-mean weights of entry variance :math:`s_l^2`).
    input_mean, input_std : float
        Inputs i.i.d. :math:`N(\mu_x, \sigma_x^2)`, drawn afresh for every network.
    batch : int
        Batch size ``B`` the statistics are pooled over.
    orthogonal : bool
        Orthogonal (semi-orthogonal) weights instead of i.i.d. ones.
    mean_field : dict, optional
        :func:`mlp_theory`'s result for the same arguments, when the caller has it already (it is then
        not computed again, and this call is not cached).

    Returns
    -------
    dict of numpy.ndarray
        For each name of :data:`FLUCTUATION_STATISTICS`, ``<name>_median`` (:math:`e^{E\ln X}`, below the
        mean-field value when the noise only enters through :math:`\ln(1 + \varepsilon)`) and ``<name>_logsd``
        (:math:`\mathrm{sd}\ln X`), length L (``grad_input_m2_*``: length 1); NaN where the network is degenerate
        (a zero variance or second moment).

    Raises
    ------
    ValueError
        Bad widths, negative variances, wrong lengths or ``batch < 1``.

    Notes
    -----
    When the samples of one network spread far apart (the within-batch term of the docs' eq. (J) summed
    over layers above :data:`JENSEN_MAX`, or one sample's own log-variance above :data:`ALONE_MAX`, as for
    GELU with He weights or saturated tanh), the batch mean is computed by a fixed-seed particle model instead:
    every sample follows the exact maps with its own and its network's noise. The backward pass assumes
    gradient independence (docs/theory.md section 2.3); its O(L/n) error is not in the band.

    Examples
    --------
    ReLU with He weights, one input (Hanin and Rolnick 2018): the log-variance adds ``5/n`` per layer.

    >>> r = fluctuation_theory([100] * 11, "relu", weight_var=2 / 100, batch=1)
    >>> [round(float(x) ** 2, 4) for x in r["preact_var_logsd"][[0, 1, 9]]]   # 2/n0 + 5 (l-1)/n + 2/n
    [0.04, 0.09, 0.49]
    >>> round(float(r["preact_var_median"][9]), 3)                            # exp(E ln q) < 2
    1.55
    """
    act = resolve_activation(activation, param)
    n = check_widths(widths)
    L = n.size - 1
    B = int(batch)
    if isinstance(batch, bool) or B != batch or B < 1:
        raise ValueError(f"batch must be a positive int, got {batch!r}")
    s2 = per_layer(weight_var, L, "weight_var")
    bm = per_layer(bias_mean, L, "bias_mean", nonneg=False)
    bv = per_layer(bias_var, L, "bias_var")
    key = (tuple(n.tolist()), act, tuple(s2.tolist()), tuple(bm.tolist()), tuple(bv.tolist()), float(input_mean),
           float(input_std), B, bool(orthogonal))
    if mean_field is not None:
        return _compute(*key, mf=mean_field)
    try:
        out = _cached(*key)
    except TypeError:  # an unhashable user activation
        out = _compute(*key)
    return {k: v.copy() for k, v in out.items()}


@functools.lru_cache(maxsize=256)
def _cached(*key):
    return _compute(*key)


def _compute(n, act, s2, bm, bv, input_mean, input_std, B, orthogonal, particles=True, mf=None):
    n = np.asarray(n, dtype=np.float64)
    s2, bm, bv = (np.asarray(a, dtype=np.float64) for a in (s2, bm, bv))
    L = n.size - 1
    if mf is None:
        mf = mlp_theory(n.astype(int).tolist(), act, weight_var=s2, bias_mean=bm, bias_var=bv,
                        input_mean=input_mean, input_std=input_std, batch=B)
    out = {f"{k}_{s}": np.full(L, np.nan) for k in FLUCTUATION_STATISTICS for s in ("median", "logsd")}
    out["grad_input_m2_median"] = np.full(1, np.nan)
    out["grad_input_m2_logsd"] = np.full(1, np.nan)
    m0 = input_mean ** 2 + input_std ** 2
    if not m0 > 0.0:
        return out
    lay = _layers(n, act, s2, bm, bv, mf, m0, input_mean, input_std, B, orthogonal)
    if lay is None:
        return out
    _linear(out, lay, mf, n, B, orthogonal)
    spread = max(float(np.max(lay["alone_var"])), float(np.sum(lay["alone"][1:, 2, 2])))
    if particles and B > 1 and (lay["jensen"] > JENSEN_MAX or spread > ALONE_MAX):
        _particles(out, lay, mf, act, n, s2, B, orthogonal)
    return out


#: Size of the within-batch spread correction of the linear theory, sum_l |(1 - 1/B)(S2_l + S_l^2 - S_l)
#: Var_alone(y_{l-1}) / 2| (docs/theory.md section 2.7, eq. (J)), beyond which the pooled statistics are computed
#: with the particle model: the batch mean of strongly spread samples through a curved map is then not its
#: second-order expansion.
JENSEN_MAX = 0.25
#: Within-network variance of one sample's ln E[a_l^2] or ln E[delta_l^2] beyond which the batch mean of the
#: samples is computed with the particle model: the log of a mean of B log-normal values of log-variance s2
#: has variance ln(1 + (e^s2 - 1)/B), no longer s2/B (1.3x the sd at s2 = 0.5).
ALONE_MAX = 0.5


def _layers(n, act, s2, bm, bv, mf, m0, input_mean, input_std, B, orthogonal):
    """Per-layer slopes, curvatures and noise covariances along the mean-field trajectory (None if degenerate)."""
    L = n.size - 1
    names = ("sw2", "tau", "v", "mu", "c", "S", "S2", "R", "R2", "centring", "alone_var", "spread_shift")
    lay = {k: np.zeros(L) for k in names}
    lay["shared"] = np.zeros((L + 1, 3, 3))
    lay["alone"] = np.zeros((L + 1, 3, 3))
    # layer 0: n_0 x B i.i.d. N(mu_x, sigma_x^2) inputs drawn per network; each sample's own
    lay["alone"][0, 0, 0] = (2 * input_std ** 4 + 4 * input_mean ** 2 * input_std ** 2) / m0 ** 2 / n[0]
    c_in = input_mean ** 2 / m0  # uncentred correlation of two inputs
    nu = (1.0 - c_in ** 2) ** 2 / n[0]  # variance of the realised correlation of two inputs
    m_prev, alone_var = m0, lay["alone"][0, 0, 0]
    rho = jensen = 0.0
    dd_prev = np.nan  # E[phi'(u_1) phi'(u_2)] of the previous layer
    for l in range(1, L + 1):
        i = l - 1
        sw2 = n[i] * s2[i]
        tau = sw2 * m_prev
        v, mu = float(mf["preact_var"][i]), float(bm[i])
        if not (v > 0.0 and tau > 0.0 and math.isfinite(v) and math.isfinite(tau)):
            return None
        c = 1.0 - (mf["preact_unitvar"][i] / (1.0 - 1.0 / B)) / v if B > 1 else 0.0
        c = min(max(c, -1.0), 1.0)
        if l == 1:
            nu = (tau / v) ** 2 * nu
        else:  # the realised correlation, carried by the correlation map's slope
            chi_c = sw2 * lay["v"][i - 1] * dd_prev / v if np.isfinite(dd_prev) else 0.0
            nu = chi_c ** 2 * (nu + (1.0 - rho) * (1.0 - lay["c"][i - 1] ** 2) ** 2 / n[i])
        rho = min(1.0, n[l] / n[i]) if orthogonal else 0.0
        rho_back = min(1.0, n[l] / n[l + 1]) if orthogonal and l < L else 0.0
        mom = _layer_covariances(act, mu, v, c, B > 1)
        r = activation_moments(act, mu, v)
        if mom is None or not (r["m2"] > 0.0 and r["dphi_m2"] > 0.0):
            return None
        lay["shared"][l], lay["alone"][l] = _noise_cov(mom, n[l], c, nu, rho, rho_back)
        dd_prev = mom[3]
        M = r["m2"]

        # ln E[phi^2] at ln m_{l-1} +- H and ln E[phi'^2] at ln v_l +- H, for the curvatures S2, R and R2
        pp, feats = act.param, features(act)
        vm = sw2 * m_prev * np.exp([_H, -_H]) + bv[i]
        lm_p, lm_m = np.log(expect(lambda z, pp=pp: act.phi(z, pp) ** 2, mu, vm, feats))
        dp, dm = np.log(expect(lambda z, pp=pp: act.dphi(z, pp) ** 2, mu, v * np.exp([_H, -_H]), feats))
        S = tau * (r["dphi_m2"] + r["phi_d2phi"]) / M
        d0 = math.log(r["dphi_m2"])
        S2 = (lm_p - 2 * math.log(M) + lm_m) / _H ** 2
        # the batch mean of samples spread by alone_var, through a map of slope S and curvature S2 (eq. (J))
        spread_shift = 0.5 * (1.0 - 1.0 / B) * (S2 + S * S - S) * alone_var
        jensen += abs(spread_shift)
        alone_var = S * S * alone_var + lay["alone"][l, 0, 0]
        vals = dict(sw2=sw2, tau=tau, v=v, mu=mu, c=c, S=S, S2=S2,
                    R=(dp - dm) / (2 * _H), R2=(dp - 2 * d0 + dm) / _H ** 2,
                    centring=(1.0 / B + (1.0 - 1.0 / B) * c) / n[l],  # the pooled mean preact_var subtracts
                    alone_var=alone_var, spread_shift=spread_shift)
        for k, x in vals.items():
            lay[k][i] = x
        m_prev = float(mf["post_m2"][i])
    lay["jensen"] = jensen
    return lay


def _linear(out, lay, mf, n, B, orthogonal):
    """The delta-method propagation (docs/theory.md section 2.7): exact to second order in the noise."""
    L = n.size - 1
    N = 3 * (L + 1) + 1  # noises (eps_l, eta_l, eps'_l) for l = 0..L, and zeta_0 of the input gradient
    blocks = lay["shared"] + lay["alone"] / B
    kz = 2.0 * (1.0 - (min(1.0, n[0] / n[1]) if orthogonal else 0.0)) / (n[0] * B)

    def var(vec):
        b = vec[:-1].reshape(L + 1, 3)
        return float(np.einsum("li,lij,lj->", b, blocks, b) + vec[-1] ** 2 * kz)

    def cov_alone(u, v):  # covariance of the parts of one sample alone (no zeta_0: it is pooled in the end)
        return float(np.einsum("li,lij,lj->", u[:-1].reshape(L + 1, 3), lay["alone"], v[:-1].reshape(L + 1, 3)))

    Y = np.zeros((L + 1, N))  # y_l = ln(post_m2 / mean field), l = 0..L, as coefficients of the noises
    Y[0, 0] = 1.0
    ey = np.zeros(L + 1)
    ey[0] = -0.5 * blocks[0, 0, 0]
    X = np.zeros((L, N))  # x_l = ln(v_l / mean field)
    ex = np.zeros(L)
    for l in range(1, L + 1):
        i = l - 1
        w = lay["tau"][i] / lay["v"][i]
        vy = var(Y[i])
        X[i] = w * Y[i]
        ex[i] = w * ey[i] + 0.5 * w * (1.0 - w) * vy
        Y[l] = lay["S"][i] * Y[i]
        Y[l, 3 * l] += 1.0
        ey[l] = lay["S"][i] * ey[i] + 0.5 * lay["S2"][i] * vy - 0.5 * blocks[l, 0, 0] + lay["spread_shift"][i]
        q_vec = X[i].copy()
        q_vec[3 * l + 1] += 1.0
        v, mu = lay["v"][i], lay["mu"][i]
        out["preact_var_median"][i] = v * math.exp(ex[i] - 0.5 * blocks[l, 1, 1] - lay["centring"][i])
        out["preact_var_logsd"][i] = math.sqrt(var(q_vec))
        f = v / (v + mu * mu)
        out["preact_m2_median"][i] = (v + mu * mu) * math.exp(f * (ex[i] - 0.5 * blocks[l, 1, 1]))
        out["preact_m2_logsd"][i] = f * out["preact_var_logsd"][i]
        out["post_m2_median"][i] = mf["post_m2"][i] * math.exp(ey[l])
        out["post_m2_logsd"][i] = math.sqrt(var(Y[l]))
    # backward: psi_l = ln(grad_preact_m2 / mean field) = psi_{l+1} + R_l x_l + eps'_l
    # Backward, the batch mean over samples is taken as the mean of the pooled chain: the within-batch spread
    # term of eq. (J) is of the order of the gradient-independence error, O(L/n), and measured to be of the
    # opposite sign (docs/theory.md section 2.7).
    psi = np.zeros(N)
    epsi = 0.0
    for l in range(L, 0, -1):
        i = l - 1
        psi = psi + lay["R"][i] * X[i]
        psi[3 * l + 2] += 1.0
        epsi += lay["R"][i] * ex[i] + 0.5 * lay["R2"][i] * var(X[i]) - 0.5 * blocks[l, 2, 2]
        sd = math.sqrt(var(psi))
        for name in ("grad_preact_m2", "grad_bias_m2_per_sample"):
            out[name + "_median"][i] = mf["grad_preact_m2"][i] * math.exp(epsi)
            out[name + "_logsd"][i] = sd
        out["grad_weight_m2_per_sample_median"][i] = mf["grad_weight_m2_per_sample"][i] * math.exp(
            epsi + ey[i] + (1.0 - 1.0 / B) * cov_alone(psi, Y[i]))
        out["grad_weight_m2_per_sample_logsd"][i] = math.sqrt(var(psi + Y[i]))
    zeta = psi.copy()
    zeta[-1] = 1.0
    out["grad_input_m2_median"][0] = float(np.ravel(mf["grad_input_m2"])[0]) * math.exp(epsi - 0.5 * kz)
    out["grad_input_m2_logsd"][0] = math.sqrt(var(zeta))


_PARTICLES = 1 << 16  # networks x samples of the particle model
_PARTICLE_NETWORKS = (256, 8192)  # at least (the sd of ln X to 4.4%), at most
_PARTICLE_SAMPLES = 256  # samples per network at most (a larger batch is pooled over this many)
_PARTICLE_SEED = 20240617  # the particle model is a fixed-seed computation: the same answer every call
_TABLE_POINTS = 4001  # nodes of the tables of ln E[phi^2] and ln E[phi'^2] against ln v
_TABLE_MARGIN = 25.0  # the tables reach this far in ln v beyond the mean-field trajectory


def _table(act, mu, lo, hi):
    """ln E[phi(mu + sqrt(v) xi)^2] and ln E[phi'^2] on a grid of ln v, and an interpolator with linear ends."""
    grid = np.linspace(lo, hi, _TABLE_POINTS)
    p, feats = act.param, features(act)
    v = np.exp(grid)
    tiny = np.finfo(float).tiny
    lm = np.log(np.maximum(expect(lambda z: act.phi(z, p) ** 2, mu, v, feats), tiny))
    ld = np.log(np.maximum(expect(lambda z: act.dphi(z, p) ** 2, mu, v, feats), tiny))
    h = grid[1] - grid[0]

    def interp(tab, x):
        y = np.interp(x, grid, tab)
        y = np.where(x < lo, tab[0] + (x - lo) * (tab[1] - tab[0]) / h, y)
        return np.where(x > hi, tab[-1] + (x - hi) * (tab[-1] - tab[-2]) / h, y)

    return (lambda x: interp(lm, x)), (lambda x: interp(ld, x))


def _root(K):
    """A square root ``R`` of a covariance (negative eigenvalues of the approximation clipped): ``K = R R^T``."""
    val, vec = np.linalg.eigh(0.5 * (K + K.T))
    return vec * np.sqrt(np.maximum(val, 0.0))


def _log_mean_exp(x):
    """ln of the batch mean of exp(x) over the last axis."""
    top = np.max(x, axis=-1, keepdims=True)
    return (top + np.log(np.mean(np.exp(x - top), axis=-1, keepdims=True)))[..., 0]


def _particles(out, lay, mf, act, n, s2, B, orthogonal):
    """The particle model (docs/theory.md section 2.7): every sample of a network follows the nonlinear maps with
    its own and its network's noise; the statistics are pooled over the samples as the simulator pools them."""
    L = n.size - 1
    Bp = min(B, _PARTICLE_SAMPLES)
    P = min(max(_PARTICLES // Bp, _PARTICLE_NETWORKS[0]), _PARTICLE_NETWORKS[1])
    rng = np.random.default_rng(_PARTICLE_SEED)
    lv = np.log(lay["v"])
    tables = {mu: _table(act, mu, max(lv.min() - _TABLE_MARGIN, -700.0), min(lv.max() + _TABLE_MARGIN, 700.0))
              for mu in set(lay["mu"].tolist())}
    a0 = lay["alone"][0, 0, 0]
    lm = math.log(lay["tau"][0] / lay["sw2"][0]) + math.sqrt(a0) * rng.standard_normal((P, Bp)) - 0.5 * a0
    lm_in = np.empty((L, P, Bp), dtype=np.float32)  # ln a_{l-1}^2 per sample, for the weight gradient
    ld = np.empty((L, P, Bp), dtype=np.float32)  # ln E[phi'(z_l)^2 | sample] + backward noise
    pooled = {k: np.empty((L, P)) for k in ("preact_var", "preact_m2", "post_m2")}
    for i in range(L):
        l = i + 1
        lnM, lnD = tables[lay["mu"][i]]
        lm_in[i] = lm
        lvs = np.log(lay["sw2"][i]) + lm
        if lay["v"][i] > lay["tau"][i]:  # a random bias adds its variance
            lvs = np.logaddexp(lvs, math.log(lay["v"][i] - lay["tau"][i]))
        K = lay["shared"][l] + lay["alone"][l]
        e = (rng.standard_normal((P, 1, 3)) @ _root(lay["shared"][l]).T
             + rng.standard_normal((P, Bp, 3)) @ _root(lay["alone"][l]).T)
        lq = lvs + e[..., 1] - 0.5 * K[1, 1]
        mu2 = lay["mu"][i] ** 2
        pooled["preact_var"][i] = _log_mean_exp(lq) + math.log1p(-min(lay["centring"][i], 0.5))
        pooled["preact_m2"][i] = _log_mean_exp(np.logaddexp(lq, math.log(mu2)) if mu2 > 0 else lq)
        lm = lnM(lvs) + e[..., 0] - 0.5 * K[0, 0]
        pooled["post_m2"][i] = _log_mean_exp(lm)
        ld[i] = lnD(lvs) + e[..., 2] - 0.5 * K[2, 2]
    back = {k: np.empty((L, P)) for k in ("grad_preact_m2", "grad_weight_m2_per_sample")}
    lg = np.zeros((P, Bp))  # ln gamma_L = ln E[G^2] = 0
    for i in range(L - 1, -1, -1):
        ldelta = lg + ld[i]
        back["grad_preact_m2"][i] = _log_mean_exp(ldelta)
        back["grad_weight_m2_per_sample"][i] = _log_mean_exp(ldelta + lm_in[i])
        lg = ldelta + math.log(n[i + 1] * s2[i])
    kz = 2.0 * (1.0 - (min(1.0, n[0] / n[1]) if orthogonal else 0.0)) / n[0]
    lg = lg + math.sqrt(kz) * rng.standard_normal((P, Bp)) - 0.5 * kz
    back["grad_input_m2"] = _log_mean_exp(lg)[None, :]
    back["grad_bias_m2_per_sample"] = back["grad_preact_m2"]
    for name, x in {**pooled, **back}.items():
        out[name + "_median"] = np.exp(np.mean(x, axis=1))
        out[name + "_logsd"] = np.std(x, axis=1, ddof=1)
