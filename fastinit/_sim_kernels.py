"""Numba kernels and BLAS drivers behind :mod:`fastinit.sim`.

Private module. The public wrapper (:mod:`fastinit.sim`) validates every argument; the
functions here trust their inputs.

Design
------
* Matrix products go through BLAS: ``numpy.matmul(..., out=buffer)`` outside Numba, so the
  product lands in a preallocated buffer and OpenBLAS runs its own threads.
* Everything elementwise is one fused ``@njit(parallel=True)`` pass per layer and direction:
  bias add, activation, derivative, and every statistic of the layer. Statistics are
  accumulated in float64 per row chunk (one chunk per ``prange`` iteration) and reduced after
  the loop, so results do not depend on the thread count.
* The activation is a first-class Numba function ``phi(kind, x, p) -> float``. Built-in
  activations all use :func:`fastinit._activations.phi_kind_nb` (one compiled kernel serves
  every built-in activation, selected by the integer ``kind``); a user ``@njit`` function is
  wrapped into the same signature and gets its own specialisation.
* Memory: the forward pass keeps one pre-activation array per layer in the simulation dtype
  (float32 by default), plus the post-activation stream for residual nets, which cannot be
  rebuilt from the pre-activations. Backward rebuilds ``phi(z)`` and ``phi'(z)`` from the stored
  ``z`` in the same fused pass that forms ``delta``. Working buffers are a few ``B x n``
  arrays; there is no float64 copy of any layer.
"""

from __future__ import annotations

import os

import numpy as np
from numba import njit, prange

__all__ = [
    "forward_layer",
    "backward_layer",
    "sumsq",
    "row_chunks",
    "mlp_pass",
    "rnn_pass",
    "N_POOLED",
]

# Numba's on-disk cache is opt-in (STYLE.md section 6). Kernels here take first-class function
# arguments (the activation), which Numba cannot cache, so caching only applies to `sumsq`.
_CACHE = os.environ.get("FASTINIT_NUMBA_CACHE", "0") not in ("", "0", "false", "False")

# Layout of the pooled accumulator row returned by `forward_layer`.
_P_SZ, _P_SZ2, _P_SA, _P_SA2, _P_INACT, _P_SAT = range(6)
N_POOLED = 6


def row_chunks(batch):
    """Number of row chunks (prange iterations) for a batch: a few per thread, at least 1.

    Chunks own their float64 accumulators; 64 chunks keep every thread busy on machines with up
    to ~16 cores without making the per-unit accumulators (chunks x width) large.
    """
    return max(1, min(int(batch), 64))


