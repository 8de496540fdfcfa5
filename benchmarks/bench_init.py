"""Initialisers: fastinit vs the NumPy reference vs torch.nn.init, one group per function and shape.

    pytest benchmarks/bench_init.py --benchmark-enable --benchmark-group-by=group

Plain ``pytest benchmarks`` (benchmarks disabled by addopts) runs each once as a smoke test.
Every benchmark checks the standard deviation of what it produced, so a fast wrong answer fails.
"numpy_threads" is NumPy's one-generator-per-thread recipe (plain distributions only).
"""

import math

import numpy as np
import pytest

import fastinit
from fastinit._reference import fills as ref

SHAPES = [(1024, 1024), (4096, 4096)]


def _torch():
    try:
        import torch
    except ImportError:
        pytest.skip("torch not installed")
    return torch


def _tinit(name, **kw):
    def run(w):
        torch = _torch()
        getattr(torch.nn.init, name)(torch.from_numpy(w), **kw)
        return w
    return run


@pytest.fixture(scope="module")
def threaded():
    rng = ref.MultithreadedRNG(0)
    yield rng
    rng.close()


# name -> (impls, expected std as a function of the shape)
CASES = {
    "uniform_": ({
        "fastinit": lambda w, th: fastinit.uniform_(w, -1.0, 1.0, generator=1),
        "numpy_reference": lambda w, th: ref.uniform_(w, -1.0, 1.0, rng=0),
        "numpy_threads": lambda w, th: th.uniform_(w, -1.0, 1.0),
        "torch": lambda w, th: _tinit("uniform_", a=-1.0, b=1.0)(w),
    }, lambda s: math.sqrt(1 / 3)),
    "normal_": ({
        "fastinit": lambda w, th: fastinit.normal_(w, 0.0, 0.02, generator=1),
        "numpy_reference": lambda w, th: ref.normal_(w, 0.0, 0.02, rng=0),
        "numpy_threads": lambda w, th: th.normal_(w, 0.0, 0.02),
        "torch": lambda w, th: _tinit("normal_", std=0.02)(w),
    }, lambda s: 0.02),
    "trunc_normal_": ({
        "fastinit": lambda w, th: fastinit.trunc_normal_(w, std=1.0, generator=1),
        "numpy_reference": lambda w, th: ref.trunc_normal_(w, std=1.0, rng=0),
        "torch": lambda w, th: _tinit("trunc_normal_", std=1.0)(w),
    }, lambda s: 0.8796256610342398),      # std of N(0, 1) truncated to [-2, 2]
    "kaiming_uniform_": ({
        "fastinit": lambda w, th: fastinit.kaiming_uniform_(w, a=math.sqrt(5), generator=1),
        "numpy_reference": lambda w, th: ref.kaiming_uniform_(w, a=math.sqrt(5), rng=0),
        "torch": lambda w, th: _tinit("kaiming_uniform_", a=math.sqrt(5))(w),
    }, lambda s: 1 / math.sqrt(3 * s[1])),  # nn.Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    "kaiming_normal_": ({
        "fastinit": lambda w, th: fastinit.kaiming_normal_(w, nonlinearity="relu", generator=1),
        "numpy_reference": lambda w, th: ref.kaiming_normal_(w, nonlinearity="relu", rng=0),
        "torch": lambda w, th: _tinit("kaiming_normal_", nonlinearity="relu")(w),
    }, lambda s: math.sqrt(2 / s[1])),
    "xavier_uniform_": ({
        "fastinit": lambda w, th: fastinit.xavier_uniform_(w, generator=1),
        "numpy_reference": lambda w, th: ref.xavier_uniform_(w, rng=0),
        "torch": lambda w, th: _tinit("xavier_uniform_")(w),
    }, lambda s: math.sqrt(2 / (s[0] + s[1]))),
    "lecun_normal_": ({
        "fastinit": lambda w, th: fastinit.lecun_normal_(w, generator=1),
        "numpy_reference": lambda w, th: ref.lecun_normal_(w, rng=0),
    }, lambda s: math.sqrt(1 / s[1])),
}

PARAMS = [(name, impl, shape) for name, (impls, _) in CASES.items() for impl in impls for shape in SHAPES]


@pytest.mark.parametrize("name, impl, shape", PARAMS, ids=[f"{n}-{i}-{s[0]}x{s[1]}" for n, i, s in PARAMS])
@pytest.mark.benchmark(warmup=True, warmup_iterations=1)      # JIT compile is not timed
def test_bench_init(benchmark, threaded, name, impl, shape):
    impls, expected_std = CASES[name]
    fn = impls[impl]
    benchmark.group = f"{name}|{shape[0]}x{shape[1]}"       # one group = one comparison
    w = np.empty(shape, np.float32)
    out = benchmark(fn, w, threaded)
    assert abs(float(out.std(dtype=np.float64)) / expected_std(shape) - 1) < 0.01


# orthogonal_ and sparse_ cost far more per element: smaller shapes.
SMALL = {
    "orthogonal_": ({
        "fastinit": lambda w: fastinit.orthogonal_(w, generator=1),
        "numpy_reference": lambda w: ref.orthogonal_(w, rng=0),
        "torch": _tinit("orthogonal_"),
    }, lambda s: math.sqrt(1 / s[1])),
    "sparse_": ({
        "fastinit": lambda w: fastinit.sparse_(w, 0.5, std=0.01, generator=1),
        "numpy_reference": lambda w: ref.sparse_(w, 0.5, std=0.01, rng=0),
        "torch": _tinit("sparse_", sparsity=0.5, std=0.01),
    }, lambda s: 0.01 * math.sqrt(0.5)),
}
SMALL_PARAMS = [(name, impl) for name, (impls, _) in SMALL.items() for impl in impls]


@pytest.mark.parametrize("name, impl", SMALL_PARAMS, ids=[f"{n}-{i}" for n, i in SMALL_PARAMS])
@pytest.mark.benchmark(warmup=True, warmup_iterations=1)
def test_bench_init_matrix(benchmark, name, impl):
    impls, expected_std = SMALL[name]
    shape = (1024, 1024)
    benchmark.group = f"{name}|{shape[0]}x{shape[1]}"
    out = benchmark(impls[impl], np.empty(shape, np.float32))
    assert abs(float(out.std(dtype=np.float64)) / expected_std(shape) - 1) < 0.01
