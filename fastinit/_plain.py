r"""The plain distributions (``uniform_``, ``normal_``, ``trunc_normal_``) and the deterministic
fills (``constant_``, ``ones_``, ``zeros_``, ``eye_``, ``dirac_``), re-exported by :mod:`fastinit.init`."""

from __future__ import annotations

import numbers
import warnings

import numpy as np

from . import _checks
from ._block import Block, check_block
from ._checks import InitArgumentError
from ._docs import fill_doc
from ._draw import check_normal, check_offset, check_trunc_normal, check_uniform, check_value, draw
from ._fill import fill_constant, fill_normal, fill_trunc_normal, fill_uniform
from ._generator import GeneratorLike
from ._tensors import TensorT, done, target

__all__ = ["uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_"]


@fill_doc
def uniform_(tensor: TensorT, a: float = 0.0, b: float = 1.0, generator: GeneratorLike = None, *,
             offset: int = 0, block: Block | None = None) -> TensorT:
    r"""Fill ``tensor`` in place with values from the uniform distribution :math:`U[a, b)`.

    Parameters
    ----------
    %(tensor)s
    a, b : float
        Bounds, finite, ``a <= b``; ``a``, ``b`` and ``b - a`` within the finite range of the
        dtype (as torch requires).
        ``a == b`` fills ``a``.
    %(generator)s
    %(offset)s
    %(block)s

    %(returns)s

    Raises
    ------
    InitArgumentError
        ``a > b`` (a ``RuntimeError``, as in torch, and a ``ValueError``) or non-finite bounds.
    %(range)s

    Notes
    -----
    Element ``i`` is :math:`a + (b - a) u_i`, with :math:`u_i` from word ``offset + i`` of the
    stream (24 bits for the 32-bit and 16-bit dtypes, 53 bits from two words for float64); ``b``
    is never produced in any dtype. See :func:`fastinit._fill.fill_uniform`. Representable means:
    ``a``, ``b`` and ``b - a`` within the dtype's finite range (torch's rule), ``b - a`` finite in
    the working precision (float32 for the 32-bit family) and some value of the dtype in
    :math:`[a, b)`.

    Examples
    --------
    >>> import numpy as np, fastinit
    >>> w = fastinit.uniform_(np.empty((1000, 1000), np.float32), -1, 1, generator=0)
    >>> bool(w.min() >= -1 and w.max() < 1), round(float(w.var()), 2)   # variance (b - a)^2 / 12
    (True, 0.33)
    """
    arr = target(tensor)
    block = check_block(block, arr.shape)
    a, b = _checks.real(a, "a"), _checks.real(b, "b")
    if a > b:
        raise InitArgumentError(f"uniform_ expects a <= b, got a={a} > b={b}")
    offset = check_offset(offset, arr, block)
    check_uniform(arr.dtype, a, b, f"uniform_ with a={a}, b={b}")
    draw(arr, generator, fill_uniform, a, b, offset=offset)
    return done(tensor)


@fill_doc
def normal_(tensor: TensorT, mean: float = 0.0, std: float = 1.0, generator: GeneratorLike = None, *,
            offset: int = 0, block: Block | None = None) -> TensorT:
    r"""Fill ``tensor`` in place with values from :math:`\mathcal{N}(\text{mean}, \text{std}^2)`.

    Parameters
    ----------
    %(tensor)s
    mean : float
    std : float
        ``std >= 0``; ``std == 0`` fills ``mean``.
    %(generator)s
    %(offset)s
    %(block)s

    %(returns)s

    Raises
    ------
    InitArgumentError
        ``std < 0`` (a ``RuntimeError`` as in torch) or a non-finite mean/std.
    %(range)s

    Notes
    -----
    Each element has a fixed counter (:func:`fastinit._fill.fill_normal`). 32-bit values: the
    inverse CDF of one word, :math:`|z| = \Phi^{-1}(1 - q/2)` from a table of degree-7 polynomials
    over the octaves of the two-sided tail probability :math:`q`, in float32 (reach 6.34). float64
    values: Box-Muller on pairs of 53-bit uniforms, in double precision (reach 8.65).

    %(normal_range)s

    Examples
    --------
    >>> import numpy as np, fastinit
    >>> w = fastinit.normal_(np.empty((1000, 1000)), mean=3.0, std=0.5, generator=1)
    >>> round(float(w.mean()), 2), round(float(w.std()), 2)
    (3.0, 0.5)
    """
    arr = target(tensor)
    block = check_block(block, arr.shape)
    mean, std = _checks.real(mean, "mean"), _checks.real(std, "std")
    if std < 0:
        raise InitArgumentError(f"normal_ expects std >= 0.0, got std={std}")
    offset = check_offset(offset, arr, block)
    check_normal(arr.dtype, mean, std, f"normal_ with mean={mean}, std={std}")
    draw(arr, generator, fill_normal, mean, std, offset=offset)
    return done(tensor)


