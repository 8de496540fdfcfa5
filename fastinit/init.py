r"""The torch.nn.init-compatible API, plus the JAX/Keras extras and out-of-place constructors.

Every ``*_`` function fills its first argument in place and returns that same object. The
argument may be a NumPy array (float16, ``ml_dtypes.bfloat16``, float32, float64; any writable
layout) or a PyTorch CPU tensor of the same dtypes, including an ``nn.Parameter`` that requires
grad (written without autograd tracking and without copies, see :mod:`fastinit._tensors`).

Names, argument names, defaults, the fan convention (dim 0 = out, dim 1 = in, the rest the
receptive field), the gain table, the validation order, error types, warnings and the return
value follow ``torch.nn.init`` (torch 2.13); the few deliberate differences are listed in
``docs/api.md``. Randomness comes from fastinit's Philox4x32-10 stream: every sampling function
takes ``generator`` (a :class:`fastinit.Generator`, an int seed, or ``None`` for the default
generator), takes one stream from it per call, and element ``i`` of the tensor (in C order of its
logical shape) depends only on ``(seed, stream, offset + i)``. So results do not depend on the
memory layout, the thread count, or whether the target is a NumPy array or a torch tensor.
"""

from __future__ import annotations

import math
import numbers
import operator
import warnings

import numpy as np

from ._fill import (FLOAT_DTYPES, InitArgumentError, check_array, check_real, fill_constant, fill_normal,
                    fill_trunc_normal, fill_uniform, raw_uint32)
from . import _sparse
from ._generator import resolve_generator
from ._tensors import as_array, empty_like_torch, is_torch_tensor, mark_written

__all__ = [
    # torch.nn.init
    "calculate_gain", "calculate_fan_in_and_fan_out",
    "uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
    "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_", "sparse_",
    # JAX / Keras extras
    "lecun_uniform_", "lecun_normal_", "variance_scaling_",
    # out-of-place constructors
    "uniform", "normal", "trunc_normal", "constant", "ones", "zeros", "eye", "dirac",
    "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal", "orthogonal", "sparse",
    "lecun_uniform", "lecun_normal", "variance_scaling",
]

# Standard deviation of N(0, 1) truncated to (-2, 2): sqrt(1 - 4 phi(2) / (2 Phi(2) - 1)), the
# constant JAX and Keras divide by so that a "truncated_normal" variance_scaling has exactly the
# requested variance after truncation (scipy.stats.truncnorm(-2, 2).std() = 0.8796256610342398).
TRUNCATED_NORMAL_STD = 0.87962566103423978

_LINEAR_FNS = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
               "conv_transpose3d", "sigmoid")
_TORCH_MODES = ("fan_in", "fan_out")
_VS_MODES = ("fan_in", "fan_out", "fan_avg", "fan_geo_avg")
_VS_DISTRIBUTIONS = ("truncated_normal", "normal", "uniform")

# sparse_: the zero pattern uses raw words of the call's own stream starting at word 2**65
# (Philox block 2**63), the upper half of the counter space, far from the normal values, which
# use blocks from 0 upward. Two 32-bit words per (row, column) form a 64-bit sort key.
_SPARSE_WORD0 = 1 << 65


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------

def _target(tensor, name: str = "tensor") -> np.ndarray:
    """The NumPy array to write: ``tensor`` itself or a memory-sharing view of a torch tensor."""
    if isinstance(tensor, np.ndarray):
        arr = tensor
    elif is_torch_tensor(tensor):
        arr = as_array(tensor, name)
    else:
        raise TypeError(f"{name} must be a numpy.ndarray or a torch.Tensor, got {type(tensor).__name__}")
    check_array(arr, name)
    for n, s in zip(arr.shape, arr.strides):
        if n > 1 and s == 0 and arr.size:
            raise ValueError(f"{name} is a broadcast (stride-0) view: several elements share one memory "
                             "location, so it cannot be filled in place")
    return arr


def _done(tensor):
    """Finish an in-place write: bump a torch tensor's version counter; return the tensor."""
    if not isinstance(tensor, np.ndarray):
        mark_written(tensor)
    return tensor


def _check_offset(offset) -> int:
    if isinstance(offset, (bool, np.bool_)) or not isinstance(offset, numbers.Integral) or offset < 0:
        raise InitArgumentError(f"offset must be a non-negative integer, got {offset!r}")
    return int(offset)


def _shape_of(x) -> tuple[int, ...]:
    if isinstance(x, np.ndarray) or is_torch_tensor(x):
        return tuple(int(n) for n in x.shape)
    if isinstance(x, numbers.Integral) and not isinstance(x, (bool, np.bool_)):
        return (int(x),)
    try:
        return tuple(operator.index(n) for n in x)
    except TypeError:
        raise TypeError(f"expected an array, a tensor or a shape, got {type(x).__name__}") from None


def _prod(xs) -> int:
    p = 1
    for x in xs:
        p *= x
    return p


def calculate_fan_in_and_fan_out(tensor) -> tuple[int, int]:
    r"""Fan-in and fan-out of a weight, with torch's (OIHW) convention.

    .. math::
        r = \prod_{k \ge 2} \text{shape}[k], \qquad
        \text{fan\_in} = \text{shape}[1]\, r, \qquad \text{fan\_out} = \text{shape}[0]\, r

    Parameters
    ----------
    tensor : numpy.ndarray, torch.Tensor or tuple of int
        The weight, or its shape. ``nn.Linear`` stores ``(out, in)``, ``nn.ConvNd``
        ``(out, in / groups, *kernel)``.

    Returns
    -------
    (int, int)
        ``(fan_in, fan_out)``.

    Raises
    ------
    ValueError
        If the tensor has fewer than 2 dimensions.

    Notes
    -----
    This is torch's private ``_calculate_fan_in_and_fan_out`` made public. ConvTranspose
    weights are stored ``(in, out / groups, *kernel)``, so for them "fan_in" is really the output
    side, exactly as in torch. JAX and Keras use the HWIO layout instead (``fan_in = shape[-2] r``);
    see :func:`variance_scaling_` for axis arguments.

    Examples
    --------
    >>> import numpy as np, fastinit
    >>> fastinit.calculate_fan_in_and_fan_out(np.empty((32, 16, 3, 3), np.float32))
    (144, 288)
    >>> fastinit.calculate_fan_in_and_fan_out((50, 20))
    (20, 50)
    """
    shape = _shape_of(tensor)
    if len(shape) < 2:
        raise ValueError("Fan in and fan out can not be computed for tensor with fewer than 2 dimensions")
    receptive = _prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def _fans_axes(shape, in_axis: int, out_axis: int) -> tuple[int, int]:
    """Fans with the in/out dimensions at the given axes; every other axis is receptive field."""
    nd = len(shape)
    if nd < 2:
        raise ValueError("Fan in and fan out can not be computed for tensor with fewer than 2 dimensions")
    axes = []
    for name, ax in (("in_axis", in_axis), ("out_axis", out_axis)):
        if isinstance(ax, (bool, np.bool_)) or not isinstance(ax, numbers.Integral) or not -nd <= ax < nd:
            raise ValueError(f"{name}={ax!r} is not an axis of a {nd}-D tensor")
        axes.append(int(ax) % nd)
    if axes[0] == axes[1]:
        raise ValueError(f"in_axis and out_axis must differ, got {in_axis} and {out_axis}")
    receptive = _prod(n for k, n in enumerate(shape) if k not in axes)
    return shape[axes[0]] * receptive, shape[axes[1]] * receptive


