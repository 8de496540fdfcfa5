"""Blocks of a logical tensor: column blocks vs row blocks, and orthogonal_ split into row blocks.

    PYTHONPATH=. python benchmarks/scripts/blocks.py            # both parts
    PYTHONPATH=. python benchmarks/scripts/blocks.py --fills    # element-wise part only
    PYTHONPATH=. python benchmarks/scripts/blocks.py --orthogonal
    PYTHONPATH=. python benchmarks/scripts/blocks.py --orthogonal --n 8192 --repeat 6   # median of 3
    PYTHONPATH=. python benchmarks/scripts/blocks.py --runs     # cost of one run (one kernel call)
    PYTHONPATH=. python benchmarks/scripts/blocks.py --accuracy # orthogonal_ blocks vs the full matrix

Element-wise: ``normal_`` float32 into a block of 2**25 elements (128 MiB) of a larger logical tensor:
a row block (one run of the stream), column blocks with runs of 4096, 256 and 16 elements, and, for
the runs of 256, one ``normal_(offset=...)`` call per run (what a caller without blocks would do).
Orthogonal: ``--n`` x ``--n`` (4096) float32, the full matrix and the same matrix in 2 and 4 row blocks
(time per block), with the model flop counts and the largest difference from the full matrix: median
of ``--repeat // 2`` rounds, each timing the full matrix and every block in turn.
Element-wise: best of ``--repeat`` runs after a warm-up; the target arrays are allocated once and reused.
"""

from __future__ import annotations

import argparse
import time

import numba
import numpy as np

import fastinit
from fastinit import Block


