"""The fully-connected network simulator (:func:`simulate_mlp`) and its mean-field adapter."""

from __future__ import annotations

import functools
import glob
import hashlib
import os
import tempfile

import numpy as np

from fastinit._checks import InitArgumentError, integer, real
from fastinit._config import NUMBA_CACHE
from fastinit.theory import mlp_theory
from fastinit.theory._common import MLP_FORWARD_STATISTICS, MLP_STATISTICS

from . import _passes, _workspace
from ._activation import resolve_activation
from ._args import (
    bias_spec,
    check_array,
    check_dtype,
    check_explicit,
    check_hist_layers,
    check_memory,
    check_stats,
    network_args,
    resolve_widths,
)
from ._results import MLPResult, fluctuation_keys, summarise
from ._schemes import (
    KIND_BIAS,
    KIND_INPUT,
    KIND_SEED_G,
    KIND_WEIGHT,
    make_weight,
    random_normal,
    resolve_scheme,
    stream,
    weight_moments,
)

__all__ = ["simulate_mlp", "nan_theory", "blas_threads", "config_theory"]


def nan_theory(names, length):
    return {n: (np.array(np.nan) if n == "grad_input_m2" else np.full(length, np.nan)) for n in names}


def _mlp_theory(widths, act, weight_means, weight_vars, bias_mean, bias_var, input_mean,
                input_std, batch, residual_scale, orthogonal):
    """Mean-field predictions of every statistic with the finite-width band's keys (docs/theory.md
    section 2.7; ``orthogonal``: the weights are orthogonal), and a note ("" or why there are none).

    Cached per configuration (a sweep asks once per configuration and call; repeated calls,
    such as more seeds later, reuse it). Callers get their own copies of the arrays.
    """
    try:
        th, note = _mlp_theory_cached(tuple(widths), act, tuple(weight_means), tuple(weight_vars),
                                      bias_mean, bias_var, input_mean, input_std, batch,
                                      residual_scale, orthogonal)
    except TypeError:  # an unhashable activation (a user's Activation with unhashable parts)
        th, note = _mlp_theory_uncached(widths, act, weight_means, weight_vars, bias_mean,
                                        bias_var, input_mean, input_std, batch, residual_scale, orthogonal)
    return {k: np.array(v, copy=True) for k, v in th.items()}, note


@functools.lru_cache(maxsize=512)
def _mlp_theory_cached(*args):
    return _disk_cached_theory(args)


# ------------------------------------------------------------------------------------------
# The theory of a configuration on disk, beside Numba's cache: the quadratures of the default
# `fastinit simulate` study cost about 11 s of CPU, as much as a third of its simulation, and
# give the same numbers every time. Entries are keyed by the arguments and by the source of the
# code that computes them (fastinit.theory, fastinit._activations, this module), so an edit
# there recomputes them. Registry activations only; off with FASTINIT_NUMBA_CACHE=0.
# ------------------------------------------------------------------------------------------
_STAMP = None


def _theory_stamp():
    global _STAMP
    if _STAMP is None:
        import fastinit._activations as acts
        import fastinit.theory as theory

        h = hashlib.sha256()
        files = sorted(glob.glob(os.path.join(os.path.dirname(theory.__file__), "*.py")))
        for f in files + [acts.__file__, __file__]:
            with open(f, "rb") as fh:
                h.update(fh.read())
        _STAMP = h.hexdigest()
    return _STAMP


def _theory_dir():
    base = os.environ.get("NUMBA_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "fastinit")
    return os.path.join(base, "fastinit-sim-theory")


def _disk_cached_theory(args):
    act = args[1]
    if not NUMBA_CACHE or not isinstance(act.spec, str):
        return _mlp_theory_uncached(*args)
    key = hashlib.sha256(repr((_theory_stamp(), args[0], (act.name, act.kind, act.param, act.sat, act.spec,
                                                           act.theory_param), args[2:])).encode()).hexdigest()
    path = os.path.join(_theory_dir(), key[:40] + ".npz")
    try:
        with np.load(path, allow_pickle=False) as f:
            return {k: f[k] for k in f.files if k != "__note__"}, str(f["__note__"])
    except (OSError, KeyError, ValueError):
        pass  # not there yet, or unreadable: compute it
    th, note = _mlp_theory_uncached(*args)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".npz")
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, __note__=np.array(note), **th)
        os.replace(tmp, path)  # atomic: a concurrent reader sees the old file or the whole new one
    except OSError:
        pass  # a read-only or full disk: the theory is still returned
    return th, note


