"""Benchmarks of fastinit.sim against the plain NumPy reference, and the machine's SGEMM rate.

Run (timed):   pytest benchmarks/bench_sim.py --benchmark-enable -p no:randomly
Smoke test:    pytest benchmarks/bench_sim.py              (``--benchmark-disable`` in addopts:
                                                           every benchmark runs once)
Small sizes:   FASTINIT_BENCH_QUICK=1 pytest benchmarks/bench_sim.py

Groups (one group = one comparison, as numbagg's benchmarks):

* ``sim_mlp|...``: width 1024, batch 4096, depth 20, forward + backward, float32, ReLU, He
  init, on identical weights: ``fastinit`` (fused Numba passes + BLAS) vs ``numpy_reference``
  (``fastinit._reference.sim.reference_mlp`` in float32, the same precision).
  ``extra_info["gflops"]`` is the GEMM work (3 GEMMs per layer) divided by the time; compare it
  with the ``sgemm`` group's rate measured in the same run (target: >= 70%).
* ``sim_sweep|...``: 200 configurations (5 schemes x 4 activations x 10 seeds) at width 128,
  depth 20, batch 512: ``fastinit.sim.sweep`` (its default, one run per core, and
  ``workers=1``) vs a Python loop over the NumPy reference with NumPy-drawn weights (NumPy's
  default BLAS threads).
* ``sim_mlp_selected|...``: the same network with only the pooled forward moments and the data
  gradient (``stats=SELECTED``: 2 GEMMs per layer) against ``numpy_minimal``, a minimal
  hand-written NumPy loop computing the same numbers (``minimal_numpy_loop``); ``extra_info``
  carries the GEMM rate (2 GEMMs per layer).
* ``sim_study|...``: the study of ``fastinit simulate`` with its defaults (7 schemes x 4
  activations, depth 50, width 512, batch 1024, float64; theory and histograms included), its
  ``sweep`` call, against ``gemm_alone``: the same 3 GEMMs per layer and configuration alone
  (``benchmarks/scripts/simulate_vs_gemm.py`` also times the whole command).
* ``sgemm|...``: one ``numpy.matmul`` of the first layer's shape in float32.

Each benchmark asserts its answer, so a fast wrong result fails.
"""

import math
import os
import sys

import numpy as np
import pytest

import fastinit
from fastinit import _config, sim
from fastinit._reference.sim import reference_mlp

QUICK = _config.flag("FASTINIT_BENCH_QUICK", default=False)
# (width, batch, depth) of the single-network benchmark and of each sweep configuration
BIG = (256, 512, 4) if QUICK else (1024, 4096, 20)
SWEEP = (64, 128, 5) if QUICK else (128, 512, 20)
SWEEP_SCHEMES = ["xavier_normal", "kaiming_normal", "lecun_normal", "orthogonal", "small"]
SWEEP_ACTS = ["tanh", "relu", "selu", "gelu"]
SWEEP_SEEDS = list(range(2 if QUICK else 10))  # 5 x 4 x 10 = 200 configurations
# (depth, width, batch) of the `fastinit simulate` study (its defaults; --quick's sizes when QUICK)
STUDY = (6, 48, 64) if QUICK else (50, 512, 1024)
#: what the minimal NumPy loop computes: pooled forward moments and the data gradient
SELECTED = ["preact_mean", "preact_var", "preact_m2", "post_mean", "post_var", "post_m2", "grad_preact_m2",
            "grad_input_m2"]


@pytest.fixture(scope="module")
def big_network():
    n, B, L = BIG
    ws = [n] * (L + 1)
    g = fastinit.Generator(1)  # He init for ReLU through the public API: N(0, 2 / n)
    Ws = [fastinit.kaiming_normal_(np.empty((n, n), np.float32), nonlinearity="relu", generator=g)
          for _ in range(L)]
    rng = np.random.default_rng(0)
    x = rng.standard_normal((B, n), dtype=np.float32)
    G = rng.standard_normal((B, n), dtype=np.float32)
    bs = [np.zeros(n) for _ in range(L)]
    # compile outside the timed region (the benchmark's warm-up would too)
    sim.simulate_mlp([n, n], batch=8, weights=Ws[:1], biases=bs[:1], x=x[:8], G=G[:8],
                     theory=False)
    return ws, Ws, bs, x, G


def _run_fastinit(ws, Ws, bs, x, G):
    return sim.simulate_mlp(ws, batch=x.shape[0], activation="relu", weights=Ws, biases=bs,
                            x=x, G=G, dtype="float32", theory=False).stats


def _run_reference(ws, Ws, bs, x, G):
    return reference_mlp(x, Ws, bs, "relu", G=G, dtype=np.float32)


MLP_IMPLS = {"fastinit": _run_fastinit, "numpy_reference": _run_reference}


