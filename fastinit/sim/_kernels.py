"""Fused Numba kernels and the BLAS drivers behind :mod:`fastinit.sim`.

Private module. The public functions (:mod:`fastinit.sim`) validate every argument; the
functions here trust their inputs.

Design
------
* Matrix products go through BLAS: ``numpy.matmul(..., out=buffer)`` outside Numba, so the
  product lands in a preallocated buffer and OpenBLAS runs its own threads.
* Everything elementwise is one fused ``@njit(parallel=True)`` pass per layer and direction:
  bias add, activation, derivative, and every statistic of the layer. Statistics are
  accumulated in float64 per row chunk (one chunk per ``prange`` iteration) and reduced after
  the loop, so results do not depend on the thread count.
* The activation is chosen by an integer ``kind`` (an :class:`~fastinit._activations.Activation`'s
  ``kind_id``) at *compile* time: each kernel is compiled once per kind with ``kind`` typed as a
  literal, and :func:`phi`/:func:`dphi` resolve to that activation's scalar functions
  (:data:`fastinit.sim._fastmath.KERNEL_ACTIVATIONS`), which are inlined so that the loops
  vectorise. No branch on the kind is left in the loop (a kernel dispatching on a run-time kind
  inside the loop was 5x slower for ReLU), and no function is passed as an argument or closed
  over, so Numba's on-disk cache (``FASTINIT_NUMBA_CACHE``, :mod:`fastinit._config`) keeps every
  compiled kernel: a second process compiles nothing. :func:`compiled` returns a kernel's entry
  point for one kind and argument types (calling the dispatcher with a literal argument would
  resolve the types in Python on every call).
* A user's own activation gets a fresh kind (:func:`register_user_activation`) served by
  uncached copies of the same kernels: its code lives outside fastinit, so a cache entry could
  not tell when it changes.
* Memory: the forward pass keeps one pre-activation array per layer in the simulation dtype
  (float32 by default), plus the post-activation stream for residual nets, which cannot be
  rebuilt from the pre-activations. Backward rebuilds ``phi(z)`` and ``phi'(z)`` from the stored
  ``z`` in the same fused pass that forms ``delta``. Working buffers are a few ``B x n``
  arrays; there is no float64 copy of any layer (:func:`mlp_bytes`, :func:`rnn_bytes`).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import threading
import warnings

import numba
import numpy as np
from numba import njit, prange, types
from numba.core.errors import NumbaIRAssumptionWarning
from numba.extending import overload

from fastinit import _activations, _blas
from fastinit._config import NUMBA_CACHE
from fastinit.theory._common import MLP_BACKWARD_STATISTICS, MLP_FORWARD_STATISTICS

from . import _fastmath
from ._fastmath import KERNEL_ACTIVATIONS

__all__ = [
    "compiled",
    "register_user_activation",
    "forward_layer",
    "backward_layer",
    "sumsq",
    "ordered_sum",
    "row_chunks",
    "mlp_pass",
    "rnn_pass",
    "mlp_bytes",
    "rnn_bytes",
    "N_POOLED",
    "SMALL_GEMM_FLOPS",
    "SMALL_LAYER_ENTRIES",
]



# ------------------------------------------------------------------------------------------
# BLAS threads. OpenBLAS worker threads spin after each call, and Numba's workers spin after
# each parallel region; alternating small GEMMs and small fused kernels on the same cores then
# makes each side wait for the other's spinning threads (measured: 100x slower for 512 x 128
# layers on 2 busy cores). Small GEMMs therefore run single-threaded in BLAS (the fused
# kernels still use every core); large ones keep all BLAS threads.
# ------------------------------------------------------------------------------------------
SMALL_GEMM_FLOPS = 2 ** 28  # ~268 MFLOP: below this a GEMM takes < ~5 ms on one core


def blas_threads_for(gemm_flops):
    """Context: one BLAS thread (:func:`fastinit._blas.single_threaded_blas`) if ``gemm_flops``
    (per GEMM) is small, else the BLAS libraries' own setting."""
    if gemm_flops >= SMALL_GEMM_FLOPS:
        return contextlib.nullcontext()
    return _blas.single_threaded_blas()


