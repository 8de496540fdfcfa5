r"""The variance-scaling family: one general function behind ``xavier_*``, ``kaiming_*``, ``lecun_*``
and JAX's ``variance_scaling_``, re-exported by :mod:`fastinit.init`.

Each public function is one call of :func:`_variance_scaling_`, which fills zero-mean values of
variance ``scale * gain**2 / fan(mode)`` with a uniform, normal or (JAX's) truncated normal law.
"""

from __future__ import annotations

import math
import warnings
from typing import Literal

from . import _checks
from ._block import Block, check_block
from ._checks import InitArgumentError
from ._docs import fill_doc
from ._draw import check_normal, check_offset, check_trunc_normal, check_uniform, draw
from ._fans import (
    TORCH_MODES,
    VS_MODES,
    FanMode,
    Nonlinearity,
    TorchMode,
    calculate_gain,
    check_mode,
    fan_for_mode,
    fans_along,
)
from ._fill import fill_normal, fill_trunc_normal, fill_uniform
from ._generator import GeneratorLike, check_generator
from ._tensors import TensorT, done, target

__all__ = ["xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "variance_scaling_",
           "lecun_uniform_", "lecun_normal_", "TRUNCATED_NORMAL_STD", "Distribution"]

Distribution = Literal["truncated_normal", "normal", "uniform", "untruncated_normal"]
_DISTRIBUTIONS = ("truncated_normal", "normal", "uniform")

# Standard deviation of N(0, 1) truncated to (-2, 2): sqrt(1 - 4 phi(2) / (2 Phi(2) - 1)), the
# constant JAX and Keras divide by so that a "truncated_normal" variance_scaling has exactly the
# requested variance after truncation (scipy.stats.truncnorm(-2, 2).std() = 0.8796256610342398).
TRUNCATED_NORMAL_STD = 0.87962566103423978


def _variance_scaling_(tensor, scale, mode, distribution, generator, offset, block=None, *, modes=VS_MODES,
                       in_axis=1, out_axis=0, gain=None, nonlinearity=None, param=None, warn_empty=False):
    r"""Fill ``tensor`` with zero-mean values of variance ``scale * gain**2 / fan(mode)``.

    Checks run in torch's order: the zero-element warning (kaiming only), the mode, the fans,
    the gain (when ``nonlinearity`` is given), then the remaining arguments and the values'
    range in the dtype; nothing is written and no stream is taken if any check fails. With a
    ``block``, the fans and the zero-element rule are those of the global shape.
    """
    arr = target(tensor)
    block = check_block(block, arr.shape)
    shape = arr.shape if block is None else block.global_shape
    if warn_empty and 0 in shape:
        warnings.warn("Initializing zero-element tensors is a no-op", UserWarning, stacklevel=3)
        return tensor
    mode = check_mode(mode, modes)
    fan_in, fan_out = fans_along(shape, in_axis, out_axis)
    scale = _checks.real(scale, "scale")
    if gain is not None:
        gain = _check_gain(gain)
        scale *= gain * gain  # = gain**2, which raises OverflowError where the product gives inf (refused below)
    if nonlinearity is not None:
        scale *= calculate_gain(nonlinearity, param) ** 2
    if scale < 0:
        raise InitArgumentError(f"scale must be >= 0, got {scale}")
    dist = distribution.lower() if isinstance(distribution, str) else distribution
    if dist == "untruncated_normal":  # JAX/Keras spelling of the plain normal
        dist = "normal"
    if dist not in _DISTRIBUTIONS:
        raise ValueError(f"distribution {distribution!r} not supported, please use one of {list(_DISTRIBUTIONS)}")
    offset = check_offset(offset, arr, block)
    if math.prod(shape) == 0:
        check_generator(generator)
        return tensor
    fan = fan_for_mode(fan_in, fan_out, mode)
    variance = scale / fan
    what = f"scale * gain**2 / fan = {scale:.6g} / {fan:g}"
    if dist == "uniform":
        bound = math.sqrt(3.0 * variance)  # U(-c, c) has variance c^2 / 3
        check_uniform(arr.dtype, -bound, bound, f"{what}, bound {bound:.6g}")
        draw(arr, generator, fill_uniform, -bound, bound, offset=offset)
    elif dist == "normal" or variance == 0:
        std = math.sqrt(variance)
        check_normal(arr.dtype, 0.0, std, f"{what}, std {std:.6g}")
        draw(arr, generator, fill_normal, 0.0, std, offset=offset)
    else:  # truncated at +-2 std of the underlying normal, rescaled so the result has `variance`
        std = math.sqrt(variance) / TRUNCATED_NORMAL_STD
        check_trunc_normal(arr.dtype, 0.0, std, -2.0 * std, 2.0 * std, f"{what}, std {std:.6g}")
        draw(arr, generator, fill_trunc_normal, 0.0, std, -2.0 * std, 2.0 * std, offset=offset)
    return done(tensor)


