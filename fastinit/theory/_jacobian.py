r"""Spectrum of the input-output Jacobian at initialization (theory.md §2.9).

For :math:`J = D_L W_L \cdots D_1 W_1` with :math:`D_l = \mathrm{diag}\,\phi'(z_l)`, free probability
(Pennington, Schoenholz and Ganguli 2017) gives the mean and the spread of the eigenvalues
:math:`\lambda` of :math:`JJ^\top` (the squared singular values of :math:`J`) in the wide limit: the
S-transform of a free product is the product of the factors' S-transforms, and the first two
coefficients of :math:`S(w) = \frac{1}{m_1}\left(1 - \frac{m_2 - m_1^2}{m_1^2}\,w + O(w^2)\right)` give

.. math::
    E[\lambda] = \prod_{l=1}^L \chi_l, \qquad
    \frac{\mathrm{Var}[\lambda]}{E[\lambda]^2} = \sum_{l=1}^L
        \left(\frac{E[\phi'(z_l)^4]}{E[\phi'(z_l)^2]^2} - 1 + s_W\right),

with :math:`\chi_l = \sigma_{w,l}^2 E[\phi'(z_l)^2]`, :math:`z_l \sim \mathcal N(\mu, q_l)` from the length
map, and :math:`s_W` the normalised variance of the spectrum of :math:`W W^\top / \sigma_w^2`: 1 for square
i.i.d. weights (Marchenko-Pastur at ratio 1), 0 for orthogonal weights. For rectangular layers (widths
:math:`n_0, \dots, n_L`) the dimension-free :math:`T = \mathrm{tr}(A^2)/(\mathrm{tr}A)^2` of
:math:`A = J^\top J` grows by :math:`\kappa_l / n_l - o / \max(n_{l-1}, n_l)` per layer
(:math:`\kappa_l = E[\phi'^4]/E[\phi'^2]^2`, :math:`o = 0` i.i.d., 1 semi-orthogonal) from
:math:`T_0 = 1/n_0`, and the spread over :math:`k = \min(n_0, n_L)` values is :math:`k T - 1`.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

from fastinit._checks import InitArgumentError, integer, real

from ._common import check_widths, per_layer, resolve_activation
from ._maps import activation_moments
from ._quadrature import auto_method, expect, features, panel_rule

__all__ = ["jacobian_theory", "jacobian_density", "critical_sigmas", "linear_sv2_finite_width",
           "WEIGHT_SPECTRUM_SPREAD"]

#: Normalised variance :math:`s_W = \mathrm{Var}[\mu]/E[\mu]^2` of the eigenvalues :math:`\mu` of
#: :math:`W W^\top` for a square weight: Marchenko-Pastur at aspect ratio 1 (second moment
#: :math:`2\sigma_w^4`, any i.i.d. zero-mean entries) or a scaled orthogonal matrix (all equal).
WEIGHT_SPECTRUM_SPREAD = {"gaussian": 1.0, "orthogonal": 0.0}
_NEWTON_STEPS = 40  # per point of jacobian_density; from the previous point's solution 3-6 suffice


def _dphi_moments(act, mu, q):
    """(E[phi'^2], E[phi'^4], E[phi^2]) at z ~ N(mu, q)."""
    r = activation_moments(act, mu, q)
    if q <= 0.0:
        d = float(act.df(mu))
        return r["dphi_m2"], d ** 4, r["m2"]
    p = act.param
    m4 = float(expect(lambda z: act.dphi(z, p) ** 4, mu, q, features(act), auto_method(act, mu, q, "auto")))
    return r["dphi_m2"], m4, r["m2"]


def jacobian_theory(depth, activation, sigma_w2, sigma_b2=0.0, *, weights="gaussian", bias_mean=0.0,
                    input_m2=1.0, param=None, widths=None):
    r"""Mean and variance of the squared singular values of a deep net's input-output Jacobian.

    For equal widths, :math:`J = D_L W_L \cdots D_1 W_1` (:math:`D_l = \mathrm{diag}\,\phi'(z_l)`) and
    :math:`\lambda` an eigenvalue of :math:`J J^\top`, in the wide limit (theory.md §2.9):

    .. math::
        q_1 = \sigma_{w,1}^2 E[x^2] + \sigma_b^2, \qquad
        q_{l+1} = \sigma_{w,l+1}^2 E[\phi(\mu + \sqrt{q_l}\,\xi)^2] + \sigma_b^2

        E[\lambda]_l = \prod_{k \le l} \chi_k, \quad \chi_k = \sigma_{w,k}^2 E[\phi'(z_k)^2], \qquad
        \frac{\mathrm{Var}[\lambda]_l}{E[\lambda]_l^2} = \sum_{k \le l}
            \left(\frac{E[\phi'(z_k)^4]}{E[\phi'(z_k)^2]^2} - 1 + s_W\right)

    with :math:`s_W = 1` for i.i.d. weights and 0 for orthogonal ones (Pennington, Schoenholz and
    Ganguli 2017). At criticality (:math:`\chi = 1`) the variance grows linearly in depth, with slope
    smaller by exactly 1 for orthogonal weights. A linear net reproduces
    :func:`linear_net_sv2_moments` (Fuss-Catalan variance :math:`L g^{4L}`, or 0 when orthogonal).

    With ``widths`` = :math:`[n_0, \dots, n_L]` (``W_l`` of shape :math:`n_l \times n_{l-1}`, entries of
    variance :math:`\sigma_{w,l}^2 / n_{l-1}`, or :math:`\sqrt{\sigma_{w,l}^2 \max(n_{l-1}, n_l)/n_{l-1}}`
    times a Haar semi-orthogonal matrix) the statistics after :math:`l` layers are those of the
    :math:`k_l = \min(n_0, n_l)` squared singular values (the eigenvalues of the smaller Gram matrix,
    zeros included), theory.md §2.9:

    .. math::
        E[\lambda]_l = \frac{n_l}{k_l} \prod_{j \le l} \chi_j, \qquad
        \frac{\mathrm{Var}[\lambda]_l}{E[\lambda]_l^2} = k_l \Big(\frac{1}{n_0} + \sum_{j \le l}
            \Big(\frac{\kappa_j}{n_j} - \frac{o}{\max(n_{j-1}, n_j)}\Big)\Big) - 1,
        \qquad \kappa_j = \frac{E[\phi'(z_j)^4]}{E[\phi'(z_j)^2]^2},

    :math:`o = 0` for i.i.d. and 1 for orthogonal weights. Equal widths give the sum above (and the
    same numbers, bit for bit).

    Parameters
    ----------
    depth : int
        Number of layers L (>= 1).
    activation : str or Activation
    sigma_w2 : float or array_like
        :math:`\sigma_w^2 = n\,s^2` (scalar or one per layer), >= 0.
    sigma_b2 : float
        Variance of a random bias (>= 0).
    weights : {"gaussian", "orthogonal"}
        I.i.d. zero-mean entries (any distribution: the Marchenko-Pastur law is universal) or
        scaled orthogonal matrices.
    bias_mean : float
        Constant bias :math:`\mu` (the pre-activation mean).
    input_m2 : float
        :math:`E[x^2]` of the input entries.
    param : float, optional
        Activation parameter.
    widths : sequence of int, optional
        The widths :math:`[n_0, \dots, n_L]` (``depth + 1`` entries, each >= 1). None: all equal.

    Returns
    -------
    dict of numpy.ndarray
        Length-L arrays, entry ``l-1`` describing :math:`J` after ``l`` layers: ``q`` (pre-activation
        variance), ``dphi_m2``, ``dphi_m4``, ``chi1``, ``mean_sv2`` (:math:`E\lambda`), ``norm_var``
        (:math:`\mathrm{Var}\lambda / (E\lambda)^2`) and ``var_sv2`` (:math:`\mathrm{Var}\lambda`),
        the last three over the :math:`k_l = \min(n_0, n_l)` squared singular values.
        Where :math:`\chi = 0` (:math:`\sigma_w^2 = 0`, or :math:`E[\phi'^2] = 0`) the Jacobian is 0:
        ``mean_sv2 = var_sv2 = 0`` and ``norm_var`` is NaN from that layer on.

    Raises
    ------
    TypeError, InitArgumentError
        A bad ``depth``, a negative or non-finite ``sigma_w2``/``sigma_b2``/``input_m2``, an
        unknown ``weights``, or ``widths`` that are not ``depth + 1`` integers >= 1.

    Examples
    --------
    Tanh at criticality with :math:`q^* = 0.25` keeps :math:`E\lambda = 1`; orthogonal weights make the
    spread grow by 0.137 per layer instead of 1.137:

    >>> sw2, sb2 = critical_sigmas("tanh", 0.25)
    >>> g = jacobian_theory(32, "tanh", sw2, sb2, input_m2=(0.25 - sb2) / sw2)
    >>> o = jacobian_theory(32, "tanh", sw2, sb2, weights="orthogonal", input_m2=(0.25 - sb2) / sw2)
    >>> round(float(g["mean_sv2"][-1]), 6), round(float(o["mean_sv2"][-1]), 6)
    (1.0, 1.0)
    >>> round(float(g["var_sv2"][-1]), 3), round(float(o["var_sv2"][-1]), 3)
    (36.383, 4.383)
    >>> round(float(jacobian_theory(10, "linear", 1.0)["var_sv2"][-1]), 12)      # Fuss-Catalan: L
    10.0

    Rectangular layers: a linear semi-orthogonal funnel is an exact co-isometry (spread 0), a Gaussian
    one spreads by :math:`k/n_0 - 1 + \sum_j k/n_j` = 128/512 - 1 + 128/256 + 128/128 = 0.75, and a
    bottleneck 256 -> 64 -> 256 leaves 192 of its 256 singular values at 0 (orthogonal: spread 256/64 - 1):

    >>> fun = [512, 256, 128]
    >>> [round(float(jacobian_theory(2, "linear", 1.0, weights=w, widths=fun)["norm_var"][-1]), 12)
    ...  for w in ("orthogonal", "gaussian")]
    [0.0, 0.75]
    >>> round(float(jacobian_theory(2, "linear", 1.0, weights="orthogonal", widths=[256, 64, 256])["norm_var"][-1]), 12)
    3.0
    """
    L = integer(depth, "depth", minimum=1)
    act = resolve_activation(activation, param)
    if isinstance(sigma_w2, (int, float, np.floating, np.integer)) and not isinstance(sigma_w2, bool):
        sigma_w2 = real(sigma_w2, "sigma_w2", minimum=0.0)
    try:
        sw2 = per_layer(sigma_w2, L, "sigma_w2")
    except ValueError as exc:
        raise InitArgumentError(str(exc)) from None
    sb2 = real(sigma_b2, "sigma_b2", minimum=0.0)
    mu = real(bias_mean, "bias_mean")
    xm2 = real(input_m2, "input_m2", minimum=0.0)
    if weights not in WEIGHT_SPECTRUM_SPREAD:
        raise InitArgumentError(f"weights must be 'gaussian' or 'orthogonal', got {weights!r}")
    s_w = WEIGHT_SPECTRUM_SPREAD[weights]
    ws = None if widths is None else [int(n) for n in check_widths(widths, L + 1)]
    q = np.empty(L)
    d2 = np.empty(L)
    d4 = np.empty(L)
    prev_m2 = xm2
    for l in range(L):
        q[l] = sw2[l] * prev_m2 + sb2
        d2[l], d4[l], prev_m2 = _dphi_moments(act, mu, q[l])
    chi = sw2 * d2
    with np.errstate(over="ignore"):  # beyond float64's range the mean is inf
        mean = np.cumprod(chi)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        excess = np.where(d2 > 0.0, d4 / np.where(d2 > 0.0, d2, 1.0) ** 2 - 1.0, np.nan)  # D_l^2's spread
        if ws is None or len(set(ws)) == 1:  # square layers: the S-transform sum, as always
            norm_var = np.cumsum(excess + s_w)
        else:
            mean = mean * np.array([n / min(ws[0], n) for n in ws[1:]])  # over k_l = min(n_0, n_l) values
            norm_var = _rectangular_spread(ws, excess, weights == "orthogonal")
        norm_var = np.where(mean > 0.0, norm_var, np.nan)  # J = 0: no spread to speak of
        var = np.where(mean > 0.0, mean * mean * np.where(np.isnan(norm_var), 0.0, norm_var), 0.0)
    return {"q": q, "dphi_m2": d2, "dphi_m4": d4, "chi1": chi, "mean_sv2": mean, "norm_var": norm_var,
            "var_sv2": var}


def _rectangular_spread(widths, excess, orthogonal):
    r"""Wide-limit :math:`\mathrm{Var}\lambda / (E\lambda)^2` over the :math:`k_l = \min(n_0, n_l)` values.

    With :math:`e_j = E[\phi'(z_j)^4] / E[\phi'(z_j)^2]^2 - 1` (``excess[j-1]``) and :math:`o = 1` for
    orthogonal, 0 for i.i.d. weights (theory.md §2.9, rectangular layers):

    .. math::
        v_l = \sum_{j \le l} \frac{k_l}{n_j}\, e_j
            + \frac{k_l}{n_0} - 1 + \sum_{j \le l} \left(\frac{k_l}{n_j} - \frac{o\, k_l}{\max(n_{j-1}, n_j)}\right).

    The weights' part (the last two terms) is a rational function of the widths, taken exactly (a
    semi-orthogonal linear funnel gives 0, not rounding noise); the activations' part has no cancellation.
    """
    n = widths
    o = 1 if orthogonal else 0
    out = np.empty(len(n) - 1)
    w_sum = Fraction(1, n[0])  # sum_{j<=l} (1/n_j - o/max(n_{j-1}, n_j)) + 1/n_0, exact
    d_sum = 0.0                # sum_{j<=l} e_j / n_j (terms >= 0: no cancellation)
    for l in range(1, len(n)):
        k = min(n[0], n[l])
        w_sum += Fraction(1, n[l]) - Fraction(o, max(n[l - 1], n[l]))
        d_sum += float(excess[l - 1]) / n[l]
        out[l - 1] = k * d_sum + float(k * w_sum - 1)
    return out

def critical_sigmas(activation, q_star, bias_mean=0.0, param=None):
    r"""The point :math:`(\sigma_w^2, \sigma_b^2)` of the critical line whose fixed point is ``q_star``.

    Criticality :math:`\chi_1 = \sigma_w^2 E[\phi'(z)^2] = 1` and the fixed point
    :math:`q^* = \sigma_w^2 E[\phi(z)^2] + \sigma_b^2`, with :math:`z \sim \mathcal N(\mu, q^*)`, give

    .. math::
        \sigma_w^2 = \frac{1}{E[\phi'(z)^2]}, \qquad \sigma_b^2 = q^* - \sigma_w^2 E[\phi(z)^2].

    Parameters
    ----------
    activation : str or Activation
    q_star : float
        The fixed-point pre-activation variance (> 0).
    bias_mean : float
        Constant part :math:`\mu` of the bias.
    param : float, optional

    Returns
    -------
    tuple of float
        ``(sigma_w2, sigma_b2)``.

    Raises
    ------
    InitArgumentError
        When no such point exists: :math:`E[\phi'^2] = 0`, or :math:`\sigma_b^2` would be negative
        (e.g. sigmoid and softplus, whose mean makes :math:`\sigma_w^2 E[\phi^2]` exceed :math:`q^*` on
        the critical line).

    Examples
    --------
    >>> [round(v, 6) for v in critical_sigmas("tanh", 0.25)]
    [1.393962, 0.008125]
    >>> critical_sigmas("relu", 1.0)                 # He: sigma_w^2 = 2 for every q*
    (2.0, 0.0)
    """
    act = resolve_activation(activation, param)
    q = real(q_star, "q_star", minimum=0.0)
    if q <= 0.0:
        raise InitArgumentError(f"q_star must be > 0, got {q}")
    mu = real(bias_mean, "bias_mean")
    r = activation_moments(act, mu, q)
    if r["dphi_m2"] <= 0.0:
        raise InitArgumentError(f"q_star={q}: E[phi'(z)^2] = 0, so chi_1 = 1 is out of reach")
    sw2 = 1.0 / r["dphi_m2"]
    sb2 = q - sw2 * r["m2"]
    if abs(sb2) <= 1e-12 * q:  # the identity maps (ReLU, linear): 0 up to rounding
        sb2 = 0.0
    if sb2 < 0.0:
        raise InitArgumentError(f"q_star={q}: {act.name} has no critical point with this fixed point "
                                f"(sigma_b^2 would be {sb2:.3g} < 0)")
    return float(sw2), float(sb2)


def linear_sv2_finite_width(depth, width):
    r"""Exact mean of the first two spectral moments of a deep linear Gaussian net at finite width.

    For :math:`M = W_L \cdots W_1`, :math:`W_l` ``n x n`` with i.i.d. :math:`\mathcal N(0, 1/n)` entries
    and :math:`A_l = M_l M_l^\top`, Wick's theorem on one layer gives, with
    :math:`t_l = E[(\mathrm{tr}A_l/n)^2]` and :math:`u_l = E[\mathrm{tr}(A_l^2)/n]`,

    .. math::
        t_l = t_{l-1} + \frac{2 u_{l-1}}{n^2}, \qquad u_l = t_{l-1} + \left(1 + \frac1n\right) u_{l-1},
        \qquad t_0 = u_0 = 1,

    so :math:`E[m_2] = u_L` (:math:`1 + L` as :math:`n \to \infty`) and the expected variance of one
    network's squared singular values is :math:`E[m_2 - m_1^2] = u_L - t_L`.

    Returns
    -------
    tuple of float
        ``(E[m_2], E[m_2 - m_1^2])``.

    Examples
    --------
    >>> [round(v, 4) for v in linear_sv2_finite_width(1, 100)]     # Wishart: 2 + 1/n, 1 + 1/n - 2/n^2
    [2.01, 1.0098]
    """
    L = integer(depth, "depth", minimum=1)
    n = float(integer(width, "width", minimum=1))
    t = u = 1.0
    for _ in range(L):
        t, u = t + 2.0 * u / (n * n), t + (1.0 + 1.0 / n) * u
    return u, u - t



def jacobian_density(depth, activation, sigma_w2, q, x, *, weights="gaussian", bias_mean=0.0, param=None,
                     rel_eps=1e-5):
    r"""Free-probability density of the eigenvalues :math:`\lambda` of :math:`J J^\top` at a fixed point.

    Every layer has the same :math:`\sigma_w^2` and the pre-activation variance ``q`` (the input at the
    fixed point :math:`q^*`). With :math:`\psi_D(t) = E\left[\frac{\lambda_D t}{1 - \lambda_D t}\right]`,
    :math:`\lambda_D = \phi'(z)^2`, :math:`z \sim \mathcal N(\mu, q)`, and :math:`w = \psi_D(t)`, the
    S-transforms of :math:`D^2` (:math:`t (1 + w) / w`) and of :math:`W W^\top`
    (:math:`1/(\sigma_w^2 (1 + w))` i.i.d., :math:`1/\sigma_w^2` orthogonal) make the equation
    :math:`z\,w\,S_{JJ^\top}(w) = 1 + w` explicit in ``t``:

    .. math::
        z(t) = \frac{1 + w}{w}\left(\frac{\sigma_w^2 w}{t}\right)^L \ \text{(i.i.d.)}, \qquad
        z(t) = \frac{1 + w}{w}\left(\frac{\sigma_w^2 w}{t (1 + w)}\right)^L \ \text{(orthogonal)}.

    For each :math:`x` (from the largest down, each solution the next one's start) Newton's method
    solves :math:`z(t) = x (1 + i\epsilon)`; then :math:`G = (1 + w)/z` and
    :math:`\rho(x) = -\mathrm{Im}\,G / \pi`.

    Parameters
    ----------
    depth : int
    activation : str or Activation
    sigma_w2, q : float
        Weight variance scale and the (fixed-point) pre-activation variance, both > 0.
    x : array_like
        Points :math:`\lambda > 0` at which to evaluate the density (any order).
    weights : {"gaussian", "orthogonal"}
    bias_mean : float
    param : float, optional
    rel_eps : float
        Imaginary part of :math:`z` relative to :math:`x`: the density is smoothed by a Lorentzian of
        this relative width (its tails add about ``rel_eps`` x the range to the moments).

    Returns
    -------
    numpy.ndarray
        :math:`\rho(\lambda)` at ``x`` (NaN where Newton's method did not converge: in practice only
        far below the spectrum's bulk, where the density is negligible).

    Examples
    --------
    A deep linear Gaussian net: the Fuss-Catalan law, mean 1 and second moment 1 + L = 5 (the trapezoid
    on this grid and the smoothing add 0.01).

    >>> import numpy as np
    >>> lam = np.geomspace(1e-9, 60.0, 4000)
    >>> rho = jacobian_density(4, "linear", 1.0, 1.0, lam)
    >>> round(float(np.trapezoid(lam * rho, lam)), 2), round(float(np.trapezoid(lam ** 2 * rho, lam)), 2)
    (1.0, 5.01)
    """
    L = integer(depth, "depth", minimum=1)
    act = resolve_activation(activation, param)
    sw2 = real(sigma_w2, "sigma_w2", minimum=0.0)
    q = real(q, "q", minimum=0.0)
    if sw2 <= 0.0:
        raise InitArgumentError("sigma_w2 must be > 0 (sigma_w2 = 0 gives J = 0: a point mass at 0)")
    if weights not in WEIGHT_SPECTRUM_SPREAD:
        raise InitArgumentError(f"weights must be 'gaussian' or 'orthogonal', got {weights!r}")
    mu = real(bias_mean, "bias_mean")
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1 or not np.all(x > 0):
        raise InitArgumentError("x must be a 1-d array of positive eigenvalues")
    if q > 0.0:
        xi, wq = panel_rule((features(act) - mu) / np.sqrt(q))
        lam = act.df(mu + np.sqrt(q) * xi) ** 2
    else:
        wq, lam = np.ones(1), np.array([float(act.df(mu)) ** 2])
    keep = wq > 0
    wq, lam = wq[keep], lam[keep]
    m1d = float(np.sum(wq * lam))
    if m1d <= 0.0:
        raise InitArgumentError("E[phi'(z)^2] = 0: J = 0, a point mass at 0")
    orth = weights == "orthogonal"

    def logz_and_slope(t):
        r = 1.0 / (1.0 - lam * t)
        w = np.sum(wq * lam * t * r)
        dw = np.sum(wq * lam * r * r)
        ratio = sw2 * w / (t * (1.0 + w)) if orth else sw2 * w / t
        z = (1.0 + w) / w * ratio ** L
        dlog = dw * (1.0 / (1.0 + w) - 1.0 / w + L / w - (L / (1.0 + w) if orth else 0.0)) - L / t
        return z, dlog, w

    order = np.argsort(-x)
    out = np.full(x.shape, np.nan)
    good = None  # the last converged t: the start for the next (smaller) x
    with np.errstate(all="ignore"):  # a diverging Newton run gives inf/NaN: that x is NaN, the next starts over
        for i in order:
            zt = x[i] * (1.0 + 1j * rel_eps)
            # far right of the spectrum: w ~ E[lambda] / z and t ~ w / E[lambda_D]
            t = good if good is not None else (sw2 * m1d) ** L / zt / m1d
            for _ in range(_NEWTON_STEPS):
                z, dlog, w = logz_and_slope(t)
                h = 1.0 - zt / z  # relative residual: single-valued, scale-free
                if not np.isfinite(h) or not np.isfinite(dlog) or dlog == 0:
                    break
                step = -h / dlog
                if abs(step) > 0.5 * abs(t):
                    step *= 0.5 * abs(t) / abs(step)
                t = t + step
                if abs(h) < 1e-12:
                    good = t
                    out[i] = max(-((1.0 + w) / zt).imag / np.pi, 0.0)
                    break
    return out
