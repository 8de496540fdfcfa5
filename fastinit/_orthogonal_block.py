r"""``orthogonal_`` on a block: rows or columns of the Haar matrix without forming the full matrix.

The full matrix (:func:`fastinit._orthogonal.orthogonal_matrix_`, Stewart's construction) is, for
the tall view :math:`q` (:math:`m \times n`, :math:`m \ge n`) of the matrix,

.. math::
    q = H_0 H_1 \cdots H_{n-1} \, I_{m \times n} \, \mathrm{diag}(\mathrm{sign}\,\beta_k),

with reflector :math:`H_k` made from the Gaussians at stream position :math:`\sum_{i<k} (m - i)`
(each reflector depends only on its own ``m - k`` values). A block needs every reflector it
touches, but not the full product:

* **rows** ``R`` (``k`` of them): :math:`q[R, :] = (E_R^\top H_0 \cdots H_{n-1})[:, :n]` applies
  the reflectors from the right to the ``k x m`` block of the identity, in blocks of ``nb``
  (compact WY, three GEMMs each): about :math:`4 k (m n - n^2 / 2)` flops (:math:`2 k n^2` when
  square) and :math:`O(k m)` memory;
* **columns** ``C`` (``k`` of them, the last one ``c - 1``): :math:`q[:, C] = H_0 \cdots H_{c-1}
  I[:, C]` (the reflectors after ``c - 1`` leave those columns alone), backward accumulation on the
  ``m x k`` block of the identity: about :math:`4 k (m c - c^2 / 2)` flops, :math:`O(m k)` memory.

A block of rows and columns uses the cheaper of the two and keeps its part. The reflectors (and
the signs) are bit for bit those of the full matrix; only the order of the GEMM sums differs, so
a block equals the full matrix's block up to rounding (``docs/api.md`` states the tolerance).
Work is split over fixed chunks of rows/columns (:data:`CHUNK`), each a single-threaded GEMM, so
the bytes do not depend on the thread count.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from . import _householder as _hh
from ._blas import single_threaded_blas
from ._config import NUMBA_CACHE as CACHE
from ._fill import fill_normal

__all__ = ["orthogonal_block", "CHUNK"]

#: rows (row method) or columns (column method) of the block per parallel task; fixed by the shape
CHUNK = 256


@njit(cache=CACHE)
def _t_factor(yt, jb, L, tau, t, g):
    """``T`` (upper triangular) with ``H_j ... H_{j+jb-1} = I - Y T Y^T`` (LAPACK ``?larft``):
    the Gram matrix ``Y Y^T`` by one GEMM, then the Householder kernels' own recurrence."""
    y = yt[:jb, :L]
    _hh._gemm(1.0, y, y.T, 0.0, g[:jb, :jb])
    _hh._form_t(tau, 0, jb, t, g)