def _check_mode(mode, valid) -> str:
    m = mode.lower() if isinstance(mode, str) else None
    if m not in valid:
        raise ValueError(f"Mode {mode} not supported, please use one of {list(valid)}")
    return m


def _fan_for_mode(fan_in: int, fan_out: int, mode: str) -> float:
    if mode == "fan_in":
        return fan_in
    if mode == "fan_out":
        return fan_out
    if mode == "fan_avg":
        return (fan_in + fan_out) / 2.0
    return math.sqrt(fan_in * fan_out)  # fan_geo_avg


def calculate_gain(nonlinearity, param=None):
    r"""The recommended gain for a nonlinearity (torch's table).

    ================= =====================================
    nonlinearity      gain
    ================= =====================================
    linear, conv*,    :math:`1` (returned as the int ``1``)
    sigmoid
    tanh              :math:`5/3`
    relu              :math:`\sqrt{2}`
    leaky_relu        :math:`\sqrt{2 / (1 + s^2)}`, slope :math:`s` = ``param`` (default 0.01)
    selu              :math:`3/4`
    ================= =====================================

    Parameters
    ----------
    nonlinearity : str
        Exact, case-sensitive name: ``"linear"``, ``"conv1d"``, ``"conv2d"``, ``"conv3d"``,
        ``"conv_transpose1d"``, ``"conv_transpose2d"``, ``"conv_transpose3d"``, ``"sigmoid"``,
        ``"tanh"``, ``"relu"``, ``"leaky_relu"`` or ``"selu"``.
    param : float, optional
        Negative slope of ``leaky_relu``; ignored (unchecked) for every other nonlinearity.

    Returns
    -------
    int or float

    Raises
    ------
    ValueError
        Unknown nonlinearity, or a leaky_relu slope that is not a finite real number (bools and
        strings included).

    Notes
    -----
    torch accepts only Python ``int``/``float`` slopes; fastinit also accepts NumPy real scalars
    (``np.float32(0.2)``) and rejects NaN and infinite slopes.

    Examples
    --------
    >>> import fastinit
    >>> fastinit.calculate_gain("relu")
    1.4142135623730951
    >>> fastinit.calculate_gain("leaky_relu", 1)
    1.0
    >>> fastinit.calculate_gain("conv2d")
    1
    """
    if nonlinearity in _LINEAR_FNS:
        return 1
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            slope = 0.01
        elif (isinstance(param, (bool, np.bool_)) or not isinstance(param, numbers.Real)
              or not math.isfinite(float(param))):
            raise ValueError(f"negative_slope {param} not a valid number")
        else:
            slope = float(param)
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"Unsupported nonlinearity {nonlinearity}")


# ---------------------------------------------------------------------------------------------
# plain distributions
# ---------------------------------------------------------------------------------------------

def uniform_(tensor, a=0.0, b=1.0, generator=None, *, offset=0):
    r"""Fill ``tensor`` in place with values from the uniform distribution :math:`U[a, b)`.

    Parameters
    ----------
    tensor : numpy.ndarray or torch.Tensor
        Any shape (0-D included) and writable layout; float16, bfloat16, float32 or float64.
    a, b : float
        Bounds, finite, ``a <= b``. ``a == b`` fills ``a``.
    generator : fastinit.Generator, int or None
        Source of the stream (one stream per call). An int is a seed used at stream 0.
    offset : int, keyword-only
        Logical index of the first element, for filling shards of one larger tensor.

    Returns
    -------
    numpy.ndarray or torch.Tensor
        ``tensor`` itself.

    Raises
    ------
    InitArgumentError
        ``a > b`` (a ``RuntimeError``, as in torch, and a ``ValueError``) or non-finite bounds.

    Notes
    -----
    Element ``i`` is :math:`a + (b - a) u_i`, with :math:`u_i` from word ``offset + i`` of the
    stream (24 bits for the 32-bit and 16-bit dtypes, 53 bits from two words for float64); ``b``
    is never produced in any dtype. See :func:`fastinit._fill.fill_uniform`.

    Examples
    --------
    >>> import numpy as np, fastinit
    >>> w = fastinit.uniform_(np.empty((1000, 1000), np.float32), -1, 1, generator=0)
    >>> bool(w.min() >= -1 and w.max() < 1), round(float(w.var()), 2)   # variance (b - a)^2 / 12
    (True, 0.33)
    """
    arr = _target(tensor)
    a, b = check_real(a, "a"), check_real(b, "b")
    if a > b:
        raise InitArgumentError(f"uniform_ expects a <= b, got a={a} > b={b}")
    offset = _check_offset(offset)
    seed, stream = resolve_generator(generator)
    fill_uniform(arr, a, b, seed, stream, offset)
    return _done(tensor)


def normal_(tensor, mean=0.0, std=1.0, generator=None, *, offset=0):
    r"""Fill ``tensor`` in place with values from :math:`\mathcal{N}(\text{mean}, \text{std}^2)`.

    Parameters
    ----------
    tensor : numpy.ndarray or torch.Tensor
        Any shape and writable layout; float16, bfloat16, float32 or float64.
    mean : float
    std : float
        ``std >= 0``; ``std == 0`` fills ``mean``.
    generator : fastinit.Generator, int or None
    offset : int, keyword-only
        Logical index of the first element.

    Returns
    -------
    numpy.ndarray or torch.Tensor
        ``tensor`` itself.

    Raises
    ------
    InitArgumentError
        ``std < 0`` (a ``RuntimeError`` as in torch) or a non-finite mean/std.

    Notes
    -----
    Each element has a fixed counter (:func:`fastinit._fill.fill_normal`). 32-bit values: the
    inverse CDF of one word, :math:`|z| = \Phi^{-1}(1 - q/2)` from a table of degree-7 polynomials
    over the octaves of the two-sided tail probability :math:`q`, in float32 (reach 6.34). float64
    values: Box-Muller on pairs of 53-bit uniforms, in double precision (reach 8.65).

    Examples
    --------
    >>> import numpy as np, fastinit
    >>> w = fastinit.normal_(np.empty((1000, 1000)), mean=3.0, std=0.5, generator=1)
    >>> round(float(w.mean()), 2), round(float(w.std()), 2)
    (3.0, 0.5)
    """
    arr = _target(tensor)
    mean, std = check_real(mean, "mean"), check_real(std, "std")
    if std < 0:
        raise InitArgumentError(f"normal_ expects std >= 0.0, got std={std}")
    offset = _check_offset(offset)
    seed, stream = resolve_generator(generator)
    fill_normal(arr, mean, std, seed, stream, offset)
    return _done(tensor)


