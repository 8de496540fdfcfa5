r"""Dense linear algebra used by the initialisers, exposed for testing and reuse.

Currently one function, :func:`qr`, the blocked Householder QR that ``orthogonal_``
(``method="qr"``) is built on.
"""

from __future__ import annotations

import numpy as np

from . import _householder as _hh

__all__ = ["qr"]

_MODES = ("reduced", "complete", "r", "raw")


def qr(a, mode="reduced"):
    r"""Householder QR factorisation :math:`A = QR` of a 2-D float32/float64 matrix.

    A drop-in for :func:`numpy.linalg.qr` on 2-D real input, computed by fastinit's blocked
    Householder kernels (compact WY, BLAS-3). The sign convention is LAPACK's, so ``Q`` and
    ``R`` agree with NumPy's up to rounding for full-rank input.

    For :math:`A \in \mathbb R^{m\times n}` and :math:`k = \min(m, n)`,

    .. math::
        A = H_0 H_1 \cdots H_{k-1} R, \qquad
        H_j = I - \tau_j v_j v_j^T, \qquad
        Q = H_0 \cdots H_{k-1} I_{m\times k}

    where :math:`v_j` has zeros above position ``j`` and a one at ``j``, and ``R`` is upper
    triangular. Blocks of ``b`` reflectors are applied as :math:`I - Y T Y^T` (``T``
    upper-triangular ``b x b``), so all but :math:`O(m n b)` flops are matrix products.

    Parameters
    ----------
    a : array_like, shape (M, N)
        Matrix to factor. float32 and float64 keep their dtype; integer and bool input is
        converted to float64, like NumPy. Not modified.
    mode : {"reduced", "complete", "r", "raw"}
        ``"reduced"``: ``Q`` is ``(M, K)`` and ``R`` is ``(K, N)``, ``K = min(M, N)``.
        ``"complete"``: ``Q`` is ``(M, M)`` and ``R`` is ``(M, N)``. ``"r"``: only ``R``,
        ``(K, N)``. ``"raw"``: ``(h, tau)`` as in NumPy: ``h`` is ``(N, M)`` (the transposed
        LAPACK ``?geqrf`` output: ``R`` in its lower triangle ``h.T``'s upper triangle,
        Householder vectors below the diagonal of ``h.T``) and ``tau`` is ``(K,)``.

    Returns
    -------
    Q : numpy.ndarray
        Orthonormal columns, same dtype as the (converted) input.
    R : numpy.ndarray
        Upper triangular (trapezoidal).

    Raises
    ------
    ValueError
        If ``a`` is not 2-D or ``mode`` is unknown.
    TypeError
        If the dtype is not real floating, integer or bool (e.g. complex or float16).

    Notes
    -----
    Flops (multiply-add = 2): the factorisation costs :math:`2 m n^2 - \tfrac23 n^3` for
    ``m >= n`` (:math:`\tfrac43 n^3` square); forming the reduced ``Q`` by backward
    accumulation costs as much again, so ``mode="reduced"`` on a square matrix is about
    :math:`\tfrac83 n^3`. Memory: one ``M x N`` working copy of ``a``, the outputs, and
    :math:`O((m + n) b)` workspace with ``b = 64`` (``128`` once ``K >= 1024``); panels are
    factorised in sub-blocks of 16 columns.

    The backward error is :math:`\lVert A - QR\rVert \lesssim c\, n\, \varepsilon\,
    \lVert A\rVert` and :math:`\lVert Q^TQ - I\rVert \lesssim c\, n\, \varepsilon`
    whatever the condition number of ``A`` (Householder QR is backward stable).

    Results are bit-identical for any number of Numba or BLAS threads: BLAS runs
    single-threaded on fixed column chunks that Numba processes in parallel.

    References
    ----------
    .. [1] R. Schreiber and C. Van Loan, "A storage-efficient WY representation for products
       of Householder transformations", SIAM J. Sci. Stat. Comput. 10(1), 1989.
    .. [2] G. H. Golub and C. F. Van Loan, "Matrix Computations", 4th ed., sec. 5.2.

    Examples
    --------
    >>> import numpy as np
    >>> from fastinit.linalg import qr
    >>> a = np.arange(12.0).reshape(4, 3) + np.eye(4, 3)
    >>> q, r = qr(a)
    >>> q.shape, r.shape
    ((4, 3), (3, 3))
    >>> bool(np.allclose(q @ r, a)), bool(np.allclose(q.T @ q, np.eye(3)))
    (True, True)
    >>> q_np, r_np = np.linalg.qr(a)
    >>> bool(np.allclose(r, r_np))                   # same (LAPACK) sign convention
    True
    >>> qr(np.ones((2, 5), np.float32), mode="complete")[0].dtype
    dtype('float32')
    """
    if mode not in _MODES:
        raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"qr: expected a 2-D array, got {a.ndim}-D")
    if a.dtype in (np.float32, np.float64):
        dt = a.dtype
    elif a.dtype.kind in "iub":
        dt = np.dtype(np.float64)
    else:
        raise TypeError(f"qr: array type {a.dtype} is unsupported (float32/float64)")
    m, n = a.shape
    k = min(m, n)
    at = np.array(a.T, dtype=dt, order="C")  # (n, m): column j of A is the row at[j]
    tau = np.zeros(k, dt)
    if k > 0:
        with _hh.single_threaded_blas():  # parallel over fixed chunks instead: see _householder
            _hh.geqrf(at, tau, _hh.block_size(k), _hh.IB)
    if mode == "raw":
        return at, tau
    rrows = m if mode == "complete" else k
    r = np.triu(at.T[:rrows])  # copies; at.T[i, c] = R[i, c] for i <= c
    if mode == "r":
        return r
    nq = m if mode == "complete" else k
    q = np.empty((m, nq), dt)
    if k > 0:
        with _hh.single_threaded_blas():
            _hh.orgqr(at, tau, k, q, _hh.block_size(k))
    else:
        q[...] = np.eye(m, nq, dtype=dt)
    return q, r
