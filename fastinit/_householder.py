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
Fortran BLAS takes every argument by reference: :func:`_fortran_gemm` passes pointers to slots
in the calling function's stack frame, which live until the call returns and cost no allocation.

Drivers
-------
The blocked drivers (:func:`geqrf`, :func:`orgqr`, :func:`stewart_block`) are Python: they
allocate every workspace first (:func:`workspace`, in the calling thread, so a shortage raises
MemoryError before any work) and call the compiled kernels, the parallel ones (:func:`_gram`,
:func:`_larfb`) never from other compiled code. Nothing is allocated inside a parallel region.

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
from typing import NamedTuple

import numba
import numpy as np
from llvmlite import binding as _llvm
from llvmlite import ir
from numba import njit, prange, types
from numba.core import cgutils
from numba.extending import get_cython_function_address, intrinsic

from fastinit import _blas
from fastinit._config import NUMBA_CACHE as _CACHE

# SciPy's BLAS entry points, registered with LLVM under fixed names at every import, so the
# compiled code refers to them by name (no address baked in: Numba's disk cache stays valid).
# Fortran BLAS takes every argument by reference: 13 pointers, no result.
_ADDR = {name: get_cython_function_address("scipy.linalg.cython_blas", name) for name in ("sgemm", "dgemm")}
for _name, _addr in _ADDR.items():
    _llvm.add_symbol("fastinit_cython_" + _name, _addr)


def _by_reference(builder, value):
    """A stack slot holding ``value`` (in the function's entry block), as ``void *``."""
    slot = cgutils.alloca_once(builder, value.type)
    builder.store(value, slot)
    return builder.bitcast(slot, cgutils.voidptr_t)