@njit(cache=CACHE, parallel=True)
def _apply_right(x, j, yt, jb, L, t, w1, w2):
    """``x[:, j:j+L] <- x[:, j:j+L] (I - Y T Y^T)`` over fixed chunks of rows of ``x``."""
    k = x.shape[0]
    y = yt[:jb, :L]
    tv = t[:jb, :jb]
    for ci in prange((k + CHUNK - 1) // CHUNK):
        r0 = ci * CHUNK
        r1 = min(k, r0 + CHUNK)
        xc = x[r0:r1, j:j + L]
        a1 = w1[r0:r1, :jb]
        a2 = w2[r0:r1, :jb]
        _hh._gemm(1.0, xc, y.T, 0.0, a1)  # X Y
        _hh._gemm(1.0, a1, tv, 0.0, a2)  # X Y T
        _hh._gemm(-1.0, a2, y, 1.0, xc)  # X -= X Y T Y^T


@njit(cache=CACHE, parallel=True)
def _apply_left(w, j, yt, jb, L, t, w1, w2):
    """``w[j:j+L, :] <- (I - Y T Y^T) w[j:j+L, :]`` over fixed chunks of columns of ``w``."""
    k = w.shape[1]
    y = yt[:jb, :L]
    tv = t[:jb, :jb]
    for ci in prange((k + CHUNK - 1) // CHUNK):
        c0 = ci * CHUNK
        c1 = min(k, c0 + CHUNK)
        wc = w[j:j + L, c0:c1]
        a1 = w1[:jb, c0:c1]
        a2 = w2[:jb, c0:c1]
        _hh._gemm(1.0, y, wc, 0.0, a1)  # Y^T W
        _hh._gemm(1.0, tv, a1, 0.0, a2)  # T Y^T W
        _hh._gemm(-1.0, y.T, a2, 1.0, wc)  # W -= Y T Y^T W


class _Reflectors:
    """Blocks of ``nb`` Stewart reflectors of an ``m x n`` tall matrix, drawn from the stream."""

    def __init__(self, m, n, nb, seed, stream, dtype):
        self.m, self.n, self.nb, self.seed, self.stream = m, n, nb, seed, stream
        self.z = np.empty(nb * m, dtype)
        self.yt = np.empty((nb, m), dtype)
        self.t = np.empty((nb, nb), dtype)
        self.g = np.empty((nb, nb), dtype)
        self.tau = np.empty(nb, dtype)
        self.dsign = np.empty(n, np.float64)

    def make(self, j, jb):
        """Reflectors ``j .. j+jb-1`` into ``yt``, ``t``; returns their length ``m - j``."""
        m = self.m
        offset = j * m - j * (j - 1) // 2  # vector k starts at sum_{i<k} (m - i)
        count = jb * (m - j) - jb * (jb - 1) // 2
        fill_normal(self.z[:count], 0.0, 1.0, self.seed, self.stream, offset)
        _hh.stewart_reflectors(self.z, j, jb, m, self.dsign, self.yt, self.tau)  # as the full matrix
        _t_factor(self.yt, jb, m - j, self.tau, self.t, self.g)
        return m - j


def orthogonal_block(m: int, n: int, rows: np.ndarray, cols: np.ndarray, gain: float, seed: int, stream: int,
                     dtype, block: int | None = None) -> np.ndarray:
    """``gain * q[rows][:, cols]`` of the tall ``m x n`` Haar matrix ``q`` of ``(seed, stream)``
    that :func:`fastinit._orthogonal.orthogonal_matrix_` forms, in ``dtype`` (float32 or float64);
    ``rows``, ``cols`` are increasing index arrays. The cheaper of the row and column methods runs.

    Examples
    --------
    >>> import numpy as np
    >>> from fastinit._orthogonal import orthogonal_matrix_
    >>> full = orthogonal_matrix_(np.empty((300, 200)), seed=3)
    >>> part = orthogonal_block(300, 200, np.arange(100, 150), np.arange(200), 1.0, 3, 0, np.float64)
    >>> bool(np.abs(part - full[100:150]).max() < 1e-13)
    True
    """
    dtype = np.dtype(dtype)
    out = np.zeros((rows.size, cols.size), dtype)
    if out.size == 0:
        return out
    nb = min(_hh.block_size(n) if block is None else block, n)
    c = int(cols[-1]) + 1
    by_rows = rows.size * (m * n - n * n / 2) <= cols.size * (m * c - c * c / 2)
    refl = _Reflectors(m, n, nb, seed, stream, dtype)
    with single_threaded_blas():
        if by_rows:
            x = np.zeros((rows.size, m), dtype)
            x[np.arange(rows.size), rows] = 1.0
            w1 = np.empty((rows.size, nb), dtype)
            w2 = np.empty((rows.size, nb), dtype)
            for j in range(0, n, nb):
                jb = min(nb, n - j)
                L = refl.make(j, jb)
                _apply_right(x, j, refl.yt, jb, L, refl.t, w1, w2)
            out[...] = x[:, cols]
        else:
            w = np.zeros((m, cols.size), dtype)
            w[cols, np.arange(cols.size)] = 1.0
            w1 = np.empty((nb, cols.size), dtype)
            w2 = np.empty((nb, cols.size), dtype)
            for b in range(math.ceil(c / nb) - 1, -1, -1):  # backward: the last block first
                j = b * nb
                jb = min(nb, c - j)
                L = refl.make(j, jb)
                _apply_left(w, j, refl.yt, jb, L, refl.t, w1, w2)
            out[...] = w[rows]
    out *= gain * refl.dsign[cols]
    return out
