"""The checks that depend on the target's dtype and size, then one stream: the last step of every
public sampling function before it writes.

The public functions check their own arguments (types, finiteness, ``a <= b``, ``std >= 0``, ...)
with :mod:`fastinit._checks`; the functions here add what needs the target:

* the offset: ``offset + size`` elements must fit in one stream;
* representability: every value the call can produce must be finite in the dtype (for normals,
  ``|mean| + reach * std`` with the kernels' reach, :func:`fastinit._fill.normal_reach`), and a
  bounded law must contain a value of the dtype;
* the generator's type.

Only then :func:`draw` takes a stream (none for a zero-size target) and runs the fill, giving the
stream back if the fill raises. So a call that raises writes nothing and does not advance the
generator. The fills of :mod:`fastinit._fill` trust what arrives here.
"""

from __future__ import annotations

import math

import numpy as np

from . import _checks
from ._checks import InitArgumentError
from ._fill import float_max, interval, normal_reach, per_block
from ._generator import check_generator, taken_stream

__all__ = ["check_offset", "check_value", "check_uniform", "check_normal", "check_trunc_normal", "draw"]


def check_offset(offset, arr: np.ndarray) -> int:
    """``offset`` checked for a fill of ``arr``: a non-negative int with the elements in one stream."""
    return _checks.offset(offset, arr.size, per_block(arr.dtype))


def _outside(dtype: np.dtype, what: str, reach: float) -> InitArgumentError:
    fmax = float_max(dtype)
    return InitArgumentError(f"{what}: the values reach {reach:.6g}, beyond {fmax:.6g}, the largest finite "
                             f"{np.dtype(dtype).name} value")


def check_value(dtype: np.dtype, value: float, what: str) -> None:
    """A finite ``value`` must lie within the finite range of ``dtype`` (infinities pass)."""
    if math.isfinite(value) and abs(value) > float_max(dtype):
        raise _outside(dtype, what, abs(value))


def check_uniform(dtype: np.dtype, a: float, b: float, what: str) -> None:
    """Values in ``[a, b)``: ``a``, ``b`` and ``b - a`` within the dtype's finite range (torch's
    rule), ``b - a`` finite in the working precision (float32 for the 32-bit family), and some
    dtype value in ``[a, b)``."""
    fmax = float_max(dtype)
    if not max(abs(a), abs(b)) <= fmax:
        raise _outside(dtype, what, max(abs(a), abs(b)))
    if a == b:
        return
    if dtype == np.float64:
        width = b - a
    else:
        with np.errstate(over="ignore"):
            width = float(np.float32(b) - np.float32(a))
    if not (b - a <= fmax and math.isfinite(width)):
        raise InitArgumentError(f"{what}: b - a = {b - a:.6g} exceeds {fmax:.6g}, the largest finite "
                                f"{np.dtype(dtype).name} value")
    lo, hi = interval(dtype, a, b, closed=False)
    if lo > hi:
        raise InitArgumentError(f"{what}: no {np.dtype(dtype).name} value lies in [a, b) = [{a}, {b})")


def check_normal(dtype: np.dtype, mean: float, std: float, what: str) -> None:
    """Values in ``mean +- reach * std`` (the kernel's reach for ``dtype``): within the dtype's range."""
    top = abs(mean) + normal_reach(dtype) * std
    if not top <= float_max(dtype):
        raise _outside(dtype, f"{what} (|mean| + {normal_reach(dtype):.2f} std)", top)


def check_trunc_normal(dtype: np.dtype, mean: float, std: float, a: float, b: float, what: str) -> None:
    """Values in ``[a, b]`` within ``reach * std`` of ``c``, the point of ``[a, b]`` nearest the mean:
    within the dtype's range, and some dtype value in ``[a, b]``."""
    r = normal_reach(dtype)
    c = min(max(mean, a), b)
    lo, hi = max(a, c - r * std), min(b, c + r * std)
    top = max(abs(lo), abs(hi))
    if not top <= float_max(dtype):
        raise _outside(dtype, f"{what} (values in [a, b] within {r:.2f} std of the mean's side)", top)
    if a < b:
        lo, hi = interval(dtype, a, b, closed=True)
        if lo > hi:
            raise InitArgumentError(f"{what}: no {np.dtype(dtype).name} value lies in [a, b] = [{a}, {b}]")


def draw(arr: np.ndarray, generator, fill, *args, offset: int = 0) -> None:
    """Check ``generator``, then (unless ``arr`` is empty) take one stream and run
    ``fill(arr, *args, seed, stream, offset)``, giving the stream back if it raises."""
    gen = check_generator(generator)
    if arr.size == 0:
        return
    with taken_stream(gen) as (seed, stream):
        fill(arr, *args, seed, stream, offset)