@intrinsic
def _fortran_gemm(typingctx, fa, fb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """``?gemm`` on the arrays' data with every scalar argument in the caller's stack frame.

    The transpose flags ``fa``, ``fb`` are character codes (``ord("N")``, ``ord("T")``); the
    sizes become Fortran ``INTEGER`` (int32), ``alpha`` and ``beta`` the arrays' float type.
    Nothing is allocated, so the call is safe inside parallel regions under memory pressure,
    and the arguments live until the call returns. (Arguments held in small NumPy arrays and
    passed as ``arr.ctypes.data`` integers do not: Numba frees an array after its last use,
    before the call that reads the memory.)
    """
    dt = c.dtype
    sig = types.void(fa, fb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
    name = "fastinit_cython_sgemm" if dt == types.float32 else "fastinit_cython_dgemm"

    def codegen(context, builder, signature, args):
        tys = signature.args
        ptrs = []
        for i, (ty, val) in enumerate(zip(tys, args, strict=True)):
            if isinstance(ty, types.Array):
                ptrs.append(builder.bitcast(context.make_array(ty)(context, builder, val).data, cgutils.voidptr_t))
            else:
                target = types.uint8 if i < 2 else dt if i in (5, 10) else types.int32
                ptrs.append(_by_reference(builder, context.cast(builder, val, ty, target)))
        fnty = ir.FunctionType(ir.VoidType(), [cgutils.voidptr_t] * 13)
        builder.call(cgutils.get_or_insert_function(builder.module, fnty, name), ptrs)
        return context.get_dummy_value()

    return sig, codegen


def _fortran_gemm_python(fa, fb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """:func:`_fortran_gemm` under ``NUMBA_DISABLE_JIT`` (coverage runs): ctypes, same arguments."""
    fn = ctypes.CFUNCTYPE(None, *([ctypes.c_void_p] * 13))(_ADDR["sgemm" if c.dtype == np.float32 else "dgemm"])
    ref = ctypes.byref
    fl = ctypes.c_float if c.dtype == np.float32 else ctypes.c_double
    ints = [ctypes.c_int32(int(v)) for v in (m, n, k, lda, ldb, ldc)]
    fn(ref(ctypes.c_uint8(fa)), ref(ctypes.c_uint8(fb)), ref(ints[0]), ref(ints[1]), ref(ints[2]),
       ref(fl(alpha)), a.ctypes.data, ref(ints[3]), b.ctypes.data, ref(ints[4]), ref(fl(beta)),
       c.ctypes.data, ref(ints[5]))


if numba.config.DISABLE_JIT:
    _fortran_gemm = _fortran_gemm_python  # noqa: F811 - the intrinsic cannot run without the JIT

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


@njit(cache=_CACHE, nogil=True)
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


@njit(cache=_CACHE, nogil=True)
def _xgemm(fa, fb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """Column-major ``C(m x n) = alpha op(A) op(B) + beta C`` on raw views (s/d by dtype)."""
    _fortran_gemm(_ORD_T if fa else _ORD_N, _ORD_T if fb else _ORD_N, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)


@njit(cache=_CACHE, nogil=True)
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


@njit(cache=_CACHE, nogil=True, fastmath={"reassoc", "nsz", "arcp", "contract"})
def _dot_tail(x, y):
    """``sum(x[1:] * y[1:])`` (vectorised: the sum is re-associated)."""
    s = x[0] * 0
    for i in range(1, x.shape[0]):
        s += x[i] * y[i]
    return s


@njit(cache=_CACHE, nogil=True)
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


@njit(cache=_CACHE, nogil=True)
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


@njit(cache=_CACHE, nogil=True)
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


@njit(cache=_CACHE, parallel=True, nogil=True)
def _gram(yt, jb, L, g, parts):
    """``g[:jb, :jb] = Y^T Y`` for ``Y^T = yt[:jb, :L]``, as a fixed-order sum of single-threaded
    products over column chunks of :data:`GCHUNK` (``parts`` holds one partial product per chunk)."""
    y = yt[:jb, :L]
    gg = g[:jb, :jb]
    nch = (L + GCHUNK - 1) // GCHUNK
    if nch <= 1:
        _gemm(1.0, y, y.T, 0.0, gg)
        return
    for ci in prange(nch):
        c0 = ci * GCHUNK
        c1 = min(L, c0 + GCHUNK)
        _gemm(1.0, y[:, c0:c1], y[:, c0:c1].T, 0.0, parts[ci, :jb, :jb])
    for r in range(jb):
        for c in range(jb):
            s = parts[0, r, c]
            for ci in range(1, nch):
                s += parts[ci, r, c]
            gg[r, c] = s


@njit(cache=_CACHE, nogil=True)
def _form_t(tau, j, jb, t, g):
    """Upper-triangular ``T = t[:jb, :jb]`` with ``H_j ... H_{j+jb-1} = I - Y T Y^T`` (``?larft``).

    ``tau[j:j+jb]`` are the reflectors' factors and ``g[:jb, :jb] = Y^T Y`` (:func:`_gram`,
    ``2 L jb^2`` flops); then ``T[:i, i] = -tau_i T[:i, :i] G[:i, i]`` (``jb^3 / 3`` flops).
    """
    for i in range(jb):
        ti = tau[j + i]
        for r in range(jb):
            t[r, i] = 0.0
        t[i, i] = ti
        if ti != 0.0:
            for r in range(i):
                s = 0.0
                for c in range(r, i):
                    s += np.float64(t[r, c]) * np.float64(g[c, i])
                t[r, i] = -ti * s


@njit(cache=_CACHE, parallel=True, nogil=True)
def _larfb(yt, jb, L, t, trans, cbase, ct, r0, c0, c1, w1, w2):
    """Apply a compact-WY block reflector from the left, in place (LAPACK ``?larfb``).

    ``C <- (I - Y op(T) Y^T) C`` with ``Y^T = yt[:jb, :L]``, ``T = t[:jb, :jb]``,
    ``op(T) = T^T`` if ``trans`` (``H^T C``, used by the factorisation) else ``T`` (``H C``, used
    to form Q), and ``C = B[r0:r0+L, c0:c1]`` where ``B`` is ``cbase.T`` if ``ct`` else ``cbase``
    (``cbase`` C-contiguous). ``w1``, ``w2`` are ``(>= jb, >= c1 - c0)`` workspace. Three GEMMs,
    ``4 L jb nc + 2 jb^2 nc`` flops. Columns are independent, so the three products run per fixed
    chunk of :data:`CHUNK` columns, chunks in parallel; nothing is allocated.
    """
    y = yt[:jb, :L]
    tv = t[:jb, :jb]
    top = tv.T if trans else tv
    b = cbase.T if ct else cbase
    c = b[r0:r0 + L, c0:c1]
    nc = c1 - c0
    nch = (nc + CHUNK - 1) // CHUNK
    for ci in prange(nch):
        k0 = ci * CHUNK
        k1 = min(nc, k0 + CHUNK)
        cc = c[:, k0:k1]
        a1 = w1[:jb, k0:k1]
        a2 = w2[:jb, k0:k1]
        _gemm(1.0, y, cc, 0.0, a1)  # W1 = Y^T C
        _gemm(1.0, top, a1, 0.0, a2)  # W2 = op(T) W1
        _gemm(-1.0, y.T, a2, 1.0, cc)  # C -= Y W2


# ---------------------------------------------------------------------------------------
# Blocked drivers (Python: the parallel kernels are called from here, never from other
# compiled code, and every workspace is allocated before the first kernel runs)
# ---------------------------------------------------------------------------------------


class Workspace(NamedTuple):
    """Buffers of the blocked drivers, allocated up front in the calling thread."""

    yt: np.ndarray  # (nb, m): Y^T of one block
    t: np.ndarray  # (nb, nb): T of one block
    g: np.ndarray  # (nb, nb): Y^T Y
    parts: np.ndarray  # (chunks of m, nb, nb): partial products of Y^T Y
    tau: np.ndarray  # (nb,): reflector factors of one block (Stewart)
    w1: np.ndarray  # (nb, width): W1 = Y^T C
    w2: np.ndarray  # (nb, width): W2 = op(T) W1


def workspace(dtype, nb, m, width):
    """:class:`Workspace` for blocks of ``nb`` reflectors of length ``<= m`` applied to ``width`` columns.

    Extra memory ``(m + 2 width + (m / GCHUNK + 2) nb) nb`` elements. Raises MemoryError before
    any work is done when the memory is not there.
    """
    nparts = max((m + GCHUNK - 1) // GCHUNK, 1)
    return Workspace(np.empty((nb, m), dtype), np.empty((nb, nb), dtype), np.empty((nb, nb), dtype),
                     np.empty((nparts, nb, nb), dtype), np.empty(nb, dtype),
                     np.empty((nb, max(width, 1)), dtype), np.empty((nb, max(width, 1)), dtype))


def c_base(q):
    """``(base, transposed)`` with C-contiguous ``base`` and ``q`` = ``base.T`` if transposed else ``base``."""
    if q.flags.c_contiguous:
        return q, False
    if q.T.flags.c_contiguous:
        return q.T, True
    raise ValueError("q must be C- or F-contiguous")


def _block_reflector(at, j, jb, tau, ws):
    """Y^T (into ``ws.yt``) and T (into ``ws.t``) of reflectors ``j .. j+jb-1`` stored in ``at``."""
    L = at.shape[1] - j
    _form_y(at, j, jb, ws.yt)
    _gram(ws.yt, jb, L, ws.g, ws.parts)
    _form_t(tau, j, jb, ws.t, ws.g)


def geqrf(at, tau, nb, ib):
    """Blocked Householder QR of ``A = at.T`` in place (LAPACK ``?geqrf`` layout).

    Two levels of blocking: a panel of ``nb`` columns is factorised in sub-panels of ``ib``
    columns (:func:`_householder_panel`), each applied to the rest of the panel as a block
    reflector; the whole panel is then applied to the trailing matrix with :func:`_larfb`.
    Flops: ``2 m n^2 - 2 n^3 / 3`` (``4 n^3 / 3`` when square), all but ``O(m n ib)`` in GEMM.
    Workspace: ``O((m + n) nb)``, allocated first.
    """
    n, m = at.shape
    k = min(m, n)
    ws = workspace(at.dtype, nb, m, n)
    for j in range(0, k, nb):
        jb = min(nb, k - j)
        pe = j + jb
        for i in range(j, pe, ib):
            ibb = min(ib, pe - i)
            _householder_panel(at, i, ibb, tau)
            if i + ibb < pe:
                _block_reflector(at, i, ibb, tau, ws)
                _larfb(ws.yt, ibb, m - i, ws.t, True, at, True, i, i + ibb, pe, ws.w1, ws.w2)
        if pe < n:
            _block_reflector(at, j, jb, tau, ws)
            _larfb(ws.yt, jb, m - j, ws.t, True, at, True, j, pe, n, ws.w1, ws.w2)


@njit(cache=_CACHE, nogil=True)
def set_identity(q):
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


def orgqr(at, tau, k, q, nb):
    """Form ``Q = H_0 H_1 ... H_{k-1} I[:, :nq]`` into the ``m x nq`` array ``q`` (``?orgqr``).

    ``q`` is C- or F-contiguous. Backward accumulation: starting from the identity, block ``b``
    (last first) updates only ``q[j:, j:]``, because the blocks after it act on rows ``>= j + jb``.
    Flops: ``4 m nq k - 2 (m + nq) k^2 + 4 k^3 / 3`` (``4 n^3 / 3`` for a square ``n x n``), in GEMM.
    Workspace ``O((m + nq) nb)``, allocated first.
    """
    m, nq = q.shape
    ws = workspace(q.dtype, nb, m, nq)
    qb, qt = c_base(q)
    set_identity(q)
    for b in range((k + nb - 1) // nb - 1, -1, -1):
        j = b * nb
        jb = min(nb, k - j)
        _block_reflector(at, j, jb, tau, ws)
        _larfb(ws.yt, jb, m - j, ws.t, False, qb, qt, j, j, nq, ws.w1, ws.w2)


# ---------------------------------------------------------------------------------------
# Stewart (1980): reflectors drawn directly from Gaussians
# ---------------------------------------------------------------------------------------


@njit(cache=_CACHE, nogil=True)
def stewart_reflectors(z, j, jb, m, dsign, yt, tau):
    """Reflectors ``j .. j+jb-1`` of Stewart's construction into ``yt[:jb, :m-j]`` and ``tau[:jb]``.

    ``z`` holds the block's Gaussians back to back: reflector ``k = j + r`` uses the next
    ``m - k`` values, exactly the column ``k`` of a Gaussian matrix below the diagonal after
    ``k`` Householder steps (rotational invariance). Each vector becomes a reflector through
    :func:`_larfg`; ``dsign[k] = sign(beta_k) = sign(R[k, k])`` is the Mezzadri/Stewart sign
    correction, applied later by the caller.
    """
    L = m - j
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
        tau[r] = _larfg(x)
        dsign[j + r] = 1.0 if x[0] >= 0 else -1.0
        x[0] = 1.0


def stewart_block(z, j, jb, q, dsign, ws):
    """Apply one block of Stewart reflectors ``j .. j+jb-1`` to ``q`` (backward step):
    ``q[j:, j:] <- (I - Y T Y^T) q[j:, j:]`` (:func:`stewart_reflectors` for Y and the signs)."""
    m, nq = q.shape
    L = m - j
    qb, qt = c_base(q)
    stewart_reflectors(z, j, jb, m, dsign, ws.yt, ws.tau)
    _gram(ws.yt, jb, L, ws.g, ws.parts)
    _form_t(ws.tau, 0, jb, ws.t, ws.g)
    _larfb(ws.yt, jb, L, ws.t, False, qb, qt, j, j, nq, ws.w1, ws.w2)


@njit(cache=_CACHE, nogil=True)
def scale_columns(q, s):
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
