r"""Blocks of a logical tensor: :class:`Block` (public) and the fill of a block's runs of the stream.

A block is a rectangular part of a larger *logical* tensor: ``full[index]`` for a tuple of
contiguous slices. Element ``e`` of the logical tensor (C order) takes the stream position ``e``,
so a block's rows are runs of the flat stream: the trailing dimensions the block covers whole merge
with the last partial one into runs of ``L`` consecutive positions, and the leading dimensions
enumerate the runs. :class:`Placement` fills those runs in one compiled, parallel pass
(:func:`_drive_runs`; a single run goes through the flat fill of :mod:`fastinit._numba`), so a
column block of a tall matrix costs about what a row block of the same size does.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
from numba import njit, prange

from . import _numba as nb
from ._checks import InitArgumentError
from ._numba import CACHE

__all__ = ["Block", "Placement", "check_block"]


def _shape(global_shape) -> tuple[int, ...]:
    if isinstance(global_shape, numbers.Integral) and not isinstance(global_shape, (bool, np.bool_)):
        global_shape = (global_shape,)
    try:
        dims = tuple(global_shape)
    except TypeError:
        raise TypeError(f"global_shape must be a tuple of ints, got {type(global_shape).__name__}") from None
    for n in dims:
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Integral):
            raise TypeError(f"global_shape must be a tuple of ints, got {global_shape!r}")
        if n < 0:
            raise InitArgumentError(f"global_shape must have non-negative sizes, got {global_shape!r}")
    return tuple(int(n) for n in dims)


def _bound(x, k: int, what: str):
    if x is None or (isinstance(x, numbers.Integral) and not isinstance(x, (bool, np.bool_))):
        return None if x is None else int(x)
    raise TypeError(f"index[{k}] has a {what} of type {type(x).__name__}; slice bounds must be ints or None")


def _slices(index, shape: tuple[int, ...]) -> tuple[slice, ...]:
    """``index`` as one ``slice(start, stop)`` per dimension of ``shape``, checked."""
    if isinstance(index, slice):
        index = (index,)
    if not isinstance(index, tuple):
        raise TypeError(f"index must be a slice or a tuple of slices (e.g. np.s_[r0:r1, c0:c1]), "
                        f"got {type(index).__name__}")
    if len(index) > len(shape):
        raise InitArgumentError(f"index has {len(index)} slices for the {len(shape)}-D global_shape {shape}")
    out = []
    for k, n in enumerate(shape):
        s = index[k] if k < len(index) else slice(None)
        if not isinstance(s, slice):
            hint = " (an integer drops a dimension: use slice(i, i + 1))" if isinstance(s, numbers.Integral) else ""
            raise TypeError(f"index[{k}] must be a slice, got {type(s).__name__}{hint}")
        start, stop, step = _bound(s.start, k, "start"), _bound(s.stop, k, "stop"), _bound(s.step, k, "step")
        if step not in (None, 1):
            raise InitArgumentError(f"index[{k}] has step {step}; a block is contiguous (step 1)")
        start = 0 if start is None else start
        stop = n if stop is None else stop
        if not 0 <= start <= stop <= n:
            raise InitArgumentError(f"index[{k}] = {start}:{stop} lies outside dimension {k} of global_shape "
                                    f"{shape}: a block needs 0 <= start <= stop <= {n}")
        out.append(slice(start, stop))
    return tuple(out)


class Block:
    r"""A rectangular block ``full[index]`` of a logical tensor of shape ``global_shape``.

    Pass it as ``block=`` to any initializer: the local array (of shape :attr:`shape`) then gets
    exactly the values of ``full[index]``, where ``full`` is what the same call would write into an
    array of shape ``global_shape``. Fans, ``sparse_``'s zeros per column and ``orthogonal_``'s
    matrix come from the global shape, and the call takes its stream exactly when the full call
    would (so every holder of a block of one tensor stays in step with one generator).

    Parameters
    ----------
    global_shape : int or tuple of int
        Shape of the logical tensor.
    index : slice or tuple of slice
        One slice of step 1 (or ``None``) per leading dimension, ``0 <= start <= stop <= size``;
        missing trailing dimensions are taken whole. ``np.s_[r0:r1, c0:c1]`` writes one.

    Attributes
    ----------
    global_shape : tuple of int
    index : tuple of slice
        One ``slice(start, stop)`` per dimension.
    start : tuple of int
        The block's first index along each dimension.
    shape : tuple of int
        Shape of the block (of the local array).

    Raises
    ------
    TypeError
        ``global_shape`` not a shape, ``index`` not slices (an integer, a list, an array, an
        Ellipsis), or slice bounds that are not integers.
    InitArgumentError
        A negative size, a step other than 1, bounds outside ``global_shape`` or reversed, more
        slices than dimensions.

    Notes
    -----
    Element ``e`` of the logical tensor in C order uses stream position ``e`` (see the element
    to counter map in the README). A block is filled run by run: with ``t`` the last dimension the
    block does not cover whole, each run holds ``shape[t] * prod(global_shape[t+1:])`` consecutive
    positions, one per index of the dimensions before ``t``. All runs are filled in one parallel
    pass, so a column block costs about what a row block of the same size costs.

    Examples
    --------
    >>> import numpy as np, fastinit
    >>> full = fastinit.normal_(np.empty((6, 8), np.float32), std=0.02, generator=7)
    >>> b = fastinit.Block((6, 8), np.s_[2:5, 3:8])          # rows 2..4, columns 3..7
    >>> b.shape
    (3, 5)
    >>> part = fastinit.normal_(np.empty(b.shape, np.float32), std=0.02, generator=7, block=b)
    >>> bool((part == full[2:5, 3:8]).all())
    True
    >>> full = fastinit.kaiming_uniform_(np.empty((4, 6), np.float32), generator=3)
    >>> right = fastinit.Block((4, 6), np.s_[:, 3:6])           # fan_in 6 from the global shape
    >>> part = fastinit.kaiming_uniform_(np.empty((4, 3), np.float32), generator=3, block=right)
    >>> bool((part == full[:, 3:]).all())
    True
    """

    __slots__ = ("_global_shape", "_index")

    def __init__(self, global_shape, index=()):
        shape = _shape(global_shape)
        self._global_shape = shape
        self._index = _slices(index, shape)

    @property
    def global_shape(self) -> tuple[int, ...]:
        return self._global_shape

    @property
    def index(self) -> tuple[slice, ...]:
        return self._index

    @property
    def start(self) -> tuple[int, ...]:
        return tuple(s.start for s in self._index)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(s.stop - s.start for s in self._index)

    @property
    def size(self) -> int:
        """Number of elements of the block."""
        return math.prod(self.shape)

    @property
    def global_size(self) -> int:
        """Number of elements of the logical tensor."""
        return math.prod(self._global_shape)

    def __repr__(self) -> str:
        idx = ", ".join(f"{s.start}:{s.stop}" for s in self._index)
        return f"Block({self._global_shape}, np.s_[{idx}])"

    def __eq__(self, other) -> bool:
        return isinstance(other, Block) and (self._global_shape, self.start, self.shape) == (
            other._global_shape, other.start, other.shape)

    def __hash__(self) -> int:
        return hash((self._global_shape, self.start, self.shape))


def check_block(block, shape: tuple[int, ...], name: str = "tensor") -> Block | None:
    """``block`` (None or a :class:`Block`) checked against the local array's ``shape``."""
    if block is None:
        return None
    if not isinstance(block, Block):
        raise TypeError(f"block must be a fastinit.Block (fastinit.Block(global_shape, index)), "
                        f"got {type(block).__name__}")
    if tuple(shape) != block.shape:
        raise InitArgumentError(f"{name} has shape {tuple(shape)} but {block!r} selects a block of shape "
                                f"{block.shape} of global_shape {block.global_shape}")
    return block


