"""The simulator's overheads around its kernels: page faults, and what a first run compiles.

Usage (from the repository root)::

    PYTHONPATH=. python benchmarks/scripts/sim_overheads.py faults
    NUMBA_CACHE_DIR=$(mktemp -d) PYTHONPATH=. python benchmarks/scripts/sim_overheads.py compile
    PYTHONPATH=. python benchmarks/scripts/sim_overheads.py threads
    PYTHONPATH=. python benchmarks/scripts/sim_overheads.py gemm-blocks
    PYTHONPATH=. python benchmarks/scripts/sim_overheads.py shared

* ``faults``: minor page faults and system CPU time (``getrusage``) of networks of the default
  ``fastinit simulate`` study (depth 50, width 512, batch 1024, float64, tanh, every statistic),
  three in a row with their working arrays kept between them (``keep_buffers``, as a sweep does)
  and one on its own; then of the 200-configuration sweep of ``bench_sim.py`` (width 128, batch
  512, depth 20, float32), after one warm-up sweep.
* ``compile``: the default study (``fastinit simulate --no-progress`` into a temporary directory)
  in this process on an empty Numba cache, with the seconds of Numba's compile events summed per
  compiled function (a function compiled while another compiles counts in both); the wall time.
* ``threads``: the 200-configuration sweep with ``workers=1`` and ``workers=2``, two rounds each after a
  warm-up: wall time, the process's CPU time (``os.times``, every thread) and the share of the two cores
  busy (CPU over twice the wall time), which shows how long the two runs at once wait.
* ``gemm-blocks``: the default study's three DGEMMs of a layer (1024 x 512 by 512 x 512, the backward
  one, and the weight gradient's 512 x 1024 by 1024 x 512) on one BLAS thread, in one call or in four
  calls of a quarter of the rows each (as a run on several threads does), medians of 5 x 20 calls; and
  whether the two give the same bits.
* ``shared``: the 200-configuration sweep with the weights shared between the runs that differ only in
  the activation (``SharedWeights``, the default) and with every run drawing its own, ``workers`` 1 and
  2, four interleaved rounds, medians.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import resource
import statistics
import sys
import tempfile
import time


def _usage():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_minflt, r.ru_stime


def faults():
    from fastinit import sim

    try:
        from fastinit.sim._workspace import keep_buffers
    except ImportError:  # code from before the buffers were recycled (for comparison)
        keep_buffers = contextlib.nullcontext

    kw = dict(depth=50, width=512, batch=1024, activation="tanh", init="xavier_normal", dtype="float64",
              theory=False)
    sim.simulate_mlp(**{**kw, "depth": 2, "batch": 8})  # compile or load the kernels first

    def one(label):
        f0, s0 = _usage()
        t = time.perf_counter()
        sim.simulate_mlp(**kw)
        f1, s1 = _usage()
        print(f"{label:34s} {f1 - f0:8d} faults  {s1 - s0:6.2f} s system  {time.perf_counter() - t:6.2f} s wall")

    with keep_buffers():
        for i in range(3):
            one(f"study network {i + 1}, buffers kept")
    one("study network on its own")

    _small_sweep()
    f0, s0 = _usage()
    t = time.perf_counter()
    _small_sweep()
    f1, s1 = _usage()
    print(f"{'sweep of 200 configurations':34s} {f1 - f0:8d} faults  {s1 - s0:6.2f} s system  "
          f"{time.perf_counter() - t:6.2f} s wall")


def _small_sweep(**kw):
    from fastinit import sim

    return sim.sweep(inits=["xavier_normal", "kaiming_normal", "lecun_normal", "orthogonal", "small"],
                     activations=["tanh", "relu", "selu", "gelu"], depths=[20], widths=[128], seeds=range(10),
                     batch=512, dtype="float32", theory=False, **kw)


def threads():
    _small_sweep()
    for workers in (1, 2, 1, 2):
        c0, t0 = os.times(), time.perf_counter()
        _small_sweep(workers=workers)
        c1, wall = os.times(), time.perf_counter() - t0
        cpu = (c1.user - c0.user) + (c1.system - c0.system)
        print(f"workers={workers}: {wall:5.2f} s wall  {cpu:5.2f} s CPU  cores busy {cpu / (2 * wall):4.0%}")


def gemm_blocks():
    import numpy as np

    from fastinit import _blas

    rng = np.random.default_rng(0)
    B, n = 1024, 512
    a, W = rng.standard_normal((B, n)), rng.standard_normal((n, n))
    z, dW = np.empty((B, n)), np.empty((n, n))

    def products(nb):
        r = np.linspace(0, B, nb + 1).astype(int)
        c = np.linspace(0, n, nb + 1).astype(int)
        for k in range(nb):
            np.matmul(a[r[k]:r[k + 1]], W.T, out=z[r[k]:r[k + 1]])
        fwd = z.copy()
        for k in range(nb):
            np.matmul(a[r[k]:r[k + 1]], W, out=z[r[k]:r[k + 1]])
        for k in range(nb):
            np.matmul(a[:, c[k]:c[k + 1]].T, z, out=dW[c[k]:c[k + 1]])
        return fwd, z.copy(), dW.copy()

    with _blas.single_threaded_blas():
        times = {1: [], 4: []}
        for _ in range(5):
            for nb in (1, 4):
                t = time.perf_counter()
                for _ in range(20):
                    products(nb)
                times[nb].append((time.perf_counter() - t) / 20 * 1e3)
        same = all(np.array_equal(x, y) for x, y in zip(products(1), products(4), strict=True))
    for nb, v in times.items():
        print(f"{nb} call(s) per product: {statistics.median(v):6.2f} ms for the layer's three DGEMMs")
    print(f"same bits: {same}")


def shared():
    from fastinit.sim import _schemes

    real = _schemes.SharedWeights.get

    def own(self, group, key, draw):
        return draw()

    _small_sweep()
    times = collections.defaultdict(list)
    try:
        for _ in range(4):
            for mode, get in (("shared", real), ("each run its own", own)):
                _schemes.SharedWeights.get = get
                for workers in (1, 2):
                    t = time.perf_counter()
                    _small_sweep(workers=workers)
                    times[mode, workers].append(time.perf_counter() - t)
    finally:
        _schemes.SharedWeights.get = real
    for (mode, workers), v in sorted(times.items()):
        print(f"weights {mode:16s} workers={workers}: median {statistics.median(v):5.2f} s   "
              + " ".join(f"{x:.2f}" for x in v))


def compile_times():
    cache = os.environ.get("NUMBA_CACHE_DIR")
    if not cache or (os.path.isdir(cache) and os.listdir(cache)):
        sys.exit("compile: set NUMBA_CACHE_DIR to a new, empty directory first")
    from numba.core import event

    seconds, counts = collections.defaultdict(float), collections.Counter()

    class Timer(event.Listener):
        def __init__(self):
            self.start = {}

        def on_start(self, ev):
            self.start[id(ev.data["dispatcher"]), str(ev.data.get("args"))] = time.perf_counter()

        def on_end(self, ev):
            key = (id(ev.data["dispatcher"]), str(ev.data.get("args")))
            fn = getattr(ev.data["dispatcher"], "py_func", None)
            name = f"{fn.__module__}.{fn.__qualname__}" if fn is not None else str(ev.data["dispatcher"])
            seconds[name] += time.perf_counter() - self.start.pop(key, time.perf_counter())
            counts[name] += 1

    timer = Timer()
    event.register("numba:compile", timer)
    from fastinit.cli import main

    t = time.perf_counter()
    with tempfile.TemporaryDirectory() as out, open(os.devnull, "w") as null, contextlib.redirect_stdout(null):
        try:
            main(["simulate", "--no-progress", "--output-dir", out])
        except SystemExit:
            pass
    wall = time.perf_counter() - t
    for name, sec in sorted(seconds.items(), key=lambda kv: -kv[1])[:30]:
        print(f"{sec:7.2f} s {counts[name]:3d}  {name}")
    print(f"first run of the default study in this process: {wall:.1f} s wall")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["faults", "compile", "threads", "gemm-blocks", "shared"])
    args = ap.parse_args(argv)
    {"faults": faults, "compile": compile_times, "threads": threads, "gemm-blocks": gemm_blocks,
     "shared": shared}[args.what]()


if __name__ == "__main__":
    main()
