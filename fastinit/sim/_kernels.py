"""The simulator's fused Numba kernels, compiled once per activation and kept in Numba's cache.

Private module. The drivers in :mod:`fastinit.sim._passes` call them; the public functions
(:mod:`fastinit.sim`) validate every argument, and the kernels trust their inputs.

* Everything elementwise is one fused ``@njit`` kernel per block of rows and direction, run by
  the drivers right after the BLAS call that wrote the block (:func:`forward_block`,
  :func:`backward_block`): bias add, activation, derivative, and
  the statistics asked for (``flags``, one loop per group of statistics, so a statistic's bits do
  not depend on which others are computed). Each block sums in float64 into its own slots;
  :func:`forward_reduce` merges the blocks in order, so results do not depend on the thread count.
* The activation is chosen by an integer ``kind`` (an :class:`~fastinit._activations.Activation`'s
  ``kind_id``) at *compile* time: each kernel is compiled once per kind with ``kind`` typed as a
  literal, and :func:`phi_row`/:func:`dphi_row` resolve to that activation's
  loops over one row, small functions with the scalar code
  (:data:`fastinit.sim._fastmath.KERNEL_ACTIVATIONS`) inlined so that they vectorise. No branch
  on the kind is left in the loop (a kernel dispatching on a run-time kind inside the loop was 5x
  slower for ReLU), and no function is passed as an argument, so Numba's on-disk cache
  (``FASTINIT_NUMBA_CACHE``, :mod:`fastinit._config`) keeps every compiled kernel: a second
  process compiles nothing. :func:`compiled` returns a kernel's entry point for one kind and
  argument types (calling the dispatcher with a literal argument would resolve the types in
  Python on every call).
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
from numba import njit, types
from numba.core.errors import NumbaIRAssumptionWarning
from numba.extending import overload

from fastinit import _activations
from fastinit._config import NUMBA_CACHE
from fastinit.theory._common import MLP_FORWARD_STATISTICS

from . import _fastmath
from ._fastmath import KERNEL_ACTIVATIONS, prefer_wide_vectors

__all__ = ["compiled", "register_user_activation", "forward_block", "forward_reduce", "backward_block",
           "sumsq",
           "ordered_sum", "N_POOLED", "N_PART", "FORWARD_GROUPS", "F_ZMOM", "F_POST", "F_SPREAD", "F_INACT", "F_SAT",
           "F_DEAD"]


# Layout of the pooled statistics returned by `forward_layer`: the order of MLP_FORWARD_STATISTICS.
(_P_ZMEAN, _P_ZVAR, _P_ZM2, _P_AMEAN, _P_AVAR, _P_AM2, _P_UNITVAR, _P_SPREAD, _P_INACT,
 _P_DEAD, _P_SAT) = range(11)
N_POOLED = len(MLP_FORWARD_STATISTICS)


# Flags of the kernels' own loops (the statistics): reassociation lets LLVM vectorise the float64
# partial sums (2.5x on the ReLU forward pass), contraction fuses their multiply-adds; no
# 'nnan'/'ninf', so exploding runs still propagate inf and NaN faithfully. The activations' row
# functions are compiled without fast-math flags (ROW_FLAGS).
_FAST = {"reassoc", "nsz", "contract"}


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


# The activation's loops over one row, one set per kind, built from its scalar (phi, phi') with
# the scalars inlined into the loop (so that it vectorises). The kernels call them through
# `phi_row` and `dphi_row`, resolved at compile time from the literal kind. The
# loops are small functions of their own: inlining the scalar activation into the large kernels
# instead took Numba several times longer to compile (GELU: ~13 s against ~2 s per kind), and the
# call once per row costs nothing measurable.
_ROWS = {}
#: Compiler flags of the row functions: no fast-math flags. A kernel runs its row function either as
#: the separately compiled function (right after compiling, in the compiling process) or as the copy
#: inside its own cached code (every later process); with fast-math flags LLVM optimised the two
#: copies differently (fused or vectorised other operations), so the first run's gradients differed
#: from every later run's in the last bits. Strict IEEE code has one result whatever the copy; the
#: polynomials keep their fused multiply-adds through explicit ``llvm.fma`` (``_fastmath._fma``).
ROW_FLAGS = dict(fastmath=False, error_model="numpy", nogil=True)


def _row_functions(kind):
    fns = _ROWS.get(kind)
    if fns is not None:
        return fns
    f, df = _KINDS[kind]
    flags = ROW_FLAGS

    def phi_row_k(z, bias, act, i, p):
        # 512-bit vectors: the forward loops ran 1.2x faster with them, the backward ones not at all
        # (some slower): benchmarks/scripts/sim_kernels.py --no-wide-vectors
        prefer_wide_vectors()
        for j in range(z.shape[1]):
            z[i, j] = np.float64(z[i, j]) + bias[j]
            act[j] = f(np.float64(z[i, j]), p)

    def dphi_row_k(g, z, delta, i, p, scale):
        for j in range(z.shape[1]):
            delta[i, j] = scale * df(np.float64(z[i, j]), p) * np.float64(g[i, j])

    # A name of its own per kind: Numba's symbol names come from the qualified name and the
    # argument types, and two kinds' row functions of one name would share one symbol in the
    # process (the first one loaded would serve every kind).
    for fn in (phi_row_k, dphi_row_k):
        fn.__name__ = fn.__qualname__ = fn.__name__.replace("_k", f"_kind{kind}")
    phi_row_k, dphi_row_k = (njit(**flags)(fn) for fn in (phi_row_k, dphi_row_k))
    fns = _ROWS[kind] = (phi_row_k, dphi_row_k)
    return fns


def phi_row(kind, z, bias, act, i, p):
    """``z[i] += bias``; ``act = phi(z[i])`` in float64 (Numba only; ``kind`` must be a literal)."""
    raise NotImplementedError("phi_row is only callable from Numba-compiled code")


def dphi_row(kind, g, z, delta, i, p, scale):
    """``delta[i] = scale * phi'(z[i]) * g[i]`` (Numba only; ``kind`` must be a literal)."""
    raise NotImplementedError("dphi_row is only callable from Numba-compiled code")


