"""orthogonal_: fastinit (Stewart, default) and fastinit method="qr" vs torch.nn.init.orthogonal_
vs the NumPy reference, with the machine's GEMM rate measured in the same run.

    pytest benchmarks/bench_orthogonal.py --benchmark-enable --benchmark-group-by=group \
        --benchmark-json=benchmarks/results/orthogonal.json

One ``benchmark.group`` per shape and dtype; each group also holds ``gemm`` (``np.dot`` of
two ``n x n`` matrices, square shapes only), so a run can be reported as a fraction of GEMM
throughput: ``extra_info["flops"]`` is the model flop count of each entry
(``2 m n^2 - 2 n^3 / 3`` for the default, ``4/3 n^3`` when square; twice that for ``"qr"``;
``2 n^3`` for GEMM), and ``GFLOP/s = flops / time``. Plain ``pytest benchmarks/...`` runs each
entry once as a smoke test (``--benchmark-disable`` is in addopts); ``-k "1024"`` keeps it short.

``python benchmarks/bench_orthogonal.py --quick`` prints a small table instead (best of 3).
Timings are only meaningful on an otherwise idle machine; publish them with the CPU model,
thread counts (``numba.get_num_threads()``, ``torch.get_num_threads()``) and BLAS.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pytest

from fastinit._orthogonal import orthogonal_matrix_
from fastinit._reference import orthogonal as ref

F32, F64 = np.float32, np.float64
CASES = [
    ((1024, 1024), F32), ((1024, 1024), F64),
    ((2048, 2048), F32), ((2048, 2048), F64),
    ((4096, 4096), F32), ((4096, 4096), F64),
    ((16384, 1024), F32),  # tall: a 1024-wide embedding / projection
    ((512, 4608), F32),  # conv-like: a 512 x 512 x 3 x 3 kernel flattened as torch does
]


def _torch():
    try:
        import torch
    except ImportError:
        pytest.skip("torch not installed")
    return torch


def _torch_orthogonal(w):
    torch = _torch()
    g = torch.Generator().manual_seed(0)
    torch.nn.init.orthogonal_(torch.from_numpy(w), generator=g)  # writes through to w
    return w


IMPLS = {
    "fastinit": lambda w: orthogonal_matrix_(w, 1.0, 1, 0),
    "fastinit_qr": lambda w: orthogonal_matrix_(w, 1.0, 1, 0, "qr"),
    "torch": _torch_orthogonal,
    "numpy_reference": lambda w: ref.orthogonal_(w, 1.0, 0),
}


def model_flops(shape, impl):
    """Flop model of each entry (multiply-add = 2)."""
    m, n = max(shape), min(shape)
    forming_q = 2 * m * n**2 - 2 * n**3 / 3  # backward accumulation; 4/3 n^3 when square
    if impl == "fastinit":
        return forming_q
    return 2 * forming_q  # Householder QR of the Gaussian + forming Q (torch, NumPy, "qr")


def check_orthonormal(w):
    """A fast wrong answer fails: the first 64 columns of the tall side are orthonormal."""
    q = w if w.shape[0] >= w.shape[1] else w.T
    sub = np.asarray(q[:, : min(64, q.shape[1])], np.float64)
    err = np.abs(sub.T @ sub - np.eye(sub.shape[1])).max()
    tol = 1e-4 if w.dtype == np.float32 else 1e-10
    assert err < tol, f"orthonormality error {err:.3g} >= {tol}"
    assert np.abs(q[:, -1] @ q[:, 0]) < tol


def _rounds(shape):
    return 3 if shape[0] * shape[1] >= 2048 * 2048 else 5


def _group(shape, dtype):
    return f"orthogonal_|{shape[0]}x{shape[1]}|{np.dtype(dtype).name}"


@pytest.mark.parametrize("impl", list(IMPLS))
@pytest.mark.parametrize("shape, dtype", CASES, ids=[f"{s[0]}x{s[1]}-{np.dtype(d).name}" for s, d in CASES])
def test_bench_orthogonal(benchmark, shape, dtype, impl):
    fn = IMPLS[impl]
    if impl == "torch":
        _torch()
    benchmark.group = _group(shape, dtype)
    benchmark.extra_info["flops"] = model_flops(shape, impl)
    w = np.empty(shape, dtype)
    fn(np.empty((8, 8), dtype))  # JIT compile / library load is not timed
    out = benchmark.pedantic(fn, args=(w,), rounds=_rounds(shape), iterations=1, warmup_rounds=1)
    assert out is w or out is None
    check_orthonormal(w)


SQUARE = [(s, d) for s, d in CASES if s[0] == s[1]]


@pytest.mark.parametrize("shape, dtype", SQUARE, ids=[f"{s[0]}-{np.dtype(d).name}" for s, d in SQUARE])
def test_bench_gemm(benchmark, shape, dtype):
    """The yardstick: ``np.dot`` of two n x n matrices (2 n^3 flops) in the same group."""
    n = shape[0]
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n)).astype(dtype)
    b = rng.standard_normal((n, n)).astype(dtype)
    c = np.empty((n, n), dtype)
    benchmark.group = _group(shape, dtype)
    benchmark.extra_info["flops"] = 2.0 * n**3
    benchmark.pedantic(np.dot, args=(a, b, c), rounds=_rounds(shape), iterations=1, warmup_rounds=1)
    i, j = 3, n - 2
    assert abs(c[i, j] - a[i].astype(np.float64) @ b[:, j]) < 1e-2 * np.sqrt(n)


# ---------------------------------------------------------------------------------------
# script mode
# ---------------------------------------------------------------------------------------


def _best(fn, *args, repeat=3):
    fn(*args)  # warm-up (JIT, thread pools)
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(*args)
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="1024 and 2048 float32 only")
    p.add_argument("--no-reference", action="store_true", help="skip the slow NumPy reference")
    args = p.parse_args(argv)
    cases = [c for c in CASES if not args.quick or (c[1] is F32 and c[0][0] == c[0][1] <= 2048)]
    impls = [i for i in IMPLS if not (args.no_reference and i == "numpy_reference")]
    try:
        import torch  # noqa: F401
    except ImportError:
        impls.remove("torch")
    print(f"{'shape':>12} {'dtype':>8} {'impl':>16} {'time [s]':>9} {'GFLOP/s':>8} {'vs torch':>9} {'of GEMM':>8}")
    for shape, dtype in cases:
        n = min(shape)
        gemm_rate = None
        if shape[0] == shape[1]:
            a = np.random.default_rng(0).standard_normal(shape).astype(dtype)
            gemm_rate = 2.0 * n**3 / _best(np.dot, a, a)
        times = {}
        for impl in impls:
            w = np.empty(shape, dtype)
            times[impl] = _best(IMPLS[impl], w, repeat=1 if impl == "numpy_reference" else 3)
            check_orthonormal(w)
        for impl, t in times.items():
            rate = model_flops(shape, "fastinit") / t  # the default's 4/3 n^3 (square) work
            vs = f"{times['torch'] / t:8.2f}x" if "torch" in times else "      n/a"
            frac = f"{rate / gemm_rate:7.0%}" if gemm_rate else "     n/a"
            print(f"{shape[0]:>5}x{shape[1]:<6} {np.dtype(dtype).name:>8} {impl:>16} {t:9.3f} "
                  f"{rate / 1e9:8.1f} {vs} {frac}")
    print("GFLOP/s and 'of GEMM' use the default method's flop count (2mn^2 - 2n^3/3) for every row.")


if __name__ == "__main__":
    main()
