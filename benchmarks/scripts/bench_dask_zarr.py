"""A float32 normal array written to zarr on a local dask.distributed cluster: fastinit.dask vs
dask.array.random with the same chunks, both against the disk's write rate measured in the same run;
then the chunk (in)variance of both.

    PYTHONPATH=. python benchmarks/scripts/bench_dask_zarr.py --gib 8 --dir /work/tmp-bench-dask
    PYTHONPATH=. python benchmarks/scripts/bench_dask_zarr.py --invariance   # the chunking part only

Each write is timed from submission to the end of ``os.sync()``, so the page cache does not hide the
disk. The disk rate is the same bytes written as chunk-sized files (one ``tofile`` per chunk) from
one process, plus ``os.sync()``. Zarr chunks are stored uncompressed (random float32 does not
compress). Workers are restarted before each write and load the libraries and compiled kernels
before the clock starts; their peak resident memory (``ru_maxrss``, imports included) is read after
the write: it stays near a few chunks while the array is many times larger. Everything written
under ``--dir`` is deleted at the end (also on errors).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import time
from pathlib import Path

import numpy as np


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def disk_rate(path: Path, nbytes: int, chunk_bytes: int) -> float:
    """Seconds to write ``nbytes`` as chunk-sized files and sync them."""
    path.mkdir(parents=True)
    buf = np.random.default_rng(0).standard_normal(chunk_bytes // 4, dtype=np.float32)
    t0 = time.perf_counter()
    for i in range(nbytes // chunk_bytes):
        buf.tofile(path / f"c{i}")
    os.sync()
    return time.perf_counter() - t0


def _warm() -> None:
    """Load what the timed tasks use (imports, compiled kernels from the Numba cache) on a worker."""
    import zarr  # noqa: F401

    import fastinit

    fastinit.normal((256, 1024), generator=0)
    np.random.default_rng(0).standard_normal(1024, dtype=np.float32)


def write(client, x, path: Path) -> tuple[float, float]:
    """Seconds to store ``x`` as zarr at ``path`` (plus sync) and the workers' largest peak RSS (MiB)."""
    import dask.array as da

    client.restart()
    client.run(_warm)
    t0 = time.perf_counter()
    da.to_zarr(x, str(path), compute=True, compressors=None)
    os.sync()
    dt = time.perf_counter() - t0
    rss = max(client.run(_peak_rss_mib).values())
    return dt, rss


def invariance() -> None:
    """Dask's own random array changes with the chunking; fastinit's does not."""
    import dask.array as da

    import fastinit
    import fastinit.dask as fd

    shape = (1000, 1000)
    print(f"chunk (in)variance, shape {shape}, float32 normals, seed 42 (values at [0, 0:3] and [999, 997:1000])")
    print("| generator | chunks | first values | last values | equal to chunks=(1000, 1000) |")
    print("|---|---|---|---|---|")
    for label, make in [
        ("dask.array.random.default_rng(42).standard_normal",
         lambda c: da.random.default_rng(42).standard_normal(shape, chunks=c, dtype=np.float32)),
        ("fastinit.dask.normal(generator=42)", lambda c: fd.normal(shape, chunks=c, generator=42)),
    ]:
        ref = make((1000, 1000)).compute()
        for chunks in [(1000, 1000), (500, 500), (250, 1000), (333, 77)]:
            v = make(chunks).compute()
            first = ", ".join(f"{t:+.4f}" for t in v[0, :3])
            last = ", ".join(f"{t:+.4f}" for t in v[-1, -3:])
            print(f"| {label} | {chunks} | {first} | {last} | {bool(np.array_equal(v, ref))} |")
    mem = fastinit.normal(shape, generator=42)
    print("fastinit.dask equals the in-memory fastinit.normal:",
          bool(np.array_equal(fd.normal(shape, chunks=(333, 77), generator=42).compute(), mem)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gib", type=float, default=8.0, help="array size in GiB (float32)")
    ap.add_argument("--chunk-mib", type=int, default=64, help="chunk size in MiB (rows of 16384 float32)")
    ap.add_argument("--dir", type=Path, default=Path("/work/tmp-bench-dask"), help="scratch directory (deleted)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--invariance", action="store_true", help="only the chunk (in)variance table")
    args = ap.parse_args()
    if args.invariance:
        invariance()
        return
    # one thread per worker for both libraries (fastinit's compiled fills would otherwise use every core)
    os.environ.setdefault("NUMBA_NUM_THREADS", "1")
    import dask.array as da
    import distributed

    import fastinit.dask as fd

    cols = 16384
    rows_per_chunk = args.chunk_mib * 2 ** 20 // (4 * cols)
    rows = int(args.gib * 2 ** 30) // (4 * cols) // rows_per_chunk * rows_per_chunk
    shape, chunks = (rows, cols), (rows_per_chunk, cols)
    nbytes = rows * cols * 4
    chunk_bytes = rows_per_chunk * cols * 4
    print(f"array {shape} float32 = {nbytes / 2 ** 30:.2f} GiB in {rows // rows_per_chunk} chunks of "
          f"{chunk_bytes / 2 ** 20:.0f} MiB; {args.workers} worker processes x 1 thread")
    if args.dir.exists():
        raise SystemExit(f"{args.dir} exists; pass a fresh --dir")
    try:
        t_disk = disk_rate(args.dir / "raw", nbytes, chunk_bytes)
        shutil.rmtree(args.dir / "raw")
        with distributed.LocalCluster(n_workers=args.workers, threads_per_worker=1, processes=True,
                                      dashboard_address=None, memory_limit="3GiB") as cluster, \
                distributed.Client(cluster) as client:
            x = fd.normal(shape, chunks=chunks, generator=0)
            t_fi, rss_fi = write(client, x, args.dir / "fastinit.zarr")
            shutil.rmtree(args.dir / "fastinit.zarr")
            y = da.random.default_rng(0).standard_normal(shape, chunks=chunks, dtype=np.float32)
            t_da, rss_da = write(client, y, args.dir / "dask.zarr")
            shutil.rmtree(args.dir / "dask.zarr")
        gib = nbytes / 2 ** 30
        print("| write | time | rate | vs disk | worker peak RSS |")
        print("|---|---|---|---|---|")
        print(f"| disk: chunk files + sync (1 process) | {t_disk:.1f} s | {gib / t_disk:.2f} GiB/s | 1.00x | - |")
        for label, t, rss in [("fastinit.dask.normal -> zarr", t_fi, rss_fi),
                              ("dask.array.random standard_normal -> zarr", t_da, rss_da)]:
            print(f"| {label} | {t:.1f} s | {gib / t:.2f} GiB/s | {t_disk / t:.2f}x | {rss:.0f} MiB |")
    finally:
        shutil.rmtree(args.dir, ignore_errors=True)
    invariance()


if __name__ == "__main__":
    main()