@njit(parallel=True)
def forward_layer(z, bias, out, prev, alpha, residual, phi, kind, p, sat_thr, nchunk):
    """Fused forward pass of one layer on the BLAS output ``z = a_{l-1} W^T``.

    In place: ``z += bias`` (rounded to ``z.dtype``, which is what backward sees), then
    ``out = phi(z)`` or, with ``residual``, ``out = prev + alpha * phi(z)``.

    Returns
    -------
    pooled : (N_POOLED,) float64
        sum z, sum z^2, sum out, sum out^2, #(z <= 0), #(|z| > sat_thr) (0 if sat_thr <= 0).
    unitvar_mean : float
        Mean over units of the across-batch (ddof=0) variance of z, from sums shifted by row 0
        so that a large common offset does not cancel the small per-unit spread.
    dead : int
        Number of units with z <= 0 for every row.
    rowsq : (B,) float64
        sum_j out[b, j]^2 for each row (the weight-gradient statistics need it).
    """
    B, n = z.shape
    pooled = np.zeros((nchunk, N_POOLED))
    s1 = np.zeros((nchunk, n))
    s2 = np.zeros((nchunk, n))
    pos = np.zeros((nchunk, n), dtype=np.uint8)
    rowsq = np.zeros(B)
    shift = np.empty(n, dtype=z.dtype)
    for j in range(n):
        # rounded like the stored value, so that row 0 contributes exactly 0 to s1
        shift[j] = np.float64(z[0, j]) + bias[j]
    check_sat = sat_thr > 0.0
    for c in prange(nchunk):
        r0 = (c * B) // nchunk
        r1 = ((c + 1) * B) // nchunk
        sz = 0.0
        sz2 = 0.0
        sa = 0.0
        sa2 = 0.0
        ninact = 0.0
        nsat = 0.0
        for i in range(r0, r1):
            ra2 = 0.0
            for j in range(n):
                z[i, j] = np.float64(z[i, j]) + bias[j]
                zz = np.float64(z[i, j])
                a = phi(kind, zz, p)
                if residual:
                    a = np.float64(prev[i, j]) + alpha * a
                out[i, j] = a
                a = np.float64(out[i, j])
                sz += zz
                sz2 += zz * zz
                sa += a
                ra2 += a * a
                d = zz - np.float64(shift[j])
                s1[c, j] += d
                s2[c, j] += d * d
                if zz > 0.0:
                    pos[c, j] = 1
                else:
                    ninact += 1.0
                if check_sat and abs(zz) > sat_thr:
                    nsat += 1.0
            rowsq[i] = ra2
            sa2 += ra2
        pooled[c, _P_SZ] = sz
        pooled[c, _P_SZ2] = sz2
        pooled[c, _P_SA] = sa
        pooled[c, _P_SA2] = sa2
        pooled[c, _P_INACT] = ninact
        pooled[c, _P_SAT] = nsat
    tot = np.zeros(N_POOLED)
    for c in range(nchunk):
        for k in range(N_POOLED):
            tot[k] += pooled[c, k]
    uv = 0.0
    dead = 0
    for j in range(n):
        t1 = 0.0
        t2 = 0.0
        anyp = 0
        for c in range(nchunk):
            t1 += s1[c, j]
            t2 += s2[c, j]
            anyp |= pos[c, j]
        m = t1 / B
        v = t2 / B - m * m
        uv += v if v > 0.0 else 0.0
        if anyp == 0:
            dead += 1
    return tot, uv / n, dead, rowsq


@njit(parallel=True)
def backward_layer(g, gres, residual, z, delta, a_out, want_a, phi, dphi, kind, p, scale,
                   nchunk):
    """Fused backward pass through one layer's nonlinearity.

    In place: with ``residual`` first ``g += gres`` (the skip path), then
    ``delta = scale * phi'(z) * g`` and, if ``want_a``, ``a_out = phi(z)`` (the previous layer's
    post-activation rebuilt from the stored pre-activation for the weight gradient).

    Returns
    -------
    sums : (2,) float64
        sum delta^2, sum g^2.
    rowsq : (B,) float64
        sum_j delta[b, j]^2 per row.
    """
    B, n = z.shape
    acc = np.zeros((nchunk, 2))
    rowsq = np.zeros(B)
    for c in prange(nchunk):
        r0 = (c * B) // nchunk
        r1 = ((c + 1) * B) // nchunk
        sg2 = 0.0
        sd2 = 0.0
        for i in range(r0, r1):
            rd = 0.0
            for j in range(n):
                if residual:
                    g[i, j] = np.float64(g[i, j]) + np.float64(gres[i, j])
                gg = np.float64(g[i, j])
                zz = np.float64(z[i, j])
                delta[i, j] = scale * dphi(kind, zz, p) * gg
                d = np.float64(delta[i, j])
                rd += d * d
                sg2 += gg * gg
                if want_a:
                    a_out[i, j] = phi(kind, zz, p)
            rowsq[i] = rd
            sd2 += rd
        acc[c, 0] = sd2
        acc[c, 1] = sg2
    sums = np.zeros(2)
    for c in range(nchunk):
        sums[0] += acc[c, 0]
        sums[1] += acc[c, 1]
    return sums, rowsq


@njit(parallel=True, cache=_CACHE)
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
    return part.sum()


# Forward statistics produced per layer by `mlp_pass` (pooled unless the name says otherwise).
FORWARD_STATS = (
    "preact_mean", "preact_var", "preact_m2", "post_mean", "post_var", "post_m2",
    "preact_unitvar", "frac_inactive", "frac_dead_units", "frac_saturated",
)
BACKWARD_STATS = (
    "grad_preact_m2", "grad_weight_m2_per_sample", "grad_weight_m2_batchmean",
    "grad_bias_m2_per_sample",
)