def _row_overload(which):
    def typer(kind, *args):
        if not isinstance(kind, types.IntegerLiteral):
            return None  # Numba retries with the literal kind (numba.literally in the kernels)
        fn = _row_functions(kind.literal_value)[which]

        def impl(kind, *args):
            return fn(*args)
        return impl
    return typer


overload(phi_row)(_row_overload(0))
overload(dphi_row)(_row_overload(1))


# Statistic groups of the forward kernel (the ``flags`` bit set): each group is one loop over a
# row, run only when one of its statistics is asked for (:data:`FORWARD_GROUPS`).
F_ZMOM = 1     # per-unit shifted sums of z: preact_mean/var/m2, preact_unitvar
F_POST = 2     # pooled moments of the output and its per-row sum of squares
F_SPREAD = 4   # preact_unitspread
F_INACT = 8    # frac_inactive
F_SAT = 16     # frac_saturated
F_DEAD = 32    # frac_dead_units (per-unit maximum of z)
#: forward statistic -> the group that computes it
FORWARD_GROUPS = {"preact_mean": F_ZMOM, "preact_var": F_ZMOM, "preact_m2": F_ZMOM, "preact_unitvar": F_ZMOM,
                  "post_mean": F_POST, "post_var": F_POST, "post_m2": F_POST, "preact_unitspread": F_SPREAD,
                  "frac_inactive": F_INACT, "frac_saturated": F_SAT, "frac_dead_units": F_DEAD}
# columns of a block's row of scalar partial sums (`forward_block`'s ``part``)
_Q_INACT, _Q_SAT, _Q_SPREAD, _Q_A1, _Q_A2, _Q_ASHIFT = range(6)
N_PART = 6