# ---- filling the runs -------------------------------------------------------------------------

_PIECE_BYTES = 8 << 20  # bound of the temporaries (non-contiguous local arrays, widened runs)
# Short runs separated by short gaps are filled as one span, gaps included, and then picked out:
# one kernel call costs about 200-300 ns whatever its length (benchmarks/scripts/blocks.py --runs),
# which a span beats for runs of at most 32 positions with gaps of at most 64 (measured over runs of
# 1..1024 and gaps of 1..256 positions, float32 normals; longer runs go through _drive_runs).
_WIDEN_RUN, _WIDEN_GAP = 32, 64


class Placement:
    """Where the elements of a local array sit in the flat stream: element ``(i_0, ..., i_{d-1})``
    (local C order) takes position ``base + sum_k i_k * strides[k]``.

    Passed as the ``offset`` of the fills of :mod:`fastinit._fill`, which hand their kernel to
    :meth:`fill`; ``block`` is the :class:`Block` it came from (for ``sparse_`` and ``orthogonal_``).
    """

    __slots__ = ("block", "base", "shape", "strides")

    def __init__(self, block: Block, base: int | None = None, shape=None, strides=None):
        self.block = block
        if base is None:
            g = block.global_shape
            strides = tuple(math.prod(g[k + 1:]) for k in range(len(g)))
            base = sum(s * t for s, t in zip(block.start, strides, strict=True))
            shape = block.shape
        self.base, self.shape, self.strides = base, tuple(shape), tuple(strides)

    @property
    def global_size(self) -> int:
        return self.block.global_size

    def _sub(self, base, shape, strides) -> Placement:
        return Placement(self.block, base, shape, strides)

    def runs(self) -> tuple[int, tuple[int, ...], tuple[int, ...]]:
        """``(L, counts, strides)``: runs of ``L`` consecutive positions, enumerated (C order) by
        the dimensions ``counts`` with position strides ``strides``."""
        shape, strides = self.shape, self.strides
        k = len(shape)
        run = 1
        # merge trailing dimensions while the next one continues the run (or has size 1)
        while k > 0 and (shape[k - 1] == 1 or strides[k - 1] == run):
            run *= shape[k - 1]
            k -= 1
        outer = [(n, s) for n, s in zip(shape[:k], strides[:k], strict=True) if n != 1]
        return run, tuple(n for n, _ in outer), tuple(s for _, s in outer)

    def fill(self, out: np.ndarray, kind: int, otype: int, params) -> np.ndarray:
        """Fill ``out`` (of this placement's shape) with kernel ``kind``; ``params`` are those of
        :func:`fastinit._fill._run`: ``(seed, stream, *kernel_parameters)``."""
        if out.size == 0:
            return out
        if out.flags.c_contiguous or out.ndim == 0:
            self._fill_contiguous(out, kind, otype, params)
            return out
        row = out[0].size
        if row * out.itemsize > _PIECE_BYTES and out.ndim > 1:
            for i in range(out.shape[0]):
                self._sub(self.base + i * self.strides[0], self.shape[1:], self.strides[1:]).fill(
                    out[i], kind, otype, params)
            return out
        step = max(1, _PIECE_BYTES // max(1, row * out.itemsize))
        for i in range(0, out.shape[0], step):
            view = out[i:i + step]
            tmp = np.empty(view.shape, view.dtype)
            self._sub(self.base + i * self.strides[0], view.shape, self.strides)._fill_contiguous(
                tmp, kind, otype, params)
            view[...] = tmp
        return out

    def _fill_contiguous(self, out: np.ndarray, kind: int, otype: int, params) -> None:
        seed, stream = params[0], params[1]
        epb = nb.ELEMENTS_PER_BLOCK[kind]
        run, counts, strides = self.runs()
        nruns = math.prod(counts)
        if nruns == 1:  # one run: the flat fill (streaming stores, fresh-page mapping, Ctrl-C checks)
            nb.fill_kernel(kind, seed, stream, self.base // epb, self.base % epb, out.size, out.ctypes.data,
                           out.itemsize, otype, params[2:])
            return
        if len(counts) == 1 and run <= _WIDEN_RUN and strides[0] - run <= _WIDEN_GAP:
            self._fill_widened(out, kind, otype, params, run, counts[0], strides[0])
            return
        p = np.zeros(8, np.float64)
        p[: len(params) - 2] = params[2:]
        c = np.array(counts, np.int64)
        s = np.array(strides, np.uint64)
        per_call = max(1, nb._SUPER // run)  # bounded compiled calls: Ctrl-C is seen between them
        with nb._guard():
            for r0 in range(0, nruns, per_call):
                nr = min(per_call, nruns - r0)
                _drive_runs(kind, np.uint64(seed), np.uint64(stream), np.uint64(self.base), c, s, r0, nr, run,
                            np.uint64(out.ctypes.data + out.itemsize * run * r0), out.itemsize, otype, p)


    def _fill_widened(self, out, kind, otype, params, run, count, stride) -> None:
        """Runs ``base + i * stride`` (``i < count``) of ``run`` positions with small gaps between
        them: fill the positions from the first run to the end of the last one, gaps included, as
        one flat run into a bounded temporary, and keep the runs (values do not depend on how)."""
        seed, stream = params[0], params[1]
        epb = nb.ELEMENTS_PER_BLOCK[kind]
        rows = out.reshape(count, run)
        step = max(1, _PIECE_BYTES // (out.itemsize * stride))
        tmp = np.empty(min(step, count) * stride, out.dtype)
        for i in range(0, count, step):
            k = min(step, count - i)
            n = (k - 1) * stride + run  # to the end of the piece's last run: nothing past the block
            e = self.base + i * stride
            nb.fill_kernel(kind, seed, stream, e // epb, e % epb, n, tmp.ctypes.data, tmp.itemsize, otype, params[2:])
            rows[i:i + k] = np.lib.stride_tricks.as_strided(tmp, (k, run), (stride * tmp.itemsize, tmp.itemsize))


@njit(cache=CACHE, nogil=True)
def _call(kind, seed, stream, e, m, out, otype, p):
    """Kernel ``kind`` on ``m`` elements at address ``out`` from stream position ``e``."""
    epb = np.uint64(2) if kind == nb.UNI64 or kind == nb.NRM64 or kind == nb.TRN64 else np.uint64(4)
    blk = e // epb
    sub = np.uint32(e % epb)
    if kind == nb.RAW:
        nb._raw(seed, stream, blk, sub, m, out)
    elif kind == nb.UNI32:
        nb._uni32(seed, stream, blk, sub, m, out, otype, np.float32(p[0]), np.float32(p[1]),
                  np.float32(p[2]), np.float32(p[3]))
    elif kind == nb.UNI64:
        nb._uni64(seed, stream, blk, sub, m, out, p[0], p[1], p[2], p[3])
    elif kind == nb.NRM32:
        nb._nrm32(seed, stream, blk, sub, m, out, otype, np.float32(p[0]), np.float32(p[1]))
    elif kind == nb.NRM64:
        nb._nrm64(seed, stream, blk, sub, m, out, p[0], p[1])
    elif kind == nb.TRT32:
        nb._trt32(seed, stream, blk, sub, m, out, otype, np.uint64(p[0]), np.float32(p[1]), np.float32(p[2]))
    elif kind == nb.TRN32:
        nb._trn32(seed, stream, blk, sub, m, out, otype, np.int32(p[0]), p[1], p[2], p[3], p[4], p[5],
                  np.float32(p[6]), np.float32(p[7]))
    else:
        nb._trn64(seed, stream, blk, sub, m, out, np.int32(p[0]), p[1], p[2], p[3], p[4], p[5], p[6], p[7])


@njit(parallel=True, cache=CACHE, nogil=True)
def _drive_runs(kind, seed, stream, base, counts, strides, r0, nr, run, addr, itemsize, otype, p):
    """Fill runs ``r0 .. r0+nr-1`` of ``run`` elements, stored back to back from ``addr``.

    Run ``r`` (C order over ``counts``) starts at stream position ``base + sum_k i_k strides[k]``.
    Tasks are fixed by the shape alone: a long run is cut into chunks of ``CHUNK`` elements, short
    runs are grouped up to ``CHUNK`` elements per task; every element's position comes from its
    index, so the bytes do not depend on the thread count.
    """
    chunk = nb.CHUNK
    nd = counts.size
    if run >= chunk:
        per_run = (run + chunk - 1) // chunk
        group = 1
        ntasks = nr * per_run
    else:
        per_run = 1
        group = chunk // run
        ntasks = (nr + group - 1) // group
    for t in prange(ntasks):
        if run >= chunk:
            first = t // per_run
            last = first + 1
            lo = (t % per_run) * chunk
            hi = min(run, lo + chunk)
        else:
            first = t * group
            last = min(nr, first + group)
            lo = 0
            hi = run
        for r in range(first, last):
            rem = r0 + r
            e = base
            for k in range(nd - 1, -1, -1):
                e += np.uint64(rem % counts[k]) * strides[k]
                rem //= counts[k]
            out = addr + np.uint64(itemsize) * np.uint64(r * run + lo)
            _call(kind, seed, stream, e + np.uint64(lo), hi - lo, out, otype, p)
    return 0
