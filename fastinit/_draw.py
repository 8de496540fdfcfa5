"""The checks that depend on the target's dtype and size, then one stream: the last step of every
public sampling function before it writes.

The public functions check their own arguments (types, finiteness, ``a <= b``, ``std >= 0``, ...)
with :mod:`fastinit._checks`; the functions here add what needs the target:

* the offset: ``offset + size`` elements must fit in one stream (with a block, the logical tensor);
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
from ._block import Block, Placement
from ._checks import InitArgumentError
from ._fill import float_max, interval, normal_reach, per_block
from ._generator import check_generator, taken_stream

__all__ = ["check_offset", "check_value", "check_uniform", "check_normal", "check_trunc_normal", "draw"]


def check_offset(offset, arr: np.ndarray, block: Block | None = None) -> int | Placement:
    """``offset`` checked for a fill of ``arr``: a non-negative int with the elements in one stream.

    With a ``block`` (already checked against ``arr`` by :func:`fastinit._block.check_block`),
    ``offset`` must be 0 and the whole logical tensor must fit in one stream; returns the
    :class:`~fastinit._block.Placement` the fills take as their offset."""
    if block is None:
        return _checks.offset(offset, arr.size, per_block(arr.dtype))
    if _checks.integer(offset, "offset") != 0:
        raise InitArgumentError(f"offset={offset} and block cannot be combined: a block places the elements itself "
                                "(offset is for flat streams)")
    capacity = min(_checks.U64 * per_block(arr.dtype), _checks.U64)  # positions of one stream, 64-bit indices
    if block.global_size > capacity:
        raise InitArgumentError(f"block: the logical tensor of global_shape {block.global_shape} has "
                                f"{block.global_size} elements, more than the {capacity} of one stream")
    return Placement(block)


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


def draw(arr: np.ndarray, generator, fill, *args, offset: int | Placement = 0) -> None:
    """Check ``generator``, then (unless the logical tensor is empty) take one stream and run
    ``fill(arr, *args, seed, stream, offset)``, giving the stream back if it raises.

    The logical tensor is ``arr`` itself, or the block's global tensor when ``offset`` is a
    :class:`~fastinit._block.Placement`: an empty block of a non-empty tensor takes its stream
    (as the full call would) and writes nothing."""
    gen = check_generator(generator)
    if (arr.size if isinstance(offset, int) else offset.global_size) == 0:
        return
    with taken_stream(gen) as (seed, stream):
        if arr.size:
            fill(arr, *args, seed, stream, offset)
