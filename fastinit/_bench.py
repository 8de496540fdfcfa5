"""Throughput measurements shared by ``fastinit bench`` and ``benchmarks/``.

Every comparison runs in one process on one buffer: fastinit's fills, the NumPy references
(one ``numpy.random.Generator`` thread, and NumPy's documented multithreaded recipe with one
generator per thread), torch when installed, and the machine's own write bandwidth (a constant
written into the same buffer from all threads, timed before and after the others). Times are
medians of ``repeat`` runs.
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import time

import numba
import numpy as np

from . import _fill
from ._memory import available_memory  # noqa: F401 - `fastinit bench` reads it here (tests replace it)
from ._numba import threading_layer
from ._reference.fills import MultithreadedRNG

TRUNC = dict(mean=0.0, std=0.02, a=-0.04, b=0.04)  # the trunc_normal_ benchmark case


def run_times(fn, repeat: int = 3) -> list[float]:
    """Wall times of `repeat` calls of fn, after one untimed warm-up call (JIT load, first touch)."""
    fn()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def numpy_trunc_rejection(rng: np.random.Generator, out: np.ndarray, mean, std, a, b):
    """NumPy reference for trunc_normal_: normals, redrawing the ones outside [a, b] (torch's method)."""
    flat = out.reshape(-1)
    rng.standard_normal(out=flat, dtype=flat.dtype)
    flat *= std
    flat += mean
    bad = np.flatnonzero((flat < a) | (flat > b))
    while bad.size:
        flat[bad] = rng.standard_normal(bad.size).astype(flat.dtype) * std + mean
        bad = bad[(flat[bad] < a) | (flat[bad] > b)]
    return out


def fill_rows(nbytes: int = 1 << 30, repeat: int = 3, torch_too: bool = True) -> list[dict]:
    """Measure every implementation on one float32 buffer of `nbytes` bytes; one dict per row."""
    if repeat < 1:
        raise ValueError(f"repeat must be >= 1, got {repeat}")
    buf = np.empty(nbytes // 4, np.float32)
    rng = np.random.default_rng(0)
    threaded = MultithreadedRNG(0, numba.get_num_threads())
    rows = []

    def row(op, impl, times):
        t = statistics.median(times)
        return {"op": op, "impl": impl, "seconds": t, "gib_per_s": buf.nbytes / t / 2**30}

    def add(op, impl, fn):
        rows.append(row(op, impl, run_times(fn, repeat)))

    # The yardstick is timed before and after everything else, and its row is the median of both
    # sets: on this shared VM one set alone has read far off (36 instead of 24 GiB/s).
    def fill():
        _fill.fill_constant(buf, 1.0)

    fill_times = run_times(fill, repeat)
    add("fill bandwidth", "numpy ndarray.fill", lambda: buf.fill(1.0))
    add("uniform_", "fastinit", lambda: _fill.fill_uniform(buf, 0.0, 1.0, 1, 0))
    add("uniform_", "numpy 1 thread", lambda: rng.random(out=buf, dtype=np.float32))
    add("uniform_", f"numpy {threaded.threads} threads", lambda: threaded.uniform_(buf))
    add("normal_", "fastinit", lambda: _fill.fill_normal(buf, 0.0, 1.0, 1, 1))
    add("normal_", "numpy 1 thread", lambda: rng.standard_normal(out=buf, dtype=np.float32))
    add("normal_", f"numpy {threaded.threads} threads", lambda: threaded.normal_(buf))
    add("trunc_normal_", "fastinit", lambda: _fill.fill_trunc_normal(buf, **TRUNC, seed=1, stream=2))
    add("trunc_normal_", "numpy 1 thread (rejection)", lambda: numpy_trunc_rejection(rng, buf, **TRUNC))
    if torch_too:
        try:
            import torch
        except ImportError:
            torch = None
        if torch is not None:
            t = torch.from_numpy(buf)
            torch.set_num_threads(numba.get_num_threads())
            add("uniform_", "torch", lambda: t.uniform_(0.0, 1.0))
            add("normal_", "torch", lambda: t.normal_(0.0, 1.0))
            add("trunc_normal_", "torch", lambda: torch.nn.init.trunc_normal_(t, **TRUNC))
    rows.insert(0, row("fill bandwidth", "constant, all threads", fill_times + run_times(fill, repeat)))
    bandwidth = rows[0]["gib_per_s"]
    for r in rows:
        base = next(x for x in rows if x["op"] == r["op"] and x["impl"].startswith(("numpy 1", "constant")))
        r["vs_bandwidth"] = r["gib_per_s"] / bandwidth
        r["speedup_vs_numpy_1thread"] = base["seconds"] / r["seconds"]
    return rows


# Peak memory of fill_rows per byte of its buffer, measured with ru_maxrss: the buffer itself plus
# 0.75 for the NumPy rejection reference's masks (three bool arrays, one byte per float32); torch's
# trunc_normal_ allocates temporaries of about 3.3 buffers on top (torch 2.13: 837 MiB over a
# 256 MiB buffer). BASE covers the interpreter, Numba's compiled drivers and torch's libraries
# (0.3 GB measured with all of them loaded).
PEAK_PER_BYTE = 1.75
PEAK_PER_BYTE_TORCH = 4.5
BASE = 512 << 20


def peak_memory(nbytes: int, torch_too: bool = True) -> int:
    """Bytes :func:`fill_rows` needs for a buffer of `nbytes` (an upper estimate, from measurements)."""
    torch_rows = torch_too and importlib.util.find_spec("torch") is not None
    return BASE + int(nbytes * (PEAK_PER_BYTE_TORCH if torch_rows else PEAK_PER_BYTE))


def machine_info() -> dict:
    import platform

    from . import __version__, _lib

    info = {
        "fastinit": __version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "numba_threads": numba.get_num_threads(),
        "threading_layer": threading_layer(),
        "simd_level": _lib.simd_level(),
        "library": _lib.lib._name,
        "numba_cache": numba.config.CACHE_DIR or "(next to the sources; per-user directory if read-only)",
        "numba_cache_enabled": __import__("fastinit._numba", fromlist=["CACHE"]).CACHE,
    }
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        info["torch"] = "not installed"
    return info
