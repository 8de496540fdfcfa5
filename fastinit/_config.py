"""Settings read from the environment once, at import: one parse and one default for every module.

``FASTINIT_NUMBA_CACHE``
    Numba's on-disk cache for every fastinit kernel (fills, Householder QR, simulator): on unless
    the variable is ``0``, ``false``, ``no`` or ``off`` (any case). Numba writes next to the sources
    when it can and falls back to a per-user directory on a read-only install; ``NUMBA_CACHE_DIR``
    chooses the directory.

Examples
--------
>>> from fastinit import _config
>>> _config.flag("FASTINIT_NO_SUCH_SETTING", default=True)
True
"""

from __future__ import annotations

import os

__all__ = ["NUMBA_CACHE", "flag"]

_OFF = ("0", "false", "no", "off")


def flag(name: str, default: bool) -> bool:
    """An on/off environment setting: unset or empty gives ``default``; 0/false/no/off is off."""
    value = os.environ.get(name, "").strip().lower()
    if not value:
        return default
    return value not in _OFF


#: Numba's on-disk cache for all of fastinit's kernels (``FASTINIT_NUMBA_CACHE``).
NUMBA_CACHE: bool = flag("FASTINIT_NUMBA_CACHE", default=True)