def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0, generator=None, *, offset=0):
    r"""Fill ``tensor`` in place from a normal distribution truncated to :math:`[a, b]` (torch meaning).

    The density is

    .. math::
        f(x) = \frac{\varphi\left(\frac{x - \text{mean}}{\text{std}}\right)}
                    {\text{std}\,\left(\Phi(\beta) - \Phi(\alpha)\right)}, \quad a \le x \le b,
        \qquad \alpha = \frac{a - \text{mean}}{\text{std}}, \ \beta = \frac{b - \text{mean}}{\text{std}}

    **``a`` and ``b`` are absolute values**, and ``std`` is the standard deviation *before*
    truncation (torch's meaning). With the defaults and ``std=0.02`` the bounds lie at
    :math:`\pm 100\sigma` and do nothing; with ``std=5`` every value still lies in
    :math:`[-2, 2]`. JAX's ``truncated_normal`` and Keras's ``TruncatedNormal`` instead truncate at
    a fixed number of standard deviations; :func:`variance_scaling_` with
    ``distribution="truncated_normal"`` gives JAX's meaning, where the std *after* truncation is
    the requested one.

    Parameters
    ----------
    tensor : numpy.ndarray or torch.Tensor
    mean : float
    std : float
        ``std > 0``.
    a, b : float
        Absolute bounds, ``a <= b`` (may be infinite). ``a == b`` fills ``a``.
    generator : fastinit.Generator, int or None
    offset : int, keyword-only

    Returns
    -------
    numpy.ndarray or torch.Tensor
        ``tensor`` itself.

    Raises
    ------
    InitArgumentError
        ``std <= 0`` (torch: ZeroDivisionError for 0, nothing for < 0), ``a > b``
        (RuntimeError in torch; InitArgumentError is one), non-finite mean or std.

    Warns
    -----
    UserWarning
        If ``mean`` is more than 2 std outside ``[a, b]``, as torch does; the values still lie in
        ``[a, b]`` and follow the truncated law exactly.

    Notes
    -----
    Sampled by the inverse CDF with one uniform per element
    (:func:`fastinit._fill.fill_trunc_normal`), without rejection, so the element-to-counter map is
    fixed and the cost does not depend on the mass of :math:`[a, b]`. For ordinary intervals the
    quantile is :math:`\Phi^{-1}` of a probability: in single precision for
    float32/float16/bfloat16 outputs when the interval's quantiles stay within
    :math:`|x| \lesssim 6.9` (from a per-call table of polynomials in the uniform for narrow
    intervals such as the default :math:`\pm 2\sigma`, else from polynomials in :math:`-\ln` of
    the tail probabilities; error below :math:`6 \cdot 2^{-24} \max(|x|, 1)`), otherwise in double
    precision. Where a probability cannot carry the law, the offset from the bound nearer the mean
    is inverted instead, in double precision: when that bound lies 30 std or more from the mean
    (the offset is close to exponential there; Newton's method on the log survival function,
    Mills's ratio from its asymptotic series) and when the interval is narrower than :math:`2^{-20}` std times
    :math:`\max(1, |\alpha|)` (close to uniform; a power series). Both are within a few ulps of
    the exact offset (checked against mpmath from 150 to :math:`10^4` std, and for std = 1e17 on
    :math:`[-1, 1]`), so the law is right for every :math:`a < b` and :math:`\text{std} > 0`, at
    any depth of the tail; the values are then rounded to the dtype. torch uses rejection
    sampling, so the values differ but the law is the same.

    Examples
    --------
    >>> import numpy as np, fastinit
    >>> w = fastinit.trunc_normal_(np.empty((1000, 1000)), std=1.0, a=-1.0, b=1.0, generator=2)
    >>> bool(w.min() >= -1 and w.max() <= 1), round(float(w.std()), 2)   # truncnorm(-1, 1).std() = 0.538
    (True, 0.54)
    """
    arr = _target(tensor)
    mean, std = check_real(mean, "mean"), check_real(std, "std")
    a, b = check_real(a, "a", finite=False), check_real(b, "b", finite=False)
    if std <= 0:
        raise InitArgumentError(f"trunc_normal_ expects std > 0, got std={std}")
    if a > b:
        raise InitArgumentError(f"trunc_normal_ expects a <= b, got a={a} > b={b}")
    offset = _check_offset(offset)
    if mean < a - 2 * std or mean > b + 2 * std:
        warnings.warn("mean is more than 2 std from [a, b] in nn.init.trunc_normal_. "
                      "The distribution of values may be incorrect.", UserWarning, stacklevel=2)
    seed, stream = resolve_generator(generator)
    fill_trunc_normal(arr, mean, std, a, b, seed, stream, offset)
    return _done(tensor)


# ---------------------------------------------------------------------------------------------
# deterministic fills
# ---------------------------------------------------------------------------------------------

def constant_(tensor, val):
    r"""Fill ``tensor`` in place with the value ``val``: :math:`w_i = \text{val}`.

    Parameters
    ----------
    tensor : numpy.ndarray or torch.Tensor
    val : float
        Rounded to the tensor's dtype; ``inf`` is allowed, NaN is rejected.

    Returns
    -------
    numpy.ndarray or torch.Tensor
        ``tensor`` itself.

    Examples
    --------
    >>> import numpy as np, fastinit
    >>> fastinit.constant_(np.empty(3, np.float32), 0.5)
    array([0.5, 0.5, 0.5], dtype=float32)
    """
    arr = _target(tensor)
    fill_constant(arr, val)
    return _done(tensor)


def ones_(tensor):
    r"""Fill ``tensor`` in place with ones: :math:`w_i = 1`.

    Examples
    --------
    >>> import numpy as np, fastinit
    >>> fastinit.ones_(np.empty((2, 2)))
    array([[1., 1.],
           [1., 1.]])
    """
    return constant_(tensor, 1.0)


def zeros_(tensor):
    r"""Fill ``tensor`` in place with zeros: :math:`w_i = 0`.

    Examples
    --------
    >>> import numpy as np, fastinit
    >>> fastinit.zeros_(np.empty(2, np.float16))
    array([0., 0.], dtype=float16)
    """
    return constant_(tensor, 0.0)


