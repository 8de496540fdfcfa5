"""fastinit: fast, reproducible weight initialization on CPU.

A torch.nn.init-compatible API that fills NumPy arrays (and PyTorch CPU tensors) in place from
one counter-based random stream (Philox4x32-10): element ``i`` of a logical tensor depends only
on ``(seed, stream, i)``, whatever the thread count, chunking, shard or SIMD level.

Examples
--------
>>> import numpy as np, fastinit
>>> g = fastinit.Generator(2024)                    # each call that takes g draws the next stream
>>> w = fastinit.kaiming_normal_(np.empty((512, 1024), np.float32), nonlinearity="relu", generator=g)
>>> round(float(w.std()), 3)                       # sqrt(2 / fan_in) = sqrt(2 / 1024) = 0.0442
0.044
>>> [hex(x) for x in fastinit.raw_uint32(2, seed=0)]   # Random123's all-zero known-answer vector
['0x6627e8d5', '0xe169c58d']
"""

from . import init
from ._checks import InitArgumentError
from ._fill import raw_uint32
from ._generator import Generator, default_generator, initial_seed, manual_seed
from ._lib import simd_level
from .init import *  # noqa: F401,F403  (the public API: init.__all__)

__version__ = "0.1.0"  # the one place: pyproject.toml reads it (tool.dynamic-metadata)

__all__ = [
    "Generator",
    "InitArgumentError",
    "default_generator",
    "initial_seed",
    "manual_seed",
    "raw_uint32",
    "simd_level",
    "init", "torch",  # noqa: F405 (fastinit.torch is served by __getattr__ below, on first use)
    *init.__all__,  # the torch.nn.init-compatible API, JAX/Keras extras and constructors
]


def __getattr__(name):
    # fastinit.torch (the torch integration) is imported on first use, never at package load.
    if name == "torch":
        import importlib

        return importlib.import_module(".torch", __name__)
    raise AttributeError(f"module 'fastinit' has no attribute {name!r}")


def __dir__():
    return __all__
