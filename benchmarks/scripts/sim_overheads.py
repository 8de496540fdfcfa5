"""The simulator's overheads around its kernels: page faults, and what a first run compiles.

Usage (from the repository root)::

    PYTHONPATH=. python benchmarks/scripts/sim_overheads.py faults
    NUMBA_CACHE_DIR=$(mktemp -d) PYTHONPATH=. python benchmarks/scripts/sim_overheads.py compile
    PYTHONPATH=. python benchmarks/scripts/sim_overheads.py threads

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
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import os
import resource
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
    ap.add_argument("what", choices=["faults", "compile", "threads"])
    args = ap.parse_args(argv)
    {"faults": faults, "compile": compile_times, "threads": threads}[args.what]()


if __name__ == "__main__":
    main()
