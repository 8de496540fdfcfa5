"""Slow, obvious NumPy versions of the ``fastinit.init`` functions (tests and benchmarks).

Each function computes its parameters straight from the textbook formula and draws from a
:class:`numpy.random.Generator` (``rng`` is anything :func:`numpy.random.default_rng` accepts),
in float64, then assigns into the array (rounding to its dtype). No fastinit code is used
except the orthogonal reference, which is its own slow module. :class:`MultithreadedRNG` is
NumPy's documented "one generator per thread" recipe, the fastest plain-NumPy way to fill a
large array, for the benchmarks.
"""

from __future__ import annotations

import concurrent.futures
import math
import os

import numpy as np

from .orthogonal import haar_orthogonal

__all__ = ["GAINS", "calculate_gain", "fans", "uniform_", "normal_", "trunc_normal_", "constant_", "eye_",
           "dirac_", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_",
           "variance_scaling_", "lecun_uniform_", "lecun_normal_", "orthogonal_", "sparse_", "MultithreadedRNG"]

GAINS = {"linear": 1.0, "conv1d": 1.0, "conv2d": 1.0, "conv3d": 1.0, "conv_transpose1d": 1.0,
         "conv_transpose2d": 1.0, "conv_transpose3d": 1.0, "sigmoid": 1.0, "tanh": 5.0 / 3.0,
         "relu": 2.0**0.5, "selu": 0.75}


def calculate_gain(nonlinearity, param=None):
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return (2.0 / (1.0 + slope * slope)) ** 0.5
    return GAINS[nonlinearity]


def fans(shape):
    """(fan_in, fan_out) for torch's layout (out, in, *kernel)."""
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def uniform_(w, a=0.0, b=1.0, rng=None):
    w[...] = np.random.default_rng(rng).uniform(a, b, w.shape)
    return w


def normal_(w, mean=0.0, std=1.0, rng=None):
    w[...] = np.random.default_rng(rng).normal(mean, std, w.shape)
    return w


def trunc_normal_(w, mean=0.0, std=1.0, a=-2.0, b=2.0, rng=None):
    """Normal draws, redrawing those outside [a, b] until none are left (fine for wide intervals)."""
    rng = np.random.default_rng(rng)
    x = rng.normal(mean, std, w.size)
    bad = (x < a) | (x > b)
    while bad.any():
        x[bad] = rng.normal(mean, std, int(bad.sum()))
        bad = (x < a) | (x > b)
    w[...] = x.reshape(w.shape)
    return w


def constant_(w, val):
    w[...] = val
    return w


def eye_(w):
    w[...] = np.eye(*w.shape)
    return w


def dirac_(w, groups=1):
    w[...] = 0
    out_per_group = w.shape[0] // groups
    centre = tuple(k // 2 for k in w.shape[2:])
    for g in range(groups):
        for d in range(min(out_per_group, w.shape[1])):
            w[(g * out_per_group + d, d) + centre] = 1
    return w


def xavier_uniform_(w, gain=1.0, rng=None):
    fan_in, fan_out = fans(w.shape)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(w, -bound, bound, rng)


def xavier_normal_(w, gain=1.0, rng=None):
    fan_in, fan_out = fans(w.shape)
    return normal_(w, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)), rng)


def _fan(shape, mode):
    fan_in, fan_out = fans(shape)
    return {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2,
            "fan_geo_avg": math.sqrt(fan_in * fan_out)}[mode]


def kaiming_uniform_(w, a=0.0, mode="fan_in", nonlinearity="leaky_relu", rng=None):
    std = calculate_gain(nonlinearity, a) / math.sqrt(_fan(w.shape, mode))
    return uniform_(w, -math.sqrt(3.0) * std, math.sqrt(3.0) * std, rng)


def kaiming_normal_(w, a=0.0, mode="fan_in", nonlinearity="leaky_relu", rng=None):
    return normal_(w, 0.0, calculate_gain(nonlinearity, a) / math.sqrt(_fan(w.shape, mode)), rng)


def variance_scaling_(w, scale, mode, distribution, rng=None):
    """JAX's variance_scaling with torch's fan layout."""
    variance = scale / _fan(w.shape, mode)
    if distribution == "uniform":
        return uniform_(w, -math.sqrt(3 * variance), math.sqrt(3 * variance), rng)
    if distribution == "normal":
        return normal_(w, 0.0, math.sqrt(variance), rng)
    std = math.sqrt(variance) / 0.87962566103423978  # std of N(0, 1) truncated to (-2, 2)
    return trunc_normal_(w, 0.0, std, -2 * std, 2 * std, rng)


def lecun_uniform_(w, rng=None):
    return variance_scaling_(w, 1.0, "fan_in", "uniform", rng)


def lecun_normal_(w, rng=None):
    return variance_scaling_(w, 1.0, "fan_in", "truncated_normal", rng)


def orthogonal_(w, gain=1.0, rng=None):
    rows = w.shape[0]
    w[...] = haar_orthogonal(rows, w.size // rows, gain, rng).reshape(w.shape)
    return w


def sparse_(w, sparsity, std=0.01, rng=None):
    rng = np.random.default_rng(rng)
    rows, cols = w.shape
    normal_(w, 0.0, std, rng)
    num_zeros = math.ceil(sparsity * rows)
    for j in range(cols):
        w[rng.permutation(rows)[:num_zeros], j] = 0
    return w


class MultithreadedRNG:
    """NumPy's multithreaded generation recipe: one Generator per thread, each fills one slice.

    From the NumPy docs ("Multithreaded Generation"): ``SeedSequence.spawn`` gives independent
    child generators; each thread fills its own contiguous slice with ``out=``. Values depend on
    the thread count (unlike fastinit's).
    """

    def __init__(self, seed=0, threads=None):
        self.threads = threads or os.cpu_count() or 1
        self.rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(self.threads)]
        self.executor = concurrent.futures.ThreadPoolExecutor(self.threads)

    def _run(self, flat, job):
        step = -(-flat.size // self.threads)
        futures = [self.executor.submit(job, rng, flat[i * step:(i + 1) * step])
                   for i, rng in enumerate(self.rngs)]
        for f in futures:
            f.result()

    def uniform_(self, w, a=0.0, b=1.0):
        """U[a, b) into a C-contiguous float32/float64 array."""
        def job(rng, part):
            rng.random(out=part, dtype=part.dtype)
            if (a, b) != (0.0, 1.0):  # U[0, 1) is the recipe's own output: no extra passes
                part *= b - a
                part += a
        self._run(w.reshape(-1), job)
        return w

    def normal_(self, w, mean=0.0, std=1.0):
        """N(mean, std^2) into a C-contiguous float32/float64 array."""
        def job(rng, part):
            rng.standard_normal(out=part, dtype=part.dtype)
            if (mean, std) != (0.0, 1.0):
                part *= std
                part += mean
        self._run(w.reshape(-1), job)
        return w

    def close(self):
        self.executor.shutdown()
