"""Numba kernels for blocked Householder QR and for forming Q (compact WY, BLAS-3).

Private module. :mod:`fastinit.linalg` and :mod:`fastinit._orthogonal` validate their
arguments; the kernels here trust their inputs (shapes, dtypes, one unit stride per operand).

Storage conventions
-------------------
* The matrix being factorised, ``A`` (``m x n``), is held **transposed**: ``at`` is a
  C-contiguous ``(n, m)`` array, so column ``k`` of ``A`` is the contiguous row ``at[k]``.
  This is LAPACK's column-major layout, and every Householder vector is a contiguous slice.
  After :func:`_geqrf`, ``at[k, k:]`` holds ``R[k, k]`` followed by the tail ``v[1:]`` of the
  k-th Householder vector (``v[0] = 1`` is implicit), and ``at[c, :c]`` holds ``R[:c, c]``:
  exactly the output of LAPACK ``?geqrf`` (which numpy returns, transposed, as ``mode="raw"``).
* A block of ``jb`` reflectors ``H_j ... H_{j+jb-1}`` is kept in compact WY form
  ``I - Y T Y^T`` (Schreiber & Van Loan 1989): ``yt = Y^T`` is an explicit ``(jb, L)``
  row-major array (zeros above the unit diagonal) and ``T`` is ``jb x jb`` upper triangular.

Convention of one reflector (LAPACK ``?larfg``): for ``x = (alpha, x_tail)``,
``H = I - tau v v^T`` with ``v[0] = 1`` maps ``x`` to ``(beta, 0, ..., 0)``,
``beta = -sign(alpha) ||x||``, ``tau = (beta - alpha) / beta``. If ``x_tail = 0`` then
``tau = 0`` and ``beta = alpha`` (``H = I``).

BLAS
----
All ``O(n^3)`` work is in ``?gemm`` calls made from inside ``@njit`` code through the entry
points that SciPy exports in :mod:`scipy.linalg.cython_blas` (the same BLAS Numba's own
``np.dot`` uses). Calling ``?gemm`` directly, with leading dimensions, lets the kernels update
sub-blocks of the output in place; ``np.dot`` in Numba would copy every non-contiguous block.
The entry points are registered with LLVM under fixed names, so Numba's disk cache works.

Threads and determinism
-----------------------
OpenBLAS's multi-threaded GEMM does not give the same bits for different thread counts (its
edge micro-kernels sum in a different order depending on how the output is split; checked
with OpenBLAS 0.3.30 on AVX-512). So the kernels here never let BLAS thread: the drivers run
inside :func:`single_threaded_blas`, and parallelism comes from Numba ``prange`` over
**fixed** column chunks of the updated matrix (:data:`CHUNK` columns each, independent of the
thread count). Every output element is computed by one single-threaded GEMM call on a chunk
fixed by the problem size alone, and the one reduction (``G = Y^T Y`` in :func:`_form_t`)
sums fixed row chunks in a fixed order. Results are therefore bit-identical for any
``numba.set_num_threads`` and any BLAS thread setting (if the BLAS library's thread control
cannot be found, for example a non-OpenBLAS SciPy, only Numba-thread invariance is
guaranteed).
"""

from __future__ import annotations

import ctypes
import math

import numba
import numpy as np
from llvmlite import binding as _llvm
from numba import njit, prange, types
from numba.extending import get_cython_function_address

from fastinit import _blas
from fastinit._config import NUMBA_CACHE as _CACHE


# SciPy's BLAS entry points, registered with LLVM under fixed names at every import, so the
# compiled code refers to them by name (no address baked in: Numba's disk cache stays valid).
# Fortran BLAS takes every argument by reference: 13 pointers (passed as addresses), no result.
_ADDR = {name: get_cython_function_address("scipy.linalg.cython_blas", name) for name in ("sgemm", "dgemm")}
if numba.config.DISABLE_JIT:  # pure-Python mode (coverage runs): plain ctypes calls on addresses
    _sgemm = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * 13))(_ADDR["sgemm"])
    _dgemm = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * 13))(_ADDR["dgemm"])
else:
    for _name, _addr in _ADDR.items():
        _llvm.add_symbol("fastinit_cython_" + _name, _addr)
    _sgemm = types.ExternalFunction("fastinit_cython_sgemm", types.void(*([types.uintp] * 13)))
    _dgemm = types.ExternalFunction("fastinit_cython_dgemm", types.void(*([types.uintp] * 13)))

