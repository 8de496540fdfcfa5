r"""Lazy, chunk-invariant random arrays on Dask: every out-of-place constructor as a ``dask.array``.

``fastinit.dask.normal(shape, mean, std, *, chunks="auto", dtype=np.float32, generator=None)``
returns a lazy array whose values equal ``fastinit.normal(shape, mean, std, dtype=dtype,
generator=generator)`` for every chunking. Element :math:`e` of the logical tensor (C order) takes
Philox position :math:`e` of the call's one stream, so a chunk is the block ``full[index]`` of
:class:`fastinit.Block` and is made alone: no task depends on another, the graph has one task per
chunk, and no chunk needs more memory than itself (``orthogonal``: plus its reflectors, see below).

The stream is taken once, when the array is created, exactly when the in-memory call would take it
(so a sequence of calls on one :class:`fastinit.Generator` gives the same values in memory and on
Dask), and every argument is checked then: a lazy array that exists can be computed.

Bit for bit equal to the in-memory constructor for every function and dtype (float16,
``ml_dtypes.bfloat16``, float32, float64), except ``orthogonal``, whose chunks equal the full
matrix's blocks to rounding (:math:`|\text{chunk} - \text{full}[\text{index}]| \le 4\sqrt{n}\,
\varepsilon\,|\text{gain}|`, the block tolerance of ``docs/api.md``); each of its chunks recomputes
the Householder reflectors of the whole matrix (:math:`O(mn)` memory, :math:`O(mn^2)` flops per
chunk), so use few, large chunks for it; a chunk of ``sparse`` finds the zeros of its columns from
all their rows, so chunks spanning all rows do the least work.

This module needs the ``dask`` extra (``dask[array]``); ``import fastinit`` does not import it.

Examples
--------
>>> import numpy as np, fastinit, fastinit.dask
>>> x = fastinit.dask.normal((6, 8), std=0.02, chunks=(4, 3), generator=7)
>>> x.numblocks, len(x.__dask_graph__())
((2, 3), 6)
>>> bool((x.compute() == fastinit.normal((6, 8), std=0.02, generator=7)).all())
True
"""

from __future__ import annotations

import functools
import itertools
import numbers

import dask.array as da
import numpy as np
from dask.array.core import normalize_chunks
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph

from . import _constructors
from ._block import Block
from ._checks import InitArgumentError
from ._fans import shape_of
from ._generator import Generator, check_generator, resolve_generator

__all__ = ["uniform", "normal", "trunc_normal", "constant", "ones", "zeros", "eye", "dirac",
           "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal", "orthogonal", "sparse",
           "lecun_uniform", "lecun_normal", "variance_scaling", "check_chunks"]

# the constructors that draw from a stream (the others take no generator)
_RANDOM = frozenset({"uniform", "normal", "trunc_normal", "xavier_uniform", "xavier_normal", "kaiming_uniform",
                     "kaiming_normal", "orthogonal", "sparse", "lecun_uniform", "lecun_normal", "variance_scaling"})


def _dtype(dtype) -> np.dtype:
    if _constructors.is_torch_dtype(dtype):
        raise TypeError(f"dtype {dtype} is a torch dtype; a dask array holds NumPy chunks: use a NumPy dtype")
    return _constructors.numpy_float_dtype(dtype)


def _shape(shape) -> tuple[int, ...]:
    if isinstance(shape, np.ndarray) or hasattr(shape, "dask"):
        raise TypeError("shape must be an int or a tuple of ints; the fastinit.dask constructors take a shape "
                        "and return a new lazy array")
    shape = shape_of(shape)
    if any(n < 0 for n in shape):
        raise InitArgumentError(f"shape must have non-negative sizes, got {shape}")
    return shape


