"""The recurrent network simulator (:func:`simulate_rnn`) and its mean-field adapter."""

from __future__ import annotations

import numpy as np

from fastinit._checks import InitArgumentError, integer, real
from fastinit.theory import rnn_theory
from fastinit.theory._common import RNN_STATISTICS

from . import _passes
from ._activation import resolve_activation
from ._args import bias_spec, check_array, check_dtype, check_memory, check_seed, check_stats
from ._mlp import blas_threads
from ._results import RNNResult, summarise
from ._schemes import (
    KIND_BIAS,
    KIND_INPUT,
    KIND_RNN_U,
    KIND_RNN_X,
    KIND_SEED_G,
    KIND_WEIGHT,
    make_weight,
    random_normal,
    resolve_scheme,
    stream,
    weight_moments,
)

__all__ = ["simulate_rnn"]

#: The statistics only the backward pass through time gives.
_BACKWARD_STATISTICS = ("grad_h_m2",)


def simulate_rnn(hidden, steps, *, batch=256, activation="tanh", activation_param=None,
                 activation_derivative=None, init="orthogonal", init_params=None,
                 h0_std=1.0, input_dim=0, input_std=1.0, input_init="xavier_uniform",
                 input_init_params=None, bias="zeros", bias_value=0.0, bias_std=0.0,
                 n_networks=1, seed=0, backward=True, G=None, dtype="float32",
                 W=None, h0=None, theory=True, stats=None):
    r"""Simulate a vanilla recurrent net with one shared weight matrix over ``steps`` steps.

    .. math::
        h_t = \phi(h_{t-1} W^T + x_t U^T + b), \quad t = 1..T, \qquad
        h_0 \sim \mathcal{N}(0, \sigma_{h_0}^2)

    (the input term only when ``input_dim > 0``; :math:`x_t` i.i.d. N(0, ``input_std``^2),
    fresh every step). Backward, :math:`\ell = \sum_{b,k} G_{bk} h_{T,bk}` and
    ``grad_h_m2[t]`` is the mean of :math:`(\partial \ell / \partial h_t)^2` (BPTT through the
    tied W).

    Parameters
    ----------
    hidden : int
        Width n of the hidden state.
    steps : int
        Number of steps T.
    init, init_params :
        Scheme of W (as :func:`simulate_mlp`), e.g. ``"orthogonal"`` or ``"xavier_normal"``.
    h0_std : float
        Standard deviation of the initial state.
    input_dim, input_std, input_init, input_init_params :
        Optional input path ``x_t U^T`` (``U`` has shape ``(hidden, input_dim)``).
    W, h0 : array_like, optional
        Explicit recurrent matrix and initial state (one network).
    backward : bool
        Also compute the gradient statistic ``grad_h_m2`` (BPTT).
    stats : str or sequence of str, optional
        Compute only these statistics (names of ``RNN_STATISTICS``: ``h_m2``, ``h_norm``,
        ``preact_m2``, ``preact_mean``, ``post_mean``, ``grad_h_m2``); the others are NaN in the
        result (``res.config["stats"]`` lists the computed ones). Default: every statistic
        (``grad_h_m2`` only with ``backward``). The backward pass through time runs only when
        ``grad_h_m2`` is selected; the forward statistics are computed together. A selected
        statistic has the same value, bit for bit, as in a run that computes every statistic.
        The theory (``res.theory``) is not affected.

    Raises
    ------
    TypeError, ValueError
        An invalid argument (as :func:`simulate_mlp`; NaN, inf or complex ``W``/``h0`` included,
        an unknown name in ``stats`` (the message lists the valid ones), ``grad_h_m2`` selected
        with ``backward=False``).
    MemoryError
        When the estimated peak memory (one ``batch x hidden`` array per step, ``W``, ``U``)
        exceeds the memory available now; checked before anything is allocated.

    Returns
    -------
    RNNResult
        Arrays indexed by t = 0..T: ``h_m2`` (mean :math:`h_t^2`), ``h_norm`` (mean over the
        batch of :math:`\|h_t\|`), ``preact_m2``, ``preact_mean``, ``post_mean`` and
        ``grad_h_m2``. ``theory`` from :func:`fastinit.theory.rnn_theory` (untied mean field).
        For an orthogonal W both the forward and the BPTT prediction hold to ~2% (n = 128,
        T = 50, tanh: ``grad_h_m2[0]`` 0.0145 simulated vs 0.01433 predicted; the "factor 2"
        of shared/reference/theory.md §7.7 compares with 0.0303, an off-by-one, see
        docs/theory.md §5.9). A tied *Gaussian* W breaks gradient independence: its
        ``grad_h_m2[0]`` is several times the prediction and varies widely between networks.

    Examples
    --------
    The notes' Example 3 (n = 128, T = 50, tanh). An orthogonal W follows the untied mean-field
    length map; a Gaussian W with the same entry variance 1/n ends up with a *larger* state norm,
    because powers of one Gaussian matrix grow (``E||W^t h||^2 ~ (t + 1)||h||^2``) while an
    orthogonal W preserves norms exactly. The notes' claim that the Gaussian state "decays
    significantly" faster does not hold for the norm.

    >>> from fastinit.sim import simulate_rnn
    >>> o = simulate_rnn(128, 50, batch=256, init="orthogonal", seed=0)
    >>> g = simulate_rnn(128, 50, batch=256, init="normal",
    ...                  init_params={"std": 128 ** -0.5}, seed=0)
    >>> round(float(o.h_norm[-1]), 2), round(float(o.theory["h_norm"][-1]), 2)
    (1.15, 1.14)
    >>> round(float(g.h_norm[-1]), 2)             # the Gaussian W keeps MORE of the norm
    1.92
    >>> round(float(o.grad_h_m2[0]), 4), round(float(o.theory["grad_h_m2"][0]), 4)   # BPTT
    (0.0145, 0.0143)

    Only the forward state norm, without the backward pass:

    >>> f = simulate_rnn(128, 50, batch=256, init="orthogonal", seed=0, stats="h_norm")
    >>> bool(f.h_norm[-1] == o.h_norm[-1]), bool(np.isnan(f.grad_h_m2).all()), f.config["stats"]
    (True, True, ['h_norm'])
    """
    n = integer(hidden, "hidden", minimum=1)
    T = integer(steps, "steps", minimum=1)
    B = integer(batch, "batch", minimum=1)
    dt = check_dtype(dtype)
    act = resolve_activation(activation, activation_param, activation_derivative)
    key, scheme, params = resolve_scheme(init, init_params, dt)
    input_dim = integer(input_dim, "input_dim", minimum=0)
    if input_dim:
        ukey, uscheme, uparams = resolve_scheme(input_init, input_init_params, dt)
    bias, bias_value, bias_std = bias_spec(bias, bias_value, bias_std)
    h0_std = real(h0_std, "h0_std", minimum=0.0)
    input_std = real(input_std, "input_std", minimum=0.0)
    n_networks = integer(n_networks, "n_networks", minimum=1)
    seed = check_seed(seed)
    if G is not None:
        G = check_array(G, "G", (B, n))
    if (W is not None or h0 is not None) and n_networks != 1:
        raise InitArgumentError("W/h0 describe one network: use n_networks=1")
    if W is not None:
        W = check_array(W, "W", (n, n))
    if h0 is not None:
        h0 = check_array(h0, "h0", (B, n))
    selected = check_stats(stats, RNN_STATISTICS, _BACKWARD_STATISTICS, bool(backward))
    backward = bool(backward) and any(s in _BACKWARD_STATISTICS for s in selected)
    check_memory(_passes.rnn_bytes(n, T, B, input_dim, dt.itemsize),
                 f"simulate_rnn(hidden={n}, steps={T}, batch={B}, input_dim={input_dim}, dtype={dt.name})")

    per = {s: [] for s in RNN_STATISTICS}
    for k in range(n_networks):
        with blas_threads(B, [n, n]):
            Wk = (np.ascontiguousarray(W, dtype=dt) if W is not None else
                  make_weight((n, n), scheme, params, seed, stream(k, 1, KIND_WEIGHT), dt))
        hk = (np.ascontiguousarray(h0, dtype=dt) if h0 is not None else
              random_normal((B, n), 0.0, h0_std, seed, stream(k, 0, KIND_INPUT), dt))
        if bias == "normal":
            bk = random_normal((n,), 0.0, bias_std, seed, stream(k, 1, KIND_BIAS), np.float64)
        else:
            bk = np.full(n, bias_value, dtype=np.float64)
        if input_dim:
            Uk = make_weight((n, input_dim), uscheme, uparams, seed, stream(k, 1, KIND_RNN_U), dt)

            def xs_fn(t, k=k):
                return random_normal((B, input_dim), 0.0, input_std, seed,
                                     stream(k, t, KIND_RNN_X), dt)
        else:
            Uk = None

            def xs_fn(t):
                return None
        Gk = G if G is not None else (
            random_normal((B, n), 0.0, 1.0, seed, stream(k, 0, KIND_SEED_G), dt) if backward else None)
        out = _passes.rnn_pass(hk, Wk, xs_fn, Uk, bk, act.kind, act.param, T, G=Gk, backward=backward)
        for s in RNN_STATISTICS:
            # the forward statistics come out of one fused kernel together: unselected ones are
            # computed anyway and masked here, so a selected one keeps the full run's bits
            per[s].append(out[s] if s in selected else np.full(T + 1, np.nan))
    per = {s: np.array(v, dtype=np.float64) for s, v in per.items()}
    stats, stderr = summarise(per, RNN_STATISTICS)
    config = dict(hidden=n, steps=T, batch=B, activation=act.name, activation_param=act.param,
                  init=key, init_params=params, h0_std=h0_std, input_dim=input_dim,
                  input_std=input_std, bias=bias, bias_value=bias_value, bias_std=bias_std,
                  n_networks=n_networks, seed=seed, backward=backward, dtype=dt.name,
                  stats=list(selected))
    th = {s: np.full(T + 1, np.nan) for s in RNN_STATISTICS}
    if theory:
        th, note = _rnn_theory(n, T, act, scheme, params, h0_std, input_dim,
                               (uscheme, uparams) if input_dim else None, input_std,
                               bias_value if bias == "constant" else 0.0, bias_std ** 2, B, th)
        config["theory_note"] = note
    return RNNResult(np.arange(T + 1), stats, stderr, per, th, config, [], "step")