def _forward_record(out, l, tot, uv, dead, count, n):
    mz = tot[_P_SZ] / count
    ma = tot[_P_SA] / count
    out["preact_mean"][l] = mz
    out["preact_m2"][l] = tot[_P_SZ2] / count
    out["preact_var"][l] = tot[_P_SZ2] / count - mz * mz
    out["post_mean"][l] = ma
    out["post_m2"][l] = tot[_P_SA2] / count
    out["post_var"][l] = tot[_P_SA2] / count - ma * ma
    out["preact_unitvar"][l] = uv
    out["frac_inactive"][l] = tot[_P_INACT] / count
    out["frac_dead_units"][l] = dead / n
    out["frac_saturated"][l] = tot[_P_SAT] / count


def mlp_pass(x, weights, biases, phi, dphi, kind, p, sat_thr, residual=False, alpha=1.0,
             G=None, backward=True, hist_layers=(), hist_bins=50, hist_range=None):
    """Run one network forward (and backward) and return its per-layer statistics.

    Parameters
    ----------
    x : (B, n_0) array, simulation dtype, C-contiguous.
    weights : list of (n_l, n_{l-1}) arrays, same dtype.
    biases : list of (n_l,) float64 arrays.
    phi, dphi : Numba functions ``f(kind, x, p)``.
    kind : int
        Activation id passed through to ``phi``/``dphi``.
    p : float
        Activation parameter.
    sat_thr : float
        Saturation threshold on |z| (<= 0: not applicable, reported as NaN).
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
    out = {k: np.full(L, np.nan) for k in FORWARD_STATS + BACKWARD_STATS}
    use_sat = sat_thr > 0.0
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
        tot, uv, dead, rsq = forward_layer(z, biases[l], a_new, a, alpha, residual, phi, kind,
                                           p, sat_thr, nchunk)
        _forward_record(out, l, tot, uv, dead, float(B) * widths[l + 1], widths[l + 1])
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
    sums, rd = backward_layer(g, g, False, zs[L - 1], delta, delta, False, phi, dphi, kind, p,
                              alpha if residual else 1.0, nchunk)
    for l in range(L - 1, -1, -1):
        n_out, n_in = widths[l + 1], widths[l]
        out["grad_preact_m2"][l] = sums[0] / (B * n_out)
        out["grad_bias_m2_per_sample"][l] = sums[0] / (B * n_out)
        out["grad_weight_m2_per_sample"][l] = float(np.dot(rd, rowsq_post[l])) / (B * n_out * n_in)
        # g_{l-1} = delta_l W_l  (+ g_l through the skip path, added inside backward_layer)
        g_new = np.empty((B, n_in), dtype=dtype)
        np.matmul(delta, weights[l], out=g_new)
        if l > 0:
            delta_new = np.empty((B, n_in), dtype=dtype)
            if residual:
                aprev = posts[l]
                sums_new, rd_new = backward_layer(g_new, g, True, zs[l - 1], delta_new,
                                                  delta_new, False, phi, dphi, kind, p, alpha,
                                                  nchunk)
            else:
                aprev = np.empty((B, n_in), dtype=dtype)
                sums_new, rd_new = backward_layer(g_new, g, False, zs[l - 1], delta_new, aprev,
                                                  True, phi, dphi, kind, p, 1.0, nchunk)
        else:
            aprev = x
            if residual:
                g_new += g
        dW = np.matmul(delta.T, aprev)
        out["grad_weight_m2_batchmean"][l] = sumsq(dW) / (B * B * n_out * n_in)
        del dW
        if l > 0:
            g, delta, sums, rd = g_new, delta_new, sums_new, rd_new
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


def rnn_pass(h0, W, xs_fn, U, b, phi, dphi, kind, p, steps, G=None, backward=True):
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
        tot, _, _, rsq = forward_layer(z, b, h_new, h, 1.0, False, phi, kind, p, 0.0, nchunk)
        pre_mean[t] = tot[_P_SZ] / (B * n)
        pre_m2[t] = tot[_P_SZ2] / (B * n)
        post_mean[t] = tot[_P_SA] / (B * n)
        h_m2[t] = tot[_P_SA2] / (B * n)
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
        backward_layer(g, g, False, zs[t - 1], delta, delta, False, phi, dphi, kind, p, 1.0,
                       nchunk)
        zs[t - 1] = None
        g = np.matmul(delta, W)
        grad[t - 1] = sumsq(g) / (B * n)
    return res