def check_chunks(chunks, shape: tuple[int, ...], dtype) -> tuple[tuple[int, ...], ...]:
    """``chunks`` (anything :func:`dask.array.core.normalize_chunks` takes: ``"auto"``, an int, a
    tuple of ints or of tuples, a byte string like ``"64 MiB"``) as one tuple of chunk sizes per
    dimension that tiles ``shape``; :class:`InitArgumentError` naming ``chunks`` otherwise.

    Examples
    --------
    >>> import numpy as np
    >>> check_chunks((4, 3), (6, 8), np.float32)
    ((4, 2), (3, 3, 2))
    >>> check_chunks(((2, 2), (8,)), (5, 8), np.float32)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
        ...
    fastinit.InitArgumentError: chunks ((2, 2), (8,)) do not tile shape (5, 8): ...
    """
    try:
        norm = normalize_chunks(chunks, shape, dtype=np.dtype(dtype))
    except (ValueError, TypeError, NotImplementedError) as e:
        raise InitArgumentError(f"chunks {chunks!r} do not tile shape {shape}: {e}") from None
    if len(norm) != len(shape):
        raise InitArgumentError(f"chunks {chunks!r} do not tile shape {shape}: {len(norm)} dimensions of chunks "
                                f"for {len(shape)} of shape")
    for k, (c, n) in enumerate(zip(norm, shape, strict=True)):
        if any(not isinstance(s, numbers.Integral) or s < 0 for s in c) or sum(c) != n:
            raise InitArgumentError(f"chunks {chunks!r} do not tile shape {shape}: dimension {k} has chunks "
                                    f"{c} (sum {sum(c)}), not a split of {n}")
    return tuple(tuple(int(s) for s in c) for c in norm)


def _chunk(name: str, shape, args, kwargs, dtype, seed: int, stream: int, index) -> np.ndarray:
    """Chunk ``index`` of ``fastinit.<name>(shape, *args, **kwargs)`` on stream ``(seed, stream)``:
    the block API fills it alone."""
    block = Block(shape, index)
    kw = dict(kwargs)
    if name in _RANDOM:
        kw["generator"] = Generator(seed).set_state((seed, stream))
    return getattr(_constructors, name)(block.shape, *args, dtype=dtype, block=block, **kw)


def _lazy(name: str, shape, args: tuple, kwargs: dict, chunks, dtype, generator=None) -> da.Array:
    """The lazy ``fastinit.<name>``: check everything, take the stream as the in-memory call would,
    and build one independent task per chunk."""
    dt = _dtype(dtype)
    shape = _shape(shape)
    if name in _RANDOM:
        check_generator(generator)
    # The in-memory constructor on an empty block of the same logical tensor checks every argument
    # (fans, ranges, shape rules of the global shape) and takes a stream exactly when the full call
    # would; run it on a scratch generator to learn whether this call takes one.
    probe = Generator(0) if name in _RANDOM else None
    index = (slice(0, 0),) if shape else ()
    kw = dict(kwargs, generator=probe) if probe is not None else kwargs
    getattr(_constructors, name)(Block(shape, index).shape, *args, dtype=dt, block=Block(shape, index), **kw)
    norm = check_chunks(chunks, shape, dt)
    seed, stream = (0, 0)
    if probe is not None and probe.get_state()[1] != 0:
        seed, stream = resolve_generator(generator)
    key = f"fastinit-{name}-" + tokenize(name, shape, args, sorted(kwargs.items()), dt.str, dt.name, norm,
                                         seed, stream)
    make = functools.partial(_chunk, name, shape, args, tuple(sorted(kwargs.items())), dt, seed, stream)
    bounds = [list(itertools.accumulate(c, initial=0)) for c in norm]
    layer = {}
    for ij in itertools.product(*(range(len(c)) for c in norm)):
        idx = tuple(slice(b[i], b[i + 1]) for b, i in zip(bounds, ij, strict=True))
        layer[(key, *ij)] = (make, idx)
    graph = HighLevelGraph.from_collections(key, layer, dependencies=())
    return da.Array(graph, key, norm, dtype=dt, meta=np.empty((0,) * len(shape), dt))


