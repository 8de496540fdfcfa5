r"""Engine behind ``orthogonal_``: Haar-random (semi-)orthogonal matrices, in place.

Private module; the public torch-style wrapper lives in :mod:`fastinit.init`.
See ``docs/orthogonal.md`` for the derivations summarised in the docstrings.
"""

from __future__ import annotations

import operator

import numpy as np

from . import _householder as _hh
from ._fill import fill_normal

METHODS = ("householder", "qr")


# ---------------------------------------------------------------------------------------
# The two methods, on a tall view q (m x n, m >= n) of the output
# ---------------------------------------------------------------------------------------


def _stewart(q, seed, stream, nb):
    """Stewart (1980): reflector ``k`` from a fresh N(0, I_{m-k}) vector; returns signs."""
    m, n = q.shape
    dsign = np.empty(n, np.float64)
    ws = _hh.workspace(q.dtype, nb, m, n)
    z = np.empty(nb * m, q.dtype)
    _hh.set_identity(q)
    nblk = (n + nb - 1) // nb
    for b in range(nblk - 1, -1, -1):  # backward accumulation: last block first
        j = b * nb
        jb = min(nb, n - j)
        # vector k has m - k entries and starts at logical index sum_{i<k} (m - i)
        offset = j * m - j * (j - 1) // 2
        count = jb * (m - j) - jb * (jb - 1) // 2
        fill_normal(z[:count], 0.0, 1.0, seed, stream, offset)
        _hh.stewart_block(z, j, jb, q, dsign, ws)
    return dsign


def _qr(q, seed, stream, nb):
    """Householder QR of a Gaussian ``m x n`` matrix, Q into ``q``; returns sign(diag R)."""
    m, n = q.shape
    at = np.empty((n, m), q.dtype)  # A^T: G[i, k] is logical index k*m + i
    tau = np.empty(n, q.dtype)
    fill_normal(at, 0.0, 1.0, seed, stream, 0)
    _hh.geqrf(at, tau, nb, _hh.IB)
    _hh.orgqr(at, tau, n, q, nb)
    return np.where(np.diagonal(at) >= 0, 1.0, -1.0)


