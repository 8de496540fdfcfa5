r"""Mean-field predictions for LayerNorm residual stacks and convolutional stacks (theory.md §2.10).

:func:`resnet_theory` predicts every statistic of :func:`fastinit.sim.simulate_resnet` (pre-LN,
post-LN or un-normalised residual blocks with a one-layer or a two-layer MLP branch);
:func:`conv_theory` those of :func:`fastinit.sim.simulate_cnn`: the pooled length map of a
convolution is the fully-connected one with ``fan_in = c k^d`` (Xiao et al. 2018), and the
correlation between two inputs at each spatial position is averaged over the kernel window
(Gaussian kernels) or not at all (delta-orthogonal kernels).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.polynomial.hermite_e import hermegauss
from scipy import special

from ._closed_forms import relu_cross_moment
from ._common import resolve_activation
from ._maps import activation_moments
from ._networks import mlp_theory

__all__ = ["RESNET_STATISTICS", "CNN_STATISTICS", "resnet_theory", "conv_theory", "cross_moment", "corr_pattern"]

#: Per-block statistics of a residual stack (``grad_input_m2`` is a scalar).
RESNET_STATISTICS = (
    "h_mean", "h_var", "h_m2", "ln_in_var", "preact_mean", "preact_var", "preact_m2",
    "branch_mean", "branch_var", "branch_m2", "frac_inactive",
    "grad_h_m2", "grad_preact_m2", "grad_weight_m2_per_sample", "grad_weight2_m2_per_sample",
    "grad_input_m2",
)
#: Per-layer statistics of a convolutional stack (``grad_input_m2`` is a scalar).
CNN_STATISTICS = ("preact_mean", "preact_var", "preact_m2", "post_m2", "frac_inactive", "corr", "corr_spread",
                  "corr_pattern", "grad_preact_m2", "grad_input_m2")


def corr_pattern(profile, rho):
    r"""Component of correlation profiles along the input's pattern:
    :math:`\langle c - ar c,
ho - ar
ho
angle / (S\,\mathrm{std}\,
ho)`, one number per leading index of
    ``profile`` (shape ``(..., *rho.shape)``); equal to :math:`\mathrm{std}\,
ho` for :math:`c =
ho`, NaN for a
    constant :math:`
ho`. Sampling noise of ``c`` averages out of it (it is unbiased), unlike the spread.

    Examples
    --------
    >>> import numpy as np
    >>> rho = np.array([0.1, 0.5, 0.9])
    >>> float(corr_pattern(rho, rho)) == float(rho.std())
    True
    """
    rho = np.asarray(rho, dtype=np.float64)
    sd = rho.std()
    if sd == 0:
        return np.full(np.shape(profile)[: np.ndim(profile) - rho.ndim], np.nan)
    axes = tuple(range(np.ndim(profile) - rho.ndim, np.ndim(profile)))
    c = profile - np.mean(profile, axis=axes, keepdims=True)
    return np.sum(c * (rho - rho.mean()), axis=axes) / (rho.size * sd)

_GH_NODES = 48  # 2-D Gauss-Hermite nodes per axis of cross_moment: ~1e-7 for tanh at q <= 1


def resnet_theory(width, depth, activation, param=None, *, norm="pre", block="linear", hidden=None,
                  weight_var, weight2_var=None, bias_mean=0.0, bias_var=0.0, input_mean=0.0, input_std=1.0,
                  residual_scale=1.0, eps=1e-5, final_norm=False):
    r"""Mean-field prediction of every statistic of :func:`fastinit.sim.simulate_resnet`.

    Blocks :math:`l = 1..L` on a stream of width ``n``, :math:`h_0 = x`:

    * ``norm="pre"``:  :math:`h_l = h_{l-1} + \alpha f(\mathrm{LN}(h_{l-1}))`
    * ``norm="post"``: :math:`h_l = \mathrm{LN}(h_{l-1} + \alpha f(h_{l-1}))`
    * ``norm="none"``: :math:`h_l = h_{l-1} + \alpha f(h_{l-1})`

    with :math:`f(u) = \phi(u W^\top + b)` (``block="linear"``) or
    :math:`f(u) = \phi(u W_1^\top + b_1) W_2^\top + b_2` (``block="mlp"``, hidden width ``m``).
    The state is the within-sample variance :math:`V_l` and the mean :math:`\mu_l` of the stream.
    With :math:`r = V/(V + \epsilon)` (the LayerNorm output's second moment), the branch input's
    second moment is :math:`E_{in} = r` (pre-LN) or :math:`V + \mu^2` (post-LN, no norm), and

    .. math::
        z \sim \mathcal N(\mu_b,\ n s_1^2 E_{in} + \sigma_b^2), \qquad
        \mathrm{Var}\,y = \mathrm{Var}\,\phi(z)\ \text{(linear)}\ \text{or}\
        m s_2^2 E\phi(z)^2 + \sigma_b^2\ \text{(mlp)},

    :math:`V_l = V_{l-1} + \alpha^2 \mathrm{Var}\,y` (pre-LN, none: the branch is independent of the
    stream's coordinates) and :math:`V_l = r_l` after a post-LN. Pre-LN with :math:`\epsilon \to 0`:
    :math:`V_l = V_0 + \alpha^2 \sum_{k \le l} \mathrm{Var}\,y_k` grows linearly in :math:`l`.
    Backward (gradient independence; a LayerNorm multiplies the gradient by its Jacobian
    :math:`(I - \frac1n\mathbf 1\mathbf 1^\top - \frac1n u u^\top)/\sigma`, which at infinite width
    only divides the second moment by :math:`\sigma^2 = V + \epsilon`), with :math:`\beta` the branch's
    gradient gain (:math:`m s_1^2 E\phi'^2` linear, :math:`n s_2^2\, m s_1^2 E\phi'^2` mlp) and
    :math:`G_l = E[(\partial\ell/\partial h_l)^2]`:
    pre-LN :math:`G_{l-1} = G_l(1 + \alpha^2\beta/(V_{l-1} + \epsilon))`; post-LN
    :math:`G_{l-1} = G_l (1 + \alpha^2\beta)/(V_{t,l} + \epsilon)`, :math:`V_{t,l} = V_{l-1} + \alpha^2
    \mathrm{Var}\,y_l` the variance entering the LayerNorm; no norm :math:`G_{l-1} = G_l(1 + \alpha^2\beta)`;
    :math:`G_L = 1`, or :math:`1/(V_L + \epsilon)` with a final LayerNorm. ``ln_in_var`` is
    :math:`(1 - 1/n)` times the variance entering the LayerNorm (the per-sample variance has ddof 0).
    Finite width adds :math:`O(1/n)` per block (theory.md §2.10).

    Parameters
    ----------
    width, depth : int
        ``n`` and ``L``.
    activation : str or Activation
    param : float, optional
    norm : {"pre", "post", "none"}
    block : {"linear", "mlp"}
    hidden : int, optional
        Hidden width ``m`` of the mlp block (default ``width``).
    weight_var, weight2_var : float
        Entry variances :math:`s_1^2` of ``W`` (``(m, n)``) and :math:`s_2^2` of ``W_2`` (``(n, m)``).
    bias_mean, bias_var : float
        Mean and variance of every bias entry (``b``, ``b_1``, ``b_2``).
    input_mean, input_std : float
    residual_scale : float
        :math:`\alpha`.
    eps : float
        LayerNorm's :math:`\epsilon`.
    final_norm : bool
        A LayerNorm on :math:`h_L` before the loss.

    Returns
    -------
    dict of numpy.ndarray
        The names of :data:`RESNET_STATISTICS`, length-L arrays (``grad_input_m2`` 0-d).

    Examples
    --------
    Pre-LN with a ReLU two-layer block and He weights: the stream's variance grows by
    :math:`\alpha^2 \cdot 2` per block.

    >>> r = resnet_theory(256, 4, "relu", norm="pre", block="mlp", weight_var=2 / 256, weight2_var=2 / 256)
    >>> r["h_var"].round(4)
    array([3., 5., 7., 9.])
    """
    act = resolve_activation(activation, param)
    n, L = int(width), int(depth)
    m = n if hidden is None else int(hidden)
    if norm not in ("pre", "post", "none"):
        raise ValueError(f"norm must be 'pre', 'post' or 'none', got {norm!r}")
    if block not in ("linear", "mlp"):
        raise ValueError(f"block must be 'linear' or 'mlp', got {block!r}")
    s1 = float(weight_var)
    s2 = float(weight2_var) if block == "mlp" else 0.0
    mu_b, sb2, alpha, eps = float(bias_mean), float(bias_var), float(residual_scale), float(eps)
    out = {k: np.full(L, np.nan) for k in RESNET_STATISTICS if k != "grad_input_m2"}
    A1, V = float(input_mean), float(input_std) ** 2  # the stream's mean and within-sample variance
    ein, rr, dphi2, phim2, lnv = (np.empty(L) for _ in range(5))
    fs = 1.0 - 1.0 / n  # E[per-sample variance over n features, ddof 0] / the variance
    for l in range(L):
        if norm == "pre":
            lnv[l] = V
            rr[l] = V / (V + eps)
            ein[l] = rr[l]
        else:
            ein[l] = V + A1 * A1
        v = n * s1 * ein[l] + sb2
        mom = activation_moments(act, mu_b, v)
        out["preact_mean"][l], out["preact_var"][l], out["preact_m2"][l] = mu_b, v, v + mu_b * mu_b
        sd = math.sqrt(v)
        out["frac_inactive"][l] = special.ndtr(-mu_b / sd) if sd > 0 else float(mu_b <= 0.0)
        dphi2[l], phim2[l] = mom["dphi_m2"], mom["m2"]
        if block == "linear":
            ym, yv = mom["mean"], mom["var"]
        else:
            ym, yv = mu_b, m * s2 * mom["m2"] + sb2
        out["branch_mean"][l], out["branch_var"][l], out["branch_m2"][l] = ym, yv, yv + ym * ym
        if norm == "post":
            lnv[l] = V + alpha ** 2 * yv
            rr[l] = lnv[l] / (lnv[l] + eps)
            A1, V = 0.0, rr[l]
        else:
            A1, V = A1 + alpha * ym, V + alpha ** 2 * yv
        out["h_mean"][l], out["h_var"][l], out["h_m2"][l] = A1, V, V + A1 * A1
    if norm != "none":
        out["ln_in_var"] = fs * lnv
    # backward: G = E[(dl/dh_l)^2]; a LayerNorm divides the gradient by sqrt(var + eps)
    G = 1.0 / (V + eps) if final_norm else 1.0
    beta = m * s1 * dphi2 if block == "linear" else n * s2 * m * s1 * dphi2
    for l in range(L - 1, -1, -1):
        out["grad_h_m2"][l] = G
        if norm == "post":
            G = G / (lnv[l] + eps)  # through the block's LayerNorm
        gy = alpha ** 2 * G  # E[(dl/dy)^2] of the branch output
        delta = dphi2[l] * gy if block == "linear" else dphi2[l] * n * s2 * gy
        out["grad_preact_m2"][l] = delta
        out["grad_weight_m2_per_sample"][l] = delta * ein[l]
        if block == "mlp":
            out["grad_weight2_m2_per_sample"][l] = gy * phim2[l]
        gin = alpha ** 2 * beta[l] * G  # E[(dl/d branch input)^2]
        if norm == "pre":
            gin /= lnv[l] + eps
        G = G + gin
    out["grad_input_m2"] = np.array(G)
    return out


def cross_moment(activation, q, c, mean=0.0, param=None):
    r""":math:`E[\phi(u_1)\phi(u_2)]` for :math:`(u_1, u_2) \sim \mathcal N(\mu, q[[1, c], [c, 1]])`, vectorised
    over ``c``.

    ReLU at :math:`\mu = 0` uses the arc-cosine kernel; everything else a
    48 x 48-node Gauss-Hermite rule (about 1e-7 for tanh at :math:`q \le 1`; kinked activations
    with a bias mean converge only algebraically, about 1e-3).

    Examples
    --------
    >>> round(float(cross_moment("linear", 2.0, 0.25)), 12)
    0.5
    """
    act = resolve_activation(activation, param)
    c = np.clip(np.asarray(c, dtype=np.float64), -1.0, 1.0)
    q = float(q)
    if q <= 0.0:
        return np.full(c.shape, float(act.f(mean)) ** 2)
    if act.name == "relu" and mean == 0.0:
        return np.vectorize(lambda cc: relu_cross_moment(q, float(cc)))(c).astype(np.float64)
    x, w = hermegauss(_GH_NODES)
    w = w / w.sum()
    sq = math.sqrt(q)
    u1 = mean + sq * x
    f1 = act.f(u1)                                     # (k,)
    cc = c.reshape(-1, 1, 1)
    u2 = mean + sq * (cc * x[:, None] + np.sqrt(1.0 - cc * cc) * x[None, :])  # (P, k, k)
    val = np.einsum("i,j,pij->p", w * f1, w, act.f(u2))
    return val.reshape(c.shape)


def conv_theory(channels, depth, kernel_size, ndim, activation, param=None, *, sigma_w2, bias_mean=0.0,
                bias_var=0.0, input_mean=0.0, input_std=1.0, batch=None, delta=False, input_corr=None):
    r"""Mean-field prediction of the statistics of :func:`fastinit.sim.simulate_cnn`.

    A circular, stride-1 convolution with ``c`` channels and kernel :math:`k^d` sums
    :math:`c k^d` terms per output, so with :math:`\sigma_w^2 = c k^d s^2` the pooled length map
    and the backward recursion are those of a fully-connected net of width :math:`c k^d`
    (:func:`~fastinit.theory.mlp_theory`; the diagonal of Xiao et al. 2018's covariance map). For a pair of
    inputs with per-position correlation :math:`\rho(p)`, the cross-covariance at position ``p``

    .. math::
        \Sigma_l(p) = \sigma_w^2\, \frac{1}{k^d}\sum_{t \in \text{window}} E[\phi(u_1)\phi(u_2)]_{p + t}
        + \sigma_b^2 \quad\text{(Gaussian kernels)}, \qquad
        \Sigma_l(p) = \sigma_w^2 E[\phi(u_1)\phi(u_2)]_p + \sigma_b^2 \quad\text{(delta-orthogonal)},

    :math:`(u_1, u_2)` with variance :math:`q_{l-1}` and covariance :math:`\Sigma_{l-1}`. The window
    average is a diffusion: a profile mode of frequency :math:`f` decays as
    :math:`\lambda_f^l`, :math:`\lambda_f = \frac1k\sum_t \cos(2\pi f t / s)`, on top of the
    correlation map; delta-orthogonal kernels keep every position's own (fully-connected) map.

    Parameters
    ----------
    channels, depth, kernel_size, ndim : int
    activation : str or Activation
    sigma_w2 : float
        :math:`c k^d s^2` (Gaussian kernels) or :math:`\text{gain}^2` (delta-orthogonal).
    delta : bool
        Delta-orthogonal kernels (no window average).
    input_corr : array, optional
        :math:`\rho(p)` over the spatial grid: adds ``corr`` (mean over positions of
        :math:`c_l(p) = \Sigma_l(p)/q_l`), ``corr_spread`` (their standard deviation over positions),
        ``corr_pattern`` (:func:`corr_pattern`) and ``corr_profile`` (shape ``(L,) + spatial``).

    Returns
    -------
    dict of numpy.ndarray

    Examples
    --------
    >>> t = conv_theory(32, 3, 3, 1, "relu", sigma_w2=2.0)
    >>> t["preact_var"]
    array([2., 2., 2.])
    """
    act = resolve_activation(activation, param)
    K = int(kernel_size) ** int(ndim)
    fan = int(channels) * (1 if delta else K)
    L = int(depth)
    th = mlp_theory([fan] * (L + 1), act, weight_var=sigma_w2 / fan, bias_mean=bias_mean, bias_var=bias_var,
                    input_mean=input_mean, input_std=input_std, batch=batch)
    out = {k: np.asarray(th[k], dtype=np.float64) for k in ("preact_mean", "preact_var", "preact_m2",
                                                           "post_m2", "frac_inactive", "grad_preact_m2")}
    out["grad_input_m2"] = np.array(float(np.ravel(th["grad_input_m2"])[-1]))
    for name in ("corr", "corr_spread", "corr_pattern"):
        out[name] = np.full(L, np.nan)
    if input_corr is None:
        return out
    rho = np.asarray(input_corr, dtype=np.float64)
    k = int(kernel_size)
    left = (k - 1) // 2
    # incoming cross second moment and second moment of the stream (x: mean mu_x, variance sigma_x^2)
    cross = input_mean ** 2 + rho * input_std ** 2
    prof = np.empty((L,) + rho.shape)
    for l in range(L):
        if not delta:  # mean over the k^d window: out(p) sees in(p + t - left), t = 0..k-1, per axis
            acc = np.zeros_like(cross)
            for shift in np.ndindex(*([k] * rho.ndim)):
                acc += np.roll(cross, tuple(left - t for t in shift), axis=tuple(range(rho.ndim)))
            cross = acc / K
        sig = sigma_w2 * cross + bias_var + bias_mean ** 2
        q = out["preact_m2"][l]
        prof[l] = sig / q if q > 0 else 1.0
        cc = (sig - bias_mean ** 2) / (q - bias_mean ** 2) if q > bias_mean ** 2 else np.ones_like(sig)
        cross = cross_moment(act, q - bias_mean ** 2, cc, mean=bias_mean)
    out["corr_profile"] = prof
    axes = tuple(range(1, prof.ndim))
    out["corr"] = prof.mean(axis=axes)
    out["corr_spread"] = prof.std(axis=axes)
    out["corr_pattern"] = corr_pattern(prof, rho)
    return out