def _forward_block(kind, z, bias, out, prev, alpha, residual, p, sat_thr, flags, r0, r1, c,
                   ushift, us1, us2, umax, part, rowsq):
    """Fused forward work on rows ``r0:r1`` (block ``c``) of one layer, right after BLAS wrote them.

    In place: ``z += bias`` (rounded to ``z.dtype``: what backward will see), then
    ``out = phi(kind, z)`` or, with ``residual``, ``out = prev + alpha * phi(kind, z)``. Then, row
    by row while the row is in cache, one loop per statistic group in ``flags`` (``F_*``), each
    summing in float64 into this block's own slots:

    * ``F_ZMOM``: ``us1[c, j]``, ``us2[c, j]``: sums of ``z - ushift[c, j]`` and its square, where
      the shift is the block's first row (so a large common offset cannot cancel a small spread,
      and a constant layer gives exactly zero variance);
    * ``F_DEAD``: ``umax[c, j]``, the unit's maximum;
    * ``F_SPREAD``, ``F_INACT``, ``F_SAT``: ``part[c, :]`` (row variance across units, counts);
    * ``F_POST``: sums of ``out - out[r0, 0]`` and its square in ``part[c, :]``, and
      ``rowsq[i] = sum_j out[i, j]^2``.

    Each group is its own loop, so a statistic's bits do not depend on which others are computed.
    :func:`forward_reduce` combines the blocks in index order.
    """
    numba.literally(kind)  # one compiled kernel per activation (see the module notes)
    prefer_wide_vectors()
    n = z.shape[1]
    ninact = 0.0
    nsat = 0.0
    spread = 0.0
    pa1 = 0.0
    pa2 = 0.0
    ash = 0.0
    act = np.empty(n)  # phi of one row, in float64 (the residual sum rounds once, as a single expression)
    for i in range(r0, r1):
        phi_row(kind, z, bias, act, i, p)
        if residual:  # a loop of its own: the activation's loop above is compiled once, not twice
            for j in range(n):
                out[i, j] = np.float64(prev[i, j]) + alpha * act[j]
        else:
            for j in range(n):
                out[i, j] = act[j]
        if i == r0:
            for j in range(n):
                ushift[c, j] = np.float64(z[r0, j])
            ash = np.float64(out[r0, 0])
        if flags & F_ZMOM:
            for j in range(n):
                d = np.float64(z[i, j]) - ushift[c, j]
                us1[c, j] += d
                us2[c, j] += d * d
        if flags & F_DEAD:
            for j in range(n):
                umax[c, j] = max(umax[c, j], np.float64(z[i, j]))
        if flags & F_SPREAD:
            z0 = np.float64(z[i, 0])
            rz1 = 0.0
            rz2 = 0.0
            for j in range(n):
                e = np.float64(z[i, j]) - z0
                rz1 += e
                rz2 += e * e
            spread += max(rz2 / n - (rz1 / n) ** 2, 0.0)
        if flags & F_INACT:
            k = 0.0
            for j in range(n):
                k += 1.0 if z[i, j] <= 0.0 else 0.0
            ninact += k
        if flags & F_SAT:
            k = 0.0
            for j in range(n):
                k += 1.0 if abs(np.float64(z[i, j])) > sat_thr else 0.0
            nsat += k
        if flags & F_POST:
            ra1 = 0.0
            ra2 = 0.0
            for j in range(n):
                a = np.float64(out[i, j]) - ash
                ra1 += a
                ra2 += a * a
            rowsq[i] = max(ra2 + 2.0 * ash * ra1 + n * ash * ash, 0.0)
            pa1 += ra1
            pa2 += ra2
    part[c, _Q_INACT] = ninact
    part[c, _Q_SAT] = nsat
    part[c, _Q_SPREAD] = spread
    part[c, _Q_A1] = pa1
    part[c, _Q_A2] = pa2
    part[c, _Q_ASHIFT] = ash


@njit(cache=NUMBA_CACHE, nogil=True, error_model="numpy")
def forward_reduce(bounds, ushift, us1, us2, umax, part):
    """The pooled statistics of a layer from its blocks' partial sums (``forward_block``), in block order.

    ``bounds[c]`` is block c's first row, ``bounds[-1]`` the batch size. Each block's sums are
    turned into a mean and a sum of squared deviations about it, and the blocks are merged
    with Chan et al.'s pairwise update about the first block's mean (so equal blocks give
    exactly zero between-block variance).

    Returns
    -------
    (N_POOLED,) float64
        In the order of ``MLP_FORWARD_STATISTICS``. Groups that were not computed give
        meaningless numbers here; the caller keeps only the requested ones.
    """
    nb, n = us1.shape
    B = float(bounds[nb] - bounds[0])
    N = B * n
    umean = np.empty(n)
    uvar = np.empty(n)
    dead = 0.0
    for j in range(n):
        m0 = ushift[0, j] + us1[0, j] / (bounds[1] - bounds[0])
        dm = 0.0   # sum_c n_c (m_c - m0)
        ss = 0.0   # sum_c M2_c
        for c in range(nb):
            nc = float(bounds[c + 1] - bounds[c])
            mc = ushift[c, j] + us1[c, j] / nc
            dm += nc * (mc - m0)
            ss += max(us2[c, j] - us1[c, j] * us1[c, j] / nc, 0.0)
        mean = m0 + dm / B
        for c in range(nb):
            nc = float(bounds[c + 1] - bounds[c])
            mc = ushift[c, j] + us1[c, j] / nc
            ss += nc * (mc - mean) * (mc - mean)
        umean[j] = mean
        uvar[j] = max(ss / B, 0.0)
        mx = -np.inf
        for c in range(nb):
            mx = max(mx, umax[c, j])
        if mx <= 0.0:
            dead += 1.0
    zmean = ordered_sum(umean) / n
    between = 0.0
    for j in range(n):
        between += (umean[j] - zmean) ** 2
    # the output's pooled moments: per block about its own first entry, merged as above
    n0 = float(bounds[1] - bounds[0]) * n
    am0 = part[0, _Q_ASHIFT] + part[0, _Q_A1] / n0
    dm = 0.0
    ss = 0.0
    tot = np.zeros(3)
    for c in range(nb):
        nc = float(bounds[c + 1] - bounds[c]) * n
        mc = part[c, _Q_ASHIFT] + part[c, _Q_A1] / nc
        dm += nc * (mc - am0)
        ss += max(part[c, _Q_A2] - part[c, _Q_A1] * part[c, _Q_A1] / nc, 0.0)
        tot[0] += part[c, _Q_INACT]
        tot[1] += part[c, _Q_SAT]
        tot[2] += part[c, _Q_SPREAD]
    amean = am0 + dm / N
    for c in range(nb):
        nc = float(bounds[c + 1] - bounds[c]) * n
        mc = part[c, _Q_ASHIFT] + part[c, _Q_A1] / nc
        ss += nc * (mc - amean) * (mc - amean)
    res = np.empty(N_POOLED)
    res[_P_ZMEAN] = zmean
    res[_P_UNITVAR] = ordered_sum(uvar) / n
    res[_P_ZVAR] = res[_P_UNITVAR] + between / n
    res[_P_ZM2] = res[_P_ZVAR] + zmean * zmean
    res[_P_AMEAN] = amean
    res[_P_AVAR] = max(ss / N, 0.0)
    res[_P_AM2] = res[_P_AVAR] + amean * amean
    res[_P_SPREAD] = tot[2] / B
    res[_P_INACT] = tot[0] / N
    res[_P_DEAD] = dead / n
    res[_P_SAT] = tot[1] / N
    return res


