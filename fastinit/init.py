r"""The torch.nn.init-compatible API, plus the JAX/Keras extras and out-of-place constructors.

Every ``*_`` function fills its first argument in place and returns that same object. The
argument may be a NumPy array (float16, ``ml_dtypes.bfloat16``, float32, float64; any writable
layout) or a PyTorch CPU tensor of the same dtypes, including an ``nn.Parameter`` that requires
grad (written without autograd tracking and without copies, see :mod:`fastinit._tensors`).

Names, argument names, defaults, the fan convention (dim 0 = out, dim 1 = in, the rest the
receptive field), the gain table, the validation order, error types, warnings and the return
value follow ``torch.nn.init`` (torch 2.13); the few deliberate differences are listed in
``docs/api.md``. Randomness comes from fastinit's Philox4x32-10 stream: every sampling function
takes ``generator`` (a :class:`fastinit.Generator`, an int seed, or ``None`` for the default
generator), takes one stream from it per call, and element ``i`` of the tensor (in C order of its
logical shape) depends only on ``(seed, stream, offset + i)``. So results do not depend on the
memory layout, the thread count, or whether the target is a NumPy array or a torch tensor.

Every ``*_`` function also fills any rectangular block of a larger logical tensor: pass
``block=Block(global_shape, index)`` and the array receives exactly ``full[index]`` of the full
call (fans, ``sparse_``'s zeros and ``orthogonal_``'s matrix from the global shape; see
:class:`Block`).

Every argument is validated, including whether the requested values are finite in the target's
dtype, before a stream is taken: a call that raises writes nothing and does not advance the
generator, and a call interrupted while it writes (Ctrl-C) gives its stream back.

This module only gathers the public names; they are defined (and documented) in
:mod:`fastinit._fans` (fans and gains), :mod:`fastinit._plain` (plain distributions and
deterministic fills), :mod:`fastinit._scaling` (the variance-scaling family),
:mod:`fastinit._matrices` (``orthogonal_``, ``sparse_``), :mod:`fastinit._block` (:class:`Block`)
and :mod:`fastinit._constructors`. The
``Literal`` aliases :data:`Nonlinearity`, :data:`TorchMode`, :data:`FanMode` and
:data:`Distribution` name the accepted strings for type checkers.

Examples
--------
>>> import numpy as np, fastinit
>>> g = fastinit.Generator(3)
>>> w = fastinit.init.xavier_uniform_(np.empty((64, 32), np.float32), generator=g)
>>> g.get_state()                       # one stream taken
(3, 1)
>>> fastinit.init.normal_(np.empty(2, np.float16), std=1e5, generator=g)
Traceback (most recent call last):
    ...
fastinit.InitArgumentError: normal_ with mean=0.0, std=100000.0 (|mean| + 6.34 std): ... beyond 65504, ...
>>> g.get_state()                       # refused before taking a stream
(3, 1)
"""

from ._block import Block
from ._constructors import (
    constant,
    dirac,
    eye,
    kaiming_normal,
    kaiming_uniform,
    lecun_normal,
    lecun_uniform,
    normal,
    ones,
    orthogonal,
    sparse,
    trunc_normal,
    uniform,
    variance_scaling,
    xavier_normal,
    xavier_uniform,
    zeros,
)
from ._fans import FanMode as FanMode
from ._fans import Nonlinearity as Nonlinearity
from ._fans import TorchMode as TorchMode
from ._fans import calculate_fan_in_and_fan_out, calculate_gain
from ._matrices import orthogonal_, sparse_
from ._plain import constant_, dirac_, eye_, normal_, ones_, trunc_normal_, uniform_, zeros_
from ._scaling import TRUNCATED_NORMAL_STD as TRUNCATED_NORMAL_STD
from ._scaling import Distribution as Distribution
from ._scaling import (
    kaiming_normal_,
    kaiming_uniform_,
    lecun_normal_,
    lecun_uniform_,
    variance_scaling_,
    xavier_normal_,
    xavier_uniform_,
)

__all__ = [
    # torch.nn.init
    "calculate_gain", "calculate_fan_in_and_fan_out",
    "uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
    "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_", "sparse_",
    # blocks of a logical tensor (the block= argument of every initializer)
    "Block",
    # JAX / Keras extras
    "lecun_uniform_", "lecun_normal_", "variance_scaling_",
    # out-of-place constructors
    "uniform", "normal", "trunc_normal", "constant", "ones", "zeros", "eye", "dirac",
    "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal", "orthogonal", "sparse",
    "lecun_uniform", "lecun_normal", "variance_scaling",
]