def row_chunks(batch):
    """Number of row chunks (prange iterations) for a batch: a few per thread, at least 1.

    Chunks own their float64 accumulators; 64 chunks keep every thread busy on machines with up
    to ~16 cores without making the per-unit accumulators (chunks x width) large.
    """
    return max(1, min(int(batch), 64))


# Layout of the pooled statistics returned by `forward_layer`: the order of MLP_FORWARD_STATISTICS.
(_P_ZMEAN, _P_ZVAR, _P_ZM2, _P_AMEAN, _P_AVAR, _P_AM2, _P_UNITVAR, _P_SPREAD, _P_INACT,
 _P_DEAD, _P_SAT) = range(11)
N_POOLED = len(MLP_FORWARD_STATISTICS)


# Reassociation lets LLVM vectorise the float64 partial sums (2.5x on the ReLU forward pass);
# no 'nnan'/'ninf', so exploding runs still propagate inf and NaN faithfully.
_FAST = {"reassoc", "nsz"}



@njit(cache=NUMBA_CACHE, nogil=True)
def ordered_sum(a):
    """Sum of a 1-D float64 array, left to right.

    Inside a ``parallel=True`` kernel Numba splits ``a.sum()`` and ``a.mean()`` across threads,
    so their last bits would depend on the thread count and the scheduling; this function is
    compiled on its own, without ``parallel`` or ``fastmath``, and always adds in index order.
    """
    s = 0.0
    for i in range(a.shape[0]):
        s += a[i]
    return s


# ------------------------------------------------------------------------------------------
# The activation inside the kernels: resolved at compile time from the literal ``kind``.
# ------------------------------------------------------------------------------------------
_KINDS = dict(KERNEL_ACTIVATIONS)   # kind -> (phi, phi'); user activations are added at run time
_USER_KIND0 = 1 << 16               # user kinds start here (registry kinds are small)
_user_kinds = itertools.count(_USER_KIND0)


def register_user_activation(phi, dphi):
    """A new kind for a user's ``@njit`` pair ``phi(x, p)``, ``dphi(x, p)`` (never cached on disk)."""
    kind = next(_user_kinds)
    _KINDS[kind] = (phi, dphi)
    return kind


def phi(kind, x, p):
    """``phi(x)`` of activation ``kind`` (Numba only; ``kind`` must be a literal)."""
    raise NotImplementedError("phi is only callable from Numba-compiled code")


def dphi(kind, x, p):
    """``phi'(x)`` of activation ``kind`` (Numba only; ``kind`` must be a literal)."""
    raise NotImplementedError("dphi is only callable from Numba-compiled code")


def _scalar_overload(which):
    def typer(kind, x, p):
        if not isinstance(kind, types.IntegerLiteral):
            return None  # Numba retries with the literal kind (numba.literally in the kernels)
        fn = _KINDS[kind.literal_value][which]

        def impl(kind, x, p):
            return fn(x, p)
        return impl
    return typer


overload(phi, inline="always")(_scalar_overload(0))
overload(dphi, inline="always")(_scalar_overload(1))