def eye_(tensor):
    r"""Fill the 2-D ``tensor`` in place with the identity: :math:`w_{ij} = \delta_{ij}`.

    Rectangular shapes get ones at :math:`(i, i)` for :math:`i < \min(\text{rows}, \text{cols})`.
    There is no gain argument (as in torch; Keras's ``Identity(gain)`` is ``eye_`` times gain).

    Raises
    ------
    ValueError
        If ``tensor`` is not 2-D.

    Examples
    --------
    >>> import numpy as np, fastinit
    >>> fastinit.eye_(np.empty((2, 3), np.float32))
    array([[1., 0., 0.],
           [0., 1., 0.]], dtype=float32)
    """
    arr = _target(tensor)
    if arr.ndim != 2:
        raise ValueError("Only tensors with 2 dimensions are supported")
    fill_constant(arr, 0.0)
    k = np.arange(min(arr.shape))
    arr[k, k] = 1
    return _done(tensor)


def dirac_(tensor, groups=1):
    r"""Fill a 3/4/5-D convolution weight in place with the Dirac delta (identity convolution).

    With :math:`o = \text{shape}[0] / \text{groups}` outputs per group and
    :math:`m = \min(o, \text{shape}[1])`,

    .. math::
        w[g o + d,\ d,\ c_2, \ldots] = 1 \quad (g < \text{groups},\ d < m),
        \qquad c_k = \lfloor \text{shape}[k] / 2 \rfloor,

    and 0 elsewhere, so a stride-1 convolution copies input channel ``d`` to output channel
    ``g o + d``. For even kernels the centre is the upper-middle cell (JAX's
    ``delta_orthogonal`` uses the lower-middle one).

    Parameters
    ----------
    tensor : numpy.ndarray or torch.Tensor
        3-D, 4-D or 5-D.
    groups : int
        Number of groups; ``shape[0]`` must be divisible by it.

    Raises
    ------
    ValueError
        Wrong ndim (checked first), ``groups`` not a positive integer (torch: ZeroDivisionError
        for 0), or ``shape[0] % groups != 0``.

    Examples
    --------
    >>> import numpy as np, fastinit
    >>> w = fastinit.dirac_(np.empty((4, 2, 3), np.float32), groups=2)
    >>> w[:, :, 1]
    array([[1., 0.],
           [0., 1.],
           [1., 0.],
           [0., 1.]], dtype=float32)
    """
    arr = _target(tensor)
    if arr.ndim not in (3, 4, 5):
        raise ValueError("Only tensors with 3, 4, or 5 dimensions are supported")
    if isinstance(groups, (bool, np.bool_)) or not isinstance(groups, numbers.Integral) or groups < 1:
        raise ValueError(f"groups must be a positive integer, got {groups!r}")
    groups = int(groups)
    if arr.shape[0] % groups != 0:
        raise ValueError("dim 0 must be divisible by groups")
    fill_constant(arr, 0.0)
    per_group = arr.shape[0] // groups
    m = min(per_group, arr.shape[1])
    if m:
        d = np.arange(m)
        centre = tuple(n // 2 for n in arr.shape[2:])
        for g in range(groups):
            arr[(g * per_group + d, d) + centre] = 1
    return _done(tensor)


# ---------------------------------------------------------------------------------------------
# variance scaling: the one general function behind xavier_*, kaiming_*, lecun_* and
# variance_scaling_
# ---------------------------------------------------------------------------------------------

def _variance_scaling_(tensor, scale, mode, distribution, generator, offset, *, modes=_VS_MODES,
                       in_axis=1, out_axis=0, gain=None, nonlinearity=None, param=None, warn_empty=False):
    r"""Fill ``tensor`` with zero-mean values of variance ``scale * gain**2 / fan(mode)``.

    Checks run in torch's order: the zero-element warning (kaiming only), the mode, the fans,
    the gain (when ``nonlinearity`` is given), then the remaining arguments; nothing is written
    and no stream is taken if any check fails.
    """
    arr = _target(tensor)
    if warn_empty and 0 in arr.shape:
        warnings.warn("Initializing zero-element tensors is a no-op", UserWarning, stacklevel=3)
        return tensor
    mode = _check_mode(mode, modes)
    fan_in, fan_out = _fans_axes(arr.shape, in_axis, out_axis)
    scale = check_real(scale, "scale")
    if gain is not None:
        scale *= _check_gain(gain) ** 2
    if nonlinearity is not None:
        scale *= calculate_gain(nonlinearity, param) ** 2
    if scale < 0:
        raise InitArgumentError(f"scale must be >= 0, got {scale}")
    dist = distribution.lower() if isinstance(distribution, str) else distribution
    if dist == "untruncated_normal":  # JAX/Keras spelling of the plain normal
        dist = "normal"
    if dist not in _VS_DISTRIBUTIONS:
        raise ValueError(f"distribution {distribution!r} not supported, please use one of {list(_VS_DISTRIBUTIONS)}")
    offset = _check_offset(offset)
    if arr.size == 0:
        return tensor
    variance = scale / _fan_for_mode(fan_in, fan_out, mode)
    seed, stream = resolve_generator(generator)
    if dist == "uniform":
        bound = math.sqrt(3.0 * variance)  # U(-c, c) has variance c^2 / 3
        fill_uniform(arr, -bound, bound, seed, stream, offset)
    elif dist == "normal" or variance == 0:
        fill_normal(arr, 0.0, math.sqrt(variance), seed, stream, offset)
    else:  # truncated at +-2 std of the underlying normal, rescaled so the result has `variance`
        std = math.sqrt(variance) / TRUNCATED_NORMAL_STD
        fill_trunc_normal(arr, 0.0, std, -2.0 * std, 2.0 * std, seed, stream, offset)
    return _done(tensor)


def _check_gain(gain) -> float:
    gain = check_real(gain, "gain")
    if gain < 0:  # torch raises RuntimeError from uniform_/normal_ for a negative gain
        raise InitArgumentError(f"gain must be >= 0, got {gain}")
    return gain


def xavier_uniform_(tensor, gain=1.0, generator=None, *, offset=0):
    r"""Fill ``tensor`` in place with Glorot/Xavier-uniform values.

    Samples are drawn from :math:`U(-b, b)` with

    .. math::
        b = \text{gain} \sqrt{\frac{6}{\text{fan\_in} + \text{fan\_out}}}

    i.e. variance :math:`\text{gain}^2 \cdot 2 / (\text{fan\_in} + \text{fan\_out})`.

    Parameters
    ----------
    tensor : numpy.ndarray or torch.Tensor
        At least 2-D; fans as in :func:`calculate_fan_in_and_fan_out`.
    gain : float
        Scaling factor, ``>= 0``.
    generator : fastinit.Generator, int or None
    offset : int, keyword-only

    Returns
    -------
    numpy.ndarray or torch.Tensor
        ``tensor`` itself.

    Raises
    ------
    ValueError
        Fewer than 2 dimensions.
    InitArgumentError
        Negative or non-finite gain (torch: RuntimeError from ``uniform_``).

    Notes
    -----
    ``_variance_scaling_(tensor, gain**2, "fan_avg", "uniform")``. A zero-size tensor is a
    silent no-op (torch raises ZeroDivisionError for shape ``(0, 0)``).

    References
    ----------
    .. [1] X. Glorot and Y. Bengio, "Understanding the difficulty of training deep feedforward
       neural networks", AISTATS 2010.

    Examples
    --------
    >>> import numpy as np, fastinit
    >>> w = fastinit.xavier_uniform_(np.empty((300, 600), np.float32), generator=0)
    >>> bool(np.abs(w).max() < np.sqrt(6 / 900)), round(float(w.var() * 900 / 2), 2)
    (True, 1.0)
    """
    return _variance_scaling_(tensor, 1.0, "fan_avg", "uniform", generator, offset, gain=gain)


def xavier_normal_(tensor, gain=1.0, generator=None, *, offset=0):
    r"""Fill ``tensor`` in place with Glorot/Xavier-normal values.

    Samples are drawn from :math:`\mathcal{N}(0, \sigma^2)`, **not truncated** (torch; JAX's and
    Keras's ``glorot_normal`` truncate), with

    .. math::
        \sigma = \text{gain} \sqrt{\frac{2}{\text{fan\_in} + \text{fan\_out}}}

    Parameters
    ----------
    tensor : numpy.ndarray or torch.Tensor
        At least 2-D.
    gain : float
        ``>= 0``.
    generator : fastinit.Generator, int or None
    offset : int, keyword-only

    Returns
    -------
    numpy.ndarray or torch.Tensor
        ``tensor`` itself.

    Notes
    -----
    ``_variance_scaling_(tensor, gain**2, "fan_avg", "normal")``.

    References
    ----------
    .. [1] X. Glorot and Y. Bengio, AISTATS 2010.

    Examples
    --------
    >>> import numpy as np, fastinit
    >>> w = fastinit.xavier_normal_(np.empty((300, 600)), gain=2.0, generator=0)
    >>> round(float(w.std() / (2.0 * np.sqrt(2 / 900))), 2)
    1.0
    """
    return _variance_scaling_(tensor, 1.0, "fan_avg", "normal", generator, offset, gain=gain)


def kaiming_uniform_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None, *, offset=0):
    r"""Fill ``tensor`` in place with He/Kaiming-uniform values.

    Samples are drawn from :math:`U(-b, b)` with

    .. math::
        b = \text{gain} \sqrt{\frac{3}{\text{fan\_mode}}}, \qquad
        \text{gain} = \sqrt{\frac{2}{1 + a^2}} \ \text{(leaky\_relu)}

    Parameters
    ----------
    tensor : numpy.ndarray or torch.Tensor
        At least 2-D.
    a : float
        Negative slope of the rectifier after this layer (leaky_relu only). torch's
        ``nn.Linear`` and ``nn.ConvNd`` use ``a=sqrt(5)``, i.e. :math:`b = 1/\sqrt{\text{fan\_in}}`.
    mode : {"fan_in", "fan_out"}
        Case-insensitive. ``"fan_in"`` keeps the forward-pass variance, ``"fan_out"`` the
        backward pass.
    nonlinearity : str
        A name accepted by :func:`calculate_gain`; ``"relu"`` or ``"leaky_relu"`` are the
        intended ones.
    generator : fastinit.Generator, int or None
    offset : int, keyword-only

    Returns
    -------
    numpy.ndarray or torch.Tensor
        ``tensor`` itself.

    Warns
    -----
    UserWarning
        "Initializing zero-element tensors is a no-op" if any dimension is 0; this comes before
        every other check, as in torch.

    Raises
    ------
    ValueError
        Bad mode, fewer than 2 dimensions, unknown nonlinearity or invalid slope (in that order).

    Notes
    -----
    ``_variance_scaling_(tensor, gain**2, mode, "uniform")``.

    References
    ----------
    .. [1] K. He et al., "Delving Deep into Rectifiers", ICCV 2015.

    Examples
    --------
    >>> import numpy as np, fastinit
    >>> w = fastinit.kaiming_uniform_(np.empty((256, 1024), np.float32), a=5 ** 0.5, generator=0)
    >>> bool(np.abs(w).max() < 1 / 32)            # nn.Linear's bound 1/sqrt(fan_in)
    True
    """
    return _variance_scaling_(tensor, 1.0, mode, "uniform", generator, offset, modes=_TORCH_MODES,
                              nonlinearity=nonlinearity, param=a, warn_empty=True)