def orthogonal_matrix_(out2d, gain=1.0, seed=0, stream=0, method="householder", block=None):
    r"""Fill ``out2d`` in place with ``gain`` times a Haar-random (semi-)orthogonal matrix.

    For ``out2d`` of shape ``(rows, cols)`` the result satisfies
    :math:`W^T W = g^2 I_{cols}` if ``rows >= cols`` and :math:`W W^T = g^2 I_{rows}`
    otherwise (the smaller side is orthonormal, as in ``torch.nn.init.orthogonal_``).
    A wide output is computed as the transpose of a tall one.

    Parameters
    ----------
    out2d : numpy.ndarray
        C-contiguous 2-D float32 or float64 array. Overwritten.
    gain : float
        Scale factor :math:`g`.
    seed, stream : int
        Key of the Philox stream the Gaussians are drawn from.
    method : {"householder", "qr"}
        ``"householder"`` (default): Stewart's construction, which draws the Householder
        vectors directly, about :math:`\tfrac43 n^3` flops for a square matrix.
        ``"qr"``: Householder QR of an ``m x n`` Gaussian matrix, then Q with the sign
        correction :math:`Q\,\mathrm{diag}(\mathrm{sign}\,R_{kk})`; about
        :math:`\tfrac83 n^3` flops. Both give exactly Haar-distributed matrices, but not the
        same matrix for the same seed.
    block : int, optional
        Reflectors per compact-WY block; default :func:`fastinit._householder.block_size`.

    Returns
    -------
    numpy.ndarray
        ``out2d`` itself.

    Notes
    -----
    Let ``m >= n`` be the long and short side. Householder QR of a Gaussian
    :math:`G \in \mathbb R^{m\times n}` builds reflector ``k`` from the entries ``k..m-1`` of
    column ``k`` after ``k`` reflections. Reflections are orthogonal and depend only on the
    earlier columns, so by rotational invariance of :math:`\mathcal N(0, I)` that vector is
    again i.i.d. :math:`\mathcal N(0, I_{m-k})` and independent of the earlier reflectors.
    Drawing the ``n`` vectors directly (Stewart 1980) therefore gives reflectors with
    exactly the joint law of those of ``qr(G)``, with no factorisation. With
    :math:`R_{kk} = \beta_k = -\mathrm{sign}(x_{k,0})\lVert x_k\rVert`,
    :math:`Q = H_0 \cdots H_{n-1} I_{m\times n}\,\mathrm{diag}(\mathrm{sign}\,\beta_k)` is
    Haar on the Stiefel manifold (Mezzadri 2007: the sign makes the QR factor unique, so
    the law of Q inherits the invariance of G). Q is formed by backward accumulation in
    compact-WY blocks (:func:`fastinit._householder.orgqr`), ``2 m n^2 - 2 n^3 / 3`` flops,
    almost all in GEMM; ``"qr"`` adds the factorisation, the same count again.

    Gaussians: Stewart uses ``m n - n (n - 1) / 2`` values, vector ``k`` at logical offset
    ``sum_{i<k} (m - i)`` of ``(seed, stream)``, generated one block at a time; ``"qr"`` uses
    ``m n`` values, ``G[i, k]`` at offset ``k m + i``. Extra memory: ``O((m + n) block)`` for
    the default, plus one ``m x n`` work matrix for ``"qr"``. Nothing depends on the thread
    count: BLAS runs single-threaded on column chunks fixed by the shape, which Numba
    threads process in parallel (see :mod:`fastinit._householder`).

    References
    ----------
    .. [1] G. W. Stewart, "The efficient generation of random orthogonal matrices with an
       application to condition estimators", SIAM J. Numer. Anal. 17(3), 1980.
    .. [2] F. Mezzadri, "How to generate random matrices from the classical compact groups",
       Notices of the AMS 54(5), 2007.

    Examples
    --------
    >>> import numpy as np
    >>> from fastinit._orthogonal import orthogonal_matrix_
    >>> w = orthogonal_matrix_(np.empty((256, 64)), gain=2.0, seed=7)
    >>> bool(np.allclose(w.T @ w, 4.0 * np.eye(64), atol=1e-12))
    True
    >>> w = orthogonal_matrix_(np.empty((64, 256), np.float32), seed=7, method="qr")
    >>> bool(np.allclose(w @ w.T, np.eye(64), atol=1e-5))
    True
    """
    if not isinstance(out2d, np.ndarray) or out2d.ndim != 2:
        raise ValueError("out2d must be a 2-D numpy.ndarray")
    if out2d.dtype not in (np.float32, np.float64):
        raise TypeError(f"out2d dtype {out2d.dtype} unsupported (float32 or float64)")
    if not out2d.flags.c_contiguous or not out2d.flags.writeable:
        raise ValueError("out2d must be C-contiguous and writeable")
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    seed = operator.index(seed)
    stream = operator.index(stream)
    gain = float(gain)
    if out2d.size == 0:
        return out2d
    rows, cols = out2d.shape
    q = out2d if rows >= cols else out2d.T  # tall view, m >= n
    n = q.shape[1]
    nb = _hh.block_size(n) if block is None else operator.index(block)
    if nb < 1:
        raise ValueError("block < 1")
    nb = min(nb, n)
    with _hh.single_threaded_blas():  # Numba threads over fixed chunks instead (bit-stable)
        if method == "qr":
            signs = _qr(q, seed, stream, nb)
        else:
            signs = _stewart(q, seed, stream, nb)
    _hh.scale_columns(q, gain * signs)
    return out2d


def orthogonal_tensor_(arr, gain=1.0, seed=0, stream=0, method="householder", block=None):
    """Fill ``arr`` (ndim >= 2, any writable layout) with :func:`orthogonal_matrix_`'s matrix.

    The matrix has torch's shape ``(arr.shape[0], arr.size // arr.shape[0])`` (trailing dimensions
    flattened in C order). A C-contiguous float32/float64 ``arr`` is filled in place; any other
    layout, and float16/bfloat16 (computed in float32), goes through one work matrix that is then
    copied (rounded) into ``arr``: the result is the float32/float64 matrix for the same
    ``(seed, stream, method)``, rounded to the output dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from fastinit._orthogonal import orthogonal_tensor_
    >>> w = orthogonal_tensor_(np.empty((64, 4, 8), np.float16), seed=1)
    >>> m = w.reshape(64, 32).astype(np.float32)
    >>> bool(np.allclose(m.T @ m, np.eye(32), atol=1e-2))
    True
    """
    if not isinstance(arr, np.ndarray) or arr.ndim < 2:
        raise ValueError("arr must be a numpy.ndarray with 2 or more dimensions")
    if arr.size == 0:
        return arr
    rows = arr.shape[0]
    cols = arr.size // rows
    if arr.flags.c_contiguous and arr.dtype in (np.float32, np.float64):
        orthogonal_matrix_(arr.reshape(rows, cols), gain, seed, stream, method, block)
    else:
        work_dtype = arr.dtype if arr.dtype in (np.float32, np.float64) else np.float32
        work = orthogonal_matrix_(np.empty((rows, cols), work_dtype), gain, seed, stream, method, block)
        arr[...] = work.reshape(arr.shape)
    return arr