def _mlp_theory_uncached(widths, act, weight_means, weight_vars, bias_mean, bias_var, input_mean,
                         input_std, batch, residual_scale, orthogonal):
    L = len(widths) - 1
    out = nan_theory(MLP_STATISTICS, L)
    if any(m != 0.0 for m in weight_means):
        return out, "mean-field theory needs zero-mean weights"
    th = mlp_theory(list(widths), act.spec, act.theory_param,
                    weight_var=list(weight_vars), bias_mean=bias_mean, bias_var=bias_var,
                    input_mean=input_mean, input_std=input_std, batch=batch,
                    residual_scale=residual_scale)
    for k in MLP_STATISTICS:
        if k in th and th[k] is not None:
            v = np.asarray(th[k], dtype=np.float64)
            out[k] = v if k != "grad_input_m2" else np.array(float(np.ravel(v)[-1]) if v.size else np.nan)
    out.update(fluctuation_keys(widths, act, weight_means, weight_vars, bias_mean, bias_var, input_mean, input_std,
                                batch, residual_scale, orthogonal, mean_field=out))
    return out, ""


# ------------------------------------------------------------------------------------------
# MLP
def config_theory(*, depth, width, batch, activation="relu", activation_param=None, activation_derivative=None,
                  init="kaiming_normal", init_params=None, bias="zeros", bias_value=0.0, bias_std=0.0,
                  input_mean=0.0, input_std=1.0, residual_scale=None, input_dim=None, dtype="float32",
                  **run_only):
    """(theory, note) of the :func:`simulate_mlp` call with these arguments, without simulating.

    The other :func:`simulate_mlp` arguments (``run_only``: seeds, histograms, ...) do not change it.
    """
    ws = resolve_widths(None, depth, width, input_dim)
    act = resolve_activation(activation, activation_param, activation_derivative)
    _, scheme, params = resolve_scheme(init, init_params, check_dtype(dtype))
    bias, bias_value, bias_std = bias_spec(bias, bias_value, bias_std)
    return _scheme_theory(ws, integer(batch, "batch", minimum=1), act, scheme, params, bias, bias_value, bias_std,
                          real(input_mean, "input_mean"), real(input_std, "input_std", minimum=0.0),
                          None if residual_scale is None else real(residual_scale, "residual_scale"))


def _scheme_theory(ws, B, act, scheme, params, bias, bias_value, bias_std, input_mean, input_std, residual_scale):
    wmom = [weight_moments((ws[l + 1], ws[l]), scheme, params) for l in range(len(ws) - 1)]
    return _mlp_theory(ws, act, [m for m, _ in wmom], [v for _, v in wmom],
                       bias_value if bias == "constant" else 0.0, bias_std ** 2,
                       input_mean, input_std, B, residual_scale, scheme == "orthogonal")


