"""Fill throughput: fastinit vs NumPy (1 thread and one generator per thread) vs torch, with the
machine's write bandwidth in the same run.

    pytest benchmarks/bench_fill.py --benchmark-enable --benchmark-group-by=group

Plain ``pytest benchmarks`` (benchmarks disabled by addopts) runs each once as a smoke test.
``fastinit bench`` prints the same comparison for 1 GiB as a table of throughputs and ratios.
"""

import math

import numba
import numpy as np
import pytest

from fastinit import _fill
from fastinit._bench import TRUNC, numpy_trunc_rejection
from fastinit._reference.fills import MultithreadedRNG

N = 1 << 26  # 256 MiB of float32


@pytest.fixture(scope="module")
def buf():
    return np.empty(N, np.float32)


@pytest.fixture(scope="module")
def threaded():
    return MultithreadedRNG(0, numba.get_num_threads())


def _torch():
    try:
        import torch
    except ImportError:
        pytest.skip("torch not installed")
    return torch


IMPLS = {
    "uniform_": {
        "fastinit": lambda b, th: _fill.fill_uniform(b, 0.0, 1.0, 1, 0),
        "numpy_1thread": lambda b, th: np.random.default_rng(0).random(out=b, dtype=np.float32),
        "numpy_threads": lambda b, th: th.uniform_(b),
        "torch": lambda b, th: _torch().from_numpy(b).uniform_(0.0, 1.0).numpy(),
    },
    "normal_": {
        "fastinit": lambda b, th: _fill.fill_normal(b, 0.0, 1.0, 1, 1),
        "numpy_1thread": lambda b, th: np.random.default_rng(0).standard_normal(out=b, dtype=np.float32),
        "numpy_threads": lambda b, th: th.normal_(b),
        "torch": lambda b, th: _torch().from_numpy(b).normal_(0.0, 1.0).numpy(),
    },
    "trunc_normal_": {
        "fastinit": lambda b, th: _fill.fill_trunc_normal(b, **TRUNC, seed=1, stream=2),
        "numpy_1thread": lambda b, th: numpy_trunc_rejection(np.random.default_rng(0), b, **TRUNC),
        "torch": lambda b, th: _torch().nn.init.trunc_normal_(_torch().from_numpy(b), **TRUNC).numpy(),
    },
}
EXPECTED_STD = {"uniform_": math.sqrt(1 / 12), "normal_": 1.0, "trunc_normal_": 0.0175925}


@pytest.mark.parametrize("op, impl", [(op, impl) for op in IMPLS for impl in IMPLS[op]])
@pytest.mark.benchmark(warmup=True, warmup_iterations=1)
def test_bench_fill(benchmark, buf, threaded, op, impl):
    benchmark.group = f"{op}|float32|{N * 4 >> 20} MiB"
    out = benchmark(IMPLS[op][impl], buf, threaded)
    sample = np.asarray(out[: 1 << 20], np.float64)
    assert abs(sample.std() / EXPECTED_STD[op] - 1) < 0.01  # a fast wrong answer fails


@pytest.mark.benchmark(warmup=True, warmup_iterations=1)
def test_bench_write_bandwidth(benchmark, buf):
    """The yardstick: a constant written into the same buffer from all threads."""
    benchmark.group = f"uniform_|float32|{N * 4 >> 20} MiB"
    benchmark(_fill.fill_constant, buf, 1.0)
    assert (buf[:: 1 << 16] == 1.0).all()
