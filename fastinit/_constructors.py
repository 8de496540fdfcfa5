r"""The out-of-place constructors: ``name(shape, ..., *, dtype=np.float32, ...)`` returns a new array
(or, for a ``torch.dtype``, a CPU tensor) filled by the in-place ``name_``; re-exported by
:mod:`fastinit.init`."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TypeAlias

import numpy as np
from numpy.typing import DTypeLike

from ._block import Block
from ._docs import fill_doc
from ._fans import FanMode, Nonlinearity, TorchMode, shape_of
from ._fill import bfloat16_dtype, float_dtypes, is_float_dtype
from ._generator import GeneratorLike
from ._matrices import orthogonal_, sparse_
from ._plain import constant_, dirac_, eye_, normal_, ones_, trunc_normal_, uniform_, zeros_
from ._scaling import (
    Distribution,
    kaiming_normal_,
    kaiming_uniform_,
    lecun_normal_,
    lecun_uniform_,
    variance_scaling_,
    xavier_normal_,
    xavier_uniform_,
)
from ._tensors import empty_like_torch, is_torch_tensor

if TYPE_CHECKING:  # for the annotations only: torch is optional
    import torch

Shape: TypeAlias = int | tuple[int, ...]
NewArray: TypeAlias = "np.ndarray | torch.Tensor"  # a torch.dtype gives a CPU tensor

__all__ = ["uniform", "normal", "trunc_normal", "constant", "ones", "zeros", "eye", "dirac",
           "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal", "orthogonal", "sparse",
           "lecun_uniform", "lecun_normal", "variance_scaling"]


def is_torch_dtype(dtype) -> bool:
    torch = sys.modules.get("torch")  # a torch dtype cannot exist unless torch is loaded
    return torch is not None and isinstance(dtype, torch.dtype)


def _new(shape: Shape, dtype, fn: str):
    """Allocate the output of constructor ``fn``: a NumPy array, or a CPU tensor for a torch dtype."""
    if isinstance(shape, np.ndarray) or is_torch_tensor(shape):
        raise TypeError(f"fastinit.{fn} takes a shape and returns a new array; "
                        f"use fastinit.{fn}_ to fill an existing array or tensor in place")
    shape = shape_of(shape)
    if any(n < 0 for n in shape):
        raise ValueError(f"shape must have non-negative sizes, got {shape}")
    if is_torch_dtype(dtype):
        return empty_like_torch(shape, dtype)
    return np.empty(shape, numpy_float_dtype(dtype, "a NumPy or torch dtype"))


def numpy_float_dtype(dtype, kinds: str = "a NumPy dtype") -> np.dtype:
    """``dtype`` as one of the NumPy float dtypes fastinit fills; ``kinds`` names what was accepted."""
    if isinstance(dtype, str) and dtype == "bfloat16":
        dtype = bfloat16_dtype() or dtype  # the name exists once ml_dtypes is imported
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype {dtype!r} is not {kinds}") from None
    if not is_float_dtype(dt):
        raise TypeError(f"dtype {dt} unsupported; use one of {', '.join(str(d) for d in float_dtypes())}")
    return dt


@fill_doc
def uniform(shape: Shape, a: float = 0.0, b: float = 1.0, *, dtype: DTypeLike = np.float32,
            generator: GeneratorLike = None, offset: int = 0, block: Block | None = None) -> NewArray:
    r"""Return a new array of ``shape`` filled by :func:`uniform_`.

    Values: :math:`U[a, b)`.

    Parameters
    ----------
    %(shape)s
    a, b : float
        Bounds, as in :func:`uniform_`.
    %(dtype)s
    %(generator)s
    %(offset)s
    %(block)s

    %(new)s

    Examples
    --------
    >>> import numpy as np, fastinit
    >>> w = fastinit.uniform((2, 3), -1.0, 1.0, generator=0)
    >>> w.shape, w.dtype, bool((w >= -1).all() and (w < 1).all())
    ((2, 3), dtype('float32'), True)
    """
    return uniform_(_new(shape, dtype, "uniform"), a, b, generator, offset=offset, block=block)


@fill_doc
def normal(shape: Shape, mean: float = 0.0, std: float = 1.0, *, dtype: DTypeLike = np.float32,
           generator: GeneratorLike = None, offset: int = 0, block: Block | None = None) -> NewArray:
    r"""Return a new array of ``shape`` filled by :func:`normal_`.

    Values: :math:`\mathcal{N}(\text{mean}, \text{std}^2)`.

    Parameters
    ----------
    %(shape)s
    mean, std : float
        As in :func:`normal_`.
    %(dtype)s
    %(generator)s
    %(offset)s
    %(block)s

    %(new)s

    Examples
    --------
    >>> import numpy as np, fastinit
    >>> w = fastinit.normal((1000, 1000), std=0.02, dtype=np.float64, generator=0)
    >>> round(float(w.std()), 3)
    0.02
    """
    return normal_(_new(shape, dtype, "normal"), mean, std, generator, offset=offset, block=block)


@fill_doc
def trunc_normal(shape: Shape, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0, *,
                 dtype: DTypeLike = np.float32, generator: GeneratorLike = None, offset: int = 0,
                 block: Block | None = None) -> NewArray:
    r"""Return a new array of ``shape`` filled by :func:`trunc_normal_`.

    Values: a normal truncated to the absolute interval :math:`[a, b]` (torch meaning).

    Parameters
    ----------
    %(shape)s
    mean, std, a, b : float
        As in :func:`trunc_normal_`: ``std`` before truncation, absolute bounds.
    %(dtype)s
    %(generator)s
    %(offset)s
    %(block)s

    %(new)s

    Examples
    --------
    >>> import numpy as np, fastinit
    >>> w = fastinit.trunc_normal((100, 100), std=5.0, generator=0)
    >>> bool(np.abs(w).max() <= 2.0)
    True
    """
    return trunc_normal_(_new(shape, dtype, "trunc_normal"), mean, std, a, b, generator, offset=offset, block=block)


@fill_doc
def constant(shape: Shape, val: float, *, dtype: DTypeLike = np.float32, block: Block | None = None) -> NewArray:
    r"""Return a new array of ``shape`` filled by :func:`constant_`.

    Values: the value :math:`\text{val}`.

    Parameters
    ----------
    %(shape)s
    val : float
        As in :func:`constant_`.
    %(dtype)s
    %(block)s

    %(new)s

    Examples
    --------
    >>> import numpy as np, fastinit
    >>> fastinit.constant(3, 0.25)
    array([0.25, 0.25, 0.25], dtype=float32)
    """
    return constant_(_new(shape, dtype, "constant"), val, block=block)


@fill_doc
def ones(shape: Shape, *, dtype: DTypeLike = np.float32, block: Block | None = None) -> NewArray:
    r"""Return a new array of ``shape`` filled by :func:`ones_`.

    Values: ones.

    Parameters
    ----------
    %(shape)s
    %(dtype)s
    %(block)s

    %(new)s

    Examples
    --------
    >>> import numpy as np, fastinit
    >>> fastinit.ones((1, 2), dtype=np.float64)
    array([[1., 1.]])
    """
    return ones_(_new(shape, dtype, "ones"), block=block)


@fill_doc
def zeros(shape: Shape, *, dtype: DTypeLike = np.float32, block: Block | None = None) -> NewArray:
    r"""Return a new array of ``shape`` filled by :func:`zeros_`.

    Values: zeros.

    Parameters
    ----------
    %(shape)s
    %(dtype)s
    %(block)s

    %(new)s

    Examples
    --------
    >>> import numpy as np, fastinit
    >>> fastinit.zeros(2)
    array([0., 0.], dtype=float32)
    """
    return zeros_(_new(shape, dtype, "zeros"), block=block)


@fill_doc
def eye(shape: Shape, *, dtype: DTypeLike = np.float32, block: Block | None = None) -> NewArray:
    r"""Return a new array of ``shape`` filled by :func:`eye_`.

    Values: the identity :math:`\delta_{ij}` (2-D shape).

    Parameters
    ----------
    %(shape)s
    %(dtype)s
    %(block)s

    %(new)s

    Examples
    --------
    >>> import numpy as np, fastinit
    >>> fastinit.eye((2, 2))
    array([[1., 0.],
           [0., 1.]], dtype=float32)
    """
    return eye_(_new(shape, dtype, "eye"), block=block)


@fill_doc
def dirac(shape: Shape, groups: int = 1, *, dtype: DTypeLike = np.float32, block: Block | None = None) -> NewArray:
    r"""Return a new array of ``shape`` filled by :func:`dirac_`.

    Values: the Dirac (identity convolution) kernel.

    Parameters
    ----------
    %(shape)s
    groups : int
        As in :func:`dirac_`.
    %(dtype)s
    %(block)s

    %(new)s

    Examples
    --------
    >>> import numpy as np, fastinit
    >>> float(fastinit.dirac((8, 8, 3, 3)).sum())
    8.0
    """
    return dirac_(_new(shape, dtype, "dirac"), groups, block=block)


@fill_doc
def xavier_uniform(shape: Shape, gain: float = 1.0, *, dtype: DTypeLike = np.float32, generator: GeneratorLike = None,
                   offset: int = 0, block: Block | None = None) -> NewArray:
    r"""Return a new array of ``shape`` filled by :func:`xavier_uniform_`.

    Values: :math:`U(-b, b)`, :math:`b = \text{gain}\sqrt{6/(\text{fan\_in} + \text{fan\_out})}`.

    Parameters
    ----------
    %(shape)s
    gain : float
        As in :func:`xavier_uniform_`.
    %(dtype)s
    %(generator)s
    %(offset)s
    %(block)s

    %(new)s

    Examples
    --------
    >>> import numpy as np, fastinit
    >>> w = fastinit.xavier_uniform((300, 600), generator=0)
    >>> bool(np.abs(w).max() < np.sqrt(6 / 900))
    True
    """
    return xavier_uniform_(_new(shape, dtype, "xavier_uniform"), gain, generator, offset=offset, block=block)


@fill_doc
def xavier_normal(shape: Shape, gain: float = 1.0, *, dtype: DTypeLike = np.float32, generator: GeneratorLike = None,
                  offset: int = 0, block: Block | None = None) -> NewArray:
    r"""Return a new array of ``shape`` filled by :func:`xavier_normal_`.

    Values: :math:`\mathcal{N}(0, \text{gain}^2 \cdot 2/(\text{fan\_in} + \text{fan\_out}))`.

    Parameters
    ----------
    %(shape)s
    gain : float
        As in :func:`xavier_normal_`.
    %(dtype)s
    %(generator)s
    %(offset)s
    %(block)s

    %(new)s

    Examples
    --------
    >>> import numpy as np, fastinit
    >>> w = fastinit.xavier_normal((300, 600), generator=0)
    >>> round(float(w.var() * 900 / 2), 2)
    1.0
    """
    return xavier_normal_(_new(shape, dtype, "xavier_normal"), gain, generator, offset=offset, block=block)


@fill_doc
def kaiming_uniform(shape: Shape, a: float = 0, mode: TorchMode = "fan_in",
                    nonlinearity: Nonlinearity = "leaky_relu", *, dtype: DTypeLike = np.float32,
                    generator: GeneratorLike = None, offset: int = 0, block: Block | None = None) -> NewArray:
    r"""Return a new array of ``shape`` filled by :func:`kaiming_uniform_`.

    Values: :math:`U(-b, b)`, :math:`b = \text{gain}\sqrt{3/\text{fan\_mode}}`.

    Parameters
    ----------
    %(shape)s
    a, mode, nonlinearity
        As in :func:`kaiming_uniform_`.
    %(dtype)s
    %(generator)s
    %(offset)s
    %(block)s

    %(new)s

    Examples
    --------
    >>> import numpy as np, fastinit
    >>> w = fastinit.kaiming_uniform((64, 3, 3, 3), a=5 ** 0.5, generator=0)
    >>> bool(np.abs(w).max() < 1 / np.sqrt(27))
    True
    """
    return kaiming_uniform_(_new(shape, dtype, "kaiming_uniform"), a, mode, nonlinearity, generator, offset=offset,
                            block=block)


@fill_doc
def kaiming_normal(shape: Shape, a: float = 0, mode: TorchMode = "fan_in", nonlinearity: Nonlinearity = "leaky_relu", *,
                   dtype: DTypeLike = np.float32, generator: GeneratorLike = None, offset: int = 0,
                   block: Block | None = None) -> NewArray:
    r"""Return a new array of ``shape`` filled by :func:`kaiming_normal_`.

    Values: :math:`\mathcal{N}(0, \text{gain}^2/\text{fan\_mode})`.

    Parameters
    ----------
    %(shape)s
    a, mode, nonlinearity
        As in :func:`kaiming_normal_`.
    %(dtype)s
    %(generator)s
    %(offset)s
    %(block)s

    %(new)s

    Examples
    --------
    >>> import numpy as np, fastinit
    >>> w = fastinit.kaiming_normal((512, 2048), nonlinearity='relu', generator=0)
    >>> round(float(w.var() * 2048 / 2), 2)
    1.0
    """
    return kaiming_normal_(_new(shape, dtype, "kaiming_normal"), a, mode, nonlinearity, generator, offset=offset,
                           block=block)


@fill_doc
def variance_scaling(shape: Shape, scale: float = 1.0, mode: FanMode = "fan_in",
                     distribution: Distribution = "truncated_normal", *, dtype: DTypeLike = np.float32,
                     generator: GeneratorLike = None, in_axis: int = 1, out_axis: int = 0,
                     offset: int = 0, block: Block | None = None) -> NewArray:
    r"""Return a new array of ``shape`` filled by :func:`variance_scaling_`.

    Values: JAX's variance_scaling law (see :func:`variance_scaling_`).

    Parameters
    ----------
    %(shape)s
    scale, mode, distribution
        As in :func:`variance_scaling_`.
    %(dtype)s
    %(generator)s
    %(axes)s
    %(offset)s
    %(block)s

    %(new)s

    Examples
    --------
    >>> import numpy as np, fastinit
    >>> w = fastinit.variance_scaling((3, 3, 64, 128), 2.0, 'fan_in', 'normal',
    ...                                in_axis=-2, out_axis=-1, generator=0)   # HWIO
    >>> round(float(w.var() * 9 * 64 / 2), 1)
    1.0
    """
    return variance_scaling_(_new(shape, dtype, "variance_scaling"), scale, mode, distribution, generator,
                             in_axis=in_axis, out_axis=out_axis, offset=offset, block=block)


@fill_doc
def lecun_uniform(shape: Shape, *, dtype: DTypeLike = np.float32, generator: GeneratorLike = None, in_axis: int = 1,
                  out_axis: int = 0, offset: int = 0, block: Block | None = None) -> NewArray:
    r"""Return a new array of ``shape`` filled by :func:`lecun_uniform_`.

    Values: :math:`U(-\sqrt{3/\text{fan\_in}}, \sqrt{3/\text{fan\_in}})`.

    Parameters
    ----------
    %(shape)s
    %(dtype)s
    %(generator)s
    %(axes)s
    %(offset)s
    %(block)s

    %(new)s

    Examples
    --------
    >>> import numpy as np, fastinit
    >>> w = fastinit.lecun_uniform((100, 300), generator=0)
    >>> bool(np.abs(w).max() < 0.1)
    True
    """
    return lecun_uniform_(_new(shape, dtype, "lecun_uniform"), generator, in_axis=in_axis, out_axis=out_axis,
                          offset=offset, block=block)


@fill_doc
def lecun_normal(shape: Shape, *, dtype: DTypeLike = np.float32, generator: GeneratorLike = None, in_axis: int = 1,
                 out_axis: int = 0, offset: int = 0, block: Block | None = None) -> NewArray:
    r"""Return a new array of ``shape`` filled by :func:`lecun_normal_`.

    Values: truncated normal values of variance :math:`1/\text{fan\_in}` (JAX/Keras meaning).

    Parameters
    ----------
    %(shape)s
    %(dtype)s
    %(generator)s
    %(axes)s
    %(offset)s
    %(block)s

    %(new)s

    Examples
    --------
    >>> import numpy as np, fastinit
    >>> w = fastinit.lecun_normal((1000, 400), dtype=np.float64, generator=0)
    >>> round(float(w.var() * 400), 2)
    1.0
    """
    return lecun_normal_(_new(shape, dtype, "lecun_normal"), generator, in_axis=in_axis, out_axis=out_axis,
                         offset=offset, block=block)


@fill_doc
def orthogonal(shape: Shape, gain: float = 1, *, dtype: DTypeLike = np.float32,
               generator: GeneratorLike = None, block: Block | None = None) -> NewArray:
    r"""Return a new array of ``shape`` filled by :func:`orthogonal_`.

    Values: a Haar-random (semi-)orthogonal matrix times gain.

    Parameters
    ----------
    %(shape)s
    gain : float
        As in :func:`orthogonal_`.
    %(dtype)s
    %(generator)s
    %(block)s

    %(new)s

    Examples
    --------
    >>> import numpy as np, fastinit
    >>> w = fastinit.orthogonal((32, 64), dtype=np.float64, generator=0)
    >>> bool(np.allclose(w @ w.T, np.eye(32)))
    True
    """
    return orthogonal_(_new(shape, dtype, "orthogonal"), gain, generator, block=block)


@fill_doc
def sparse(shape: Shape, sparsity: float, std: float = 0.01, *, dtype: DTypeLike = np.float32,
           generator: GeneratorLike = None, block: Block | None = None) -> NewArray:
    r"""Return a new array of ``shape`` filled by :func:`sparse_`.

    Values: :math:`\mathcal{N}(0, \text{std}^2)` values with a fraction ``sparsity`` of each column zero.

    Parameters
    ----------
    %(shape)s
    sparsity, std : float
        As in :func:`sparse_`.
    %(dtype)s
    %(generator)s
    %(block)s

    %(new)s

    Examples
    --------
    >>> import numpy as np, fastinit
    >>> w = fastinit.sparse((10, 4), 0.5, generator=0)
    >>> (w == 0).sum(axis=0).tolist()
    [5, 5, 5, 5]
    """
    return sparse_(_new(shape, dtype, "sparse"), sparsity, std, generator, block=block)