def _forward_layer(kind, z, bias, out, prev, alpha, residual, p, sat_thr, nchunk):
    """Fused forward pass of one layer on the BLAS output ``z = a_{l-1} W^T``.

    In place: ``z += bias`` (rounded to ``z.dtype``: what backward will see), then
    ``out = phi(kind, z)`` or, with ``residual``, ``out = prev + alpha * phi(kind, z)``. All statistics in
    the same pass, in float64 partial sums per row chunk, reduced after the loop.

    Every sum is taken of a shifted value (``z - z[0, j]`` per unit, ``z - z[i, 0]`` per row,
    ``out - out[0, 0]`` pooled), so that a large common offset cannot cancel a small spread and a
    constant layer gives exactly zero variance.

    Returns
    -------
    pooled : (N_POOLED,) float64
        z mean, variance, second moment; out mean, variance, second moment (all pooled over
        the B x n entries); mean over units of the across-batch variance (ddof 0); mean over
        rows of the across-unit variance; fraction of entries with z <= 0; fraction of units
        with z <= 0 on every row; fraction with |z| > sat_thr (pass ``inf`` for none).
    rowsq : (B,) float64
        sum_j out[b, j]^2 per row (for the per-sample weight gradient).
    """
    numba.literally(kind)  # one compiled kernel per activation (see the module notes)
    B, n = z.shape
    N = float(B) * n
    s1 = np.zeros((nchunk, n))
    s2 = np.zeros((nchunk, n))
    zmax = np.full((nchunk, n), -np.inf)
    part = np.zeros((nchunk, 6))
    rowsq = np.zeros(B)
    shift = np.empty(n, dtype=z.dtype)
    for j in range(n):
        shift[j] = np.float64(z[0, j]) + bias[j]  # rounded like the stored value
    first = np.empty(1, dtype=out.dtype)
    a00 = phi(kind, np.float64(shift[0]), p)
    if residual:
        a00 = np.float64(prev[0, 0]) + alpha * a00
    first[0] = a00
    ash = np.float64(first[0])
    for c in prange(nchunk):
        r0 = (c * B) // nchunk
        r1 = ((c + 1) * B) // nchunk
        ninact = 0.0
        nsat = 0.0
        spread = 0.0
        pa1 = 0.0
        pa2 = 0.0
        tmp = np.empty(1, dtype=z.dtype)
        for i in range(r0, r1):
            tmp[0] = np.float64(z[i, 0]) + bias[0]  # the row's first stored value
            z0 = np.float64(tmp[0])
            rz1 = 0.0
            rz2 = 0.0
            ra1 = 0.0
            ra2 = 0.0
            for j in range(n):
                z[i, j] = np.float64(z[i, j]) + bias[j]
                zz = np.float64(z[i, j])
                a = phi(kind, zz, p)
                if residual:
                    a = np.float64(prev[i, j]) + alpha * a
                out[i, j] = a
                a = np.float64(out[i, j]) - ash
                ra1 += a
                ra2 += a * a
                d = zz - np.float64(shift[j])
                s1[c, j] += d
                s2[c, j] += d * d
                zmax[c, j] = max(zmax[c, j], zz)
                e = zz - z0
                rz1 += e
                rz2 += e * e
                ninact += 1.0 if zz <= 0.0 else 0.0
                nsat += 1.0 if abs(zz) > sat_thr else 0.0
            rv = rz2 / n - (rz1 / n) ** 2
            spread += max(rv, 0.0)
            rowsq[i] = max(ra2 + 2.0 * ash * ra1 + n * ash * ash, 0.0)
            pa1 += ra1
            pa2 += ra2
        part[c, 0] = ninact
        part[c, 1] = nsat
        part[c, 2] = spread
        part[c, 3] = pa1
        part[c, 4] = pa2
    tot = np.zeros(6)
    for c in range(nchunk):
        for k in range(6):
            tot[k] += part[c, k]
    # per-unit means and variances, then the pooled moments from them (law of total variance)
    umean = np.empty(n)
    uvar = np.empty(n)
    dead = 0.0
    for j in range(n):
        t1 = 0.0
        t2 = 0.0
        mx = -np.inf
        for c in range(nchunk):
            t1 += s1[c, j]
            t2 += s2[c, j]
            mx = max(mx, zmax[c, j])
        m = t1 / B
        uvar[j] = max(t2 / B - m * m, 0.0)
        umean[j] = np.float64(shift[j]) + m
        if mx <= 0.0:
            dead += 1.0
    zmean = ordered_sum(umean) / n
    between = 0.0
    for j in range(n):
        between += (umean[j] - zmean) ** 2
    res = np.empty(N_POOLED)
    res[_P_ZMEAN] = zmean
    res[_P_UNITVAR] = ordered_sum(uvar) / n
    res[_P_ZVAR] = res[_P_UNITVAR] + between / n
    res[_P_ZM2] = res[_P_ZVAR] + zmean * zmean
    da = tot[3] / N
    res[_P_AMEAN] = ash + da
    res[_P_AVAR] = max(tot[4] / N - da * da, 0.0)
    res[_P_AM2] = res[_P_AVAR] + res[_P_AMEAN] ** 2
    res[_P_SPREAD] = tot[2] / B
    res[_P_INACT] = tot[0] / N
    res[_P_DEAD] = dead / n
    res[_P_SAT] = tot[1] / N
    return res, rowsq