def kaiming_normal_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None, *, offset=0):
    r"""Fill ``tensor`` in place with He/Kaiming-normal values.

    Samples are drawn from :math:`\mathcal{N}(0, \sigma^2)`, **not truncated** (torch; JAX's and
    Keras's ``he_normal`` truncate), with

    .. math::
        \sigma = \frac{\text{gain}}{\sqrt{\text{fan\_mode}}}, \qquad
        \text{gain} = \sqrt{\frac{2}{1 + a^2}} \ \text{(leaky\_relu)}

    Parameters
    ----------
    tensor : numpy.ndarray or torch.Tensor
        At least 2-D.
    a : float
        Negative slope (leaky_relu only).
    mode : {"fan_in", "fan_out"}
    nonlinearity : str
    generator : fastinit.Generator, int or None
    offset : int, keyword-only

    Returns
    -------
    numpy.ndarray or torch.Tensor
        ``tensor`` itself.

    Warns
    -----
    UserWarning
        "Initializing zero-element tensors is a no-op" if any dimension is 0.

    Notes
    -----
    ``_variance_scaling_(tensor, gain**2, mode, "normal")``. Element ``i`` uses Philox counter
    ``offset + i // 4`` (Box-Muller pairs; ``// 2`` for float64), so results do not depend on
    the thread count or SIMD width.

    References
    ----------
    .. [1] K. He et al., "Delving Deep into Rectifiers", ICCV 2015.

    Examples
    --------
    >>> import numpy as np, fastinit
    >>> w = np.empty((256, 1024), dtype=np.float32)
    >>> _ = fastinit.kaiming_normal_(w, nonlinearity="relu", generator=fastinit.Generator(0))
    >>> round(float(w.std()), 3)        # sqrt(2/1024) = 0.0442
    0.044
    """
    return _variance_scaling_(tensor, 1.0, mode, "normal", generator, offset, modes=_TORCH_MODES,
                              nonlinearity=nonlinearity, param=a, warn_empty=True)


