"""The Numba layer: parallel drivers that split a fill into chunks and call the C kernels.

* The C functions are declared as :class:`numba.types.ExternalFunction` and resolved by symbol
  name (the library is registered with llvmlite at import), so no address is baked into the
  machine code and Numba's on-disk cache stays valid across processes.
* Work is split into chunks of ``CHUNK`` elements with ``prange``; each chunk computes its own
  counter position from its element index, so the bytes do not depend on the thread count or
  the chunking (tests check 1, 2 and N threads, and other chunk sizes).
* Threading layer: TBB when available (thread safe and fork safe); otherwise Numba's choice,
  and calls are serialised with a lock if that layer is not thread safe (workqueue).
* Caching: on by default (``FASTINIT_NUMBA_CACHE=0`` turns it off). Numba writes next to the
  sources when it can and falls back to a per-user directory on a read-only install
  (``NUMBA_CACHE_DIR`` chooses the directory).
"""

from __future__ import annotations

import contextlib
import ctypes
import glob
import os
import sys
import threading

import numba
import numpy as np
from llvmlite import binding as _llvm
from numba import njit, prange, types
from numba.np.ufunc import parallel as _parallel

from ._config import NUMBA_CACHE as CACHE
from ._lib import OUT_F32, OUT_STREAM, SIGNATURES, lib

__all__ = ["fill_kernel", "fill_const", "threading_layer", "CHUNK"]

CHUNK = 1 << 16  # elements per prange task; any value gives the same bytes


def _preload_tbb() -> bool:
    """Make pip's TBB (installed in <prefix>/lib, off the loader path) visible to Numba."""
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix)):
        for path in sorted(glob.glob(os.path.join(prefix, "lib", "libtbb.so.12*"))):
            try:
                ctypes.CDLL(path, mode=ctypes.RTLD_GLOBAL)
                return True
            except OSError:
                continue
    return False


if "NUMBA_THREADING_LAYER" not in os.environ and numba.config.THREADING_LAYER == "default":
    if sys.platform.startswith("linux") and _preload_tbb():
        numba.config.THREADING_LAYER = "tbb"


def _start_threading_layer() -> None:
    """Start Numba's threading layer now, in the importing thread, and let TBB finish there.

    Numba's TBB layer, when it starts, submits one empty task from the starting thread and waits
    for it only when the interpreter exits. With one usable CPU (affinity mask or cgroup quota)
    TBB has no worker thread to run it, and if the starting thread was not the main thread, the
    exit waits for ever (numba#10556, oneTBB#2056). Running the wait here, in the thread that
    submitted the task, executes it at once, so exit has nothing left to wait for. Only a start
    made here is finished here (Numba's start-up locks are held, in Numba's order, across the
    check and the start); a layer that other code already started is left as it is.
    """
    if numba.config.DISABLE_JIT:
        return
    try:
        if not _parallel._backend_init_process_lock:
            _parallel._set_init_process_lock()
        with _parallel._backend_init_process_lock, _parallel._backend_init_thread_lock:
            if _parallel._is_initialized:
                return
            _parallel._launch_threads()
            if _parallel.threading_layer() == "tbb":
                # imported here: the module needs libtbb, which only the TBB layer loads
                from numba.np.ufunc import tbbpool

                ctypes.CFUNCTYPE(None)(tbbpool.synchronize)()
    except (AttributeError, ImportError, ValueError):  # another Numba, or no layer: start on first use
        pass


_start_threading_layer()

_llvm.load_library_permanently(lib._name)

# Numba types of fastinit._lib's signature codes; a pointer is passed as its address.
_NUMBA_TYPES = {"i32": types.int32, "u16": types.uint16, "u32": types.uint32, "i64": types.int64,
                "u64": types.uint64, "f32": types.float32, "f64": types.float64, "p": types.uint64}


def _extern(name):
    """C function `name` of the library with its signature from fastinit._lib.SIGNATURES: by symbol
    name when compiled; a ctypes call under NUMBA_DISABLE_JIT (pure-Python mode, used for coverage
    runs), where the drivers run as Python."""
    if not numba.config.DISABLE_JIT:
        res, args = SIGNATURES[name]
        return types.ExternalFunction(name, _NUMBA_TYPES[res](*(_NUMBA_TYPES[code] for code in args)))
    fn = getattr(lib, name)
    return lambda *args: fn(*(a.item() if isinstance(a, np.generic) else a for a in args))