def _backward_layer(kind, g, gres, residual, z, delta, a_out, p, scale, nchunk):
    """Fused backward pass through one layer's nonlinearity.

    In place: with ``residual`` first ``g += gres`` (the skip path), then
    ``delta = scale * phi'(z) * g`` and ``a_out = phi(kind, z)`` (the previous layer's
    post-activation rebuilt from the stored pre-activation, for the weight gradient; pass a
    scratch array where it is not needed). One loop for both: their common work (exp, erfc)
    is computed once, and the activation is compiled into one loop body, not two.

    Returns
    -------
    sum_delta2 : float
        sum of delta^2 over the B x n entries (float64).
    rowsq : (B,) float64
        sum_j delta[b, j]^2 per row.
    """
    numba.literally(kind)  # one compiled kernel per activation (see the module notes)
    B, n = z.shape
    rowsq = np.zeros(B)
    for c in prange(nchunk):
        r0 = (c * B) // nchunk
        r1 = ((c + 1) * B) // nchunk
        for i in range(r0, r1):
            rd = 0.0
            if residual:
                for j in range(n):
                    g[i, j] = np.float64(g[i, j]) + np.float64(gres[i, j])
            for j in range(n):
                zz = np.float64(z[i, j])
                a_out[i, j] = phi(kind, zz, p)
                delta[i, j] = scale * dphi(kind, zz, p) * np.float64(g[i, j])
                d = np.float64(delta[i, j])
                rd += d * d
            rowsq[i] = rd
    return ordered_sum(rowsq), rowsq


_KERNEL_FLAGS = dict(parallel=True, fastmath=_FAST, error_model="numpy", nogil=True)
#: Fused forward pass of one layer (see ``_forward_layer``), cached on disk per kind.
forward_layer = njit(_forward_layer, cache=NUMBA_CACHE, **_KERNEL_FLAGS)
#: Fused backward pass through one layer's nonlinearity (see ``_backward_layer``).
backward_layer = njit(_backward_layer, cache=NUMBA_CACHE, **_KERNEL_FLAGS)


def _stamp_with_dependencies(kernel, modules):
    """Make ``kernel``'s on-disk cache depend on ``modules``' files too.

    Numba compares only the stamp of the kernel's own file with the cache index;
    the kernels also inline code from :mod:`fastinit.sim._fastmath` and
    :mod:`fastinit._activations`, so an edit there must invalidate them as well. Numba's cache
    object is internal: where it is not as expected nothing is changed (Numba's own rule applies).
    """
    cache_file = getattr(getattr(kernel, "_cache", None), "_cache_file", None)
    stamp = getattr(cache_file, "_source_stamp", None)
    if stamp is None:
        return
    extra = []
    for m in modules:
        with open(m.__file__, "rb") as fh:
            extra.append(hashlib.sha256(fh.read()).hexdigest())
    cache_file._source_stamp = (stamp, *extra)


for _kernel in (forward_layer, backward_layer):
    _stamp_with_dependencies(_kernel, (_fastmath, _activations))

# the same kernels for user activations, never written to the on-disk cache
_UNCACHED = {forward_layer: njit(_forward_layer, **_KERNEL_FLAGS),
             backward_layer: njit(_backward_layer, **_KERNEL_FLAGS)}
_ENTRIES = {}
_ENTRIES_LOCK = threading.Lock()