def _rnn_theory(n, T, act, scheme, params, h0_std, input_dim, uspec, input_std, bias_mean,
                bias_var, B, out):
    wm, wv = weight_moments((n, n), scheme, params)
    if wm != 0.0:
        return out, "mean-field theory needs zero-mean weights"
    uv = 0.0
    if uspec is not None:
        um, uv = weight_moments((n, input_dim), *uspec)
        if um != 0.0:
            return out, "mean-field theory needs zero-mean input weights"
    th = rnn_theory(n, T, act.spec, wv, h0_std, act.theory_param,
                    input_var=input_dim * uv * input_std ** 2, bias_mean=bias_mean,
                    bias_var=bias_var)
    for s in ("h_m2", "grad_h_m2"):
        out[s] = np.asarray(th[s], dtype=np.float64)
    # theory's h_norm is sqrt(n E[h_t^2]), the root-mean-square norm; the simulation reports the
    # mean norm over the batch, which is below it by O(1/n) (Jensen)
    out["h_norm"] = np.asarray(th["h_norm"], dtype=np.float64)
    pv = np.asarray(th["preact_var"], dtype=np.float64)
    out["preact_m2"] = np.concatenate([[np.nan], pv + bias_mean ** 2])
    out["preact_mean"] = np.concatenate([[np.nan], np.full(T, float(bias_mean))])
    return out, ""