def _backward_block(kind, g, gres, residual, z, delta, p, scale, r0, r1, rowsq):
    """Fused backward work on rows ``r0:r1`` through one layer's nonlinearity.

    In place: with ``residual`` first ``g += gres`` (the skip path), then
    ``delta = scale * phi'(z) * g`` and ``rowsq[i] = sum_j delta[i, j]^2`` in float64.
    """
    numba.literally(kind)  # one compiled kernel per activation (see the module notes)
    n = z.shape[1]
    for i in range(r0, r1):
        if residual:
            for j in range(n):
                g[i, j] = np.float64(g[i, j]) + np.float64(gres[i, j])
        dphi_row(kind, g, z, delta, i, p, scale)
        rowsq[i] = _row_sumsq(delta, i, n)


@njit(inline="always", fastmath=_FAST)
def _row_sumsq(x, i, n):
    s = 0.0
    for j in range(n):
        d = np.float64(x[i, j])
        s += d * d
    return s


# Not parallel: the drivers (:mod:`fastinit.sim._passes`) run blocks of rows on their own threads,
# each block right after the BLAS call that wrote it, so the data is still in cache. Plain
# (non-parfor) kernels also compile several times faster.
_KERNEL_FLAGS = dict(fastmath=_FAST, error_model="numpy", nogil=True, boundscheck=False)
#: Fused forward work on a block of rows of one layer (see ``_forward_block``), cached on disk per kind.
forward_block = njit(_forward_block, cache=NUMBA_CACHE, **_KERNEL_FLAGS)
#: Fused backward work on a block of rows through one layer's nonlinearity (see ``_backward_block``).
backward_block = njit(_backward_block, cache=NUMBA_CACHE, **_KERNEL_FLAGS)


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


for _kernel in (forward_block, backward_block):
    _stamp_with_dependencies(_kernel, (_fastmath, _activations))

# the same kernels for user activations, never written to the on-disk cache
_UNCACHED = {forward_block: njit(_forward_block, **_KERNEL_FLAGS),
            backward_block: njit(_backward_block, **_KERNEL_FLAGS)}
_ENTRIES = {}
_ENTRIES_LOCK = threading.Lock()


def _type_key(a):
    """What decides Numba's type of an argument, read cheaply (``numba.typeof`` costs ~5 us)."""
    if isinstance(a, np.ndarray):
        f = a.flags
        return a.dtype.num, a.ndim, f.c_contiguous, f.f_contiguous, f.writeable, f.aligned
    return type(a)


def compiled(kernel, kind, *args):
    """Entry point of ``kernel`` (:data:`forward_block` or :data:`backward_block`) compiled for
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


@njit(cache=NUMBA_CACHE, nogil=True)
def sumsq(x):
    """sum(x**2) of a 2-D array with float64 accumulation, row by row, in index order."""
    s = 0.0
    for i in range(x.shape[0]):
        r = 0.0
        for j in range(x.shape[1]):
            v = np.float64(x[i, j])
            r += v * v
        s += r
    return s