def best(fn, repeat):
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def fills(repeat):
    size = 1 << 25
    local = np.empty(size, np.float32)
    print(f"normal_ float32, block of {size} elements ({size * 4 >> 20} MiB), best of {repeat}")
    flat = best(lambda: fastinit.normal_(local, generator=1, offset=size), repeat)
    print(f"  {'flat stream (offset=)':44s} {flat * 1e3:8.1f} ms  1.00x")
    cases = [("row block of (16384, 4096): rows 0:8192", (16384, 4096), np.s_[0:8192]),
             ("column block of (8192, 8192): cols 0:4096", (8192, 8192), np.s_[:, 0:4096]),
             ("column block of (131072, 512): cols 0:256", (131072, 512), np.s_[:, 0:256]),
             ("column block of (2097152, 32): cols 8:24", (2097152, 32), np.s_[:, 8:24])]
    for label, shape, idx in cases:
        b = Block(shape, idx)
        arr = local.reshape(b.shape)
        t = best(lambda arr=arr, b=b: fastinit.normal_(arr, generator=1, block=b), repeat)
        print(f"  {label:44s} {t * 1e3:8.1f} ms  {t / flat:.2f}x")
    # the same 256-element runs, one call each
    arr = local.reshape(131072, 256)

    def per_run():
        for r in range(arr.shape[0]):
            fastinit.normal_(arr[r], generator=1, offset=r * 512)

    t = best(per_run, max(1, repeat // 2))
    print(f"  {'same, one normal_(offset=) call per run':44s} {t * 1e3:8.1f} ms  {t / flat:.2f}x")


def runs(repeat):
    """Time per run of column blocks whose runs are far apart (one kernel call per run)."""
    n = 1 << 22
    print(f"column blocks of {n} elements, runs 1024 positions apart (a call per run), best of {repeat}")
    for name in ("uniform_", "normal_", "trunc_normal_"):
        fn = getattr(fastinit, name)
        local = np.empty(n, np.float32)
        flat = best(lambda fn=fn, local=local: fn(local, generator=1), repeat)
        cells = []
        for run in (1, 16, 256):
            b = Block((n // run, 1024), np.s_[:, :run])
            arr = local.reshape(b.shape)
            t = best(lambda fn=fn, arr=arr, b=b: fn(arr, generator=1, block=b), repeat)
            cells.append(f"run {run}: {t / (n // run) * 1e9:.0f} ns/run")
        print(f"  {name:14s} flat {flat / n * 1e9:.2f} ns/element; " + ", ".join(cells))


def accuracy():
    """Largest |block - full[index]| of orthogonal_ in units of sqrt(n) eps (n the long side)."""
    cases = [((97, 60), np.s_[10:50]), ((97, 60), np.s_[:, 17:41]), ((97, 60), np.s_[20:70, 5:9]),
             ((60, 97), np.s_[13:29]), ((60, 97), np.s_[:, 40:97]), ((80, 80), np.s_[40:80]),
             ((16, 8, 3, 3), np.s_[4:12, 2:5, :, 1:3]), ((300, 300), np.s_[150:300]), ((300, 300), np.s_[:, 0:100]),
             ((2048, 2048), np.s_[1024:2048]), ((2048, 2048), np.s_[:, 512:1024]), ((4096, 512), np.s_[1000:3000]),
             ((512, 4608), np.s_[:, 0:2304])]
    for dtype in (np.float32, np.float64):
        worst = 0.0
        for shape, idx in cases:
            full = fastinit.orthogonal_(np.empty(shape, dtype), generator=9)
            b = Block(shape, idx)
            part = fastinit.orthogonal_(np.empty(b.shape, dtype), generator=9, block=b)
            n = max(shape[0], int(np.prod(shape[1:])))
            worst = max(worst, float(np.abs(part - full[idx]).max()) / (np.sqrt(n) * np.finfo(dtype).eps))
        print(f"orthogonal_ blocks, {np.dtype(dtype).name}: max |block - full| = {worst:.3f} sqrt(n) eps "
              f"over {len(cases)} shapes and blocks")


def orthogonal(repeat, n=4096, dtype=np.float32):
    """Full matrix and its 2 and 4 row blocks, interleaved in every repeat (so a shared machine's load
    falls on all of them alike); medians over the repeats."""
    fastinit.orthogonal_(np.empty((64, 64), dtype), generator=2)  # compile / load (not timed)
    full = np.empty((n, n), dtype)
    parts = (2, 4)
    blocks = {P: [Block((n, n), np.s_[p * (n // P):(p + 1) * (n // P)]) for p in range(P)] for P in parts}
    locals_ = {P: [np.empty(b.shape, dtype) for b in blocks[P]] for P in parts}
    t_full, t_block = [], {P: [[] for _ in range(P)] for P in parts}
    for _ in range(repeat):
        t0 = time.perf_counter()
        fastinit.orthogonal_(full, generator=2)
        t_full.append(time.perf_counter() - t0)
        for P in parts:
            for b, local, ts in zip(blocks[P], locals_[P], t_block[P], strict=True):
                t0 = time.perf_counter()
                fastinit.orthogonal_(local, generator=2, block=b)
                ts.append(time.perf_counter() - t0)
    med = float(np.median(t_full))
    print(f"orthogonal_ {n} x {n} {np.dtype(dtype).name}, median of {repeat} (interleaved)")
    print(f"  full matrix: {med:.2f} s (runs {', '.join(f'{t:.2f}' for t in t_full)}), model {4 / 3 * n ** 3:.3g} "
          f"flops")
    for P in parts:
        k = n // P
        per = [float(np.median(ts)) for ts in t_block[P]]
        err = max(float(np.abs(local - full[b.index]).max()) for b, local in zip(blocks[P], locals_[P], strict=True))
        print(f"  {P} row blocks of {k}: {np.mean(per):.2f} s per block (blocks {', '.join(f'{t:.2f}' for t in per)})"
              f" = {np.mean(per) / med:.2f}x the full matrix; model {2 * k * n ** 2:.3g} flops per block "
              f"({2 * k * n ** 2 / (4 / 3 * n ** 3):.2f}x); max |block - full| = {err:.2g}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fills", action="store_true")
    ap.add_argument("--orthogonal", action="store_true")
    ap.add_argument("--runs", action="store_true")
    ap.add_argument("--accuracy", action="store_true")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--n", type=int, default=4096, help="orthogonal: the matrix size")
    args = ap.parse_args()
    both = not (args.fills or args.orthogonal or args.runs or args.accuracy)
    print(f"fastinit {fastinit.__version__}, SIMD {fastinit.simd_level()}, {numba.get_num_threads()} Numba threads")
    if args.fills or both:
        fills(args.repeat)
    if args.runs:
        runs(args.repeat)
    if args.accuracy:
        accuracy()
    if args.orthogonal or both:
        orthogonal(max(1, args.repeat // 2), args.n)


if __name__ == "__main__":
    main()
