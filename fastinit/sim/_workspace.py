"""Working arrays of the simulator's passes, recycled instead of freshly allocated.

Private module. A pass allocates a few ``batch x width`` arrays per layer (the stored
pre-activations, the outputs, the backward pass's gradients). Fresh memory is mapped by the
kernel one page fault per 4 KiB page, zeroed first: for the default ``fastinit simulate`` study
(50 layers, batch 1024, width 512, float64) that was ~56,000 faults and 0.26 to 0.39 s of system
time per network of about 1 s (``benchmarks/scripts/sim_overheads.py faults``; half the faults are
the network's fresh weights, which stay). A :class:`Workspace` hands out arrays and takes back
those the pass no longer needs, so later layers reuse their pages; with :func:`keep_buffers`
active, the buffers also outlive the pass, so the next network in the same thread (a sweep's next
configuration, the next of ``n_networks``) maps no new memory at all.

Only buffers of the byte sizes the latest pass used are kept, so a thread holds at most one
pass's working memory (the peak :func:`fastinit.sim._passes.mlp_bytes` estimates) between
passes, and none once the outermost :func:`keep_buffers` block ends. Values never depend on
whether an array was recycled: every array is written before it is read.
"""

from __future__ import annotations

import contextlib
import math
import threading

import numpy as np

__all__ = ["Workspace", "keep_buffers", "keep_buffers_in_this_thread"]

_LOCAL = threading.local()


def _state():
    st = getattr(_LOCAL, "state", None)
    if st is None:
        st = _LOCAL.state = {"depth": 0, "pool": {}}
    return st


@contextlib.contextmanager
def keep_buffers():
    """Keep the passes' buffers in this thread between passes until the outermost block ends."""
    st = _state()
    st["depth"] += 1
    try:
        yield
    finally:
        st["depth"] -= 1
        if st["depth"] == 0:
            st["pool"] = {}


def keep_buffers_in_this_thread():
    """Keep the passes' buffers in this thread until it ends (for a pool's worker thread that
    runs one job after another and exits when its pool shuts down: its buffers go with it)."""
    st = _state()
    if not st.get("held"):
        st["held"] = True
        st["depth"] += 1


class Workspace:
    """Arrays for one pass: :meth:`empty` takes a recycled buffer of the same byte size when one is
    free, :meth:`give` returns an array the pass no longer reads, :meth:`close` returns the rest.
    ``sizes``: the byte sizes the pass will ask for; kept buffers of other sizes are dropped first.

    Only arrays this workspace handed out are taken back (anything else given is ignored), and
    none may be used after it was given back or after :meth:`close`.
    """

    def __init__(self, sizes=()):
        st = _state()
        self._keep = st["depth"] > 0
        self._pool = st["pool"] if self._keep else {}   # nbytes -> [flat uint8 buffers]
        for nbytes in [s for s in self._pool if s not in sizes]:
            del self._pool[nbytes]                      # never hold two passes' buffers at once
        self._out = {}                                  # id(array) -> (array, its flat buffer)
        self._sizes = set()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def empty(self, shape, dtype):
        """An uninitialised C-contiguous array (a recycled buffer when one of its size is free)."""
        dtype = np.dtype(dtype)
        nbytes = math.prod(shape) * dtype.itemsize
        self._sizes.add(nbytes)
        free = self._pool.get(nbytes)
        if free:
            flat = free.pop()
            arr = flat.view(dtype).reshape(shape)
        else:
            arr = np.empty(shape, dtype)
            flat = arr.reshape(-1).view(np.uint8)
        self._out[id(arr)] = (arr, flat)
        return arr

    def give(self, *arrays):
        """Return arrays handed out by :meth:`empty` (``None`` and foreign arrays are skipped)."""
        for a in arrays:
            if a is None:
                continue
            entry = self._out.pop(id(a), None)
            if entry is not None:
                self._pool.setdefault(entry[1].size, []).append(entry[1])

    def close(self):
        """Return every array still out; keep the buffers for the next pass when asked to
        (:func:`keep_buffers`), only those of the byte sizes this pass used."""
        for _, flat in self._out.values():
            self._pool.setdefault(flat.size, []).append(flat)
        self._out = {}
        if self._keep:
            for nbytes in [s for s in self._pool if s not in self._sizes]:
                del self._pool[nbytes]
        else:
            self._pool = {}
