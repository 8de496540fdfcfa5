"""Nanoseconds per element of the simulator's fused kernels, per activation, against one SGEMM of the block.

Usage (from the repository root)::

    PYTHONPATH=. python benchmarks/scripts/sim_kernels.py [--batch 512] [--width 128] [--repeats 30]
    PYTHONPATH=. python benchmarks/scripts/sim_kernels.py --dtype float64 --scale 1e200
    FASTINIT_NUMBA_CACHE=0 PYTHONPATH=. python benchmarks/scripts/sim_kernels.py --no-wide-vectors

One ``batch x width`` block (the sweep benchmark's layer) of N(0, 1) values times ``--scale`` (default 1;
1e30 or 1e200 are the pre-activations of an exploding network, 1e-160 those of a vanishing one, whose
squares, and so the forward statistics, are subnormal numbers: those stay slow) in ``--dtype`` (default
float32), medians of ``--repeats`` calls:

* ``fwd moments``: the forward kernel with the moment groups only (``F_ZMOM | F_POST``);
* ``fwd all``: the forward kernel with every statistic group;
* ``bwd``: the backward kernel (``delta = phi'(z) g`` and its row sums of squares);
* ``sgemm``: ``numpy.matmul`` of the block by a ``width x width`` matrix on one BLAS thread, per output
  (always float32 N(0, 1) values).

On a shared machine the timings drift between runs: compare versions or scales by runs made back to back
(alternating), or by ratios within one run.

``--no-wide-vectors`` compiles the kernels without asking LLVM for 512-bit vectors
(``fastinit.sim._fastmath.prefer_wide_vectors``), for comparison; it needs Numba's on-disk cache off
(``FASTINIT_NUMBA_CACHE=0``), whose kernels were compiled with the request.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from fastinit import _blas
from fastinit._activations import get_activation
from fastinit.sim import _kernels as K
from fastinit.sim import _passes as P


def _median_ns(fn, repeats, elements, reset=None):
    times = []
    for _ in range(repeats):
        if reset is not None:
            reset()
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times) / elements * 1e9


def _activation_row(name, z0, g, reps):
    """[fwd moments, fwd all, bwd] in ns per element for one activation."""
    B, n = z0.shape
    kind = get_activation(name).kind_id
    nb = len(P.row_blocks(B, n, 4)) - 1
    z, out, d = z0.copy(), np.empty_like(z0), np.empty_like(z0)
    bias = np.zeros(n)
    ush, us1, us2 = np.zeros((nb, n)), np.zeros((nb, n)), np.zeros((nb, n))
    umax, part, rowsq = np.full((nb, n), -np.inf), np.zeros((nb, K.N_PART)), np.zeros(B)
    row = []
    for flags in (K.F_ZMOM | K.F_POST, K.F_ZMOM | K.F_POST | K.F_SPREAD | K.F_INACT | K.F_SAT | K.F_DEAD):
        fwd = K.compiled(K.forward_block, kind, z, bias, out, z, 1.0, False, 0.0, 2.0, flags, 0, 0, 0,
                         ush, us1, us2, umax, part, rowsq)
        args = (kind, z, bias, out, z, 1.0, False, 0.0, 2.0, flags, 0, B, 0, ush, us1, us2, umax, part, rowsq)
        row.append(_median_ns(lambda fwd=fwd, args=args: fwd(*args), reps, B * n, reset=lambda: np.copyto(z, z0)))
    bw = K.compiled(K.backward_block, kind, g, g, False, z, d, 0.0, 1.0, 0, 0, rowsq)
    row.append(_median_ns(lambda: bw(kind, g, g, False, z, d, 0.0, 1.0, 0, B, rowsq), reps, B * n))
    return row


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--scale", type=float, default=1.0, help="values are N(0, 1) * SCALE (default 1)")
    ap.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    ap.add_argument("--no-wide-vectors", action="store_true", help="compile without the 512-bit vector request")
    args = ap.parse_args(argv)
    if args.no_wide_vectors:
        from fastinit import _config
        from fastinit.sim import _fastmath

        if _config.NUMBA_CACHE:
            ap.error("--no-wide-vectors needs FASTINIT_NUMBA_CACHE=0 (cached kernels keep the request)")
        _fastmath._WIDE_OK = False
    B, n, reps = args.batch, args.width, args.repeats
    rng = np.random.default_rng(0)
    dt = np.dtype(args.dtype)
    with np.errstate(over="ignore"):
        z0 = (rng.standard_normal((B, n)) * args.scale).astype(dt)
    if not np.isfinite(z0).all():
        ap.error(f"--scale {args.scale:g} overflows {args.dtype}")
    g = rng.standard_normal((B, n)).astype(dt)
    print(f"{args.dtype}, values N(0, 1) * {args.scale:g}")
    print(f"{'activation':10s} {'fwd moments':>12s} {'fwd all':>10s} {'bwd':>8s}  (ns/element)")
    for name in ("relu", "tanh", "selu", "gelu"):
        row = _activation_row(name, z0, g, reps)
        print(f"{name:10s} {row[0]:12.2f} {row[1]:10.2f} {row[2]:8.2f}")
    W = rng.standard_normal((n, n)).astype(np.float32)
    zz = np.empty((B, n), np.float32)
    x32 = rng.standard_normal((B, n)).astype(np.float32)
    with _blas.single_threaded_blas():
        ns = _median_ns(lambda: np.matmul(x32, W.T, out=zz), reps, B * n)
    print(f"sgemm {B}x{n}x{n}, one BLAS thread: {ns:.2f} ns per output ({2 * n / ns:.1f} GFLOP/s)")


if __name__ == "__main__":
    main()