def compiled(kernel, kind, *args):
    """Entry point of ``kernel`` (:data:`forward_layer` or :data:`backward_layer`) compiled for
    activation ``kind`` and the types of ``args`` (compiled, or loaded from Numba's cache, once)."""
    key = (kernel, kind, *(numba.typeof(a) for a in args))
    fn = _ENTRIES.get(key)
    if fn is None:
        with _ENTRIES_LOCK:
            fn = _ENTRIES.get(key)
            if fn is None:
                disp = kernel if kind < _USER_KIND0 else _UNCACHED[kernel]
                with warnings.catch_warnings():
                    # a pedantic SSA check of Numba's inliner ("variable ... is not in scope") that
                    # fires on the inlined activations; the generated code is correct (tests/test_sim.py)
                    warnings.simplefilter("ignore", NumbaIRAssumptionWarning)
                    fn = disp.compile((types.literal(kind), *key[2:]))
                _ENTRIES[key] = fn
    return fn




@njit(parallel=True, cache=NUMBA_CACHE, nogil=True)
def sumsq(x):
    """sum(x**2) of a 2-D array with float64 accumulation, one partial per row."""
    m = x.shape[0]
    part = np.zeros(m)
    for i in prange(m):
        s = 0.0
        for j in range(x.shape[1]):
            v = np.float64(x[i, j])
            s += v * v
        part[i] = s
    return ordered_sum(part)


def _forward(kind, *args):
    return compiled(forward_layer, kind, *args)(kind, *args)


def _backward(kind, *args):
    return compiled(backward_layer, kind, *args)(kind, *args)


def _mlp_pass(x, weights, biases, kind, p, sat_thr, residual=False, alpha=1.0,
             G=None, backward=True, hist_layers=(), hist_bins=50, hist_range=None):
    """Run one network forward (and backward) and return its per-layer statistics.

    Parameters
    ----------
    x : (B, n_0) array, simulation dtype, C-contiguous.
    weights : list of (n_l, n_{l-1}) arrays, same dtype.
    biases : list of (n_l,) float64 arrays.
    kind : int
        The activation's kernel kind (``Activation.kind_id`` or :func:`register_user_activation`).
    p : float
        Activation parameter.
    sat_thr : float
        Saturation threshold on |z| (``inf``: not applicable, reported as NaN).
    residual, alpha : bool, float
        ``h_l = h_{l-1} + alpha * phi(h_{l-1} W_l^T + b_l)``; ``post_*`` describe ``h_l``.
    G : (B, n_L) array
        Backward seed (per-sample loss ``sum_k G[b,k] a_L[b,k]``).
    hist_layers : iterable of int
        0-based layers whose pre- and post-activation histograms are returned.

    Returns
    -------
    dict
        Statistic name -> float64 array of length L (``grad_input_m2``: 0-d), and
        ``"histograms"``: list of dicts.
    """
    dtype = x.dtype
    B = x.shape[0]
    L = len(weights)
    widths = [x.shape[1]] + [w.shape[0] for w in weights]
    nchunk = row_chunks(B)
    out = {k: np.full(L, np.nan) for k in MLP_FORWARD_STATISTICS + MLP_BACKWARD_STATISTICS}
    use_sat = np.isfinite(sat_thr)
    hist_layers = set(int(h) for h in hist_layers)
    hists = []

    zs = []          # stored pre-activations (simulation dtype), one per layer
    posts = [x]      # residual nets keep h_l (cannot be rebuilt from z); plain nets only x
    rowsq_post = [np.einsum("ij,ij->i", x, x, dtype=np.float64)]
    a = x
    for l in range(L):
        W = weights[l]
        z = np.empty((B, widths[l + 1]), dtype=dtype)
        np.matmul(a, W.T, out=z)
        a_new = np.empty_like(z)
        pooled, rsq = _forward(kind, z, biases[l], a_new, a, alpha, residual, p, sat_thr, nchunk)
        for k, name in enumerate(MLP_FORWARD_STATISTICS):  # the order of the pooled row
            out[name][l] = pooled[k]
        if not use_sat:
            out["frac_saturated"][l] = np.nan
        if l in hist_layers:
            hists.append(_histograms(l, z, a_new, hist_bins, hist_range))
        zs.append(z)
        rowsq_post.append(rsq)
        if residual:
            posts.append(a_new)
        a = a_new
    result = dict(out)
    result["histograms"] = hists
    result["grad_input_m2"] = np.array(np.nan)
    if not backward:
        return result

    # ---- backward: g_l = dl/da_l (or dl/dh_l), delta_l = dl/dz_l ----
    g = np.ascontiguousarray(G, dtype=dtype)
    delta = np.empty((B, widths[L]), dtype=dtype)
    aprev = None
    sd2, rd = _backward(kind, g, g, False, zs[L - 1], delta, np.empty_like(delta), p,
                              alpha if residual else 1.0, nchunk)
    for l in range(L - 1, -1, -1):
        n_out, n_in = widths[l + 1], widths[l]
        out["grad_preact_m2"][l] = sd2 / (B * n_out)
        out["grad_bias_m2_per_sample"][l] = sd2 / (B * n_out)
        out["grad_weight_m2_per_sample"][l] = float(np.dot(rd, rowsq_post[l])) / (B * n_out * n_in)
        # g_{l-1} = delta_l W_l  (+ g_l through the skip path, added inside backward_layer)
        g_new = np.empty((B, n_in), dtype=dtype)
        np.matmul(delta, weights[l], out=g_new)
        if l > 0:
            delta_new = np.empty((B, n_in), dtype=dtype)
            if residual:
                aprev = posts[l]
                sd2_new, rd_new = _backward(kind, g_new, g, True, zs[l - 1], delta_new,
                                                 np.empty_like(delta_new), p, alpha, nchunk)
            else:
                aprev = np.empty((B, n_in), dtype=dtype)
                sd2_new, rd_new = _backward(kind, g_new, g, False, zs[l - 1], delta_new, aprev,
                                                 p, 1.0, nchunk)
        else:
            aprev = x
            if residual:
                g_new += g
        dW = np.matmul(delta.T, aprev)
        out["grad_weight_m2_batchmean"][l] = sumsq(dW) / (B * B * n_out * n_in)
        del dW
        if l > 0:
            g, delta, sd2, rd = g_new, delta_new, sd2_new, rd_new
            zs[l] = None  # free as we go: peak memory stays ~ the forward's
        else:
            g = g_new
    result.update(out)
    result["grad_input_m2"] = np.array(sumsq(g) / (B * widths[0]))
    return result


