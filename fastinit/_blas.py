"""BLAS thread control: run a block with the BLAS libraries in this process set to one thread.

Private module, shared by the Householder kernels (:mod:`fastinit._householder`, which call
SciPy's BLAS from Numba and need one BLAS thread for bit-stable results) and the simulator
(:mod:`fastinit.sim._passes`, whose small ``numpy.matmul`` calls run faster on one BLAS thread
next to Numba's parallel loops).

NumPy and SciPy wheels each bundle their own OpenBLAS (``numpy.libs/libscipy_openblas64_*``
with 64-bit integer symbols, ``scipy.libs/libscipy_openblas*``), and each has its own thread
setting. :func:`single_threaded_blas` sets every OpenBLAS it can find, so one helper serves both
callers.

Thread and fork safety
----------------------
The thread count is process-wide state, so the helper counts who needs it: the first block to
enter (in any thread) saves every library's setting and sets one thread, the last one to leave
restores it. Blocks nest and may run in several threads at once (the simulator's parallel
sweep does), and no thread can restore the setting while another is still inside. A lock
guards only this bookkeeping, never the block itself, so a block may take as long as it likes.

After ``fork`` (``os.register_at_fork``) the child gets a fresh lock (a thread that held the
old one does not exist in the child), keeps only the forking thread's own blocks, and, if
that leaves none, restores the saved settings: a child forked while another thread was inside
a block neither deadlocks nor stays single-threaded for ever.

If no OpenBLAS thread control is found (another BLAS, or a platform without ``/proc``), the
helper runs the block unchanged.
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import sys
import threading

__all__ = ["single_threaded_blas", "blas_thread_controls"]

_LOCK = threading.Lock()
_HOLDERS = {}    # thread id -> depth of single_threaded_blas blocks it is inside
_SAVED = None    # [(set, previous thread count), ...] while any block is active
_CONTROLS = {}   # path -> (get, set) ctypes functions, or None if the library has none
_FOUND = None    # (len(sys.modules) when scanned, [(path, get, set), ...])


def _restore_saved():
    global _SAVED
    for set_, old in _SAVED or ():
        set_(old)
    _SAVED = None


def _after_fork_in_child():
    global _LOCK, _HOLDERS
    _LOCK = threading.Lock()  # a fork taken while another thread held it must not deadlock
    me = threading.get_ident()
    _HOLDERS = {me: _HOLDERS[me]} if me in _HOLDERS else {}
    if not _HOLDERS:
        _restore_saved()


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

    Cached until a module is imported (a new BLAS, such as SciPy's on the first
    ``import scipy.linalg``, arrives with an extension module); scanning ``/proc/self/maps``
    costs about 1 ms, too much to repeat for every small simulation.
    """
    global _FOUND
    stamp = len(sys.modules)
    if _FOUND is None or _FOUND[0] != stamp:
        out = []
        for path in _candidate_paths():
            c = _control(path)
            if c is not None:
                out.append((path, c[0], c[1]))
        _FOUND = (stamp, out)
    return list(_FOUND[1])


@contextlib.contextmanager
def single_threaded_blas():
    """Run the block with every OpenBLAS in the process on one thread; restore when the last
    concurrent or nested block ends (see the module notes)."""
    global _SAVED
    me = threading.get_ident()
    with _LOCK:
        if not _HOLDERS:
            controls = blas_thread_controls()
            _SAVED = [(set_, get()) for _, get, set_ in controls]
            for _, _, set_ in controls:
                set_(1)
        _HOLDERS[me] = _HOLDERS.get(me, 0) + 1
    try:
        yield
    finally:
        with _LOCK:
            if _HOLDERS.get(me, 0) > 1:
                _HOLDERS[me] -= 1
            else:
                _HOLDERS.pop(me, None)
                if not _HOLDERS:
                    _restore_saved()
