r"""Fans and gains: the one home of the rules every initializer, the theory and the simulator use.

* :func:`calculate_fan_in_and_fan_out`: torch's OIHW fans (dim 0 = out, dim 1 = in, the rest the
  receptive field); :func:`fans_along` the same with the in/out dimensions at any axes (JAX's
  ``in_axis``/``out_axis``).
* :func:`fan_for_mode`: the fan a variance-scaling mode divides by (``fan_in``, ``fan_out``, their
  mean ``fan_avg`` or geometric mean ``fan_geo_avg``); :func:`check_mode` its argument check.
* :func:`calculate_gain`: torch's gain table.

The ``Literal`` aliases name the accepted strings for type checkers.
"""

from __future__ import annotations

import math
import numbers
import operator
from typing import Literal

import numpy as np

from . import _checks
from ._checks import InitArgumentError
from ._tensors import is_torch_tensor

__all__ = ["calculate_fan_in_and_fan_out", "calculate_gain", "fans_along", "fan_for_mode", "check_mode",
           "shape_of", "LINEAR_FNS", "TORCH_MODES", "VS_MODES", "Nonlinearity", "TorchMode", "FanMode"]

#: nonlinearities whose gain is 1 (returned as the int 1, as torch does)
LINEAR_FNS = ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
              "conv_transpose3d", "sigmoid")
#: the modes of torch's kaiming_* functions and of JAX's variance_scaling
TORCH_MODES = ("fan_in", "fan_out")
VS_MODES = ("fan_in", "fan_out", "fan_avg", "fan_geo_avg")

Nonlinearity = Literal["linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                       "conv_transpose3d", "sigmoid", "tanh", "relu", "leaky_relu", "selu"]
TorchMode = Literal["fan_in", "fan_out"]
FanMode = Literal["fan_in", "fan_out", "fan_avg", "fan_geo_avg"]


def shape_of(x) -> tuple[int, ...]:
    """The shape of an array or tensor, or ``x`` itself as a shape (an int is a 1-D shape)."""
    if isinstance(x, np.ndarray) or is_torch_tensor(x):
        return tuple(int(n) for n in x.shape)
    if isinstance(x, numbers.Integral) and not isinstance(x, (bool, np.bool_)):
        return (int(x),)
    try:
        return tuple(operator.index(n) for n in x)
    except TypeError:
        raise TypeError(f"expected an array, a tensor or a shape, got {type(x).__name__}") from None


def _need_2d(ndim: int) -> None:
    if ndim < 2:
        raise ValueError("Fan in and fan out can not be computed for tensor with fewer than 2 dimensions")


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
    see :func:`fastinit.variance_scaling_` for axis arguments.

    Examples
    --------
    >>> import numpy as np, fastinit
    >>> fastinit.calculate_fan_in_and_fan_out(np.empty((32, 16, 3, 3), np.float32))
    (144, 288)
    >>> fastinit.calculate_fan_in_and_fan_out((50, 20))
    (20, 50)
    """
    shape = shape_of(tensor)
    _need_2d(len(shape))
    receptive = math.prod(shape[2:])
    return shape[1] * receptive, shape[0] * receptive


def fans_along(shape: tuple[int, ...], in_axis: int = 1, out_axis: int = 0) -> tuple[int, int]:
    """``(fan_in, fan_out)`` with the in/out sizes at the given axes; every other axis is
    receptive field (JAX's ``in_axis``/``out_axis``; the defaults are torch's convention).
    A non-integer axis is a TypeError; an axis out of range, or the same axis twice, an
    :class:`InitArgumentError` (a ValueError).

    Examples
    --------
    >>> fans_along((3, 3, 64, 128), in_axis=-2, out_axis=-1)   # an HWIO kernel
    (576, 1152)
    """
    nd = len(shape)
    _need_2d(nd)
    axes = []
    for name, ax in (("in_axis", in_axis), ("out_axis", out_axis)):
        ax = _checks.integer(ax, name)
        if not -nd <= ax < nd:
            raise InitArgumentError(f"{name}={ax} is not an axis of a {nd}-D tensor")
        axes.append(ax % nd)
    if axes[0] == axes[1]:
        raise InitArgumentError(f"in_axis and out_axis must differ, got {in_axis} and {out_axis}")
    receptive = math.prod(n for k, n in enumerate(shape) if k not in axes)
    return shape[axes[0]] * receptive, shape[axes[1]] * receptive


def check_mode(mode, valid: tuple[str, ...] = VS_MODES) -> str:
    """``mode`` lower-cased if it is one of ``valid`` (case-insensitive, as torch); ValueError with
    torch's message otherwise."""
    m = mode.lower() if isinstance(mode, str) else None
    if m not in valid:
        raise ValueError(f"Mode {mode} not supported, please use one of {list(valid)}")
    return m


def fan_for_mode(fan_in: int, fan_out: int, mode: str) -> float:
    """The fan of a (checked, lower-case) mode: fan_in, fan_out, their mean or geometric mean.

    Examples
    --------
    >>> fan_for_mode(100, 400, "fan_avg"), fan_for_mode(100, 400, "fan_geo_avg")
    (250.0, 200.0)
    """
    if mode == "fan_in":
        return fan_in
    if mode == "fan_out":
        return fan_out
    if mode == "fan_avg":
        return (fan_in + fan_out) / 2.0
    return math.sqrt(fan_in * fan_out)  # fan_geo_avg


def calculate_gain(nonlinearity: Nonlinearity, param: float | None = None) -> float:
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
        strings included: torch's exception type).

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
    if nonlinearity in LINEAR_FNS:
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