_COMMON = """
    chunks : str, int, tuple, keyword-only
        Dask chunks (``"auto"``, an int, one size per dimension, or explicit tuples of sizes); they
        must tile ``shape``. The values do not depend on them.
    dtype : numpy dtype, keyword-only
        float16, ``ml_dtypes.bfloat16``, float32 or float64."""
_GEN = """
    generator : fastinit.Generator, int or None, keyword-only
        As in the in-memory constructor; the stream is taken when the array is created."""
_TAIL = """
    Returns
    -------
    dask.array.Array
        Lazy; ``.compute()`` equals ``fastinit.{name}(shape, ...)`` with the same arguments{tol}.

    Raises
    ------
    TypeError, InitArgumentError
        As the in-memory constructor, at creation; chunks that do not tile ``shape``.

    Examples
    --------
    >>> import numpy as np, fastinit, fastinit.dask
{example}
"""


def _doc(name: str, summary: str, params: str, example: str):
    tol = " (to rounding: the block tolerance of docs/api.md)" if name == "orthogonal" else ", bit for bit"
    gen = _GEN if name in _RANDOM else ""
    ex = "\n".join("    " + line for line in example.strip().splitlines())

    def deco(f):
        f.__doc__ = (f"Lazy :func:`fastinit.{name}`: {summary}\n\n    Parameters\n    ----------\n"
                     f"    shape : int or tuple of int\n        Shape of the result.{params}{_COMMON}{gen}\n"
                     + _TAIL.format(name=name, tol=tol, example=ex))
        return f
    return deco


@_doc("uniform", r":math:`U[a, b)`.", """
    a, b : float
        Bounds.""", """
>>> x = fastinit.dask.uniform((5, 7), -1.0, 1.0, chunks=(2, 3), generator=0)
>>> bool((x.compute() == fastinit.uniform((5, 7), -1.0, 1.0, generator=0)).all())
True""")
def uniform(shape, a=0.0, b=1.0, *, chunks="auto", dtype=np.float32, generator=None) -> da.Array:
    return _lazy("uniform", shape, (a, b), {}, chunks, dtype, generator)


@_doc("normal", r":math:`\mathcal{N}(\text{mean}, \text{std}^2)`.", """
    mean, std : float
        Mean and standard deviation.""", """
>>> x = fastinit.dask.normal(1000, std=2.0, chunks=300, dtype=np.float64, generator=1)
>>> bool((x.compute() == fastinit.normal(1000, std=2.0, dtype=np.float64, generator=1)).all())
True""")
def normal(shape, mean=0.0, std=1.0, *, chunks="auto", dtype=np.float32, generator=None) -> da.Array:
    return _lazy("normal", shape, (mean, std), {}, chunks, dtype, generator)


@_doc("trunc_normal", r"a normal truncated to the absolute interval :math:`[a, b]`.", """
    mean, std, a, b : float
        ``std`` before truncation, absolute bounds (torch meaning).""", """
>>> x = fastinit.dask.trunc_normal((64, 64), std=0.02, a=-0.04, b=0.04, chunks=16, generator=2)
>>> bool(abs(x).max().compute() <= 0.04)
True""")
def trunc_normal(shape, mean=0.0, std=1.0, a=-2.0, b=2.0, *, chunks="auto", dtype=np.float32,
                 generator=None) -> da.Array:
    return _lazy("trunc_normal", shape, (mean, std, a, b), {}, chunks, dtype, generator)


@_doc("constant", r"the value :math:`\text{val}`.", """
    val : float
        The value.""", """
>>> fastinit.dask.constant(3, 0.25, chunks=2).compute()
array([0.25, 0.25, 0.25], dtype=float32)""")
def constant(shape, val, *, chunks="auto", dtype=np.float32) -> da.Array:
    return _lazy("constant", shape, (val,), {}, chunks, dtype)


@_doc("ones", "ones.", "", """
>>> fastinit.dask.ones((1, 2), chunks=1, dtype=np.float64).compute()
array([[1., 1.]])""")
def ones(shape, *, chunks="auto", dtype=np.float32) -> da.Array:
    return _lazy("ones", shape, (), {}, chunks, dtype)


