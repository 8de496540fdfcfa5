"""BLAS thread control: run a block with the BLAS libraries in this process set to one thread.

Private module, shared by the Householder kernels (:mod:`fastinit._householder`, which call
SciPy's BLAS from Numba and need one BLAS thread for bit-stable results) and the simulator
(:mod:`fastinit._sim_kernels`, whose small ``numpy.matmul`` calls run faster on one BLAS thread
next to Numba's parallel loops).

NumPy and SciPy wheels each bundle their own OpenBLAS (``numpy.libs/libscipy_openblas64_*``
with 64-bit integer symbols, ``scipy.libs/libscipy_openblas*``), and each has its own thread
setting. :func:`blas_threads` sets every OpenBLAS it can find, so one helper serves both
callers, and restores each library's previous value on exit.

Thread and fork safety
----------------------
The thread count is process-wide state. A re-entrant lock is held for the whole block, so two
threads cannot restore the setting under each other, and nested blocks in one thread (the
simulator creating an orthogonal weight) work. A child process created by ``fork`` while
another thread held the lock gets a fresh lock (``os.register_at_fork``): the thread that
held it does not exist in the child, and the child must not deadlock.

If no OpenBLAS thread control is found (another BLAS, or a platform without ``/proc``), the
helpers run the block unchanged.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import threading

__all__ = ["blas_threads", "single_threaded_blas", "blas_thread_controls"]

_LOCK = threading.RLock()
_CONTROLS = {}  # path -> (get, set) ctypes functions, or None if the library has none


def _after_fork_in_child():
    global _LOCK
    _LOCK = threading.RLock()  # a fork taken while another thread held it must not deadlock


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)

# (get, set) symbol pairs, in the order tried: SciPy-built OpenBLAS with 64-bit integers
# (NumPy >= 2 wheels), with 32-bit integers (SciPy wheels), then plain OpenBLAS builds.
_SYMBOLS = (
    ("scipy_openblas_get_num_threads64_", "scipy_openblas_set_num_threads64_"),
    ("scipy_openblas_get_num_threads", "scipy_openblas_set_num_threads"),
    ("openblas_get_num_threads64_", "openblas_set_num_threads64_"),
    ("openblas_get_num_threads", "openblas_set_num_threads"),
)


def _candidate_paths():
    """Loaded shared libraries that look like BLAS (Linux), plus NumPy's bundled OpenBLAS."""
    paths = set()
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if "blas" in line.lower() and "/" in line}
    except OSError:  # not Linux: look where NumPy's wheels put their copy
        import numpy as np

        base = os.path.dirname(np.__file__)
        paths = set(glob.glob(os.path.join(os.path.dirname(base), "numpy.libs", "*openblas*")))
        paths |= set(glob.glob(os.path.join(base, ".dylibs", "*openblas*")))
    return sorted(paths)


def _control(path):
    if path not in _CONTROLS:
        _CONTROLS[path] = None
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            return None
        for get_name, set_name in _SYMBOLS:
            get = getattr(lib, get_name, None)
            set_ = getattr(lib, set_name, None)
            if get is not None and set_ is not None:
                get.restype = ctypes.c_int
                get.argtypes = []
                set_.argtypes = [ctypes.c_int]
                set_.restype = None
                _CONTROLS[path] = (get, set_)
                break
    return _CONTROLS[path]


def blas_thread_controls():
    """``[(path, get, set), ...]`` for every OpenBLAS loaded in this process.

    Re-scanned on every call (about 0.1 ms), so a BLAS loaded later (SciPy's, on the first
    ``import scipy.linalg``) is picked up; the ctypes handles are cached per path.
    """
    out = []
    for path in _candidate_paths():
        c = _control(path)
        if c is not None:
            out.append((path, c[0], c[1]))
    return out


@contextlib.contextmanager
def blas_threads(n):
    """Run the block with every OpenBLAS in the process set to ``n`` threads, then restore.

    Holds a process-wide re-entrant lock for the block (see the module notes).
    """
    with _LOCK:
        controls = blas_thread_controls()
        old = [get() for _, get, _ in controls]
        for _, _, set_ in controls:
            set_(int(n))
        try:
            yield
        finally:
            for (_, _, set_), o in zip(controls, old):
                set_(o)


def single_threaded_blas():
    """``blas_threads(1)``: the block's BLAS calls run on the calling thread only."""
    return blas_threads(1)