#: default outer block size (reflectors per compact-WY block) for large matrices
NB_LARGE = 128
#: default outer block size for matrices with min(m, n) < 1024
NB_SMALL = 64
#: inner block size inside a QR panel (columns factorised with level-2 loops)
IB = 16

#: output columns per parallel task in :func:`_larfb` (fixed: results must not depend on threads)
CHUNK = 256
#: rows of Y per partial product in the chunked ``G = Y^T Y`` of :func:`_form_t`
GCHUNK = 4096

_ORD_N = 78  # ord("N")
_ORD_T = 84  # ord("T")


def block_size(k):
    """Default outer block size for ``k`` reflectors (bigger blocks = bigger GEMM K-dim)."""
    return NB_LARGE if k >= 1024 else NB_SMALL


# ---------------------------------------------------------------------------------------
# BLAS thread control: one helper for the package (fastinit._blas); the drivers in
# fastinit.linalg and fastinit._orthogonal call it as _householder.single_threaded_blas.
# ---------------------------------------------------------------------------------------
single_threaded_blas = _blas.single_threaded_blas


# ---------------------------------------------------------------------------------------
# GEMM on strided 2-D views
# ---------------------------------------------------------------------------------------


@njit(cache=_CACHE)
def _major(x):
    """Return ``(row_major, ld)`` of a 2-D view that has one unit stride.

    A row-major ``p x q`` view with leading dimension ``ld`` is, to column-major BLAS, the
    ``q x p`` matrix ``x^T`` with the same ``ld``.
    """
    p, q = x.shape
    isz = x.itemsize
    if q == 1 or x.strides[1] == isz:
        if p > 1:
            return True, x.strides[0] // isz
        return True, max(q, 1)
    if p == 1 or x.strides[0] == isz:
        if q > 1:
            return False, x.strides[1] // isz
        return False, max(p, 1)
    raise ValueError("gemm operand has no unit stride")


