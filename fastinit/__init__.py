"""fastinit: fast, reproducible weight initialization on CPU.

A torch.nn.init-compatible API that fills NumPy arrays (and PyTorch CPU tensors) in place from
one counter-based random stream (Philox4x32-10): element ``i`` of a logical tensor depends only
on ``(seed, stream, i)``, whatever the thread count, chunking, shard or SIMD level.
"""

from ._lib import simd_level
from ._generator import Generator, default_generator, initial_seed, manual_seed
from ._fill import InitArgumentError, raw_uint32

__version__ = "0.1.0"

__all__ = [
    "Generator",
    "InitArgumentError",
    "default_generator",
    "initial_seed",
    "manual_seed",
    "raw_uint32",
    "simd_level",
]


def __dir__():
    return __all__
