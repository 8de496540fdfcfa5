"""``fastinit simulate`` with its defaults against the same GEMMs alone, timed in one process.

Usage (from the repository root)::

    PYTHONPATH=. python benchmarks/scripts/simulate_vs_gemm.py [--repeats 3] [--quick] [--workers N]

The default study is 7 schemes x 4 activations, 50 layers of width 512, batch 1024, float64, one
network each (``fastinit._simulate_cli``). It computes every statistic, so per configuration and
layer it does three GEMMs: ``a W^T`` (forward), ``delta W`` (backward, down to the input gradient)
and ``delta^T a`` (batch-mean weight gradient). This script times:

* ``gemm``: those 3 x 50 x 28 GEMMs alone, ``numpy.matmul`` into preallocated arrays with
  NumPy's default BLAS threads;
* ``sweep``: the study's ``fastinit.sim.sweep`` call with the command's arguments (theory and
  histograms included; the kernels are compiled or loaded before the timed region, as in a second
  run of the command);
* ``command``: the whole command, ``python -m fastinit simulate --no-progress`` into a temporary
  directory, in a new process with Numba's cache warm (a second run: start-up, imports, the
  sweep, theory, tables, results.json, results.csv and the plots; ``--no-plots`` to skip them).

and prints the medians and the ratios sweep/gemm and command/gemm. The simulator runs no GEMM for a
layer of zero weights (the ``zeros`` scheme: ``x @ 0`` is 0), so it also prints the ratios against
the GEMMs the study does run: those of the other configurations (the same GEMM per configuration,
so ``gemm`` scaled by their share).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

from fastinit import sim
from fastinit._simulate_cli import _DEFAULTS, _QUICK, STUDY_ACTIVATIONS, STUDY_SCHEMES
from fastinit.sim import _mlp


def gemms_alone(depth, width, batch, nconfig, dtype=np.float64):
    """The study's GEMMs: for every configuration and layer a W^T, delta W and delta^T a."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((batch, width)).astype(dtype)
    W = rng.standard_normal((width, width)).astype(dtype) / np.sqrt(width)
    z = np.empty((batch, width), dtype)
    g = np.empty((batch, width), dtype)
    dW = np.empty((width, width), dtype)
    for _ in range(nconfig):
        for _ in range(depth):
            np.matmul(a, W.T, out=z)
            np.matmul(z, W, out=g)
            np.matmul(g.T, a, out=dW)


def study_sweep(depth, width, batch, workers=None):
    _mlp._mlp_theory_cached.cache_clear()  # as in a new process: the theory is computed again
    specs = [STUDY_SCHEMES[s][:2] for s in STUDY_SCHEMES]
    L = depth
    hist = [1, max(1, L // 4), max(1, L // 2), max(1, 3 * L // 4), L]
    return sim.sweep(inits=specs, activations=list(STUDY_ACTIVATIONS), depths=[L], widths=[width], seeds=[0],
                     batch=batch, n_networks=1, bias=0.0, dtype="float64", histograms=True, hist_layers=hist,
                     hist_bins=60, workers=workers)


def command(quick, plots):
    with tempfile.TemporaryDirectory() as out:
        argv = [sys.executable, "-m", "fastinit", "simulate", "--no-progress", "--output-dir", out]
        argv += (["--quick"] if quick else []) + ([] if plots else ["--no-plots"])
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, env=dict(os.environ))


def _time(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="the --quick study (smoke test)")
    ap.add_argument("--no-plots", action="store_true", help="run the command with --no-plots")
    ap.add_argument("--workers", type=int, default=None, help="the sweep's workers= (default: its own)")
    args = ap.parse_args(argv)
    sizes = _QUICK if args.quick else _DEFAULTS
    L, n, B = sizes["depth"], sizes["width"], sizes["batch"]
    nconfig = len(STUDY_SCHEMES) * len(STUDY_ACTIVATIONS)
    plots = not args.no_plots
    command(args.quick, plots)  # fills Numba's on-disk cache if it is empty: the timed runs are second runs
    study_sweep(L, n, B) if args.quick else study_sweep(2, n, 8)  # compile or load the kernels here
    res = {}
    # interleaved, so that a change in the machine's load hits every measurement alike
    runs = {"gemm": [], "sweep": [], "command": []}
    for _ in range(args.repeats):
        runs["gemm"].append(_time(lambda: gemms_alone(L, n, B, nconfig)))
        runs["sweep"].append(_time(lambda: study_sweep(L, n, B, args.workers)))
        runs["command"].append(_time(lambda: command(args.quick, plots)))
    for k, v in runs.items():
        res[k] = statistics.median(v)
        print(f"{k:8s} median {res[k]:8.3f} s   runs: " + ", ".join(f"{t:.3f}" for t in v))
    flops = 3 * L * nconfig * 2.0 * B * n * n
    print(f"GEMM work {flops / 1e12:.3f} TFLOP: {flops / res['gemm'] / 1e9:.1f} GFLOP/s alone")
    print(f"sweep / gemm   = {res['sweep'] / res['gemm']:.3f}")
    print(f"command / gemm = {res['command'] / res['gemm']:.3f}")
    nzero = sum(1 for s in STUDY_SCHEMES.values() if s[0] == "zeros") * len(STUDY_ACTIVATIONS)
    run = res["gemm"] * (nconfig - nzero) / nconfig
    print(f"against the GEMMs it runs ({nconfig - nzero} of {nconfig} configurations: the zeros scheme's "
          f"layers need none), {run:.3f} s:")
    print(f"sweep / gemm run   = {res['sweep'] / run:.3f}")
    print(f"command / gemm run = {res['command'] / run:.3f}")


if __name__ == "__main__":
    main()