def variance_scaling_(tensor, scale=1.0, mode="fan_in", distribution="truncated_normal", generator=None, *,
                      in_axis=1, out_axis=0, offset=0):
    r"""Fill ``tensor`` in place with JAX's ``variance_scaling`` law.

    With :math:`v = \text{scale} / n` and :math:`n` = fan_in, fan_out,
    :math:`(\text{fan\_in} + \text{fan\_out}) / 2` (fan_avg) or
    :math:`\sqrt{\text{fan\_in}\,\text{fan\_out}}` (fan_geo_avg):

    ================== ===============================================================
    distribution       values
    ================== ===============================================================
    "truncated_normal" :math:`\sigma Z`, :math:`Z \sim \mathcal{N}(0,1)` truncated to
                       :math:`(-2, 2)`, :math:`\sigma = \sqrt{v} / 0.87962566103423978`
    "normal"           :math:`\mathcal{N}(0, v)`, not truncated
    "uniform"          :math:`U(-\sqrt{3v}, \sqrt{3v})`
    ================== ===============================================================

    In all three the variance of the result is exactly :math:`v`: ``0.8796...`` is the standard
    deviation of a standard normal truncated to :math:`(-2, 2)`, so ``"truncated_normal"``
    values lie within :math:`\pm 2\sigma = \pm 2.2737 \sqrt{v}`.

    **Two meanings of "truncated normal"**: here (JAX, Keras) the bounds are *relative*
    (:math:`\pm 2` std of the underlying normal) and the requested std is the one *after*
    truncation. In :func:`trunc_normal_` (torch) the bounds ``a, b`` are *absolute* and ``std``
    is the one *before* truncation. ``variance_scaling_(w, s, m, "truncated_normal")`` equals in
    law ``trunc_normal_(w, 0, sigma, -2 * sigma, 2 * sigma)`` with ``sigma`` as above.

    Parameters
    ----------
    tensor : numpy.ndarray or torch.Tensor
        At least 2-D.
    scale : float
        ``>= 0``. 1 for LeCun/Glorot, 2 for He.
    mode : {"fan_in", "fan_out", "fan_avg", "fan_geo_avg"}
        Case-insensitive.
    distribution : {"truncated_normal", "normal", "uniform"}
        JAX's meaning: ``"normal"`` is **untruncated** (Keras maps ``"normal"`` to
        ``"truncated_normal"``; ``"untruncated_normal"`` is accepted as an alias of ``"normal"``).
    generator : fastinit.Generator, int or None
    in_axis, out_axis : int, keyword-only
        Axes holding the input and output sizes; all other axes are the receptive field. The
        defaults ``1, 0`` are torch's OIHW convention (as in every other function here); pass
        ``in_axis=-2, out_axis=-1`` for JAX/Keras HWIO kernels and ``(in, out)`` Dense kernels.
    offset : int, keyword-only

    Returns
    -------
    numpy.ndarray or torch.Tensor
        ``tensor`` itself.

    Raises
    ------
    ValueError
        Unknown mode or distribution, fewer than 2 dimensions, bad axes.
    InitArgumentError
        Negative or non-finite scale.

    Notes
    -----
    No ``max(1, fan)`` floor (JAX has none; Keras floors the fan at 1). A zero-size tensor is
    a silent no-op.

    Examples
    --------
    >>> import numpy as np, fastinit
    >>> w = fastinit.variance_scaling_(np.empty((500, 2000)), 2.0, "fan_in", generator=0)
    >>> round(float(w.std() / np.sqrt(2 / 2000)), 2), bool(np.abs(w).max() <= 2 * np.sqrt(2 / 2000) / 0.8796)
    (1.0, True)
    """
    return _variance_scaling_(tensor, scale, mode, distribution, generator, offset,
                              in_axis=in_axis, out_axis=out_axis)


def lecun_uniform_(tensor, generator=None, *, in_axis=1, out_axis=0, offset=0):
    r"""Fill ``tensor`` in place with LeCun-uniform values: :math:`U(-\sqrt{3/\text{fan\_in}}, \sqrt{3/\text{fan\_in}})`.

    Variance :math:`1/\text{fan\_in}`; JAX's and Keras's ``lecun_uniform``.
    ``variance_scaling_(tensor, 1.0, "fan_in", "uniform")``; fans in torch's layout unless the
    axes are given (see :func:`variance_scaling_`).

    Examples
    --------
    >>> import numpy as np, fastinit
    >>> w = fastinit.lecun_uniform_(np.empty((100, 300), np.float32), generator=0)
    >>> bool(np.abs(w).max() < 0.1)      # sqrt(3 / 300)
    True
    """
    return _variance_scaling_(tensor, 1.0, "fan_in", "uniform", generator, offset, in_axis=in_axis, out_axis=out_axis)


def lecun_normal_(tensor, generator=None, *, in_axis=1, out_axis=0, offset=0):
    r"""Fill ``tensor`` in place with LeCun-normal values (the SELU companion), JAX/Keras meaning.

    Values are :math:`\sigma Z` with :math:`Z \sim \mathcal{N}(0, 1)` truncated to :math:`(-2, 2)`
    and :math:`\sigma = \sqrt{1/\text{fan\_in}} / 0.87962566103423978`, so the variance is exactly
    :math:`1/\text{fan\_in}`: ``variance_scaling_(tensor, 1.0, "fan_in", "truncated_normal")``.
    For the untruncated :math:`\mathcal{N}(0, 1/\text{fan\_in})` of the SELU paper use
    ``variance_scaling_(tensor, 1.0, "fan_in", "normal")``.

    References
    ----------
    .. [1] G. Klambauer et al., "Self-Normalizing Neural Networks", NeurIPS 2017.

    Examples
    --------
    >>> import numpy as np, fastinit
    >>> w = fastinit.lecun_normal_(np.empty((1000, 400)), generator=0)
    >>> round(float(w.var() * 400), 2)
    1.0
    """
    return _variance_scaling_(tensor, 1.0, "fan_in", "truncated_normal", generator, offset,
                              in_axis=in_axis, out_axis=out_axis)


# ---------------------------------------------------------------------------------------------
# orthogonal and sparse
# ---------------------------------------------------------------------------------------------

def orthogonal_(tensor, gain=1, generator=None):
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
        Finite scale factor.
    generator : fastinit.Generator, int or None

    Returns
    -------
    numpy.ndarray or torch.Tensor
        ``tensor`` itself.

    Raises
    ------
    ValueError
        Fewer than 2 dimensions. A zero-size tensor is a silent no-op.

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
    arr = _target(tensor)
    if arr.ndim < 2:
        raise ValueError("Only tensors with 2 or more dimensions are supported")
    gain = check_real(gain, "gain")
    if arr.size == 0:
        return tensor
    from ._orthogonal import orthogonal_matrix_

    seed, stream = resolve_generator(generator)
    rows = arr.shape[0]
    cols = arr.size // rows
    if arr.flags.c_contiguous and arr.dtype in (np.float32, np.float64):
        orthogonal_matrix_(arr.reshape(rows, cols), gain, seed, stream)
    else:
        work_dtype = arr.dtype if arr.dtype in (np.float32, np.float64) else np.float32
        work = orthogonal_matrix_(np.empty((rows, cols), work_dtype), gain, seed, stream)
        arr[...] = work.reshape(arr.shape)
    return _done(tensor)


