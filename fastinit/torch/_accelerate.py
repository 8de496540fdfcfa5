"""fastinit for PyTorch models: route ``torch.nn.init`` to fastinit while building a model.

``import fastinit.torch`` does not import torch; :func:`accelerate` does, when it is entered.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import inspect
import sys
import threading
import warnings

from .. import init as _fi
from .._generator import Generator

__all__ = ["accelerate", "ROUTED"]

# torch.nn.init functions routed to fastinit (the deprecated aliases without "_" are not).
ROUTED = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
          "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_", "sparse_")

# The generator of the innermost accelerate() of this thread (contexts are per thread; asyncio
# tasks inherit a copy), or None outside accelerate().
_active: contextvars.ContextVar = contextvars.ContextVar("fastinit_accelerate", default=None)

_lock = threading.Lock()
_depth = 0  # accelerate() blocks open, over all threads
_patched: list = []  # (module, name, original, wrapper) installed by the outermost enter


def _routable(torch, tensor) -> bool:
    """A plain dense CPU tensor of a dtype fastinit fills, with no torch dispatch mode active."""
    return (type(tensor) in (torch.Tensor, torch.nn.Parameter)
            and tensor.device.type == "cpu"
            and tensor.layout == torch.strided
            and tensor.dtype in (torch.float16, torch.bfloat16, torch.float32, torch.float64)
            and not tensor.is_quantized
            and getattr(torch._C, "_len_torch_dispatch_stack", lambda: 0)() == 0)


def _make_wrapper(torch, name: str, original):
    ours = getattr(_fi, name)
    sig = inspect.signature(original)

    @functools.wraps(original)
    def routed(*args, **kwargs):
        gen = _active.get()
        if gen is None:
            return original(*args, **kwargs)
        try:
            bound = sig.bind(*args, **kwargs)
        except TypeError:
            return original(*args, **kwargs)  # torch reports its own signature errors
        call = dict(bound.arguments)
        if call.pop("generator", None) is not None or not _routable(torch, call.get("tensor")):
            # an explicit torch.Generator asks for torch's stream; other tensors are torch's business
            return original(*args, **kwargs)
        if "generator" in inspect.signature(ours).parameters:
            call["generator"] = gen
        try:
            return ours(**call)
        except (TypeError, ValueError):
            # fastinit rejected an argument before writing anything (InitArgumentError is a
            # ValueError): let torch apply its own rule, error or quirk, so behaviour inside
            # accelerate() is torch's wherever fastinit is stricter.
            return original(*args, **kwargs)

    routed.__fastinit_routed__ = True
    return routed


def _install(torch) -> None:
    import torch.nn.init as tinit

    originals = {name: getattr(tinit, name) for name in ROUTED}
    wrappers = {name: _make_wrapper(torch, name, fn) for name, fn in originals.items()}
    # torch.nn.init itself, and every module that imported a function by name
    # (e.g. torch.nn.modules.activation: `from torch.nn.init import xavier_uniform_`).
    for mod in list(sys.modules.values()):
        d = getattr(mod, "__dict__", None)
        if not isinstance(d, dict) or mod is _fi:
            continue
        for name, fn in originals.items():
            if d.get(name) is fn:
                setattr(mod, name, wrappers[name])
                _patched.append((mod, name, fn, wrappers[name]))


def _uninstall() -> None:
    for mod, name, fn, wrapper in reversed(_patched):
        if vars(mod).get(name) is wrapper:
            setattr(mod, name, fn)
        else:
            warnings.warn(f"{mod.__name__}.{name} was replaced during fastinit.torch.accelerate(); "
                          "leaving the replacement in place", RuntimeWarning, stacklevel=3)
    _patched.clear()


@contextlib.contextmanager
def accelerate(generator=None):
    """Route ``torch.nn.init`` calls on CPU tensors to fastinit for the duration of the block.

    Inside ``with fastinit.torch.accelerate():`` building ``nn.Linear``, ``nn.Conv*``,
    ``nn.Embedding``, ``nn.LayerNorm``, ``nn.MultiheadAttention``... and calling
    ``reset_parameters()`` fill the parameters with fastinit's kernels (multithreaded, in place,
    no copies). The distributions are torch's (same functions, same arguments, same fans and
    gains); the values come from fastinit's Philox stream, so they differ from torch's.

    Parameters
    ----------
    generator : fastinit.Generator, int or None
        Where the values come from. Each routed call takes the next stream, so a model built
        twice from the same seed is identical. An int ``s`` means ``fastinit.Generator(s)``.
        ``None`` seeds a fresh ``fastinit.Generator`` with one 64-bit draw from torch's default
        generator on entry, so ``torch.manual_seed(s)`` before the block makes it reproducible,
        as it is for stock torch.

    Yields
    ------
    fastinit.Generator
        The generator in use.

    Notes
    -----
    * Routed: the 14 public ``torch.nn.init.*_`` functions, in ``torch.nn.init`` and in every
      module that imported them by name (at entry). Deprecated aliases (``init.normal``) are not.
    * Left to torch: calls with an explicit ``generator=torch.Generator``, tensors that are not
      plain dense CPU float16/bfloat16/float32/float64 ``Tensor``/``Parameter`` (meta, CUDA,
      integer, subclasses, fake tensors), calls while a torch dispatch mode is active, calls
      from threads that did not enter ``accelerate`` (routing is per thread: a
      :class:`contextvars.ContextVar`), and arguments fastinit rejects (NaN, ``sparsity > 1``...),
      so errors and quirks inside the block are torch's.
    * On exit (also on an exception) the original function objects are put back once the last
      open ``accelerate()`` block of any thread closes; nesting is allowed (the innermost
      generator wins).

    Examples
    --------
    >>> import torch, fastinit.torch
    >>> with fastinit.torch.accelerate(generator=0):
    ...     a = torch.nn.Linear(64, 32)
    >>> with fastinit.torch.accelerate(generator=0):
    ...     b = torch.nn.Linear(64, 32)
    >>> bool(torch.equal(a.weight, b.weight)), bool(a.weight.abs().max() <= 64 ** -0.5)
    (True, True)
    >>> hasattr(torch.nn.init.kaiming_uniform_, "__fastinit_routed__")   # restored on exit
    False
    """
    global _depth
    import torch

    if generator is None:
        seed = int(torch.empty((), dtype=torch.int64).random_())  # uniform on [0, 2**63)
        gen = Generator(seed)
    elif isinstance(generator, Generator):
        gen = generator
    elif isinstance(generator, bool) or not isinstance(generator, int):
        raise TypeError(f"generator must be a fastinit.Generator, an int seed or None, got {type(generator).__name__}")
    else:
        gen = Generator(generator)
    with _lock:
        if _depth == 0:
            _install(torch)
        _depth += 1
    token = _active.set(gen)
    try:
        yield gen
    finally:
        _active.reset(token)
        with _lock:
            _depth -= 1
            if _depth == 0:
                _uninstall()