def _check_gain(gain) -> float:
    gain = _checks.real(gain, "gain")
    if gain < 0:  # torch raises RuntimeError from uniform_/normal_ for a negative gain
        raise InitArgumentError(f"gain must be >= 0, got {gain}")
    return gain


@fill_doc
def xavier_uniform_(tensor: TensorT, gain: float = 1.0, generator: GeneratorLike = None, *, offset: int = 0,
                    block: Block | None = None) -> TensorT:
    r"""Fill ``tensor`` in place with Glorot/Xavier-uniform values.

    Samples are drawn from :math:`U(-b, b)` with

    .. math::
        b = \text{gain} \sqrt{\frac{6}{\text{fan\_in} + \text{fan\_out}}}

    i.e. variance :math:`\text{gain}^2 \cdot 2 / (\text{fan\_in} + \text{fan\_out})`.

    Parameters
    ----------
    %(tensor_fans)s
    gain : float
        Scaling factor, ``>= 0``.
    %(generator)s
    %(offset)s
    %(block)s

    %(returns)s

    Raises
    ------
    ValueError
        Fewer than 2 dimensions.
    InitArgumentError
        Negative or non-finite gain (torch: RuntimeError from ``uniform_``).
    %(range)s

    Notes
    -----
    ``_variance_scaling_(tensor, gain**2, "fan_avg", "uniform")``. A zero-size tensor is a
    silent no-op (torch raises ZeroDivisionError for shape ``(0, 0)``).

    %(scaling_range)s

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
    return _variance_scaling_(tensor, 1.0, "fan_avg", "uniform", generator, offset, block, gain=gain)


@fill_doc
def xavier_normal_(tensor: TensorT, gain: float = 1.0, generator: GeneratorLike = None, *, offset: int = 0,
                   block: Block | None = None) -> TensorT:
    r"""Fill ``tensor`` in place with Glorot/Xavier-normal values.

    Samples are drawn from :math:`\mathcal{N}(0, \sigma^2)`, **not truncated** (torch; JAX's and
    Keras's ``glorot_normal`` truncate), with

    .. math::
        \sigma = \text{gain} \sqrt{\frac{2}{\text{fan\_in} + \text{fan\_out}}}

    Parameters
    ----------
    %(tensor_fans)s
    gain : float
        ``>= 0``.
    %(generator)s
    %(offset)s
    %(block)s

    %(returns)s

    Notes
    -----
    ``_variance_scaling_(tensor, gain**2, "fan_avg", "normal")``.

    %(scaling_range)s

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
    return _variance_scaling_(tensor, 1.0, "fan_avg", "normal", generator, offset, block, gain=gain)


@fill_doc
def kaiming_uniform_(tensor: TensorT, a: float = 0, mode: TorchMode = "fan_in",
                     nonlinearity: Nonlinearity = "leaky_relu", generator: GeneratorLike = None, *,
                     offset: int = 0, block: Block | None = None) -> TensorT:
    r"""Fill ``tensor`` in place with He/Kaiming-uniform values.

    Samples are drawn from :math:`U(-b, b)` with

    .. math::
        b = \text{gain} \sqrt{\frac{3}{\text{fan\_mode}}}, \qquad
        \text{gain} = \sqrt{\frac{2}{1 + a^2}} \ \text{(leaky\_relu)}

    Parameters
    ----------
    %(tensor_fans)s
    a : float
        Negative slope of the rectifier after this layer (leaky_relu only). torch's
        ``nn.Linear`` and ``nn.ConvNd`` use ``a=sqrt(5)``, i.e. :math:`b = 1/\sqrt{\text{fan\_in}}`.
    mode : {"fan_in", "fan_out"}
        Case-insensitive. ``"fan_in"`` keeps the forward-pass variance, ``"fan_out"`` the
        backward pass.
    nonlinearity : str
        A name accepted by :func:`calculate_gain`; ``"relu"`` or ``"leaky_relu"`` are the
        intended ones.
    %(generator)s
    %(offset)s
    %(block)s

    %(returns)s

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

    %(scaling_range)s

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
    return _variance_scaling_(tensor, 1.0, mode, "uniform", generator, offset, block, modes=TORCH_MODES,
                              nonlinearity=nonlinearity, param=a, warn_empty=True)


@fill_doc
def kaiming_normal_(tensor: TensorT, a: float = 0, mode: TorchMode = "fan_in",
                    nonlinearity: Nonlinearity = "leaky_relu", generator: GeneratorLike = None, *,
                    offset: int = 0, block: Block | None = None) -> TensorT:
    r"""Fill ``tensor`` in place with He/Kaiming-normal values.

    Samples are drawn from :math:`\mathcal{N}(0, \sigma^2)`, **not truncated** (torch; JAX's and
    Keras's ``he_normal`` truncate), with

    .. math::
        \sigma = \frac{\text{gain}}{\sqrt{\text{fan\_mode}}}, \qquad
        \text{gain} = \sqrt{\frac{2}{1 + a^2}} \ \text{(leaky\_relu)}

    Parameters
    ----------
    %(tensor_fans)s
    a : float
        Negative slope (leaky_relu only).
    mode : {"fan_in", "fan_out"}
    nonlinearity : str
    %(generator)s
    %(offset)s
    %(block)s

    %(returns)s

    Warns
    -----
    UserWarning
        "Initializing zero-element tensors is a no-op" if any dimension is 0.

    Notes
    -----
    ``_variance_scaling_(tensor, gain**2, mode, "normal")``, drawn as :func:`normal_` draws:
    element ``offset + i`` of the 32-bit family is the inverse CDF of word ``(offset + i) % 4`` of
    Philox block ``(offset + i) // 4`` (an octave table of polynomials, no Box-Muller); float64
    elements are Box-Muller pairs, one block per pair. So results do not depend on the thread
    count or SIMD width.

    %(scaling_range)s

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
    return _variance_scaling_(tensor, 1.0, mode, "normal", generator, offset, block, modes=TORCH_MODES,
                              nonlinearity=nonlinearity, param=a, warn_empty=True)


@fill_doc
def variance_scaling_(tensor: TensorT, scale: float = 1.0, mode: FanMode = "fan_in",
                      distribution: Distribution = "truncated_normal", generator: GeneratorLike = None, *,
                      in_axis: int = 1, out_axis: int = 0, offset: int = 0, block: Block | None = None) -> TensorT:
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
    %(tensor_fans)s
    scale : float
        ``>= 0``. 1 for LeCun/Glorot, 2 for He.
    mode : {"fan_in", "fan_out", "fan_avg", "fan_geo_avg"}
        Case-insensitive.
    distribution : {"truncated_normal", "normal", "uniform"}
        JAX's meaning: ``"normal"`` is **untruncated** (Keras maps ``"normal"`` to
        ``"truncated_normal"``; ``"untruncated_normal"`` is accepted as an alias of ``"normal"``).
    %(generator)s
    %(axes)s
    %(offset)s
    %(block)s

    %(returns)s

    Raises
    ------
    ValueError
        Unknown mode or distribution, fewer than 2 dimensions, axes out of range or equal.
    TypeError
        An axis that is not an integer.
    InitArgumentError
        Negative or non-finite scale.
    %(range)s

    Notes
    -----
    No ``max(1, fan)`` floor (JAX has none; Keras floors the fan at 1). A zero-size tensor is
    a silent no-op.

    %(scaling_range)s

    Examples
    --------
    >>> import numpy as np, fastinit
    >>> w = fastinit.variance_scaling_(np.empty((500, 2000)), 2.0, "fan_in", generator=0)
    >>> round(float(w.std() / np.sqrt(2 / 2000)), 2), bool(np.abs(w).max() <= 2 * np.sqrt(2 / 2000) / 0.8796)
    (1.0, True)
    """
    return _variance_scaling_(tensor, scale, mode, distribution, generator, offset, block,
                              in_axis=in_axis, out_axis=out_axis)


@fill_doc
def lecun_uniform_(tensor: TensorT, generator: GeneratorLike = None, *, in_axis: int = 1, out_axis: int = 0,
                   offset: int = 0, block: Block | None = None) -> TensorT:
    r"""Fill ``tensor`` in place with LeCun-uniform values.

    Values from :math:`U(-\sqrt{3/\text{fan\_in}}, \sqrt{3/\text{fan\_in}})`.

    Variance :math:`1/\text{fan\_in}`; JAX's and Keras's ``lecun_uniform``.
    ``variance_scaling_(tensor, 1.0, "fan_in", "uniform")``; fans in torch's layout unless the
    axes are given (see :func:`variance_scaling_`).

    Parameters
    ----------
    %(tensor_fans)s
    %(generator)s
    %(axes)s
    %(offset)s
    %(block)s

    %(returns)s

    Notes
    -----
    %(scaling_range)s

    Examples
    --------
    >>> import numpy as np, fastinit
    >>> w = fastinit.lecun_uniform_(np.empty((100, 300), np.float32), generator=0)
    >>> bool(np.abs(w).max() < 0.1)      # sqrt(3 / 300)
    True
    """
    return _variance_scaling_(tensor, 1.0, "fan_in", "uniform", generator, offset, block, in_axis=in_axis,
                              out_axis=out_axis)


@fill_doc
def lecun_normal_(tensor: TensorT, generator: GeneratorLike = None, *, in_axis: int = 1, out_axis: int = 0,
                  offset: int = 0, block: Block | None = None) -> TensorT:
    r"""Fill ``tensor`` in place with LeCun-normal values (the SELU companion), JAX/Keras meaning.

    Values are :math:`\sigma Z` with :math:`Z \sim \mathcal{N}(0, 1)` truncated to :math:`(-2, 2)`
    and :math:`\sigma = \sqrt{1/\text{fan\_in}} / 0.87962566103423978`, so the variance is exactly
    :math:`1/\text{fan\_in}`: ``variance_scaling_(tensor, 1.0, "fan_in", "truncated_normal")``.
    For the untruncated :math:`\mathcal{N}(0, 1/\text{fan\_in})` of the SELU paper use
    ``variance_scaling_(tensor, 1.0, "fan_in", "normal")``.

    Parameters
    ----------
    %(tensor_fans)s
    %(generator)s
    %(axes)s
    %(offset)s
    %(block)s

    %(returns)s

    Notes
    -----
    %(scaling_range)s

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
    return _variance_scaling_(tensor, 1.0, "fan_in", "truncated_normal", generator, offset, block,
                              in_axis=in_axis, out_axis=out_axis)
