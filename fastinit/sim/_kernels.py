"""The simulator's fused Numba kernels, compiled once per activation and kept in Numba's cache.

Private module. The drivers in :mod:`fastinit.sim._passes` call them; the public functions
(:mod:`fastinit.sim`) validate every argument, and the kernels trust their inputs.

* Everything elementwise is one fused ``@njit(parallel=True)`` pass per layer and direction:
  bias add, activation, derivative, and every statistic of the layer. Statistics are
  accumulated in float64 per row chunk (one chunk per ``prange`` iteration) and reduced after
  the loop in index order (:func:`ordered_sum`), so results do not depend on the thread count.
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
"""

from __future__ import annotations

import hashlib
import itertools
import threading
import warnings

import numba
import numpy as np
from numba import njit, prange, types
from numba.core.errors import NumbaIRAssumptionWarning
from numba.extending import overload

from fastinit import _activations
from fastinit._config import NUMBA_CACHE
from fastinit.theory._common import MLP_FORWARD_STATISTICS

from . import _fastmath
from ._fastmath import KERNEL_ACTIVATIONS

__all__ = ["compiled", "register_user_activation", "forward_layer", "backward_layer", "sumsq", "ordered_sum",
           "N_POOLED"]


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


def _type_key(a):
    """What decides Numba's type of an argument, read cheaply (``numba.typeof`` costs ~5 us)."""
    if isinstance(a, np.ndarray):
        f = a.flags
        return a.dtype.num, a.ndim, f.c_contiguous, f.f_contiguous, f.writeable, f.aligned
    return type(a)


def compiled(kernel, kind, *args):
    """Entry point of ``kernel`` (:data:`forward_layer` or :data:`backward_layer`) compiled for
    activation ``kind`` and the types of ``args`` (compiled, or loaded from Numba's cache, once)."""
    key = (kernel, kind, *(_type_key(a) for a in args))
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
                    fn = disp.compile((types.literal(kind), *(numba.typeof(a) for a in args)))
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
