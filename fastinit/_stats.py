"""One-pass statistics of an array (Numba, parallel, deterministic), for :func:`fastinit.torch.inspect`
and the simulator's histograms (:mod:`fastinit.sim`).

``inspect`` looks at every output of every leaf module. Done with torch operations that is about ten
passes over each output (finite mask, sum, squares, their sum, zeros, signs, per-unit maxima, min and
max, histogram), each allocating a temporary the size of the output; for GPT-2's logits (8 x 512 x 50257
float32, 823 MB) that cost more than the forward and backward passes themselves. :func:`moments` reads
the tensor once and keeps every count and sum of one call; :func:`histogram` is the second pass a
module's first call needs, once the bin range is known (see ``_inspect.histogram_range``).

Determinism: the rows are split into :data:`PARTS` fixed parts whatever the thread count; each part adds
its values in index order in float64 and the parts' sums are added in order, so the results do not
depend on the number of threads. Counts are integers.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._config import NUMBA_CACHE

__all__ = ["PARTS", "moments", "histogram", "histogram_rows", "minmax_rows", "sumsq", "as_matrix", "FINITE", "NAN",
           "ZEROS", "INACTIVE"]

#: Fixed parts of the rows (the unit of parallel work and of summation order).
PARTS = 32

# columns of the integer counts returned by moments
FINITE, NAN, ZEROS, INACTIVE = 0, 1, 2, 3


def as_matrix(a: np.ndarray) -> np.ndarray:
    """A 2-D C-contiguous view (rows, last dimension) of ``a``; a 0-d or 1-D array is one column."""
    if a.ndim < 2:
        return np.ascontiguousarray(a).reshape(-1, 1)
    return np.ascontiguousarray(a).reshape(-1, a.shape[-1])


@njit(inline="always")
def _bin(v, lo, scale, bins):
    """Bin of ``v`` among ``bins`` equal bins from ``lo`` (``scale`` = bins / width): -1 below, ``bins``
    above; the right edge belongs to the last bin (as ``torch.histc`` and ``numpy.histogram``)."""
    if v < lo:
        return -1
    b = int((v - lo) * scale)
    if b >= bins:
        hi = lo + bins / scale
        return bins - 1 if v <= hi else bins
    return b


@njit(fastmath=True, cache=NUMBA_CACHE, nogil=True)
def _part_fast(x, r0, r1, seen):
    """Sums and counts of rows r0..r1 assuming every entry finite: no branch per entry, so the loop
    vectorises (``fastmath`` lets LLVM add in vector lanes: a fixed order for a given build). Non-finite
    entries make the sum of squares non-finite; the caller then takes :func:`_part_slow`."""
    a1 = 0.0
    a2 = 0.0
    nz = ni = 0
    for r in range(r0, r1):
        for u in range(x.shape[1]):
            v = np.float64(x[r, u])
            a1 += v
            a2 += v * v
            ni += np.int64(v <= 0.0)
            nz += np.int64(v == 0.0)
            seen[u] = seen[u] | (v > 0.0)
    return a1, a2, (r1 - r0) * x.shape[1], 0, nz, ni


@njit(cache=NUMBA_CACHE, nogil=True)
def _part_slow(x, r0, r1, seen):
    """:func:`_part_fast` for rows holding NaN or inf: only the finite entries are summed and counted."""
    a1 = 0.0
    a2 = 0.0
    nf = nn = nz = ni = 0
    for r in range(r0, r1):
        for u in range(x.shape[1]):
            v = np.float64(x[r, u])
            if v - v == 0.0:
                nf += 1
                a1 += v
                a2 += v * v
                if v <= 0.0:
                    ni += 1
                    if v == 0.0:
                        nz += 1
                else:
                    seen[u] = True
            elif v != v:
                nn += 1
    return a1, a2, nf, nn, nz, ni


@njit(parallel=True, cache=NUMBA_CACHE, nogil=True)
def moments(x, alive):
    """Sums and counts of the finite entries of ``x`` (rows, units), one pass.

    Returns ``(s1, s2, counts)``: float64 sums of the finite values and of their squares, and int64 counts
    (finite, NaN, exact zeros, finite values <= 0). ``alive[u]`` (length ``units``) is set True where
    column ``u`` has a positive entry.
    """
    rows, units = x.shape
    s1 = np.zeros(PARTS)
    s2 = np.zeros(PARTS)
    counts = np.zeros((PARTS, 4), np.int64)
    seen = np.zeros((PARTS, units), np.bool_)
    for p in prange(PARTS):
        r0, r1 = rows * p // PARTS, rows * (p + 1) // PARTS
        a1, a2, nf, nn, nz, ni = _part_fast(x, r0, r1, seen[p])
        if not a2 - a2 == 0.0:
            seen[p, :] = False
            a1, a2, nf, nn, nz, ni = _part_slow(x, r0, r1, seen[p])
        s1[p] = a1
        s2[p] = a2
        counts[p, FINITE] = nf
        counts[p, NAN] = nn
        counts[p, ZEROS] = nz
        counts[p, INACTIVE] = ni
    t1 = 0.0
    t2 = 0.0
    for p in range(PARTS):
        t1 += s1[p]
        t2 += s2[p]
    for p in range(PARTS):
        for u in range(units):
            alive[u] |= seen[p, u]
    return t1, t2, counts.sum(axis=0)


@njit(fastmath=True, cache=NUMBA_CACHE, nogil=True)
def _bin_row(x, r, lo, scale, bins, out):
    """``out[u]`` = 1 + the estimated bin of finite ``x[r, u]`` (0 below the range, ``bins + 1`` above),
    right or off by one (a vectorised loop: the counting loop after it, which makes the estimate exact,
    is the only scattered one)."""
    for u in range(x.shape[1]):
        t = (np.float64(x[r, u]) - lo) * scale
        out[u] = np.int32(min(max(t, -1.0), bins + 0.5) + 1.0)


@njit(inline="always")
def _exact(v, k, edges, bins):
    """1 + the bin of ``v`` given an estimate ``k`` (1 + bin) off by at most one: bin ``b`` holds
    ``edges[b] <= v < edges[b + 1]``, the last one also its right edge (``numpy.histogram``'s rule);
    0 below ``edges[0]``, ``bins + 1`` above ``edges[bins]``."""
    if k <= 0:
        return 1 if v >= edges[0] else 0
    if k > bins:
        return bins if v <= edges[bins] else bins + 1
    if v < edges[k - 1]:
        return k - 1
    if k < bins:
        return k + 1 if v >= edges[k] else k
    return k if v <= edges[bins] else bins + 1


@njit(cache=NUMBA_CACHE, nogil=True)
def histogram_rows(x, r0, r1, edges, all_finite, out):
    """Add the counts of rows ``r0:r1`` of ``x`` to ``out`` (int64, ``bins + 2``: below the range, the
    bins, above it): see :func:`histogram`. Serial: callers split the rows among their threads."""
    bins = edges.shape[0] - 1
    lo = edges[0]
    scale = bins / (edges[bins] - lo)
    idx = np.empty(x.shape[1], np.int32)
    for r in range(r0, r1):
        if all_finite:
            _bin_row(x, r, lo, scale, bins, idx)
            for u in range(x.shape[1]):
                out[_exact(np.float64(x[r, u]), idx[u], edges, bins)] += 1
        else:
            for u in range(x.shape[1]):
                v = np.float64(x[r, u])
                if v - v == 0.0:
                    out[_exact(v, _bin(v, lo, scale, bins) + 1, edges, bins)] += 1


@njit(parallel=True, cache=NUMBA_CACHE, nogil=True)
def histogram(x, edges, all_finite):
    """Counts of the finite entries of ``x`` (rows, units) in the ``bins = len(edges) - 1`` equal bins
    between ``edges`` (float64, increasing, as ``numpy.linspace`` makes them), with the numbers below and
    above the range: ``(counts, under, over)``. Each value's bin is exactly ``numpy.histogram``'s for
    these edges (an estimate from the scaled value, then corrected against the two edges around it).
    ``all_finite``: no NaN or inf in ``x`` (known from :func:`moments`), which allows the vectorised
    estimate."""
    rows = x.shape[0]
    bins = edges.shape[0] - 1
    h = np.zeros((PARTS, bins + 2), np.int64)  # column 0: under, bins + 1: over
    for p in prange(PARTS):
        histogram_rows(x, rows * p // PARTS, rows * (p + 1) // PARTS, edges, all_finite, h[p])
    t = np.zeros(bins + 2, np.int64)
    for p in range(PARTS):
        for k in range(bins + 2):
            t[k] += h[p, k]
    return t[1:bins + 1].copy(), t[0], t[bins + 1]


@njit(cache=NUMBA_CACHE, nogil=True)
def minmax_rows(x, r0, r1, out):
    """``out[:] = (min, max, any NaN)`` of rows ``r0:r1`` of ``x`` (float64; 1.0 for NaN present)."""
    a, b, bad = np.inf, -np.inf, False
    for r in range(r0, r1):
        for u in range(x.shape[1]):
            v = np.float64(x[r, u])
            bad |= v != v
            a = min(a, v)
            b = max(b, v)
    out[0], out[1], out[2] = a, b, 1.0 if bad else 0.0


@njit(fastmath=True, cache=NUMBA_CACHE, nogil=True)
def _part_sumsq(x, r0, r1):
    a = 0.0
    for r in range(r0, r1):
        for u in range(x.shape[1]):
            v = np.float64(x[r, u])
            a += v * v
    return a


@njit(parallel=True, cache=NUMBA_CACHE, nogil=True)
def sumsq(x):
    """Float64 sum of the squares of ``x`` (rows, units), NaN and inf included as they are."""
    rows = x.shape[0]
    s = np.zeros(PARTS)
    for p in prange(PARTS):
        s[p] = _part_sumsq(x, rows * p // PARTS, rows * (p + 1) // PARTS)
    t = 0.0
    for p in range(PARTS):
        t += s[p]
    return t