def _sparse_zero_rows(arr: np.ndarray, num_zeros: int, seed: int, stream: int) -> None:
    """Zero ``num_zeros`` distinct rows in each column of ``arr``: the rows of the smallest
    Philox keys of that column, from the raw words at ``_SPARSE_WORD0`` on (see ``fastinit._sparse``)."""
    rows, cols = arr.shape
    idx = _sparse.zero_rows(rows, cols, num_zeros, seed, stream, _SPARSE_WORD0)
    arr[idx, np.arange(cols)[:, None]] = 0


def sparse_(tensor, sparsity, std=0.01, generator=None):
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
        Standard deviation of the non-zero values, ``>= 0``.
    generator : fastinit.Generator, int or None

    Returns
    -------
    numpy.ndarray or torch.Tensor
        ``tensor`` itself.

    Raises
    ------
    ValueError
        Not 2-D.
    InitArgumentError
        ``sparsity`` outside :math:`[0, 1]` (torch does not check: above 1 it zeros everything,
        a negative value zeros most rows through Python's negative slicing), ``std < 0``.

    Notes
    -----
    Unlike torch, whose zero pattern comes from the global RNG whatever ``generator`` says,
    everything here comes from the one stream the call takes from ``generator``: the normal
    values from its start, the zero pattern from a Philox-keyed sort on raw words of the upper
    half of the same stream (see ``_sparse_zero_rows``). Same generator, same matrix.

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
    arr = _target(tensor)
    if arr.ndim != 2:
        raise ValueError("Only tensors with 2 dimensions are supported")
    sparsity = check_real(sparsity, "sparsity")
    if not 0.0 <= sparsity <= 1.0:
        raise InitArgumentError(f"sparsity must lie in [0, 1], got {sparsity}")
    std = check_real(std, "std")
    if std < 0:
        raise InitArgumentError(f"std must be >= 0, got std={std}")
    if arr.size == 0:
        return tensor
    rows = arr.shape[0]
    num_zeros = int(math.ceil(sparsity * rows))
    seed, stream = resolve_generator(generator)
    fill_normal(arr, 0.0, std, seed, stream, 0)
    if num_zeros:
        _sparse_zero_rows(arr, num_zeros, seed, stream)
    return _done(tensor)


# ---------------------------------------------------------------------------------------------
# out-of-place constructors
# ---------------------------------------------------------------------------------------------

def _is_torch_dtype(dtype) -> bool:
    import sys

    torch = sys.modules.get("torch")
    return torch is not None and isinstance(dtype, torch.dtype)


def _new(shape, dtype, fn: str):
    """Allocate the output of constructor ``fn``: a NumPy array, or a CPU tensor for a torch dtype."""
    if isinstance(shape, np.ndarray) or is_torch_tensor(shape):
        raise TypeError(f"fastinit.{fn} takes a shape and returns a new array; "
                        f"use fastinit.{fn}_ to fill an existing array or tensor in place")
    shape = _shape_of(shape)
    if any(n < 0 for n in shape):
        raise ValueError(f"shape must have non-negative sizes, got {shape}")
    if _is_torch_dtype(dtype):
        return empty_like_torch(shape, dtype)
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype {dtype!r} is not a NumPy or torch dtype") from None
    if dt not in FLOAT_DTYPES:
        raise TypeError(f"dtype {dt} unsupported; use one of {', '.join(str(d) for d in FLOAT_DTYPES)}")
    return np.empty(shape, dt)


def _ctor_doc(name: str, law: str, example: str) -> str:
    return f"""Return a new array of ``shape`` filled by :func:`{name}_`: {law}.

    Parameters
    ----------
    shape : int or tuple of int
        Shape of the result.
    *args, **kwargs
        The remaining arguments of :func:`{name}_`, with the same names and defaults.
    dtype : numpy dtype or torch.dtype, keyword-only
        float32 (default), float64, float16 or bfloat16 (``ml_dtypes.bfloat16`` or
        ``"bfloat16"``). A ``torch.dtype`` returns a CPU ``torch.Tensor`` instead of an array.

    Returns
    -------
    numpy.ndarray or torch.Tensor
        The same values as :func:`{name}_` on an array of that shape and dtype with the same
        generator state.

    Examples
    --------
    >>> import numpy as np, fastinit
{example}
    """


def uniform(shape, a=0.0, b=1.0, *, dtype=np.float32, generator=None, offset=0):
    return uniform_(_new(shape, dtype, "uniform"), a, b, generator, offset=offset)


def normal(shape, mean=0.0, std=1.0, *, dtype=np.float32, generator=None, offset=0):
    return normal_(_new(shape, dtype, "normal"), mean, std, generator, offset=offset)


def trunc_normal(shape, mean=0.0, std=1.0, a=-2.0, b=2.0, *, dtype=np.float32, generator=None, offset=0):
    return trunc_normal_(_new(shape, dtype, "trunc_normal"), mean, std, a, b, generator, offset=offset)


def constant(shape, val, *, dtype=np.float32):
    return constant_(_new(shape, dtype, "constant"), val)


def ones(shape, *, dtype=np.float32):
    return ones_(_new(shape, dtype, "ones"))


def zeros(shape, *, dtype=np.float32):
    return zeros_(_new(shape, dtype, "zeros"))


def eye(shape, *, dtype=np.float32):
    return eye_(_new(shape, dtype, "eye"))


def dirac(shape, groups=1, *, dtype=np.float32):
    return dirac_(_new(shape, dtype, "dirac"), groups)


def xavier_uniform(shape, gain=1.0, *, dtype=np.float32, generator=None, offset=0):
    return xavier_uniform_(_new(shape, dtype, "xavier_uniform"), gain, generator, offset=offset)


def xavier_normal(shape, gain=1.0, *, dtype=np.float32, generator=None, offset=0):
    return xavier_normal_(_new(shape, dtype, "xavier_normal"), gain, generator, offset=offset)


def kaiming_uniform(shape, a=0, mode="fan_in", nonlinearity="leaky_relu", *, dtype=np.float32, generator=None,
                    offset=0):
    return kaiming_uniform_(_new(shape, dtype, "kaiming_uniform"), a, mode, nonlinearity, generator, offset=offset)


def kaiming_normal(shape, a=0, mode="fan_in", nonlinearity="leaky_relu", *, dtype=np.float32, generator=None,
                   offset=0):
    return kaiming_normal_(_new(shape, dtype, "kaiming_normal"), a, mode, nonlinearity, generator, offset=offset)


def variance_scaling(shape, scale=1.0, mode="fan_in", distribution="truncated_normal", *, dtype=np.float32,
                     generator=None, in_axis=1, out_axis=0, offset=0):
    return variance_scaling_(_new(shape, dtype, "variance_scaling"), scale, mode, distribution, generator,
                             in_axis=in_axis, out_axis=out_axis, offset=offset)


def lecun_uniform(shape, *, dtype=np.float32, generator=None, in_axis=1, out_axis=0, offset=0):
    return lecun_uniform_(_new(shape, dtype, "lecun_uniform"), generator, in_axis=in_axis, out_axis=out_axis,
                          offset=offset)


def lecun_normal(shape, *, dtype=np.float32, generator=None, in_axis=1, out_axis=0, offset=0):
    return lecun_normal_(_new(shape, dtype, "lecun_normal"), generator, in_axis=in_axis, out_axis=out_axis,
                         offset=offset)


def orthogonal(shape, gain=1, *, dtype=np.float32, generator=None):
    return orthogonal_(_new(shape, dtype, "orthogonal"), gain, generator)


def sparse(shape, sparsity, std=0.01, *, dtype=np.float32, generator=None):
    return sparse_(_new(shape, dtype, "sparse"), sparsity, std, generator)


_CTOR_DOCS = {
    "uniform": (r":math:`U[a, b)`",
                "    >>> w = fastinit.uniform((2, 3), -1.0, 1.0, generator=0)\n"
                "    >>> w.shape, w.dtype, bool((w >= -1).all() and (w < 1).all())\n"
                "    ((2, 3), dtype('float32'), True)"),
    "normal": (r":math:`\mathcal{N}(\text{mean}, \text{std}^2)`",
               "    >>> w = fastinit.normal((1000, 1000), std=0.02, dtype=np.float64, generator=0)\n"
               "    >>> round(float(w.std()), 3)\n"
               "    0.02"),
    "trunc_normal": (r"a normal truncated to the absolute interval :math:`[a, b]` (torch meaning)",
                     "    >>> w = fastinit.trunc_normal((100, 100), std=5.0, generator=0)\n"
                     "    >>> bool(np.abs(w).max() <= 2.0)\n"
                     "    True"),
    "constant": (r":math:`w_i = \text{val}`",
                 "    >>> fastinit.constant(3, 0.25)\n"
                 "    array([0.25, 0.25, 0.25], dtype=float32)"),
    "ones": ("all ones",
             "    >>> fastinit.ones((1, 2), dtype=np.float64)\n"
             "    array([[1., 1.]])"),
    "zeros": ("all zeros",
              "    >>> fastinit.zeros(2)\n"
              "    array([0., 0.], dtype=float32)"),
    "eye": (r"the identity :math:`\delta_{ij}` (2-D shape)",
            "    >>> fastinit.eye((2, 2))\n"
            "    array([[1., 0.],\n"
            "           [0., 1.]], dtype=float32)"),
    "dirac": ("the Dirac (identity convolution) kernel",
              "    >>> float(fastinit.dirac((8, 8, 3, 3)).sum())\n"
              "    8.0"),
    "xavier_uniform": (r":math:`U(-b, b)`, :math:`b = \text{gain}\sqrt{6/(\text{fan\_in} + \text{fan\_out})}`",
                       "    >>> w = fastinit.xavier_uniform((300, 600), generator=0)\n"
                       "    >>> bool(np.abs(w).max() < np.sqrt(6 / 900))\n"
                       "    True"),
    "xavier_normal": (r":math:`\mathcal{N}(0, \text{gain}^2 \cdot 2/(\text{fan\_in} + \text{fan\_out}))`",
                      "    >>> w = fastinit.xavier_normal((300, 600), generator=0)\n"
                      "    >>> round(float(w.var() * 900 / 2), 2)\n"
                      "    1.0"),
    "kaiming_uniform": (r":math:`U(-b, b)`, :math:`b = \text{gain}\sqrt{3/\text{fan\_mode}}`",
                        "    >>> w = fastinit.kaiming_uniform((64, 3, 3, 3), a=5 ** 0.5, generator=0)\n"
                        "    >>> bool(np.abs(w).max() < 1 / np.sqrt(27))\n"
                        "    True"),
    "kaiming_normal": (r":math:`\mathcal{N}(0, \text{gain}^2/\text{fan\_mode})`",
                       "    >>> w = fastinit.kaiming_normal((512, 2048), nonlinearity='relu', generator=0)\n"
                       "    >>> round(float(w.var() * 2048 / 2), 2)\n"
                       "    1.0"),
    "variance_scaling": ("JAX's variance_scaling law (see :func:`variance_scaling_`)",
                         "    >>> w = fastinit.variance_scaling((3, 3, 64, 128), 2.0, 'fan_in', 'normal',\n"
                         "    ...                                in_axis=-2, out_axis=-1, generator=0)   # HWIO\n"
                         "    >>> round(float(w.var() * 9 * 64 / 2), 1)\n"
                         "    1.0"),
    "lecun_uniform": (r":math:`U(-\sqrt{3/\text{fan\_in}}, \sqrt{3/\text{fan\_in}})`",
                      "    >>> w = fastinit.lecun_uniform((100, 300), generator=0)\n"
                      "    >>> bool(np.abs(w).max() < 0.1)\n"
                      "    True"),
    "lecun_normal": (r"truncated normal of variance :math:`1/\text{fan\_in}` (JAX/Keras meaning)",
                     "    >>> w = fastinit.lecun_normal((1000, 400), dtype=np.float64, generator=0)\n"
                     "    >>> round(float(w.var() * 400), 2)\n"
                     "    1.0"),
    "orthogonal": ("a Haar-random (semi-)orthogonal matrix times gain",
                   "    >>> w = fastinit.orthogonal((32, 64), dtype=np.float64, generator=0)\n"
                   "    >>> bool(np.allclose(w @ w.T, np.eye(32)))\n"
                   "    True"),
    "sparse": (r":math:`\mathcal{N}(0, \text{std}^2)` with a fraction ``sparsity`` of each column zero",
               "    >>> w = fastinit.sparse((10, 4), 0.5, generator=0)\n"
               "    >>> (w == 0).sum(axis=0).tolist()\n"
               "    [5, 5, 5, 5]"),
}

for _name, (_law, _example) in _CTOR_DOCS.items():
    globals()[_name].__doc__ = _ctor_doc(_name, _law, _example)
del _name, _law, _example
