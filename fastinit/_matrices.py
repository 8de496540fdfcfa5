r"""Random matrices: ``orthogonal_`` (Haar) and ``sparse_``, re-exported by :mod:`fastinit.init`."""

from __future__ import annotations

import math

import numpy as np

from . import _checks, _sparse
from ._block import Block, Placement, check_block
from ._checks import InitArgumentError
from ._docs import fill_doc
from ._draw import check_normal, check_offset, check_value, draw
from ._fill import fill_normal
from ._generator import GeneratorLike
from ._tensors import TensorT, done, target

__all__ = ["orthogonal_", "sparse_"]

# sparse_: the zero pattern uses raw words of the call's own stream starting at word 2**65
# (Philox block 2**63), the upper half of the counter space, far from the normal values, which
# use blocks from 0 upward. Two 32-bit words per (row, column) form a 64-bit sort key.
SPARSE_WORD0 = 1 << 65


def _orthogonal(arr: np.ndarray, gain: float, seed: int, stream: int, offset: int | Placement = 0) -> None:
    """Fill ``arr`` (checked, non-empty) with ``gain`` times a Haar matrix of stream (seed, stream),
    or with its block when ``offset`` is a block's placement."""
    # imported on first use: the Householder kernels' module adds ~0.3 s to `import fastinit`
    # (python -X importtime -c "import fastinit": fastinit._householder, cumulative)
    from ._orthogonal import orthogonal_tensor_

    if isinstance(offset, Placement):
        return _orthogonal_of_block(arr, gain, seed, stream, offset.block)
    orthogonal_tensor_(arr, gain, seed, stream)


def _orthogonal_of_block(arr: np.ndarray, gain: float, seed: int, stream: int, block: Block) -> None:
    """``arr`` = the block of the ``(shape[0], numel / shape[0])`` matrix that :func:`_orthogonal`
    forms for ``block.global_shape``, through :func:`fastinit._orthogonal_block.orthogonal_block`."""
    from ._orthogonal_block import orthogonal_block  # lazy, as above

    shape = block.global_shape
    rows, cols = shape[0], math.prod(shape[1:])
    r = np.arange(block.index[0].start, block.index[0].stop)
    c = np.arange(cols).reshape(shape[1:])[block.index[1:]].ravel()  # flat columns of the block, C order
    work = np.float64 if arr.dtype == np.float64 else np.float32
    if rows >= cols:
        part = orthogonal_block(rows, cols, r, c, gain, seed, stream, work)
    else:  # a wide matrix is the transpose of the tall one
        part = orthogonal_block(cols, rows, c, r, gain, seed, stream, work).T
    arr[...] = part.reshape(arr.shape)


def _sparse_fill(arr: np.ndarray, std: float, num_zeros: int, seed: int, stream: int,
                 offset: int | Placement = 0) -> None:
    """Normals from the start of the stream, then ``num_zeros`` distinct zero rows in each column:
    the rows of the smallest Philox keys of that column, from the raw words at ``SPARSE_WORD0`` on
    (see ``fastinit._sparse``). For a block (``offset`` a placement), the normals of the block and
    the zeros of its columns that fall in its rows."""
    fill_normal(arr, 0.0, std, seed, stream, offset if isinstance(offset, Placement) else 0)
    if num_zeros:
        if isinstance(offset, Placement):
            rows = offset.block.global_shape[0]
            (r0, r1), (c0, c1) = ((s.start, s.stop) for s in offset.block.index)
        else:
            rows, r0, r1, c0, c1 = arr.shape[0], 0, arr.shape[0], 0, arr.shape[1]
        idx = _sparse.zero_rows(rows, c1 - c0, num_zeros, seed, stream, SPARSE_WORD0, c0)
        col = np.broadcast_to(np.arange(c1 - c0)[:, None], idx.shape)
        inside = (idx >= r0) & (idx < r1)
        arr[idx[inside] - r0, col[inside]] = 0


