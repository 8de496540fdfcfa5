"""Argument checks shared by every layer (initializers, fills, generator, simulator, CLI).

One policy: a value of the wrong *type* raises :class:`TypeError`; a value of the right type
that fastinit cannot use raises :class:`InitArgumentError` (a :class:`ValueError`). Every message
names the argument. Public functions validate everything before they take a stream or write.

Examples
--------
>>> from fastinit import _checks
>>> _checks.real(0.5, "std", minimum=0)
0.5
>>> _checks.integer(3, "depth", minimum=1)
3
>>> _checks.real(float("nan"), "std")
Traceback (most recent call last):
    ...
fastinit.InitArgumentError: std must be finite, got nan
"""

from __future__ import annotations

import math
import numbers

import numpy as np

__all__ = ["InitArgumentError", "real", "integer", "seed", "offset", "U64"]

U64 = 1 << 64


class InitArgumentError(ValueError, RuntimeError):
    """An argument value fastinit cannot use.

    Subclasses both :class:`ValueError` and :class:`RuntimeError`, because torch raises
    RuntimeError for some of these cases (``a > b`` in ``uniform_``, ``std < 0`` in ``normal_``).
    """


InitArgumentError.__module__ = "fastinit"


def real(x, name: str, *, finite: bool = True, minimum: float | None = None) -> float:
    """``x`` as a float: a real number (not bool, not complex), never NaN, finite unless ``finite``
    is False, and ``>= minimum`` when given."""
    if type(x) is not float:  # the common case skips the (slow) abstract-base-class checks
        if isinstance(x, (bool, np.bool_)) or not isinstance(x, numbers.Real):
            raise TypeError(f"{name} must be a real number, got {type(x).__name__}")
        x = float(x)
    if math.isnan(x) or (finite and math.isinf(x)):
        raise InitArgumentError(f"{name} must be finite, got {x}")
    if minimum is not None and x < minimum:
        raise InitArgumentError(f"{name} must be >= {minimum}, got {x}")
    return x


def integer(x, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """``x`` as an int: an integral number (not bool), within ``[minimum, maximum]`` when given."""
    if type(x) is not int:  # exactly int (bool is a subclass): no abstract-base-class checks needed
        if isinstance(x, (bool, np.bool_)) or not isinstance(x, numbers.Integral):
            raise TypeError(f"{name} must be an integer, got {type(x).__name__}")
        x = int(x)
    if minimum is not None and x < minimum:
        raise InitArgumentError(f"{name} must be >= {minimum}, got {x}")
    if maximum is not None and x > maximum:
        raise InitArgumentError(f"{name} must be <= {maximum}, got {x}")
    return x


def seed(x, name: str = "seed") -> int:
    """A 64-bit seed in ``[-2**63, 2**64)``, returned modulo ``2**64`` (negative seeds map as in
    torch: two's complement)."""
    x = integer(x, name)
    if not -(1 << 63) <= x < U64:
        raise InitArgumentError(f"{name} must lie in [-2**63, 2**64), got {x}")
    return x % U64


def offset(x, size: int, per_block: int, name: str = "offset") -> int:
    """A non-negative start index such that ``size`` elements from it fit in one stream of
    :math:`2^{64}` blocks of ``per_block`` elements (4 per block for 32-bit words, 2 for float64)."""
    x = integer(x, name, minimum=0)
    if x + size > U64 * per_block:
        raise InitArgumentError(f"{name} + size = {x + size} exceeds the {U64 * per_block} elements of one stream")
    return x
