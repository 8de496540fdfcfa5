"""Philox4x32 in Numba, for kernels that need random words inside ``@njit`` code.

Bit-identical to the C core (tests check both against Random123's known-answer vectors), so
a Numba kernel can draw word ``j`` of stream ``(seed, stream)`` itself instead of asking the C
library for a buffer: ``philox_word(seed, stream, j)``.
"""

import numpy as np
from numba import njit

from ._numba import CACHE

PHILOX_M0 = np.uint64(0xD2511F53)  # Random123 PHILOX_M4x32_0
PHILOX_M1 = np.uint64(0xCD9E8D57)  # Random123 PHILOX_M4x32_1
PHILOX_W0 = np.uint32(0x9E3779B9)  # golden ratio: key bump of word 0
PHILOX_W1 = np.uint32(0xBB67AE85)  # sqrt(3) - 1: key bump of word 1
_LO = np.uint64(0xFFFFFFFF)
_32 = np.uint64(32)


@njit(cache=CACHE, inline="always")
def philox4x32(c0, c1, c2, c3, k0, k1, rounds=10):
    """One block of Philox4x32 with `rounds` rounds; all arguments are uint32 words."""
    x0, x1, x2, x3 = np.uint64(c0), np.uint64(c1), np.uint64(c2), np.uint64(c3)
    key0, key1 = np.uint32(k0), np.uint32(k1)
    for r in range(rounds):
        if r > 0:
            key0 = np.uint32(key0 + PHILOX_W0)
            key1 = np.uint32(key1 + PHILOX_W1)
        p0 = PHILOX_M0 * x0
        p1 = PHILOX_M1 * x2
        y0 = ((p1 >> _32) ^ x1 ^ np.uint64(key0)) & _LO
        y2 = ((p0 >> _32) ^ x3 ^ np.uint64(key1)) & _LO
        x1 = p1 & _LO
        x3 = p0 & _LO
        x0 = y0
        x2 = y2
    return np.uint32(x0), np.uint32(x1), np.uint32(x2), np.uint32(x3)


@njit(cache=CACHE)
def philox_block(seed, stream, block):
    """Block `block` (uint64) of stream `stream` under 64-bit `seed`: four uint32 words."""
    seed, stream, block = np.uint64(seed), np.uint64(stream), np.uint64(block)
    return philox4x32(block & _LO, block >> _32, stream & _LO, stream >> _32, seed & _LO, seed >> _32)


@njit(cache=CACHE)
def philox_word(seed, stream, j):
    """Word j (uint64 index) of stream `stream` under 64-bit `seed`, as in :func:`fastinit.raw_uint32`."""
    j = np.uint64(j)
    w = philox_block(seed, stream, j >> np.uint64(2))
    k = j & np.uint64(3)
    if k == 0:
        return w[0]
    if k == 1:
        return w[1]
    if k == 2:
        return w[2]
    return w[3]
