"""Drivers of the simulator: one network forward and backward (:func:`mlp_pass`, :func:`rnn_pass`),
with BLAS for the matrix products and the fused kernels of :mod:`fastinit.sim._kernels` for
everything elementwise, the thread policy for small problems, and the memory estimates.

Private module: the public functions (:mod:`fastinit.sim`) validate every argument.

* Matrix products go through BLAS: ``numpy.matmul(..., out=buffer[r0:r1])`` outside Numba,
  one block of rows at a time on one BLAS thread, each followed at once by the fused kernel on
  that block (still in cache); blocks run on the calling thread and a small thread pool
  (:func:`run_blocks`). The partition depends only on the sizes (:func:`row_blocks`). On one
  thread a layer's GEMM is one call for all its blocks; a layer of zero weights needs none
  (:func:`zero_product`).
* Memory: the forward pass keeps one pre-activation array per layer in the simulation dtype
  (float32 by default), plus the outputs ``a_l`` (residual nets: ``h_l``) when the batch-mean
  weight gradient ``delta_l^T a_{l-1}`` is wanted. Backward forms ``phi'(z)`` from
  the stored ``z``. (Rebuilding ``a_{l-1} = phi(z_{l-1})`` in the backward loop instead saves that
  memory but cost 0.5 to 1.3 ns more per element for tanh, GELU and SELU:
  ``benchmarks/scripts/sim_kernels.py`` at commit 567d7c9.) Working buffers are a few ``B x n``
  arrays, recycled (:mod:`fastinit.sim._workspace`); there is no float64 copy of any layer
  (:func:`mlp_bytes`, :func:`rnn_bytes`).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from fastinit import _blas, _stats
from fastinit.theory._common import MLP_BACKWARD_STATISTICS, MLP_FORWARD_STATISTICS

from ._kernels import (
    F_POST,
    F_SAT,
    F_ZMOM,
    FORWARD_GROUPS,
    N_PART,
    backward_block,
    compiled,
    forward_block,
    forward_reduce,
    ordered_sum,
    sumsq,
)
from ._workspace import Workspace

__all__ = ["mlp_pass", "rnn_pass", "mlp_bytes", "rnn_bytes", "row_blocks", "run_blocks", "forward_layer",
           "backward_layer", "forward_flags", "weight_gradient_sumsq", "blas_threads_for", "threads_for",
           "SMALL_GEMM_FLOPS", "SMALL_LAYER_ENTRIES"]

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


# ------------------------------------------------------------------------------------------
# Blocks of rows. Each layer is computed in blocks of rows: the BLAS call that writes a block is
# followed at once by the fused kernel on that block, while it is still in cache, so the only
# full passes over memory are the GEMMs' own. Blocks run on this thread or on a small pool of
# threads (BLAS single-threaded in each), one block at a time per thread. The partition depends
# only on the batch and the widths, never on the thread count, and every block sums into its own
# slots, reduced in block order: the statistics do not depend on the thread count.
# ------------------------------------------------------------------------------------------
BLOCK_BYTES = 1 << 21   # at most about this many bytes of one layer's output per block (a core's L2)
MIN_BLOCK_ROWS = 16     # BLAS on fewer rows than this (per call) loses too much to packing the weights


def row_blocks(batch, width, itemsize):
    """Row bounds ``[0, r_1, ..., batch]`` of the blocks of a ``batch x width`` layer.

    A layer that runs on several threads (``SMALL_LAYER_ENTRIES`` or more) gets at least 4 blocks so
    that the threads share it evenly; a small one a single block when it fits in ``BLOCK_BYTES``.
    The partition depends on the sizes only.
    """
    rows = BLOCK_BYTES // max(1, width * itemsize)
    if batch * width >= SMALL_LAYER_ENTRIES:
        rows = min(rows, -(-int(batch) // 4))
    rows = max(MIN_BLOCK_ROWS, rows)
    nb = max(1, -(-int(batch) // rows))
    return np.array([(c * batch) // nb for c in range(nb + 1)], dtype=np.int64)


_POOL = None
_POOL_LOCK = threading.Lock()


def _pool():
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=max(1, numba.config.NUMBA_NUM_THREADS - 1),
                                       thread_name_prefix="fastinit-sim")
        return _POOL


def _forget_pool_after_fork():
    global _POOL, _POOL_LOCK
    _POOL, _POOL_LOCK = None, threading.Lock()  # the parent's threads do not exist in a child


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def run_blocks(nthreads, nblocks, fn):
    """``fn(c)`` for every block ``c < nblocks``, on up to ``nthreads`` threads (this one included).

    Threads take the next block as they finish one, so a core that another job slows down takes
    fewer blocks; which thread ran a block does not change its result.
    """
    if nthreads <= 1 or nblocks <= 1:
        for c in range(nblocks):
            fn(c)
        return
    counter = itertools.count()

    def worker():
        while True:
            c = next(counter)
            if c >= nblocks:
                return
            fn(c)

    futures = [_pool().submit(worker) for _ in range(min(nthreads, nblocks) - 1)]
    try:
        worker()
    finally:
        for f in futures:
            f.result()


def _no_gemm(r0, r1):
    return None


def _gemm_and_blocks(nthreads, bounds, gemm, block):
    """``block(c, gemm)`` for every block of rows (it runs ``gemm`` on its rows, then its kernel).

    On one thread the GEMM of all blocks comes first, in one call: each per-block call would pack the
    layer's weights again (``sim_overheads.py gemm-blocks``). OpenBLAS gives the full product the
    per-block products' bits (its blocking of the summed dimension does not depend on the rows;
    ``gemm-blocks`` and the thread-count test check it). The kernels still run block by block, so the
    statistics add in the same order as on several threads.
    """
    nb = len(bounds) - 1
    if nthreads <= 1 and nb > 1 and gemm is not _no_gemm:
        gemm(int(bounds[0]), int(bounds[-1]))
        for c in range(nb):
            block(c, _no_gemm)
        return
    run_blocks(nthreads, nb, block)


def forward_layer(nthreads, gemm, kind, z, bias, out, prev, alpha, residual, p, sat_thr, flags, bounds):
    """One layer forward in blocks: ``gemm(r0, r1)`` fills ``z[r0:r1]``, the fused kernel does the rest.

    Returns ``(pooled, rowsq)``: the pooled statistics (``forward_reduce``) and the per-row sums of
    ``out**2`` (only with ``F_POST`` in ``flags``).
    """
    nb, n = len(bounds) - 1, z.shape[1]
    ushift = np.zeros((nb, n))
    us1 = np.zeros((nb, n))
    us2 = np.zeros((nb, n))
    umax = np.full((nb, n), -np.inf)
    part = np.zeros((nb, N_PART))
    rowsq = np.zeros(z.shape[0])
    fn = compiled(forward_block, kind, z, bias, out, prev, alpha, residual, p, sat_thr, flags, 0, 0, 0,
                  ushift, us1, us2, umax, part, rowsq)

    def block(c, gemm=gemm):
        r0, r1 = int(bounds[c]), int(bounds[c + 1])
        gemm(r0, r1)
        fn(kind, z, bias, out, prev, alpha, residual, p, sat_thr, flags, r0, r1, c, ushift, us1, us2, umax, part,
           rowsq)

    _gemm_and_blocks(nthreads, bounds, gemm, block)
    return forward_reduce(bounds, ushift, us1, us2, umax, part), rowsq


def backward_layer(nthreads, gemm, kind, g, gres, residual, z, delta, p, scale, bounds):
    """Backward through one layer's nonlinearity in blocks: ``gemm(r0, r1)`` fills ``g[r0:r1]`` (or does
    nothing), then ``delta = scale * phi'(z) * g`` (with ``residual``, after ``g += gres``).

    Returns the per-row sums of ``delta**2``.
    """
    rowsq = np.zeros(z.shape[0])
    fn = compiled(backward_block, kind, g, gres, residual, z, delta, p, scale, 0, 0, rowsq)

    def block(c, gemm=gemm):
        r0, r1 = int(bounds[c]), int(bounds[c + 1])
        gemm(r0, r1)
        fn(kind, g, gres, residual, z, delta, p, scale, r0, r1, rowsq)

    _gemm_and_blocks(nthreads, bounds, gemm, block)
    return rowsq


SKIP_ZERO_GEMMS = True  # off only to compare with the GEMMs (tests)


def all_zero(w):
    """Whether every entry of ``w`` is zero (a layer of the ``zeros`` scheme; cheap when it is not)."""
    return bool(SKIP_ZERO_GEMMS and (w.size == 0 or (w.flat[0] == 0 and not w.any())))


def zero_product(out, x):
    """``out[...] = x @ (zero matrix)`` without BLAS when ``x`` is finite (every product is +-0 and they
    add to +0, as BLAS's sum does); returns False, leaving ``out`` alone, when ``x`` has an inf or
    NaN (the product then has NaNs: the caller runs the GEMM)."""
    if not np.isfinite(x).all():
        return False
    out[...] = 0
    return True


def weight_gradient_sumsq(nthreads, delta, aprev, delta_is_zero=False):
    """``sum((delta^T aprev)**2)`` in float64: the batch-mean weight gradient's squared norm (times B^2).

    The product is formed in blocks of its rows (output units), one BLAS call per block, and the
    blocks' sums are added in block order. ``delta_is_zero``: every entry of ``delta`` is zero
    (then, with ``aprev`` finite, the sum is 0 without a GEMM).
    """
    if delta_is_zero and np.isfinite(aprev).all():
        return 0.0
    n_out, n_in = delta.shape[1], aprev.shape[1]
    dW = np.empty((n_out, n_in), dtype=delta.dtype)
    bounds = row_blocks(n_out, n_in, delta.dtype.itemsize)
    nb = len(bounds) - 1
    part = np.zeros(nb)

    def gemm(j0, j1):
        np.matmul(delta[:, j0:j1].T, aprev, out=dW[j0:j1])

    def block(c, gemm=gemm):
        j0, j1 = int(bounds[c]), int(bounds[c + 1])
        gemm(j0, j1)
        part[c] = sumsq(dW[j0:j1])

    _gemm_and_blocks(nthreads, bounds, gemm, block)
    return float(ordered_sum(part))


def forward_flags(want, sat_thr):
    """The forward kernel's statistic groups (``F_*``) for the set of wanted statistic names."""
    flags = 0
    for name in want:
        flags |= FORWARD_GROUPS.get(name, 0)
    if "grad_weight_m2_per_sample" in want:
        flags |= F_POST  # the per-row sums of a_l^2
    if not np.isfinite(sat_thr):
        flags &= ~F_SAT
    return flags


def _mlp_pass(x, weights, biases, kind, p, sat_thr, residual=False, alpha=1.0,
              G=None, backward=True, hist_layers=(), hist_bins=50, hist_range=None, want=None,
              nthreads=1):
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
    want : set of str, optional
        The statistics to compute (default: every one; the backward ones only with ``backward``).
        The others are NaN. The backward pass runs only for a gradient statistic, the batch-mean
        weight-gradient GEMM only for ``grad_weight_m2_batchmean``, the last ``delta W_1`` only for
        ``grad_input_m2``.
    nthreads : int
        Threads for the blocks of rows.

    Returns
    -------
    dict
        Statistic name -> float64 array of length L (``grad_input_m2``: 0-d), and
        ``"histograms"``: list of dicts.
    """
    all_names = MLP_FORWARD_STATISTICS + MLP_BACKWARD_STATISTICS + ("grad_input_m2",)
    if want is None:
        want = set(all_names if backward else MLP_FORWARD_STATISTICS)
    dtype = x.dtype
    B = x.shape[0]
    L = len(weights)
    widths = [x.shape[1]] + [w.shape[0] for w in weights]
    bounds = row_blocks(B, max(widths), dtype.itemsize)
    out = {k: np.full(L, np.nan) for k in MLP_FORWARD_STATISTICS + MLP_BACKWARD_STATISTICS}
    flags = forward_flags(want, sat_thr)
    keep = [(k, name) for k, name in enumerate(MLP_FORWARD_STATISTICS) if name in want]
    if not np.isfinite(sat_thr):
        keep = [(k, name) for k, name in keep if name != "frac_saturated"]
    hist_layers = set(int(h) for h in hist_layers)
    hists = []
    # a layer of zero weights (the zeros scheme) maps finite inputs to 0 exactly: no GEMM
    zero_w = [all_zero(W) for W in weights]
    # working arrays recycled within the pass (and between passes under keep_buffers); none escapes
    with Workspace({B * n * dtype.itemsize for n in widths}) as ws:
        need_bwd = backward and any(n in want for n in MLP_BACKWARD_STATISTICS + ("grad_input_m2",))
        per_sample = need_bwd and "grad_weight_m2_per_sample" in want
        batchmean = need_bwd and "grad_weight_m2_batchmean" in want
        zs = []          # stored pre-activations (simulation dtype), one per layer
        # the outputs a_l (h_l for residual nets) are kept for the batch-mean weight gradient's
        # delta_l^T a_{l-1} only: the backward kernels need z and g, never a
        keep_posts = batchmean
        posts = [x]
        rowsq_post = [np.einsum("ij,ij->i", x, x, dtype=np.float64) if per_sample else None]
        a = x
        for l in range(L):
            W = weights[l]
            z = ws.empty((B, widths[l + 1]), dtype)
            a_new = ws.empty((B, widths[l + 1]), dtype)

            def gemm(r0, r1, a=a, W=W, z=z, zero=zero_w[l]):
                if not (zero and zero_product(z[r0:r1], a[r0:r1])):
                    np.matmul(a[r0:r1], W.T, out=z[r0:r1])

            pooled, rsq = forward_layer(nthreads, gemm, kind, z, biases[l], a_new, a, alpha, residual, p, sat_thr,
                                        flags, bounds)
            for k, name in keep:
                out[name][l] = pooled[k]
            if l in hist_layers:
                hists.append(_histograms(nthreads, bounds, l, z, a_new, hist_bins, hist_range))
            if need_bwd:
                zs.append(z)
            else:
                ws.give(z)
            rowsq_post.append(rsq)
            if keep_posts:
                posts.append(a_new)
            elif a is not x:
                ws.give(a)  # read by this layer's GEMM only
            a = a_new
        result = dict(out)
        result["histograms"] = hists
        result["grad_input_m2"] = np.array(np.nan)
        if not need_bwd:
            return result

        # ---- backward: g_l = dl/da_l (or dl/dh_l), delta_l = dl/dz_l ----
        g = np.ascontiguousarray(G, dtype=dtype)
        delta = ws.empty((B, widths[L]), dtype)
        rd = backward_layer(nthreads, _no_gemm, kind, g, g, False, zs[L - 1], delta, p,
                            alpha if residual else 1.0, bounds)
        for l in range(L - 1, -1, -1):
            n_out, n_in = widths[l + 1], widths[l]
            sd2 = float(ordered_sum(rd))
            if "grad_preact_m2" in want:
                out["grad_preact_m2"][l] = sd2 / (B * n_out)
            if "grad_bias_m2_per_sample" in want:
                out["grad_bias_m2_per_sample"][l] = sd2 / (B * n_out)
            if per_sample:
                out["grad_weight_m2_per_sample"][l] = float(np.dot(rd, rowsq_post[l])) / (B * n_out * n_in)
            # g_{l-1} = delta_l W_l  (+ g_l through the skip path, added inside the backward kernel)
            aprev = x
            if l > 0:
                g_new = ws.empty((B, n_in), dtype)
                delta_new = ws.empty((B, n_in), dtype)

                def gemm(r0, r1, delta=delta, W=weights[l], g_new=g_new, zero=zero_w[l]):
                    if not (zero and zero_product(g_new[r0:r1], delta[r0:r1])):
                        np.matmul(delta[r0:r1], W, out=g_new[r0:r1])

                aprev = posts[l] if keep_posts else None
                rd_new = backward_layer(nthreads, gemm, kind, g_new, g, residual, zs[l - 1], delta_new,
                                        p, alpha if residual else 1.0, bounds)
            elif "grad_input_m2" in want:
                g_new = ws.empty((B, n_in), dtype)

                def gemm0(c, delta=delta, W=weights[0], g_new=g_new, g=g, zero=zero_w[0]):
                    r0, r1 = int(bounds[c]), int(bounds[c + 1])
                    if not (zero and zero_product(g_new[r0:r1], delta[r0:r1])):
                        np.matmul(delta[r0:r1], W, out=g_new[r0:r1])
                    if residual:
                        g_new[r0:r1] += g[r0:r1]

                run_blocks(nthreads, len(bounds) - 1, gemm0)
            if batchmean:
                # delta is all zero below a layer of zero weights (g = delta W = 0); the sum of squares
                # (which can underflow to 0) only says when to look
                wsq = weight_gradient_sumsq(nthreads, delta, aprev,
                                            delta_is_zero=SKIP_ZERO_GEMMS and sd2 == 0.0 and not delta.any())
                out["grad_weight_m2_batchmean"][l] = wsq / (B * B * n_out * n_in)
            if l > 0:
                if aprev is not None:
                    ws.give(aprev)  # a_{l-1}: read by this layer's weight gradient only
                    posts[l] = None
                ws.give(g, delta, zs[l])  # reused by the next layers: peak memory stays ~ the forward's
                g, delta, rd = g_new, delta_new, rd_new
                zs[l] = None
        result.update(out)
        if "grad_input_m2" in want:
            result["grad_input_m2"] = np.array(sumsq(g_new) / (B * widths[0]))
        return result


def _histograms(nthreads, bounds, l, z, a, bins, rng):
    """Layer ``l``'s histograms of ``z`` and ``a``: ``numpy.histogram(v, bins, range)``'s counts and edges
    (the range: ``rng``, else the array's min and max), counted in the blocks of rows ``bounds`` on
    ``nthreads`` threads by the kernels of :mod:`fastinit._stats` (exactly numpy's bins; integer
    counts, so the threads do not matter). A serial ``numpy.histogram`` per array took about 1 s of the
    default study's sweep (cProfile), on one core while the other waited."""
    nb = len(bounds) - 1
    out = {"layer": l + 1}
    for name, v in (("preact", z), ("post", a)):
        mm = np.empty((nb, 3))
        run_blocks(nthreads, nb, lambda c, v=v, mm=mm: _stats.minmax_rows(v, int(bounds[c]), int(bounds[c + 1]),
                                                                           mm[c]))
        lo, hi = (np.nan, np.nan) if mm[:, 2].any() else (mm[:, 0].min(), mm[:, 1].max())
        finite = bool(np.isfinite(lo) and np.isfinite(hi))
        first, last = rng if rng is not None else _auto_range(lo, hi)
        edges = np.linspace(first, last, bins + 1, dtype=np.result_type(first, last, v))  # numpy's edges
        e64 = edges.astype(np.float64)
        h = np.zeros((nb, bins + 2), np.int64)
        run_blocks(nthreads, nb, lambda c, v=v, h=h, e=e64, f=finite: _stats.histogram_rows(
            v, int(bounds[c]), int(bounds[c + 1]), e, f, h[c]))
        out[f"{name}_counts"] = h.sum(axis=0)[1:bins + 1]
        out[f"{name}_edges"] = edges
    return out


def _auto_range(lo, hi):
    """A histogram's range from the array's min and max: ``(-1, 1)`` when either is not finite, widened
    by 1/2 on each side when they are equal (as ``numpy.histogram``)."""
    lo, hi = float(lo), float(hi)
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return (-1.0, 1.0)
    if hi <= lo:
        return (lo - 0.5, hi + 0.5)
    return (lo, hi)


def _rnn_pass(h0, W, xs_fn, U, b, kind, p, steps, G=None, backward=True, nthreads=1):
    """Run one recurrent net ``h_t = phi(h_{t-1} W^T [+ x_t U^T] + b)`` for ``steps`` steps.

    ``xs_fn(t)`` returns the input batch of step t (1-based) or None (no input). Returns a dict of
    float64 arrays indexed by t = 0..T: ``h_m2`` (pooled mean h_t^2), ``h_norm`` (mean over the
    batch of ||h_t||), ``preact_m2`` (t >= 1), ``grad_h_m2`` (mean (dl/dh_t)^2 for
    ``l = sum G * h_T``).
    """
    dtype = h0.dtype
    B, n = h0.shape
    bounds = row_blocks(B, n, dtype.itemsize)
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
        xt = xs_fn(t)

        def gemm(r0, r1, h=h, z=z, xt=xt):
            np.matmul(h[r0:r1], W.T, out=z[r0:r1])
            if xt is not None:
                z[r0:r1] += xt[r0:r1] @ U.T

        h_new = np.empty_like(z)
        pooled, rsq = forward_layer(nthreads, gemm, kind, z, b, h_new, h, 1.0, False, p, np.inf,
                                    F_ZMOM | F_POST, bounds)
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
    for t in range(T, 0, -1):
        backward_layer(nthreads, _no_gemm, kind, g, g, False, zs[t - 1], delta, p, 1.0, bounds)
        zs[t - 1] = None
        g = np.matmul(delta, W)
        grad[t - 1] = sumsq(g) / (B * n)
    return res


# Below this many entries per layer a layer takes well under a millisecond on one core, less
# than handing blocks to another thread costs on a busy machine, so small layers run on the
# calling thread only (and their GEMMs on one BLAS thread).
SMALL_LAYER_ENTRIES = 1 << 17


def threads_for(entries):
    """Threads for the blocks of a network whose largest layer has ``entries`` entries: one for
    small layers, else Numba's thread count (``numba.set_num_threads``, which is per thread)."""
    if entries < SMALL_LAYER_ENTRIES:
        return 1
    return max(1, numba.get_num_threads())


def mlp_pass(x, weights, *args, **kwargs):
    """See :func:`_mlp_pass`; runs blocks on :func:`threads_for` threads, each with one BLAS thread."""
    entries = x.shape[0] * max([x.shape[1]] + [w.shape[0] for w in weights])
    with _blas.single_threaded_blas():
        return _mlp_pass(x, weights, *args, nthreads=threads_for(entries), **kwargs)


def rnn_pass(h0, W, *args, **kwargs):
    """See :func:`_rnn_pass`; runs blocks on :func:`threads_for` threads, each with one BLAS thread."""
    with _blas.single_threaded_blas():
        return _rnn_pass(h0, W, *args, nthreads=threads_for(h0.size), **kwargs)


def mlp_bytes(widths, batch, itemsize, weight_gradient=True):
    """Peak bytes :func:`mlp_pass` allocates for one network (weights, inputs and seed included).

    The stored pre-activations (``batch x n_l`` per layer), the stored outputs (``a_l`` or ``h_l``,
    kept for the batch-mean weight gradient, ``weight_gradient``), the
    weights, and the working set of the backward pass (``g``, ``delta``, their successors, ``G``
    and ``x``: about six ``batch x max(n)`` arrays, plus one weight gradient).
    """
    pairs = [a * b for a, b in zip(widths[1:], widths[:-1], strict=True)]
    stored = batch * sum(widths[1:]) * (2 if weight_gradient else 1)
    work = 6 * batch * max(widths) + max(pairs)
    return itemsize * (sum(pairs) + stored + work) + 8 * batch * (len(widths) + 2)


def rnn_bytes(hidden, steps, batch, input_dim, itemsize):
    """Peak bytes :func:`rnn_pass` allocates for one network: ``W``, ``U``, one stored
    ``batch x hidden`` pre-activation per step and a few working arrays."""
    n, d = hidden, input_dim
    return itemsize * (n * n + n * d + batch * n * (steps + 6) + batch * d)