@_doc("zeros", "zeros.", "", """
>>> fastinit.dask.zeros(2, chunks=1).compute()
array([0., 0.], dtype=float32)""")
def zeros(shape, *, chunks="auto", dtype=np.float32) -> da.Array:
    return _lazy("zeros", shape, (), {}, chunks, dtype)


@_doc("eye", r"the identity :math:`\delta_{ij}` (2-D shape).", "", """
>>> fastinit.dask.eye((3, 2), chunks=(2, 1)).compute()
array([[1., 0.],
       [0., 1.],
       [0., 0.]], dtype=float32)""")
def eye(shape, *, chunks="auto", dtype=np.float32) -> da.Array:
    return _lazy("eye", shape, (), {}, chunks, dtype)


@_doc("dirac", "the Dirac (identity convolution) kernel.", """
    groups : int
        As in :func:`fastinit.dirac_`.""", """
>>> float(fastinit.dask.dirac((8, 8, 3, 3), chunks=(3, 5, 2, 2)).sum().compute())
8.0""")
def dirac(shape, groups=1, *, chunks="auto", dtype=np.float32) -> da.Array:
    return _lazy("dirac", shape, (groups,), {}, chunks, dtype)


@_doc("xavier_uniform", r":math:`U(-b, b)`, :math:`b = \text{gain}\sqrt{6/(\text{fan\_in} + \text{fan\_out})}`, "
      "fans of the full shape.", """
    gain : float
        Scale factor.""", """
>>> x = fastinit.dask.xavier_uniform((300, 600), chunks=(100, 250), generator=0)
>>> bool((x.compute() == fastinit.xavier_uniform((300, 600), generator=0)).all())
True""")
def xavier_uniform(shape, gain=1.0, *, chunks="auto", dtype=np.float32, generator=None) -> da.Array:
    return _lazy("xavier_uniform", shape, (gain,), {}, chunks, dtype, generator)


@_doc("xavier_normal", r":math:`\mathcal{N}(0, \text{gain}^2 \cdot 2/(\text{fan\_in} + \text{fan\_out}))`, "
      "fans of the full shape.", """
    gain : float
        Scale factor.""", """
>>> x = fastinit.dask.xavier_normal((300, 600), chunks=(128, 128), generator=0)
>>> round(float(x.var().compute() * 900 / 2), 2)
1.0""")
def xavier_normal(shape, gain=1.0, *, chunks="auto", dtype=np.float32, generator=None) -> da.Array:
    return _lazy("xavier_normal", shape, (gain,), {}, chunks, dtype, generator)


@_doc("kaiming_uniform", r":math:`U(-b, b)`, :math:`b = \text{gain}\sqrt{3/\text{fan\_mode}}`, fans of the full "
      "shape.", """
    a, mode, nonlinearity
        As in :func:`fastinit.kaiming_uniform_`.""", """
>>> x = fastinit.dask.kaiming_uniform((64, 3, 3, 3), a=5 ** 0.5, chunks=(16, 3, 1, 3), generator=0)
>>> bool(abs(x).max().compute() < 1 / np.sqrt(27))
True""")
def kaiming_uniform(shape, a=0, mode="fan_in", nonlinearity="leaky_relu", *, chunks="auto", dtype=np.float32,
                    generator=None) -> da.Array:
    return _lazy("kaiming_uniform", shape, (a, mode, nonlinearity), {}, chunks, dtype, generator)


@_doc("kaiming_normal", r":math:`\mathcal{N}(0, \text{gain}^2/\text{fan\_mode})`, fans of the full shape.", """
    a, mode, nonlinearity
        As in :func:`fastinit.kaiming_normal_`.""", """
>>> x = fastinit.dask.kaiming_normal((512, 2048), nonlinearity='relu', chunks=(512, 512), generator=0)
>>> round(float(x.var().compute() * 2048 / 2), 2)
1.0""")
def kaiming_normal(shape, a=0, mode="fan_in", nonlinearity="leaky_relu", *, chunks="auto", dtype=np.float32,
                   generator=None) -> da.Array:
    return _lazy("kaiming_normal", shape, (a, mode, nonlinearity), {}, chunks, dtype, generator)