def minimal_numpy_loop(x, Ws, G):
    """A minimal hand-written ReLU network in NumPy: 2 GEMMs per layer, the pooled moments of z and
    a (float64 sums) forward and the data gradient's second moment backward. Returns the same
    names as ``simulate_mlp(..., stats=SELECTED)``."""
    L = len(Ws)
    out = {k: np.empty(L) for k in SELECTED if k != "grad_input_m2"}
    a, zs = x, []
    for k, W in enumerate(Ws):
        z = a @ W.T
        zm, zm2 = z.mean(dtype=np.float64), np.square(z).mean(dtype=np.float64)
        a = np.maximum(z, 0)
        am, am2 = a.mean(dtype=np.float64), np.square(a).mean(dtype=np.float64)
        for name, v in zip(SELECTED[:6], (zm, zm2 - zm * zm, zm2, am, am2 - am * am, am2), strict=True):
            out[name][k] = v
        zs.append(z)
    g = G
    for k in range(L - 1, -1, -1):
        d = g * (zs[k] > 0)
        out["grad_preact_m2"][k] = np.square(d).mean(dtype=np.float64)
        g = d @ Ws[k]
    out["grad_input_m2"] = np.square(g).mean(dtype=np.float64)
    return out


def _run_fastinit_selected(ws, Ws, bs, x, G):
    return sim.simulate_mlp(ws, batch=x.shape[0], activation="relu", weights=Ws, biases=bs, x=x, G=G,
                            dtype="float32", theory=False, stats=SELECTED).stats


SELECTED_IMPLS = {"fastinit": _run_fastinit_selected, "numpy_minimal": lambda ws, Ws, bs, x, G:
                  minimal_numpy_loop(x, Ws, G)}


def _rate(benchmark, flops):
    stats = getattr(benchmark, "stats", None)
    if stats is not None and getattr(stats, "stats", None) is not None:
        benchmark.extra_info["gflops"] = flops / stats.stats.min / 1e9


@pytest.mark.parametrize("impl", list(MLP_IMPLS))
@pytest.mark.benchmark(warmup=True, warmup_iterations=1)
def test_bench_sim_mlp(benchmark, impl, big_network):
    n, B, L = BIG
    benchmark.group = f"sim_mlp|width={n},batch={B},depth={L}"
    out = benchmark.pedantic(MLP_IMPLS[impl], args=big_network, rounds=3 if not QUICK else 2,
                             iterations=1, warmup_rounds=1 if impl == "fastinit" else 0)
    # He/ReLU keeps E[z^2] = 2 and E[delta^2] = 1/2 in expectation at every layer (theory.md
    # 2.4). One network fluctuates log-normally with Var ln ~ (5 l + 4)/n (theory.md 7.2, one
    # input; batch averaging only shrinks it): 5 sd of that. A wrong gain compounds per layer
    # (sqrt 2 off -> 2^l) and fails at once.
    lsd = 5 * np.sqrt((5 * np.arange(1, L + 1) + 4) / n)
    assert np.all(np.abs(np.log(np.asarray(out["preact_m2"]) / 2)) < lsd)
    assert np.all(np.abs(np.log(np.asarray(out["grad_preact_m2"]) / 0.5)) < lsd[::-1])
    _rate(benchmark, 3 * L * 2.0 * B * n * n)


@pytest.mark.parametrize("impl", list(SELECTED_IMPLS))
@pytest.mark.benchmark(warmup=True, warmup_iterations=1)
def test_bench_sim_mlp_selected(benchmark, impl, big_network):
    n, B, L = BIG
    benchmark.group = f"sim_mlp_selected|width={n},batch={B},depth={L}"
    out = benchmark.pedantic(SELECTED_IMPLS[impl], args=big_network, rounds=5 if not QUICK else 2,
                             iterations=1, warmup_rounds=1)
    lsd = 5 * np.sqrt((5 * np.arange(1, L + 1) + 4) / n)  # as in test_bench_sim_mlp
    assert np.all(np.abs(np.log(np.asarray(out["preact_m2"]) / 2)) < lsd)
    assert np.all(np.abs(np.log(np.asarray(out["grad_preact_m2"]) / 0.5)) < lsd[::-1])
    _rate(benchmark, 2 * L * 2.0 * B * n * n)


def test_bench_sim_mlp_selected_agrees(big_network):
    """fastinit with stats=SELECTED and the minimal NumPy loop compute the same numbers."""
    a = _run_fastinit_selected(*big_network)
    _, Ws, _, x, G = big_network
    b = minimal_numpy_loop(x, Ws, G)
    for k in SELECTED:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-4, err_msg=k)
    assert all(np.isnan(v).all() for k, v in a.items() if k not in SELECTED)


def test_bench_sim_mlp_agrees(big_network):
    """The two implementations of the benchmark compute the same numbers (float32 rounding)."""
    a = _run_fastinit(*big_network)
    b = _run_reference(*big_network)
    for k in ("preact_m2", "post_m2", "preact_unitvar", "grad_preact_m2", "grad_weight_m2_batchmean"):
        np.testing.assert_allclose(a[k], b[k], rtol=1e-4, err_msg=k)


