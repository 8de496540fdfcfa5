"""Slow, obvious NumPy reference for ``orthogonal_``: sign-corrected QR of a Gaussian.

This is the textbook algorithm (and torch's): draw a tall Gaussian matrix, take
``numpy.linalg.qr``, multiply column ``k`` of ``Q`` by ``sign(R[k, k])`` (Mezzadri 2007),
transpose back if the target is wide, scale by ``gain``. Used by the tests and benchmarks
as the ground truth for the law of fastinit's matrices (not for their values: fastinit
draws its Gaussians from its own Philox stream).
"""

from __future__ import annotations

import numpy as np

__all__ = ["haar_orthogonal", "orthogonal_"]


def haar_orthogonal(rows, cols, gain=1.0, rng=None, dtype=np.float64, sign_fix=True):
    """Return ``gain`` times a Haar-random ``rows x cols`` (semi-)orthogonal matrix.

    ``rng`` is anything :func:`numpy.random.default_rng` accepts. ``sign_fix=False`` gives
    the *biased* plain-QR matrix (tests use it to show that their statistics can fail).

    Examples
    --------
    >>> w = haar_orthogonal(5, 3, rng=0)
    >>> bool(np.allclose(w.T @ w, np.eye(3)))
    True
    """
    rng = np.random.default_rng(rng)
    m, n = max(rows, cols), min(rows, cols)
    g = rng.standard_normal((m, n)).astype(dtype, copy=False)
    q, r = np.linalg.qr(g)
    if sign_fix:
        q = q * np.where(np.diagonal(r) >= 0, 1, -1).astype(dtype)
    if rows < cols:
        q = q.T
    return (q * dtype(gain)).astype(dtype, copy=False)


def orthogonal_(tensor, gain=1.0, generator=None):
    """In-place reference with torch's shape rule: rows = ``shape[0]``, the rest flattened.

    Examples
    --------
    >>> w = orthogonal_(np.empty((8, 2, 2)), generator=1)
    >>> flat = w.reshape(8, 4)
    >>> bool(np.allclose(flat.T @ flat, np.eye(4)))
    True
    """
    if tensor.ndim < 2:
        raise ValueError("Only tensors with 2 or more dimensions are supported")
    if tensor.size == 0:
        return tensor
    rows = tensor.shape[0]
    cols = tensor.size // rows
    tensor[...] = haar_orthogonal(rows, cols, gain, generator, tensor.dtype.type).reshape(
        tensor.shape
    )
    return tensor
