"""Drivers of the simulator: one network forward and backward (:func:`mlp_pass`, :func:`rnn_pass`),
with BLAS for the matrix products and the fused kernels of :mod:`fastinit.sim._kernels` for
everything elementwise, the thread policy for small problems, and the memory estimates.

Private module: the public functions (:mod:`fastinit.sim`) validate every argument.

* Matrix products go through BLAS: ``numpy.matmul(..., out=buffer)`` outside Numba, so the
  product lands in a preallocated buffer and OpenBLAS runs its own threads.
* Memory: the forward pass keeps one pre-activation array per layer in the simulation dtype
  (float32 by default), plus the post-activation stream for residual nets, which cannot be
  rebuilt from the pre-activations. Backward rebuilds ``phi(z)`` and ``phi'(z)`` from the stored
  ``z`` in the same fused pass that forms ``delta``. Working buffers are a few ``B x n``
  arrays; there is no float64 copy of any layer (:func:`mlp_bytes`, :func:`rnn_bytes`).
"""

from __future__ import annotations

import contextlib

import numba
import numpy as np

from fastinit import _blas
from fastinit.theory._common import MLP_BACKWARD_STATISTICS, MLP_FORWARD_STATISTICS

from ._kernels import backward_layer, compiled, forward_layer, sumsq

__all__ = ["mlp_pass", "rnn_pass", "mlp_bytes", "rnn_bytes", "row_chunks", "blas_threads_for",
           "numba_threads_for", "SMALL_GEMM_FLOPS", "SMALL_LAYER_ENTRIES"]

# positions in forward_layer's pooled row (the order of MLP_FORWARD_STATISTICS)
_P_ZMEAN, _P_ZM2, _P_AMEAN, _P_AM2 = (MLP_FORWARD_STATISTICS.index(k)
                                      for k in ("preact_mean", "preact_m2", "post_mean", "post_m2"))

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