def _histograms(l, z, a, bins, rng):
    zr = rng if rng is not None else _auto_range(z)
    ar = rng if rng is not None else _auto_range(a)
    hz, ez = np.histogram(z, bins=bins, range=zr)
    ha, ea = np.histogram(a, bins=bins, range=ar)
    return {"layer": l + 1, "preact_counts": hz, "preact_edges": ez,
            "post_counts": ha, "post_edges": ea}


def _auto_range(v):
    lo = float(np.min(v))
    hi = float(np.max(v))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return (-1.0, 1.0)
    if hi <= lo:
        return (lo - 0.5, hi + 0.5)
    return (lo, hi)


def _rnn_pass(h0, W, xs_fn, U, b, kind, p, steps, G=None, backward=True):
    """Run one recurrent net ``h_t = phi(h_{t-1} W^T [+ x_t U^T] + b)`` for ``steps`` steps.

    ``xs_fn(t)`` returns the input batch of step t (1-based) or None (no input). Returns a dict of
    float64 arrays indexed by t = 0..T: ``h_m2`` (pooled mean h_t^2), ``h_norm`` (mean over the
    batch of ||h_t||), ``preact_m2`` (t >= 1), ``grad_h_m2`` (mean (dl/dh_t)^2 for
    ``l = sum G * h_T``).
    """
    dtype = h0.dtype
    B, n = h0.shape
    nchunk = row_chunks(B)
    T = int(steps)
    h_m2 = np.full(T + 1, np.nan)
    h_norm = np.full(T + 1, np.nan)
    pre_m2 = np.full(T + 1, np.nan)
    pre_mean = np.full(T + 1, np.nan)
    post_mean = np.full(T + 1, np.nan)
    grad = np.full(T + 1, np.nan)
    r0 = np.einsum("ij,ij->i", h0, h0, dtype=np.float64)
    h_m2[0] = r0.sum() / (B * n)
    h_norm[0] = np.sqrt(r0).mean()
    post_mean[0] = float(h0.mean(dtype=np.float64))
    zs = []
    h = h0
    for t in range(1, T + 1):
        z = np.empty((B, n), dtype=dtype)
        np.matmul(h, W.T, out=z)
        xt = xs_fn(t)
        if xt is not None:
            z += xt @ U.T
        h_new = np.empty_like(z)
        pooled, rsq = _forward(kind, z, b, h_new, h, 1.0, False, p, np.inf, nchunk)
        pre_mean[t] = pooled[_P_ZMEAN]
        pre_m2[t] = pooled[_P_ZM2]
        post_mean[t] = pooled[_P_AMEAN]
        h_m2[t] = pooled[_P_AM2]
        h_norm[t] = np.sqrt(rsq).mean()
        zs.append(z)
        h = h_new
    res = {"h_m2": h_m2, "h_norm": h_norm, "preact_m2": pre_m2, "preact_mean": pre_mean,
           "post_mean": post_mean, "grad_h_m2": grad}
    if not backward:
        return res
    g = np.ascontiguousarray(G, dtype=dtype)
    grad[T] = sumsq(g) / (B * n)
    delta = np.empty((B, n), dtype=dtype)
    scratch = np.empty((B, n), dtype=dtype)
    for t in range(T, 0, -1):
        _backward(kind, g, g, False, zs[t - 1], delta, scratch, p, 1.0, nchunk)
        zs[t - 1] = None
        g = np.matmul(delta, W)
        grad[t - 1] = sumsq(g) / (B * n)
    return res


