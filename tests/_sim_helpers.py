"""Helpers shared by the simulator's kernel tests (not a test module)."""

import numpy as np
from numba import njit


def apply_compiled(phi, dphi, p, xs):
    """phi and phi' over an array, inlined into a loop compiled with the row functions' flags
    (``fastinit.sim._kernels.ROW_FLAGS``), as the fused kernels inline them."""
    from fastinit.sim import _kernels as k

    @njit(**k.ROW_FLAGS)
    def run(xs, p):
        a = np.empty_like(xs)
        d = np.empty_like(xs)
        for i in range(xs.size):
            a[i] = phi(xs[i], p)
            d[i] = dphi(xs[i], p)
        return a, d

    return run(xs, p)