# ------------------------------------------------------------------------------------------
def simulate_mlp(widths=None, *, depth=None, width=None, input_dim=None, batch=1024,
                 activation="relu", activation_param=None, activation_derivative=None,
                 init="kaiming_normal", init_params=None,
                 bias="zeros", bias_value=0.0, bias_std=0.0,
                 input_mean=0.0, input_std=1.0, residual_scale=None,
                 n_networks=1, seed=0, backward=True, G=None,
                 histograms=False, hist_layers=None, hist_bins=50, hist_range=None,
                 dtype="float32", weights=None, biases=None, x=None, theory=True, stats=None):
    r"""Simulate deep fully-connected networks at initialization, layer by layer.

    For each of ``n_networks`` independently initialised networks,

    .. math::
        z_l = a_{l-1} W_l^T + b_l,\quad a_l = \phi(z_l),\quad a_0 = x,\quad
        x_{bj} \overset{iid}{\sim} \mathcal{N}(\mu_x, \sigma_x^2),

    (or :math:`h_l = h_{l-1} + \alpha\,\phi(h_{l-1}W_l^T + b_l)` with ``residual_scale`` =
    :math:`\alpha`), then back-propagates the per-sample loss
    :math:`\ell_b = \sum_k G_{bk} a_{L,bk}`. Every statistic is pooled over the
    ``batch x width`` entries of a layer, averaged over networks, and reported with its standard
    error and the mean-field prediction (:func:`fastinit.theory.mlp_theory`).

    Parameters
    ----------
    widths : sequence of int, optional
        ``[n_0, n_1, ..., n_L]``. Alternatively give ``depth`` and ``width`` (and optionally
        ``input_dim``, default ``width``).
    batch : int
        Number of input samples B.
    activation : str or numba function
        ``"linear"``, ``"relu"``, ``"leaky_relu"``, ``"tanh"``, ``"sigmoid"``, ``"selu"``,
        ``"gelu"`` (exact erf form), ``"silu"``, ``"softplus"``; or a user ``@njit`` scalar
        function ``f(x) -> float`` with ``activation_derivative`` its derivative.
    activation_param : float, optional
        Negative slope of ``leaky_relu`` (default 0.01), ``beta`` of ``softplus`` (default 1).
    init : str
        Weight scheme: ``"zeros"``, ``"constant"`` (``init_params={"val": c}``), ``"normal"``
        (``mean``, ``std``), ``"uniform"`` (``a``, ``b``), ``"trunc_normal"``, ``"small"``
        (N(0, 0.01^2)), ``"large"`` (N(0, 1)), ``"xavier_uniform"``, ``"xavier_normal"``
        (``gain``), ``"kaiming_uniform"``, ``"kaiming_normal"`` (``a``, ``mode``,
        ``nonlinearity`` as torch), ``"lecun_normal"``, ``"lecun_uniform"``, ``"orthogonal"``
        (``gain``). Aliases: ``xavier``/``glorot``, ``he``/``kaiming``, ``lecun``.
    init_params : dict, optional
        Keyword arguments of the scheme, with torch's names.
    bias : {"zeros", "constant", "normal"} or float
        ``"constant"`` uses ``bias_value`` (e.g. 0.01 for ReLU); ``"normal"`` draws
        N(0, ``bias_std``^2) per unit. A number means that constant.
    input_mean, input_std : float
        Inputs are i.i.d. N(input_mean, input_std^2).
    residual_scale : float, optional
        Branch scale :math:`\alpha` of residual layers (equal widths required), e.g.
        ``1/sqrt(2 L)`` as in GPT-2.
    n_networks : int
        Independently initialised networks; statistics are their mean, with standard errors.
    seed : int
        Seed of the counter-based stream. Network k, layer l uses its own stream, so results do
        not depend on ``n_networks`` for the networks they share.
    backward : bool
        Also compute the gradient statistics.
    G : (batch, n_L) array_like, optional
        Backward seed (default: i.i.d. N(0, 1), fresh per network; a given ``G`` is used for
        every network).
    histograms : bool
        Record pre- and post-activation histograms of the first network at ``hist_layers``
        (default: all layers) with ``hist_bins`` bins over ``hist_range`` (default: data range).
    dtype : {"float32", "float64"}
        Storage and GEMM precision (``None`` is refused, not read as float64). Statistics are
        always accumulated in float64. Deliberately vanishing or exploding nets leave float32's
        range (1e-38 .. 3e38) after a few dozen layers (values become subnormal, 0 or inf, and
        subnormal GEMMs are slow); use float64 for those.
    weights, biases, x : optional
        Explicit arrays (one network only): ``weights[l]`` has shape ``(n_{l+1}, n_l)``,
        ``biases[l]`` shape ``(n_{l+1},)``, ``x`` shape ``(batch, n_0)``. They override
        ``init``/``bias``/``input_*``; the theory then uses the requested scheme's moments.
    theory : bool
        Attach mean-field predictions (``res.theory``).
    stats : str or sequence of str, optional
        Compute only these statistics (names of ``MLP_STATISTICS``); the others are NaN in the
        result (``res.config["stats"]`` lists the computed ones). Default: every statistic (the
        gradient ones only with ``backward``). Work is skipped accordingly: no backward pass
        without a gradient statistic, the batch-mean weight-gradient GEMM only for
        ``grad_weight_m2_batchmean``, the input-gradient GEMM only for ``grad_input_m2``, and
        each group of forward statistics only when one of its members is asked for. A selected
        statistic has the same value, bit for bit, as in a run that computes every statistic.

    Returns
    -------
    MLPResult
        ``res.<statistic>`` arrays of length L (``grad_input_m2``: 0-d), ``res.stderr``,
        ``res.theory``, ``res.per_network``, ``res.to_table()``, ``res.to_records()``.

    Raises
    ------
    TypeError
        An argument of the wrong type (``dtype=None``, ``widths="abc"``, complex ``weights``, ...).
    ValueError
        An invalid value (:class:`~fastinit.InitArgumentError`), NaN or inf in ``weights``,
        ``biases``, ``x`` or ``G`` included, an unknown name in ``stats`` (the message lists the
        valid ones); the message names the argument.
    MemoryError
        When the estimated peak memory of one network (below) exceeds the memory available now
        (``MemAvailable``); checked before anything is allocated, the message gives the estimate
        and the sizes. Networks run one after another, so ``n_networks`` does not add to it.

    Notes
    -----
    * Pooled vs per-unit variance: ``preact_var`` is the variance over all
      ``batch x width`` entries (what the mean-field length map predicts);
      ``preact_unitvar`` is the mean over units of each unit's variance across the batch,
      :math:`(1 - 1/B)(v_l - C_l)`, much smaller in deep ReLU/GELU/sigmoid nets where
      the inputs become correlated (theory.md section 0, 2.2).
    * The per-sample weight-gradient second moment uses
      :math:`\|\delta_b a_b^T\|_F^2 = \|\delta_b\|^2 \|a_b\|^2`; the batch-mean one forms
      :math:`\frac1B \delta^T a_{l-1}` with one GEMM per layer.
    * Memory: one ``batch x n_l`` array per layer in ``dtype`` (the pre-activations backward
      needs), a second one (the outputs ``a_l``) when ``grad_weight_m2_batchmean`` is computed,
      the weights, and about six ``batch x max(n)`` working arrays. Halving ``batch`` halves it;
      ``dtype="float32"`` halves it again; two runs with half the batch each and different seeds,
      pooled, measure the same statistics.

    Examples
    --------
    The notes' Example 2 (10-layer He/ReLU net of width 100): the second moment, not the
    variance, is what He init preserves.

    >>> from fastinit.sim import simulate_mlp
    >>> res = simulate_mlp(depth=10, width=100, batch=2000, activation="relu", init="he",
    ...                    n_networks=8, seed=1)
    >>> res.theory["preact_var"][:3].round(3)
    array([2., 2., 2.])
    >>> res.preact_var[:3].round(2)                   # the notes' Var(z): 2, 1.36, 0.93
    array([2.  , 2.  , 2.05])
    >>> bool(abs(res.preact_m2[2] / 2 - 1) < 0.1)    # the notes predicted 0.93
    True
    >>> print(res.to_table(every=5))
    layer          preact_var               post_m2            frac_inactive         grad_preact_m2
    -----  ------------------  --------------------  -----------------------  ---------------------
        1  2.001 ±0.01036 [2]  0.9987 ±0.004964 [1]  0.5003 ±0.0005941 [0.5]  0.4685 ±0.02824 [0.5]
        6    2.268 ±0.196 [2]   0.9952 ±0.08289 [1]    0.5297 ±0.01062 [0.5]    0.47 ±0.03574 [0.5]
       10   1.747 ±0.1938 [2]     0.9371 ±0.122 [1]     0.496 ±0.01181 [0.5]   0.5041 ±0.0117 [0.5]
    (value ±stderr [mean-field theory])
    """
    ws = resolve_widths(widths, depth, width, input_dim)
    L = len(ws) - 1
    B = integer(batch, "batch", minimum=1)
    dt = check_dtype(dtype)
    act = resolve_activation(activation, activation_param, activation_derivative)
    key, scheme, params = resolve_scheme(init, init_params, dt)
    bias, bias_value, bias_std, input_mean, input_std, n_networks, seed = network_args(
        bias, bias_value, bias_std, input_mean, input_std, n_networks, seed)
    if residual_scale is not None:
        residual_scale = real(residual_scale, "residual_scale")
        if len(set(ws)) != 1:
            raise InitArgumentError(f"residual_scale needs equal widths (h_l = h_(l-1) + alpha phi(...)), "
                                    f"got widths {ws}")
    if G is not None:
        G = check_array(G, "G", (B, ws[-1]))
    hl = check_hist_layers(histograms, hist_layers, L)
    hist_bins = integer(hist_bins, "hist_bins", minimum=1)
    if hist_range is not None:
        hist_range = (real(hist_range[0], "hist_range[0]"), real(hist_range[1], "hist_range[1]"))
        if not hist_range[0] < hist_range[1]:
            raise InitArgumentError(f"hist_range must be (low, high) with low < high, got {hist_range}")
    explicit = check_explicit(weights, biases, x, ws, B, n_networks)
    backward_names = tuple(n for n in MLP_STATISTICS if n not in MLP_FORWARD_STATISTICS)
    selected = check_stats(stats, MLP_STATISTICS, backward_names, bool(backward))
    backward = bool(backward) and any(n in backward_names for n in selected)
    check_memory(_passes.mlp_bytes(ws, B, dt.itemsize, backward and "grad_weight_m2_batchmean" in selected),
                 f"simulate_mlp(widths={_short(ws)}, batch={B}, dtype={dt.name})")

    per = {n: [] for n in MLP_STATISTICS}
    hists = []
    with _workspace.keep_buffers():  # the networks reuse one another's working arrays
        for k in range(n_networks):
            with blas_threads(B, ws):
                Ws, bs, x0 = _build_network(k, ws, B, dt, scheme, params, bias, bias_value,
                                            bias_std, input_mean, input_std, seed, explicit)
            Gk = G if G is not None else (
                random_normal((B, ws[-1]), 0.0, 1.0, seed, stream(k, 0, KIND_SEED_G), dt)
                if backward else None)
            out = _passes.mlp_pass(x0, Ws, bs, act.kind, act.param, act.sat,
                                    residual=residual_scale is not None,
                                    alpha=1.0 if residual_scale is None else residual_scale,
                                    G=Gk, backward=backward, want=set(selected),
                                    hist_layers=hl if k == 0 else (), hist_bins=hist_bins, hist_range=hist_range)
            for n in MLP_STATISTICS:
                per[n].append(out[n])
            if k == 0:
                hists = out["histograms"]
    per = {n: np.array(v, dtype=np.float64) for n, v in per.items()}
    stats, stderr = summarise(per, MLP_STATISTICS)

    config = dict(widths=ws, batch=B, activation=act.name, activation_param=act.param,
                  init=key, init_params=params, bias=bias, bias_value=bias_value,
                  bias_std=bias_std, input_mean=input_mean, input_std=input_std,
                  residual_scale=residual_scale, n_networks=n_networks, seed=seed,
                  backward=bool(backward), dtype=dt.name, explicit_arrays=explicit is not None,
                  stats=list(selected))
    if theory:
        th, note = _scheme_theory(ws, B, act, scheme, params, bias, bias_value, bias_std, input_mean, input_std,
                                  residual_scale)
        config["theory_note"] = note
    else:
        th = nan_theory(MLP_STATISTICS, L)
    return MLPResult(np.arange(1, L + 1), stats, stderr, per, th, config, hists, "layer")


