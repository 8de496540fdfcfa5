"""PyTorch CPU tensors as NumPy views, so every fill writes torch memory in place.

torch is optional: this module never imports it at load time. A torch tensor is recognised
only if ``torch`` is already in :data:`sys.modules` (a tensor cannot exist otherwise).

A tensor is turned into a NumPy array that shares its memory: ``t.detach()`` (no autograd
history, works for ``nn.Parameter`` with ``requires_grad=True``), then ``.numpy()``, which
keeps the tensor's shape, strides and storage offset, so a non-contiguous view (``w.T``,
``w[:, ::2]``) is written exactly where torch would write. bfloat16 has no NumPy dtype: the
tensor is first reinterpreted as int16 (``Tensor.view(dtype)`` with the same element size keeps
the strides) and the NumPy view is then reinterpreted as ``ml_dtypes.bfloat16``, whose bit
layout is the same. Nothing is copied.

Writing through NumPy bypasses torch's dispatcher, so :func:`mark_written` bumps the tensor's
version counter afterwards, as an in-place torch op would: autograd then still detects a
tensor that was saved for backward and modified later.
"""

from __future__ import annotations

import sys
from typing import TypeVar

import numpy as np

from ._fill import check_array

__all__ = ["is_torch_tensor", "as_array", "mark_written", "torch_dtype_to_numpy", "empty_like_torch", "target",
           "done", "TensorT"]

#: the array or tensor type of a ``*_`` function, which returns its argument
TensorT = TypeVar("TensorT")


def _torch():
    return sys.modules.get("torch")


def is_torch_tensor(x) -> bool:
    """True if ``x`` is a ``torch.Tensor`` (without importing torch)."""
    torch = _torch()
    return torch is not None and isinstance(x, torch.Tensor)


def _bf16():
    try:
        import ml_dtypes
    except ImportError:  # pragma: no cover - optional dependency
        raise TypeError("bfloat16 tensors need the ml_dtypes package (pip install ml_dtypes)") from None
    return np.dtype(ml_dtypes.bfloat16)


def torch_dtype_to_numpy(dtype) -> np.dtype:
    """NumPy dtype of a supported torch floating dtype; TypeError otherwise."""
    torch = _torch()
    table = {torch.float16: np.dtype(np.float16), torch.float32: np.dtype(np.float32),
             torch.float64: np.dtype(np.float64)}
    if dtype in table:
        return table[dtype]
    if dtype == torch.bfloat16:
        return _bf16()
    raise TypeError(f"fastinit fills float16, bfloat16, float32 and float64 tensors, got {dtype}")


def as_array(t, name: str = "tensor") -> np.ndarray:
    """A NumPy array sharing memory with the CPU tensor ``t`` (same shape, strides and offset).

    Raises TypeError for unsupported dtypes, layouts and tensor subclasses that carry no real
    storage, and ValueError for tensors that are not on the CPU (CUDA, meta, ...).
    """
    torch = _torch()
    if t.device.type != "cpu":
        hint = (" (a meta tensor has no memory; materialize it with module.to_empty(device='cpu') first)"
                if t.device.type == "meta" else " (move it to the CPU, or use torch.nn.init on that device)")
        raise ValueError(f"{name} is on device {t.device}; fastinit fills CPU tensors only{hint}")
    if t.layout != torch.strided:
        raise TypeError(f"{name} has layout {t.layout}; fastinit fills dense (strided) tensors only")
    if t.is_quantized:
        raise TypeError(f"{name} is quantized; fastinit fills floating tensors only")
    npdtype = torch_dtype_to_numpy(t.dtype)
    d = t.detach()
    try:
        if t.dtype == torch.bfloat16:
            arr = d.view(torch.int16).numpy().view(npdtype)
        else:
            arr = d.numpy()
    except (RuntimeError, TypeError) as e:  # e.g. FakeTensor/functional tensors without storage
        raise TypeError(f"{name} ({type(t).__name__}) cannot be viewed as a NumPy array: {e}") from None
    if arr.size and not arr.flags.writeable:  # pragma: no cover - torch views are writable
        raise ValueError(f"{name} is read-only")
    return arr


def mark_written(t) -> None:
    """Bump the version counter of tensor ``t`` after an in-place write through NumPy."""
    torch = _torch()
    bump = getattr(getattr(torch.autograd, "graph", None), "increment_version", None)
    if bump is not None:
        bump(t)


def empty_like_torch(shape, dtype):
    """``torch.empty(shape, dtype=dtype)`` on the CPU (for the out-of-place constructors)."""
    torch = _torch()
    torch_dtype_to_numpy(dtype)  # validates
    return torch.empty(shape, dtype=dtype, device="cpu")


def target(tensor, name: str = "tensor") -> np.ndarray:
    """The NumPy array a public function writes: ``tensor`` itself or a memory-sharing view of a
    torch tensor; checked to be a writable array of a supported dtype, without stride-0 aliasing."""
    if isinstance(tensor, np.ndarray):
        arr = tensor
    elif is_torch_tensor(tensor):
        arr = as_array(tensor, name)
    else:
        raise TypeError(f"{name} must be a numpy.ndarray or a torch.Tensor, got {type(tensor).__name__}")
    check_array(arr, name)
    for n, s in zip(arr.shape, arr.strides, strict=True):
        if n > 1 and s == 0 and arr.size:
            raise ValueError(f"{name} is a broadcast (stride-0) view: several elements share one memory "
                             "location, so it cannot be filled in place")
    return arr


def done(tensor):
    """Finish an in-place write: bump a torch tensor's version counter; return the tensor."""
    if not isinstance(tensor, np.ndarray):
        mark_written(tensor)
    return tensor
