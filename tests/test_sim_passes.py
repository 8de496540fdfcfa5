"""The simulator's pass driver (fastinit.sim._passes): how it calls BLAS, and the layers it needs no
BLAS for. The statistics themselves are tested in test_sim.py; here: the shortcuts give the bits of the
plain way."""

import numpy as np
import pytest

from fastinit import sim
from fastinit.sim import _passes, simulate_mlp

ALL = list(sim.MLP_STATISTICS)


def test_one_thread_runs_one_gemm_for_all_blocks_and_the_kernels_per_block():
    bounds = np.array([0, 3, 7, 10])
    calls = []

    def gemm(r0, r1):
        calls.append(("gemm", r0, r1))

    def block(c, gemm=gemm):
        r0, r1 = int(bounds[c]), int(bounds[c + 1])
        gemm(r0, r1)
        calls.append(("kernel", r0, r1))

    _passes._gemm_and_blocks(1, bounds, gemm, block)
    assert calls == [("gemm", 0, 10), ("kernel", 0, 3), ("kernel", 3, 7), ("kernel", 7, 10)]
    calls.clear()
    _passes._gemm_and_blocks(2, bounds, gemm, block)   # on threads: each block its own GEMM
    assert sorted(calls) == sorted([("gemm", 0, 3), ("kernel", 0, 3), ("gemm", 3, 7), ("kernel", 3, 7),
                                    ("gemm", 7, 10), ("kernel", 7, 10)])


def _run(monkeypatch, skip, **kw):
    monkeypatch.setattr(_passes, "SKIP_ZERO_GEMMS", skip)
    return simulate_mlp(depth=4, width=24, batch=40, theory=False, histograms=True, **kw)


def _assert_same(a, b):
    for name in ALL:
        np.testing.assert_array_equal(a.per_network[name], b.per_network[name], err_msg=name)
    for ha, hb in zip(a.histograms, b.histograms, strict=True):
        for k in ha:
            np.testing.assert_array_equal(ha[k], hb[k], err_msg=k)


@pytest.mark.parametrize("activation", ["tanh", "relu", "selu", "gelu"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("residual_scale", [None, 0.5])
def test_zero_weights_need_no_gemm_and_give_the_gemms_bits(monkeypatch, activation, dtype, residual_scale):
    kw = dict(init="zeros", activation=activation, dtype=dtype, residual_scale=residual_scale, bias="normal",
              bias_std=0.3)
    plain = _run(monkeypatch, False, **kw)
    skipped = []
    real = _passes.zero_product
    monkeypatch.setattr(_passes, "zero_product", lambda out, x: skipped.append(out.shape) or real(out, x))
    fast = _run(monkeypatch, True, **kw)
    _assert_same(fast, plain)
    # every forward GEMM, every backward one (3 layers above the first, and the input gradient's)
    assert len(skipped) == 4 + 3 + 1
    assert not np.all(fast.per_network["preact_m2"] == 0)        # the biases: not a trivial network


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")        # the first layer overflows
@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")   # inf - inf in the statistics
def test_zero_weights_after_an_overflow_still_give_nan(monkeypatch):
    """A layer that overflows to inf feeds a layer of zero weights: inf * 0 is NaN, as BLAS gives."""
    rng = np.random.default_rng(0)
    huge = np.full((24, 24), 1e308)                              # z_1 = 1e308 * sum(x): mostly +-inf
    weights = [huge, np.zeros((24, 24)), rng.standard_normal((24, 24)) / 5, np.zeros((24, 24))]
    kw = dict(init="zeros", activation="relu", dtype="float64", weights=weights)
    plain = _run(monkeypatch, False, **kw)
    fast = _run(monkeypatch, True, **kw)
    _assert_same(fast, plain)
    assert not np.isfinite(fast.per_network["post_m2"][0, 0])   # the overflow happened
    assert np.isnan(fast.per_network["preact_m2"][0, 1])        # inf * 0: the GEMM ran


def test_the_zero_check_does_not_fire_for_other_weights(monkeypatch):
    w = np.zeros((5, 4))
    assert _passes.all_zero(w) and _passes.all_zero(np.zeros((0, 4)))
    w[4, 3] = 1e-300
    assert not _passes.all_zero(w)                               # the last entry decides
    w[4, 3] = -0.0
    assert _passes.all_zero(w)
    monkeypatch.setattr(_passes, "SKIP_ZERO_GEMMS", False)
    assert not _passes.all_zero(np.zeros((2, 2)))