@pytest.mark.benchmark(warmup=True, warmup_iterations=1)
def test_bench_sgemm(benchmark, big_network):
    n, B, L = BIG
    benchmark.group = f"sgemm|{B}x{n}x{n}"
    _, Ws, _, x, _ = big_network
    out = np.empty((B, n), dtype=np.float32)
    benchmark.pedantic(np.matmul, args=(x, Ws[0].T), kwargs={"out": out}, rounds=5, iterations=1,
                       warmup_rounds=1)
    np.testing.assert_allclose(out[:4], x[:4] @ Ws[0].T, rtol=1e-4, atol=1e-4)
    _rate(benchmark, 2.0 * B * n * n)


# ------------------------------------------------------------------------------------------
def _numpy_weight(rng, scheme, n):
    if scheme == "orthogonal":
        q, r = np.linalg.qr(rng.standard_normal((n, n)))
        return (q * np.sign(np.diag(r))).astype(np.float32)
    std = {"xavier_normal": math.sqrt(1 / n), "kaiming_normal": math.sqrt(2 / n),
           "lecun_normal": math.sqrt(1 / n), "small": 0.01}[scheme]
    return (rng.standard_normal((n, n)) * std).astype(np.float32)


def _sweep_fastinit(workers=None):
    n, B, L = SWEEP
    sw = sim.sweep(inits=SWEEP_SCHEMES, activations=SWEEP_ACTS, depths=[L], widths=[n],
                   seeds=SWEEP_SEEDS, batch=B, dtype="float32", theory=False, workers=workers)
    # layer-1 second moment of every simulated network, in (scheme, activation, seed) order
    return [v for res in sw.results.values() for v in res.per_network["preact_m2"][:, 0]]


def _sweep_reference():
    n, B, L = SWEEP
    out = []
    for scheme in SWEEP_SCHEMES:
        for act in SWEEP_ACTS:
            for seed in SWEEP_SEEDS:
                rng = np.random.default_rng(seed)
                Ws = [_numpy_weight(rng, scheme, n) for _ in range(L)]
                x = rng.standard_normal((B, n), dtype=np.float32)
                G = rng.standard_normal((B, n), dtype=np.float32)
                r = reference_mlp(x, Ws, [np.zeros(n)] * L, act, G=G, dtype=np.float32)
                out.append(r["preact_m2"][0])
    return out


SWEEP_IMPLS = {
    "fastinit": _sweep_fastinit,                              # default: one run per core
    "fastinit_1worker": lambda: _sweep_fastinit(workers=1),   # one run at a time
    "numpy_reference": _sweep_reference,
}


@pytest.mark.parametrize("impl", list(SWEEP_IMPLS))
@pytest.mark.benchmark(warmup=False)
def test_bench_sim_sweep(benchmark, impl):
    n, B, L = SWEEP
    nconf = len(SWEEP_SCHEMES) * len(SWEEP_ACTS) * len(SWEEP_SEEDS)
    benchmark.group = f"sim_sweep|{nconf} configs,width={n},batch={B},depth={L}"
    if impl.startswith("fastinit"):
        _sweep_fastinit()  # compile every activation outside the timed region
    vals = benchmark.pedantic(SWEEP_IMPLS[impl], rounds=1, iterations=1)
    assert len(vals) == nconf
    # layer 1 second moment: n * s^2 * E[x^2] per scheme (1, 2, 1, 1, 1e-4 * n); 20% covers the
    # finite-size spread at these sizes
    expect = np.repeat([1.0, 2.0, 1.0, 1.0, 1e-4 * n], len(SWEEP_ACTS) * len(SWEEP_SEEDS))
    assert np.all(np.abs(np.asarray(vals) / expect - 1) < 0.2)


# ------------------------------------------------------------------------------------------
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "scripts"))
from simulate_vs_gemm import gemms_alone, study_sweep  # noqa: E402  (a sibling script, not a package)


def _study_fastinit():
    return study_sweep(*STUDY)


def _study_gemms():
    L, n, B = STUDY
    gemms_alone(L, n, B, 28)


STUDY_IMPLS = {"fastinit_sweep": _study_fastinit, "gemm_alone": _study_gemms}


@pytest.mark.parametrize("impl", list(STUDY_IMPLS))
@pytest.mark.benchmark(warmup=False)
def test_bench_sim_study(benchmark, impl):
    L, n, B = STUDY
    benchmark.group = f"sim_study|28 configs,depth={L},width={n},batch={B},float64"
    if impl == "fastinit_sweep":
        study_sweep(2, n, 8)  # compile (or load) every activation's kernels outside the timed region
    out = benchmark.pedantic(STUDY_IMPLS[impl], rounds=1 if not QUICK else 2, iterations=1)
    if impl == "fastinit_sweep":
        assert len(out.results) == 28
        # He/ReLU keeps E[z^2] = 2 at layer 1 (n * 2/n * E[x^2]); 5 sd of the one-network spread
        he_relu = out.results[("kaiming_normal(nonlinearity=relu)", "relu", L, n)]
        assert abs(he_relu.preact_m2[0] / 2 - 1) < 5 * math.sqrt(3 / n)
    _rate(benchmark, 3 * L * 28 * 2.0 * B * n * n)