# Below this many entries per layer a fused pass takes well under a millisecond on one core,
# less than waking the other Numba workers costs on a busy machine (a parallel region has to
# wait until every worker is scheduled), so small layers run on the calling thread only.
SMALL_LAYER_ENTRIES = 1 << 17


@contextlib.contextmanager
def numba_threads_for(entries):
    """Run the block with one Numba thread if a layer has fewer than SMALL_LAYER_ENTRIES entries."""
    if entries >= SMALL_LAYER_ENTRIES:
        yield
        return
    old = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(old)


def mlp_pass(x, weights, *args, **kwargs):
    """See :func:`_mlp_pass`; picks BLAS and Numba thread counts from the problem size."""
    flops = max(2.0 * x.shape[0] * w.shape[0] * w.shape[1] for w in weights)
    entries = x.shape[0] * max([x.shape[1]] + [w.shape[0] for w in weights])
    with blas_threads_for(flops), numba_threads_for(entries):
        return _mlp_pass(x, weights, *args, **kwargs)


def rnn_pass(h0, W, *args, **kwargs):
    """See :func:`_rnn_pass`; picks BLAS and Numba thread counts from the problem size."""
    with blas_threads_for(2.0 * h0.shape[0] * W.shape[0] * W.shape[1]), numba_threads_for(h0.size):
        return _rnn_pass(h0, W, *args, **kwargs)

def mlp_bytes(widths, batch, itemsize, residual=False):
    """Peak bytes :func:`mlp_pass` allocates for one network (weights, inputs and seed included).

    The stored pre-activations (``batch x n_l`` per layer; residual nets also keep ``h_l``), the
    weights, and the working set of the backward pass (``g``, ``delta``, their successors, the
    rebuilt ``a_{l-1}``, ``G`` and ``x``: about six ``batch x max(n)`` arrays, plus one weight
    gradient).
    """
    pairs = [a * b for a, b in zip(widths[1:], widths[:-1], strict=True)]
    stored = batch * sum(widths[1:]) * (2 if residual else 1)
    work = 6 * batch * max(widths) + max(pairs)
    return itemsize * (sum(pairs) + stored + work) + 8 * batch * (len(widths) + 2)


def rnn_bytes(hidden, steps, batch, input_dim, itemsize):
    """Peak bytes :func:`rnn_pass` allocates for one network: ``W``, ``U``, one stored
    ``batch x hidden`` pre-activation per step and a few working arrays."""
    n, d = hidden, input_dim
    return itemsize * (n * n + n * d + batch * n * (steps + 6) + batch * d)