@fill_doc
def trunc_normal_(tensor: TensorT, mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0,
                  generator: GeneratorLike = None, *, offset: int = 0, block: Block | None = None) -> TensorT:
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
    %(tensor)s
    mean : float
    std : float
        ``std > 0``.
    a, b : float
        Absolute bounds, ``a <= b`` (may be infinite). ``a == b`` fills ``a``.
    %(generator)s
    %(offset)s
    %(block)s

    %(returns)s

    Raises
    ------
    InitArgumentError
        ``std <= 0`` (torch: ZeroDivisionError for 0, nothing for < 0), ``a > b``
        (RuntimeError in torch; InitArgumentError is one), non-finite mean or std.
    %(range)s

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

    Representable means: the values of :math:`[a, b]` within :math:`r\,\text{std}` of the point of
    :math:`[a, b]` nearest the mean (:math:`r` = 6.34 for the 32-bit family, 8.65 for float64, the
    reach of :func:`normal_`) lie within the dtype's finite range, and :math:`[a, b]` holds a value
    of the dtype.

    Examples
    --------
    >>> import numpy as np, fastinit
    >>> w = fastinit.trunc_normal_(np.empty((1000, 1000)), std=1.0, a=-1.0, b=1.0, generator=2)
    >>> bool(w.min() >= -1 and w.max() <= 1), round(float(w.std()), 2)   # truncnorm(-1, 1).std() = 0.538
    (True, 0.54)
    """
    arr = target(tensor)
    block = check_block(block, arr.shape)
    mean, std = _checks.real(mean, "mean"), _checks.real(std, "std")
    a, b = _checks.real(a, "a", finite=False), _checks.real(b, "b", finite=False)
    if std <= 0:
        raise InitArgumentError(f"trunc_normal_ expects std > 0, got std={std}")
    if a > b:
        raise InitArgumentError(f"trunc_normal_ expects a <= b, got a={a} > b={b}")
    offset = check_offset(offset, arr, block)
    check_trunc_normal(arr.dtype, mean, std, a, b, f"trunc_normal_ with mean={mean}, std={std}, a={a}, b={b}")
    if mean < a - 2 * std or mean > b + 2 * std:
        warnings.warn("mean is more than 2 std from [a, b] in nn.init.trunc_normal_. "
                      "The distribution of values may be incorrect.", UserWarning, stacklevel=2)
    draw(arr, generator, fill_trunc_normal, mean, std, a, b, offset=offset)
    return done(tensor)


@fill_doc
def constant_(tensor: TensorT, val: float, *, block: Block | None = None) -> TensorT:
    r"""Fill ``tensor`` in place with the value ``val``: :math:`w_i = \text{val}`.

    Parameters
    ----------
    %(tensor)s
    val : float
        Rounded to the tensor's dtype; ``inf`` is allowed, NaN is rejected, and a finite value
        beyond the dtype's finite range (``1e6`` for float16) is rejected, as torch does.
    %(block)s

    %(returns)s

    Examples
    --------
    >>> import numpy as np, fastinit
    >>> fastinit.constant_(np.empty(3, np.float32), 0.5)
    array([0.5, 0.5, 0.5], dtype=float32)
    """
    arr = target(tensor)
    check_block(block, arr.shape)
    val = _checks.real(val, "val", finite=False)
    check_value(arr.dtype, val, f"constant_ with val={val}")
    fill_constant(arr, val)
    return done(tensor)


@fill_doc
def ones_(tensor: TensorT, *, block: Block | None = None) -> TensorT:
    r"""Fill ``tensor`` in place with ones: :math:`w_i = 1`.

    Parameters
    ----------
    %(tensor)s
    %(block)s

    Examples
    --------
    >>> import numpy as np, fastinit
    >>> fastinit.ones_(np.empty((2, 2)))
    array([[1., 1.],
           [1., 1.]])
    """
    return constant_(tensor, 1.0, block=block)


@fill_doc
def zeros_(tensor: TensorT, *, block: Block | None = None) -> TensorT:
    r"""Fill ``tensor`` in place with zeros: :math:`w_i = 0`.

    Parameters
    ----------
    %(tensor)s
    %(block)s

    Examples
    --------
    >>> import numpy as np, fastinit
    >>> fastinit.zeros_(np.empty(2, np.float16))
    array([0., 0.], dtype=float16)
    """
    return constant_(tensor, 0.0, block=block)


@fill_doc
def eye_(tensor: TensorT, *, block: Block | None = None) -> TensorT:
    r"""Fill the 2-D ``tensor`` in place with the identity: :math:`w_{ij} = \delta_{ij}`.

    Rectangular shapes get ones at :math:`(i, i)` for :math:`i < \min(\text{rows}, \text{cols})`.
    There is no gain argument (as in torch; Keras's ``Identity(gain)`` is ``eye_`` times gain).

    Parameters
    ----------
    tensor : numpy.ndarray or torch.Tensor
        2-D (the global shape is, with ``block``).
    %(block)s

    %(returns)s

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
    arr = target(tensor)
    block = check_block(block, arr.shape)
    shape = arr.shape if block is None else block.global_shape
    if len(shape) != 2:
        raise ValueError("Only tensors with 2 dimensions are supported")
    fill_constant(arr, 0.0)
    r0, c0 = (0, 0) if block is None else block.start
    k = np.arange(max(r0, c0), min(r0 + arr.shape[0], c0 + arr.shape[1]))  # diagonal cells inside
    arr[k - r0, k - c0] = 1
    return done(tensor)


@fill_doc
def dirac_(tensor: TensorT, groups: int = 1, *, block: Block | None = None) -> TensorT:
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
    %(block)s

    %(returns)s

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
    arr = target(tensor)
    block = check_block(block, arr.shape)
    shape = arr.shape if block is None else block.global_shape
    if len(shape) not in (3, 4, 5):
        raise ValueError("Only tensors with 3, 4, or 5 dimensions are supported")
    # torch raises ValueError here whatever the type: keep its exception (docs/api.md, section 2)
    if isinstance(groups, (bool, np.bool_)) or not isinstance(groups, numbers.Integral) or groups < 1:
        raise ValueError(f"groups must be a positive integer, got {groups!r}")
    groups = int(groups)
    if shape[0] % groups != 0:
        raise ValueError("dim 0 must be divisible by groups")
    fill_constant(arr, 0.0)
    per_group = shape[0] // groups
    m = min(per_group, shape[1])
    if m and arr.size:
        d = np.tile(np.arange(m), groups)
        ones = [np.repeat(np.arange(groups), m) * per_group + d, d] + [np.full(d.size, n // 2) for n in shape[2:]]
        start = (0,) * len(shape) if block is None else block.start
        local = [i - s for i, s in zip(ones, start, strict=True)]
        inside = np.logical_and.reduce([(i >= 0) & (i < n) for i, n in zip(local, arr.shape, strict=True)])
        arr[tuple(i[inside] for i in local)] = 1
    return done(tensor)