_raw = _extern("fi_raw_u32")
_uni32 = _extern("fi_fill_uniform_f32")
_uni64 = _extern("fi_fill_uniform_f64")
_nrm32 = _extern("fi_fill_normal_f32")
_nrm64 = _extern("fi_fill_normal_f64")
_trn32 = _extern("fi_fill_trunc_f32")
_trn64 = _extern("fi_fill_trunc_f64")
_trt32 = _extern("fi_fill_trunc_table_f32")
_prefault = _extern("fi_prefault")
_c16 = _extern("fi_fill_const_u16")
_c32 = _extern("fi_fill_const_u32")
_c64 = _extern("fi_fill_const_u64")

# Kernel kinds of fill_kernel, with the elements per Philox block of each.
# TRT32 is the float32 truncated normal from a quantile table; its first parameter is the
# table's address (below 2**53, so a float64 carries it exactly).
RAW, UNI32, UNI64, NRM32, NRM64, TRN32, TRN64, TRT32 = range(8)
ELEMENTS_PER_BLOCK = {RAW: 4, UNI32: 4, UNI64: 2, NRM32: 4, NRM64: 2, TRN32: 4, TRN64: 2, TRT32: 4}


@njit(parallel=True, cache=CACHE, nogil=True)
def _drive(kind, seed, stream, block0, skip, n, addr, itemsize, otype, p, prefault):
    """Fill n elements at address addr, starting at element `skip` of block `block0`.

    With `prefault`, each chunk first maps its pages in one system call (see fi_prefault)."""
    epb = 2 if kind == UNI64 or kind == NRM64 or kind == TRN64 else 4
    nchunks = (n + CHUNK - 1) // CHUNK
    for c in prange(nchunks):
        s = c * CHUNK
        m = min(CHUNK, n - s)
        e = np.uint64(skip) + np.uint64(s)  # element index relative to block0 (< 2**63)
        blk = np.uint64(block0 + e // np.uint64(epb))
        sub = np.uint32(e % np.uint64(epb))
        out = np.uint64(addr + np.uint64(itemsize) * np.uint64(s))
        if prefault:
            _prefault(out, m * itemsize)
        if kind == RAW:
            _raw(seed, stream, blk, sub, m, out)
        elif kind == UNI32:
            _uni32(seed, stream, blk, sub, m, out, otype, np.float32(p[0]), np.float32(p[1]),
                   np.float32(p[2]), np.float32(p[3]))
        elif kind == UNI64:
            _uni64(seed, stream, blk, sub, m, out, p[0], p[1], p[2], p[3])
        elif kind == NRM32:
            _nrm32(seed, stream, blk, sub, m, out, otype, np.float32(p[0]), np.float32(p[1]))
        elif kind == NRM64:
            _nrm64(seed, stream, blk, sub, m, out, p[0], p[1])
        elif kind == TRT32:
            _trt32(seed, stream, blk, sub, m, out, otype, np.uint64(p[0]), np.float32(p[1]), np.float32(p[2]))
        elif kind == TRN32:
            _trn32(seed, stream, blk, sub, m, out, otype, np.int32(p[0]), p[1], p[2], p[3], p[4], p[5],
                   np.float32(p[6]), np.float32(p[7]))
        else:
            _trn64(seed, stream, blk, sub, m, out, np.int32(p[0]), p[1], p[2], p[3], p[4], p[5], p[6], p[7])
    return 0


@njit(parallel=True, cache=CACHE, nogil=True)
def _drive_const(n, addr, itemsize, bits):
    nchunks = (n + CHUNK - 1) // CHUNK
    for c in prange(nchunks):
        s = c * CHUNK
        m = min(CHUNK, n - s)
        out = np.uint64(addr + np.uint64(itemsize) * np.uint64(s))
        if itemsize == 2:
            _c16(m, out, np.uint16(bits))
        elif itemsize == 4:
            _c32(m, out, np.uint32(bits))
        else:
            _c64(m, out, np.uint64(bits))
    return 0


_SAFE_LAYERS = ("tbb", "omp")
_serial_lock = threading.Lock()
_layer: str | None = None


def threading_layer() -> str:
    """Numba's threading layer in use (runs a tiny parallel fill first if none ran yet)."""
    global _layer
    if _layer is None and numba.config.DISABLE_JIT:
        _layer = "none (JIT disabled)"  # no parallel region is compiled; _guard serialises calls
    if _layer is None:
        buf = np.empty(1, np.uint32)
        _drive_const(1, np.uint64(buf.ctypes.data), 4, np.uint64(0))
        _layer = numba.threading_layer()
    return _layer


def _guard():
    """A lock only when the threading layer cannot take concurrent calls (workqueue)."""
    return contextlib.nullcontext() if threading_layer() in _SAFE_LAYERS else _serial_lock


# Super-chunks bound the time spent in one compiled call, so Ctrl-C is seen within ~0.1 s.
_SUPER = 1 << 24


def fill_kernel(kind: int, seed: int, stream: int, block0: int, skip: int, n: int, addr: int,
                itemsize: int, otype: int, params) -> None:
    """Run kernel `kind` over n elements at `addr` (all arguments already validated)."""
    p = np.zeros(8, np.float64)
    p[: len(params)] = params
    epb = ELEMENTS_PER_BLOCK[kind]
    prefault = fresh_memory(addr, n * itemsize)
    if kind in STREAMING and otype == OUT_F32 and n * itemsize >= STREAM_MIN_BYTES:
        otype |= OUT_STREAM
    if n <= CHUNK:
        # one chunk: call its C kernel directly (a parallel region's launch costs ~20 us, more than
        # filling a small tensor; the simulator's sweeps and models' biases make thousands of them)
        _fill_chunk(kind, seed, stream, (block0 + skip // epb) % (1 << 64), skip % epb, n, addr, itemsize,
                    otype, p, prefault)
        return
    with _guard():
        done = 0
        while done < n:
            m = min(_SUPER, n - done)
            e = skip + done
            _drive(kind, np.uint64(seed), np.uint64(stream), np.uint64((block0 + e // epb) % (1 << 64)),
                   e % epb, m, np.uint64(addr + itemsize * done), itemsize, otype, p, prefault)
            done += m


def _fill_chunk(kind, seed, stream, blk, sub, m, addr, itemsize, otype, p, prefault):
    """One chunk of :func:`_drive` (the same C call with the same arguments) through ctypes."""
    if prefault:
        lib.fi_prefault(addr, m * itemsize)
    head = (seed, stream, blk, sub, m, addr)
    if kind == RAW:
        lib.fi_raw_u32(*head)
    elif kind == UNI32:
        lib.fi_fill_uniform_f32(*head, otype, *p[:4])
    elif kind == UNI64:
        lib.fi_fill_uniform_f64(*head, *p[:4])
    elif kind == NRM32:
        lib.fi_fill_normal_f32(*head, otype, p[0], p[1])
    elif kind == NRM64:
        lib.fi_fill_normal_f64(*head, p[0], p[1])
    elif kind == TRT32:
        lib.fi_fill_trunc_table_f32(*head, otype, int(p[0]), p[1], p[2])
    elif kind == TRN32:
        lib.fi_fill_trunc_f32(*head, otype, int(p[0]), *p[1:6], p[6], p[7])
    else:
        lib.fi_fill_trunc_f64(*head, int(p[0]), *p[1:8])


# float32 fills from this size on bypass the caches (non-temporal stores: no read of the target's
# lines before they are written, and the caches keep their contents), in the kernels that have
# the streaming path. The values do not depend on it.
STREAM_MIN_BYTES = 1 << 25
STREAMING = (UNI32, NRM32, TRT32)

# Targets from this size on are checked for fresh (never touched) memory.
PREFAULT_MIN_BYTES = 1 << 22


def fresh_memory(addr: int, nbytes: int) -> bool:
    """True for a large target whose first whole page is not mapped yet (a fresh allocation).

    The fill then maps each chunk's pages with one system call before writing them, instead of
    taking a page fault per 4 KiB page. Only the speed depends on this guess, never the values.
    """
    return nbytes >= PREFAULT_MIN_BYTES and lib.fi_resident(ctypes.c_void_p(addr)) == 0


def fill_const(n: int, addr: int, itemsize: int, bits: int) -> None:
    """Write the bit pattern `bits` (itemsize 2, 4 or 8 bytes) into n elements at `addr`."""
    if n <= CHUNK:  # one chunk: its C kernel directly, as in fill_kernel
        {2: lib.fi_fill_const_u16, 4: lib.fi_fill_const_u32, 8: lib.fi_fill_const_u64}[itemsize](n, addr, bits)
        return
    with _guard():
        done = 0
        while done < n:
            m = min(_SUPER, n - done)
            _drive_const(m, np.uint64(addr + itemsize * done), itemsize, np.uint64(bits))
            done += m