@fill_doc
def orthogonal_(tensor: TensorT, gain: float = 1, generator: GeneratorLike = None, *,
                block: Block | None = None) -> TensorT:
    r"""Fill ``tensor`` in place with a Haar-random (semi-)orthogonal matrix times ``gain``.

    ``tensor`` is seen as the matrix :math:`W` of shape :math:`(\text{rows}, \text{cols}) =
    (\text{shape}[0], \text{numel} / \text{shape}[0])` (trailing dimensions flattened in C order),
    and

    .. math::
        W^\top W = \text{gain}^2 I_{\text{cols}} \ (\text{rows} \ge \text{cols}), \qquad
        W W^\top = \text{gain}^2 I_{\text{rows}} \ (\text{rows} < \text{cols}).

    Parameters
    ----------
    tensor : numpy.ndarray or torch.Tensor
        At least 2-D, any writable layout (torch rejects non-contiguous N-D views; fastinit fills
        them). float16 and bfloat16 are computed in float32 and rounded.
    gain : float
        Finite scale factor, with :math:`|\text{gain}|` within the finite range of the dtype (the
        entries are at most :math:`|\text{gain}|` in magnitude).
    %(generator)s
    block : fastinit.Block, keyword-only
        Fill ``tensor`` as the block ``full[block.index]`` of the matrix of shape
        ``block.global_shape``, without forming the full matrix: the Householder reflectors are
        applied to the block's rows (or columns) of the identity, :math:`O(n^2 k)` flops and
        :math:`O(n k)` memory for ``k`` rows of an ``n x n`` matrix. Equal to the full matrix's
        block up to rounding, not bit for bit: within :math:`4 \sqrt{n}\,\varepsilon\,|\text{gain}|`
        per entry (:math:`n` the long side, :math:`\varepsilon` of float32, or float64 for float64
        tensors; float16/bfloat16 add one unit in the last place at :math:`|\text{gain}|`).

    %(returns)s

    Raises
    ------
    ValueError
        Fewer than 2 dimensions. A zero-size tensor is a silent no-op.
    InitArgumentError
        Non-finite gain.
    %(range)s

    Notes
    -----
    Computed by :func:`fastinit._orthogonal.orthogonal_matrix_`: Householder reflectors drawn
    directly from the stream (Stewart 1980) with Mezzadri's sign correction, exactly Haar
    distributed like torch's ``QR(G) diag(sign R)``. Reproducible up to floating-point rounding
    of the QR (test properties, not bits).

    References
    ----------
    .. [1] A. M. Saxe et al., "Exact solutions to the nonlinear dynamics of learning in deep
       linear neural networks", ICLR 2014.

    Examples
    --------
    >>> import numpy as np, fastinit
    >>> w = fastinit.orthogonal_(np.empty((64, 32)), gain=2.0, generator=0)
    >>> bool(np.allclose(w.T @ w, 4 * np.eye(32)))
    True
    """
    arr = target(tensor)
    block = check_block(block, arr.shape)
    if (arr.ndim if block is None else len(block.global_shape)) < 2:
        raise ValueError("Only tensors with 2 or more dimensions are supported")
    gain = _checks.real(gain, "gain")
    check_value(arr.dtype, gain, f"orthogonal_ with gain={gain}")
    draw(arr, generator, _orthogonal, gain, offset=check_offset(0, arr, block))
    return done(tensor)


@fill_doc
def sparse_(tensor: TensorT, sparsity: float, std: float = 0.01, generator: GeneratorLike = None, *,
            block: Block | None = None) -> TensorT:
    r"""Fill the 2-D ``tensor`` in place as a sparse matrix: :math:`\mathcal{N}(0, \text{std}^2)` with zeros.

    In every column, exactly :math:`\lceil \text{sparsity} \cdot \text{rows} \rceil` distinct
    rows, chosen uniformly at random, are zero; the other entries are i.i.d.
    :math:`\mathcal{N}(0, \text{std}^2)`.

    Parameters
    ----------
    tensor : numpy.ndarray or torch.Tensor
        2-D.
    sparsity : float
        Fraction of each column set to zero, in :math:`[0, 1]`.
    std : float
        Standard deviation of the non-zero values, ``>= 0``; the values must be finite in the
        dtype, as in :func:`normal_` (:math:`6.34\,\text{std}`, :math:`8.65\,\text{std}` for float64).
    %(generator)s
    %(block)s
        The zeros of each of the block's columns come from that whole column's keys
        (:math:`O(\text{rows})` per column, for the block's columns only).

    %(returns)s

    Raises
    ------
    ValueError
        Not 2-D.
    InitArgumentError
        ``sparsity`` outside :math:`[0, 1]` (torch does not check: above 1 it zeros everything,
        a negative value zeros most rows through Python's negative slicing), ``std < 0``.
    %(range)s

    Notes
    -----
    Unlike torch, whose zero pattern comes from the global RNG whatever ``generator`` says,
    everything here comes from the one stream the call takes from ``generator``: the normal
    values from its start, the zero pattern from a Philox-keyed sort on raw words of the upper
    half of the same stream (see ``_sparse_fill``). Same generator, same matrix.

    References
    ----------
    .. [1] J. Martens, "Deep learning via Hessian-free optimization", ICML 2010.

    Examples
    --------
    >>> import numpy as np, fastinit
    >>> w = fastinit.sparse_(np.empty((10, 1000), np.float32), sparsity=0.3, generator=0)
    >>> sorted(set((w == 0).sum(axis=0).tolist()))    # ceil(0.3 * 10) zeros in every column
    [3]
    """
    arr = target(tensor)
    block = check_block(block, arr.shape)
    shape = arr.shape if block is None else block.global_shape
    if len(shape) != 2:
        raise ValueError("Only tensors with 2 dimensions are supported")
    sparsity = _checks.real(sparsity, "sparsity")
    if not 0.0 <= sparsity <= 1.0:
        raise InitArgumentError(f"sparsity must lie in [0, 1], got {sparsity}")
    std = _checks.real(std, "std")
    if std < 0:
        raise InitArgumentError(f"std must be >= 0, got std={std}")
    offset = check_offset(0, arr, block)
    check_normal(arr.dtype, 0.0, std, f"sparse_ with std={std}")
    draw(arr, generator, _sparse_fill, std, math.ceil(sparsity * shape[0]), offset=offset)
    return done(tensor)