@njit(cache=_CACHE)
def _xgemm(fa, fb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """Column-major ``C(m x n) = alpha op(A) op(B) + beta C`` on raw views (s/d by dtype)."""
    chars = np.empty(2, np.uint8)
    chars[0] = _ORD_T if fa else _ORD_N
    chars[1] = _ORD_T if fb else _ORD_N
    ints = np.empty(6, np.int32)
    ints[0] = m
    ints[1] = n
    ints[2] = k
    ints[3] = lda
    ints[4] = ldb
    ints[5] = ldc
    sc = np.empty(2, c.dtype)
    sc[0] = alpha
    sc[1] = beta
    pc = chars.ctypes.data
    pi = ints.ctypes.data
    ps = sc.ctypes.data
    isz = c.itemsize
    if isz == 4:
        _sgemm(pc, pc + 1, pi, pi + 4, pi + 8, ps, a.ctypes.data, pi + 12, b.ctypes.data,
               pi + 16, ps + isz, c.ctypes.data, pi + 20)
    else:
        _dgemm(pc, pc + 1, pi, pi + 4, pi + 8, ps, a.ctypes.data, pi + 12, b.ctypes.data,
               pi + 16, ps + isz, c.ctypes.data, pi + 20)


@njit(cache=_CACHE)
def _gemm(alpha, a, b, beta, c):
    """``c = alpha * a @ b + beta * c`` in place, for row- or column-major views.

    All three arrays share one float dtype and each has a unit stride in one dimension (any
    leading dimension). Transposes are passed as views (``a.T``), not as flags, so that Numba
    compiles one specialisation instead of one per literal flag combination.
    """
    m, n = c.shape
    k = a.shape[1]
    if m == 0 or n == 0:
        return
    if k == 0:  # BLAS would reject k = 0 with lda < 1; the product is empty
        for i in range(m):
            for j in range(n):
                c[i, j] = 0.0 if beta == 0.0 else beta * c[i, j]
        return
    ra, lda = _major(a)
    rb, ldb = _major(b)
    rc, ldc = _major(c)
    if rc:
        # c is row-major: BLAS sees c^T, and c^T = b^T a^T. A row-major operand is the
        # transpose of the column-major matrix BLAS sees, so b^T needs no flag when b is
        # row-major.
        _xgemm(not rb, not ra, n, m, k, alpha, b, ldb, a, lda, beta, c, ldc)
    else:
        _xgemm(ra, rb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)


# ---------------------------------------------------------------------------------------
# Level-1/2 pieces
# ---------------------------------------------------------------------------------------


@njit(cache=_CACHE, fastmath={"reassoc", "nsz", "arcp", "contract"})
def _dot_tail(x, y):
    """``sum(x[1:] * y[1:])`` (vectorised: the sum is re-associated)."""
    s = x[0] * 0
    for i in range(1, x.shape[0]):
        s += x[i] * y[i]
    return s


@njit(cache=_CACHE)
def _larfg(x):
    """Householder reflector for the contiguous vector ``x``, in place (LAPACK ``?larfg``).

    On return ``x[0] = beta`` and ``x[1:] = v[1:]``; returns ``tau`` (float64).
    The tail norm is accumulated in float64, rescaled only if it could over/underflow.
    """
    n = x.shape[0]
    alpha = np.float64(x[0])
    ss = 0.0
    for i in range(1, n):
        t = np.float64(x[i])
        ss += t * t
    if not (1e-280 < ss < 1e280):  # zero, denormal range, overflow or NaN: rescale
        scale = 0.0
        for i in range(1, n):
            a = abs(np.float64(x[i]))
            if a > scale:
                scale = a
        if scale == 0.0:
            return 0.0  # H = I, beta = alpha already in x[0]
        ss = 0.0
        for i in range(1, n):
            t = np.float64(x[i]) / scale
            ss += t * t
        xnorm = scale * math.sqrt(ss)
    else:
        xnorm = math.sqrt(ss)
    beta = -math.copysign(math.hypot(alpha, xnorm), alpha)
    tau = (beta - alpha) / beta
    f = 1.0 / (alpha - beta)
    for i in range(1, n):
        x[i] = x[i] * f
    x[0] = beta
    return tau


@njit(cache=_CACHE)
def _householder_panel(at, j, jb, tau):
    """Unblocked Householder QR of columns ``j .. j+jb-1`` of ``A = at.T`` (rows ``j:``).

    Level-2 loop over the panel (LAPACK ``?geqr2``): for each column, form the reflector with
    :func:`_larfg` and apply it to the remaining columns of the panel,
    ``a_c <- a_c - tau v (v^T a_c)``. Work ``~4 L jb^2 / 2`` flops for panel height ``L``.
    """
    for i in range(j, j + jb):
        x = at[i, i:]
        t = _larfg(x)
        tau[i] = t
        if t != 0.0:
            for c in range(i + 1, j + jb):
                y = at[c, i:]
                s = t * (y[0] + _dot_tail(x, y))
                y[0] -= s
                for r in range(1, y.shape[0]):
                    y[r] -= s * x[r]


@njit(cache=_CACHE)
def _form_y(at, j, jb, yt):
    """Copy reflectors ``j .. j+jb-1`` from ``at`` into explicit ``yt[:jb, :m-j]`` (= Y^T)."""
    m = at.shape[1]
    L = m - j
    for r in range(jb):
        row = yt[r]
        for i in range(r):
            row[i] = 0.0
        row[r] = 1.0
        src = at[j + r]
        for i in range(r + 1, L):
            row[i] = src[j + i]


@njit(cache=_CACHE, parallel=True)
def _gram(yt, g):
    """``g = yt @ yt.T`` as a fixed-order sum of single-threaded products over column chunks."""
    jb, L = yt.shape
    nch = (L + GCHUNK - 1) // GCHUNK
    if nch <= 1:
        _gemm(1.0, yt, yt.T, 0.0, g)
        return
    parts = np.empty((nch, jb, jb), yt.dtype)
    for ci in prange(nch):
        c0 = ci * GCHUNK
        c1 = min(L, c0 + GCHUNK)
        _gemm(1.0, yt[:, c0:c1], yt[:, c0:c1].T, 0.0, parts[ci])
    for r in range(jb):
        for c in range(jb):
            s = parts[0, r, c]
            for ci in range(1, nch):
                s += parts[ci, r, c]
            g[r, c] = s


@njit(cache=_CACHE)
def _form_t(yt, tau, t, g):
    """Upper-triangular ``T`` with ``H_0 ... H_{jb-1} = I - Y T Y^T`` (LAPACK ``?larft``).

    ``yt`` is ``(jb, L)`` = ``Y^T`` with explicit unit diagonal, ``tau`` has ``jb`` entries,
    ``t`` and ``g`` are ``(jb, jb)`` outputs/workspace. ``G = Y^T Y`` comes from one GEMM
    (``2 L jb^2`` flops); then ``T[:i, i] = -tau_i T[:i, :i] G[:i, i]`` (``jb^3 / 3`` flops).
    """
    jb = yt.shape[0]
    _gram(yt, g)
    for i in range(jb):
        ti = tau[i]
        for r in range(jb):
            t[r, i] = 0.0
        t[i, i] = ti
        if ti != 0.0:
            for r in range(i):
                s = 0.0
                for c in range(r, i):
                    s += np.float64(t[r, c]) * np.float64(g[c, i])
                t[r, i] = -ti * s


@njit(cache=_CACHE, parallel=True)
def _larfb(yt, top, c, w1, w2):
    """Apply a compact-WY block reflector from the left, in place (LAPACK ``?larfb``).

    ``c <- (I - Y op(T) Y^T) c``, where the caller passes ``top = T.T`` for ``H^T c`` (used by
    the factorisation) or ``top = T`` for ``H c`` (used to form Q). ``c`` is an ``L x nc`` view
    of either layout; ``w1``, ``w2`` are ``(jb, nc)`` workspace. Three GEMMs,
    ``4 L jb nc + 2 jb^2 nc`` flops. Columns are independent, so the three products run per
    fixed chunk of :data:`CHUNK` columns, chunks in parallel.
    """
    nc = c.shape[1]
    nch = (nc + CHUNK - 1) // CHUNK
    for ci in prange(nch):
        c0 = ci * CHUNK
        c1 = min(nc, c0 + CHUNK)
        cc = c[:, c0:c1]
        a1 = w1[:, c0:c1]
        a2 = w2[:, c0:c1]
        _gemm(1.0, yt, cc, 0.0, a1)  # W1 = Y^T C
        _gemm(1.0, top, a1, 0.0, a2)  # W2 = op(T) W1
        _gemm(-1.0, yt.T, a2, 1.0, cc)  # C -= Y W2


# ---------------------------------------------------------------------------------------
# Blocked drivers
# ---------------------------------------------------------------------------------------


@njit(cache=_CACHE)
def _geqrf(at, tau, nb, ib):
    """Blocked Householder QR of ``A = at.T`` in place (LAPACK ``?geqrf`` layout).

    Two levels of blocking: a panel of ``nb`` columns is factorised in sub-panels of ``ib``
    columns (:func:`_householder_panel`), each applied to the rest of the panel as a block
    reflector; the whole panel is then applied to the trailing matrix with :func:`_larfb`.
    Flops: ``2 m n^2 - 2 n^3 / 3`` (``4 n^3 / 3`` when square), all but ``O(m n ib)`` in GEMM.
    Workspace: ``O((m + n) nb)``.
    """
    n, m = at.shape
    k = min(m, n)
    dt = at.dtype
    yt = np.empty((nb, m), dt)
    tt = np.empty((nb, nb), dt)
    g = np.empty((nb, nb), dt)
    w1 = np.empty((nb, max(n, 1)), dt)
    w2 = np.empty((nb, max(n, 1)), dt)
    for j in range(0, k, nb):
        jb = min(nb, k - j)
        pe = j + jb
        for i in range(j, pe, ib):
            ibb = min(ib, pe - i)
            _householder_panel(at, i, ibb, tau)
            if i + ibb < pe:
                L = m - i
                nc = pe - i - ibb
                _form_y(at, i, ibb, yt[:ibb, :L])
                _form_t(yt[:ibb, :L], tau[i:i + ibb], tt[:ibb, :ibb], g[:ibb, :ibb])
                _larfb(yt[:ibb, :L], tt[:ibb, :ibb].T, at[i + ibb:pe, i:].T,
                       w1[:ibb, :nc], w2[:ibb, :nc])
        if pe < n:
            L = m - j
            nc = n - pe
            _form_y(at, j, jb, yt[:jb, :L])
            _form_t(yt[:jb, :L], tau[j:pe], tt[:jb, :jb], g[:jb, :jb])
            _larfb(yt[:jb, :L], tt[:jb, :jb].T, at[pe:, j:].T, w1[:jb, :nc], w2[:jb, :nc])


@njit(cache=_CACHE)
def _set_identity(q):
    """``q[:] = I`` (rectangular), looping in memory order for either layout."""
    m, n = q.shape
    if n == 1 or q.strides[1] == q.itemsize:
        for i in range(m):
            for c in range(n):
                q[i, c] = 0.0
    else:
        for c in range(n):
            for i in range(m):
                q[i, c] = 0.0
    for d in range(min(m, n)):
        q[d, d] = 1.0


@njit(cache=_CACHE)
def _orgqr(at, tau, k, q, nb):
    """Form ``Q = H_0 H_1 ... H_{k-1} I[:, :nq]`` into the ``m x nq`` view ``q`` (``?orgqr``).

    Backward accumulation: starting from the identity, block ``b`` (last first) updates only
    ``q[j:, j:]``, because the blocks after it act on rows ``>= j + jb``. Flops:
    ``4 m nq k - 2 (m + nq) k^2 + 4 k^3 / 3`` (``4 n^3 / 3`` for a square ``n x n``), in GEMM.
    Workspace ``O((m + nq) nb)``.
    """
    m, nq = q.shape
    dt = q.dtype
    _set_identity(q)
    yt = np.empty((nb, m), dt)
    tt = np.empty((nb, nb), dt)
    g = np.empty((nb, nb), dt)
    w1 = np.empty((nb, max(nq, 1)), dt)
    w2 = np.empty((nb, max(nq, 1)), dt)
    nblk = (k + nb - 1) // nb
    for b in range(nblk - 1, -1, -1):
        j = b * nb
        jb = min(nb, k - j)
        L = m - j
        nc = nq - j
        _form_y(at, j, jb, yt[:jb, :L])
        _form_t(yt[:jb, :L], tau[j:j + jb], tt[:jb, :jb], g[:jb, :jb])
        _larfb(yt[:jb, :L], tt[:jb, :jb], q[j:, j:], w1[:jb, :nc], w2[:jb, :nc])


# ---------------------------------------------------------------------------------------
# Stewart (1980): reflectors drawn directly from Gaussians
# ---------------------------------------------------------------------------------------


@njit(cache=_CACHE)
def _stewart_block(z, j, jb, m, q, dsign, yt, tt, g, w1, w2):
    """Apply one block of Stewart reflectors ``j .. j+jb-1`` to ``q`` (backward step).

    ``z`` holds the block's Gaussians back to back: reflector ``k = j + r`` uses the next
    ``m - k`` values, exactly the column ``k`` of a Gaussian matrix below the diagonal after
    ``k`` Householder steps (rotational invariance). Each vector becomes a reflector through
    :func:`_larfg`; ``dsign[k] = sign(beta_k) = sign(R[k, k])`` is the Mezzadri/Stewart sign
    correction, applied later by the caller. Then ``q[j:, j:] <- (I - Y T Y^T) q[j:, j:]``.
    """
    L = m - j
    tau = np.empty(jb, yt.dtype)
    pos = 0
    for r in range(jb):
        row = yt[r]
        for i in range(r):
            row[i] = 0.0
        ln = L - r
        for i in range(ln):
            row[r + i] = z[pos + i]
        pos += ln
        x = row[r:L]
        t = _larfg(x)
        tau[r] = t
        dsign[j + r] = 1.0 if x[0] >= 0 else -1.0
        x[0] = 1.0
    y = yt[:jb, :L]
    _form_t(y, tau, tt[:jb, :jb], g[:jb, :jb])
    nc = q.shape[1] - j
    _larfb(y, tt[:jb, :jb], q[j:, j:], w1[:jb, :nc], w2[:jb, :nc])


@njit(cache=_CACHE)
def _scale_columns(q, s):
    """``q[:, c] *= s[c]`` in memory order for either layout."""
    m, n = q.shape
    if n == 1 or q.strides[1] == q.itemsize:
        for i in range(m):
            for c in range(n):
                q[i, c] = q[i, c] * s[c]
    else:
        for c in range(n):
            sc = s[c]
            for i in range(m):
                q[i, c] = q[i, c] * sc
