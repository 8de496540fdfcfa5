"""The zero pattern of ``sparse_``: per column, the rows of the smallest Philox keys, in parallel.

Column ``j`` of a ``rows x cols`` matrix gets the keys :math:`k_{ij} = 2^{32} w_{2m} + w_{2m+1}`,
``m = j \\cdot rows + i``, from the raw words at ``word0 + 2m`` of ``(seed, stream)``; its zeroed rows
are the ``num_zeros`` smallest keys, ties broken by the row index (a total order, so the set is
defined whatever the selection algorithm). Sorting i.i.d. keys gives a uniform random permutation,
so every subset of ``num_zeros`` rows is equally likely.

Each column is one prange iteration: its words come from the C kernel, ``np.partition`` finds the
``num_zeros``-th smallest key in expected O(rows) time, and one pass collects the rows below it
(and, for ties with it, the lowest rows).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from ._numba import CACHE, _guard, _raw


@njit(cache=CACHE, nogil=True)
def smallest_rows(keys, k, out):
    """Write to out[:k], in increasing order, the rows of the k smallest (key, row) pairs."""
    kth = np.partition(keys, k - 1)[k - 1]  # the k-th smallest key
    ties = k  # rows with key == kth still to take, lowest rows first
    for i in range(keys.size):
        ties -= keys[i] < kth
    c = 0
    for i in range(keys.size):
        if keys[i] < kth or (keys[i] == kth and ties > 0):
            if keys[i] == kth:
                ties -= 1
            out[c] = i
            c += 1


@njit(parallel=True, cache=CACHE, nogil=True)
def _zero_rows(seed, stream, block0, rows, col0, cols, num_zeros, out):
    for j in prange(cols):
        words = np.empty(2 * rows, np.uint32)
        w = np.uint64(2 * rows) * np.uint64(col0 + j)  # words from the start of block block0
        _raw(seed, stream, block0 + w // np.uint64(4), np.uint32(w % np.uint64(4)), 2 * rows,
             np.uint64(words.ctypes.data))
        keys = (words[0::2].astype(np.uint64) << np.uint64(32)) | words[1::2].astype(np.uint64)
        smallest_rows(keys, num_zeros, out[j])
    return 0


def zero_rows(rows: int, cols: int, num_zeros: int, seed: int, stream: int, word0: int, col0: int = 0) -> np.ndarray:
    """``cols x num_zeros`` row indices (sorted per column) of the zeros of ``sparse_`` in the columns
    ``col0 .. col0 + cols - 1`` of a matrix with ``rows`` rows: O(rows) work per column, whatever the
    other columns (a block of the matrix computes only its own columns' keys)."""
    out = np.empty((cols, num_zeros), np.int64)
    if num_zeros == 0 or cols == 0:
        return out
    if word0 % 4:
        raise ValueError("word0 must start a Philox block")
    with _guard():
        _zero_rows(np.uint64(seed), np.uint64(stream), np.uint64((word0 // 4) % (1 << 64)), rows, col0, cols,
                   num_zeros, out)
    return out