def blas_threads(B, ws):
    """BLAS thread policy of :mod:`fastinit.sim._passes` for weight creation too (a small
    QR with every BLAS thread spinning on a busy machine took 0.75 s instead of 1 ms)."""
    flops = max(2.0 * B * ws[i] * ws[i + 1] for i in range(len(ws) - 1))
    return _passes.blas_threads_for(flops)


def _build_network(k, ws, B, dt, scheme, params, bias, bias_value, bias_std, input_mean,
                   input_std, seed, explicit):
    L = len(ws) - 1
    eW, eb, ex = explicit if explicit is not None else (None, None, None)
    Ws, bs = [], []
    for l in range(L):
        shape = (ws[l + 1], ws[l])
        if eW is not None:
            Ws.append(np.ascontiguousarray(eW[l], dtype=dt))
        else:
            Ws.append(make_weight(shape, scheme, params, seed, stream(k, l + 1, KIND_WEIGHT), dt))
        if eb is not None:
            bs.append(np.ascontiguousarray(eb[l], dtype=np.float64))
        elif bias == "normal":
            bs.append(random_normal((ws[l + 1],), 0.0, bias_std, seed,
                                    stream(k, l + 1, KIND_BIAS), np.float64))
        else:
            bs.append(np.full(ws[l + 1], bias_value, dtype=np.float64))
    if ex is not None:
        x0 = np.ascontiguousarray(ex, dtype=dt)
    else:
        x0 = random_normal((B, ws[0]), input_mean, input_std, seed, stream(k, 0, KIND_INPUT), dt)
    return Ws, bs, x0




def _short(ws):
    """Widths for a message: the list, or its length and extremes when long."""
    if len(ws) <= 8:
        return str(list(ws))
    return f"[{ws[0]}, ... {len(ws) - 1} layers of {min(ws[1:])}..{max(ws[1:])}]"