@_doc("variance_scaling", "JAX's variance_scaling law, fans of the full shape.", """
    scale, mode, distribution
        As in :func:`fastinit.variance_scaling_`.
    in_axis, out_axis : int, keyword-only
        Axes of the input and output sizes (default ``1, 0``: torch OIHW).""", """
>>> x = fastinit.dask.variance_scaling((3, 3, 64, 128), 2.0, 'fan_in', 'normal', in_axis=-2, out_axis=-1,
...                                    chunks=(3, 3, 32, 64), generator=0)
>>> round(float(x.var().compute() * 9 * 64 / 2), 1)
1.0""")
def variance_scaling(shape, scale=1.0, mode="fan_in", distribution="truncated_normal", *, chunks="auto",
                     dtype=np.float32, generator=None, in_axis=1, out_axis=0) -> da.Array:
    return _lazy("variance_scaling", shape, (scale, mode, distribution), {"in_axis": in_axis, "out_axis": out_axis},
                 chunks, dtype, generator)


@_doc("lecun_uniform", r":math:`U(-\sqrt{3/\text{fan\_in}}, \sqrt{3/\text{fan\_in}})`, fans of the full shape.", """
    in_axis, out_axis : int, keyword-only
        Axes of the input and output sizes.""", """
>>> x = fastinit.dask.lecun_uniform((100, 300), chunks=(50, 100), generator=0)
>>> bool(abs(x).max().compute() < 0.1)
True""")
def lecun_uniform(shape, *, chunks="auto", dtype=np.float32, generator=None, in_axis=1, out_axis=0) -> da.Array:
    return _lazy("lecun_uniform", shape, (), {"in_axis": in_axis, "out_axis": out_axis}, chunks, dtype, generator)


@_doc("lecun_normal", r"truncated normal values of variance :math:`1/\text{fan\_in}`, fans of the full shape.", """
    in_axis, out_axis : int, keyword-only
        Axes of the input and output sizes.""", """
>>> x = fastinit.dask.lecun_normal((1000, 400), chunks=(250, 400), dtype=np.float64, generator=0)
>>> round(float(x.var().compute() * 400), 2)
1.0""")
def lecun_normal(shape, *, chunks="auto", dtype=np.float32, generator=None, in_axis=1, out_axis=0) -> da.Array:
    return _lazy("lecun_normal", shape, (), {"in_axis": in_axis, "out_axis": out_axis}, chunks, dtype, generator)


@_doc("orthogonal", "a Haar-random (semi-)orthogonal matrix times gain; each chunk recomputes the "
      "matrix's reflectors (few, large chunks).", """
    gain : float
        Scale factor.""", """
>>> x = fastinit.dask.orthogonal((32, 64), chunks=(16, 32), dtype=np.float64, generator=0).compute()
>>> bool(np.allclose(x @ x.T, np.eye(32)))
True""")
def orthogonal(shape, gain=1, *, chunks="auto", dtype=np.float32, generator=None) -> da.Array:
    return _lazy("orthogonal", shape, (gain,), {}, chunks, dtype, generator)


@_doc("sparse", r":math:`\mathcal{N}(0, \text{std}^2)` values with a fraction ``sparsity`` of each column zero.", """
    sparsity, std : float
        As in :func:`fastinit.sparse_`.""", """
>>> x = fastinit.dask.sparse((10, 4), 0.5, chunks=(3, 2), generator=0)
>>> (x == 0).sum(axis=0).compute().tolist()
[5, 5, 5, 5]""")
def sparse(shape, sparsity, std=0.01, *, chunks="auto", dtype=np.float32, generator=None) -> da.Array:
    return _lazy("sparse", shape, (sparsity, std), {}, chunks, dtype, generator)
