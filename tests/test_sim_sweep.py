"""How many runs a sweep simulates at once by default (fastinit.sim._sweep._sweep_workers)."""

import numba
import pytest

from fastinit import InitArgumentError
from fastinit._numba import _SAFE_LAYERS, threading_layer
from fastinit.sim import _sweep

GiB = 2 ** 30


@pytest.fixture
def two_threads():
    if numba.get_num_threads() < 2 or threading_layer() not in _SAFE_LAYERS:
        pytest.skip("needs 2 Numba threads and a threading layer that takes kernels from several threads")
    return numba.get_num_threads()


def test_one_run_per_core_small_or_large(two_threads, monkeypatch):
    monkeypatch.setattr(_sweep, "available_memory", lambda: 64 * GiB)
    assert _sweep._sweep_workers(None, 200, [1 << 20]) == two_threads        # small runs
    assert _sweep._sweep_workers(None, 28, [GiB // 3] * 7) == two_threads    # the default study's size
    assert _sweep._sweep_workers(None, 1, [1 << 20]) == 1                    # one run: every core on it
    assert _sweep._sweep_workers(None, 10, [1 << 20]) == two_threads         # one configuration, 10 seeds


def test_fewer_runs_at_once_than_half_the_memory_allows(two_threads, monkeypatch):
    if two_threads != 2:
        pytest.skip("the sizes below are worked out for 2 threads")
    monkeypatch.setattr(_sweep, "available_memory", lambda: 3 * GiB)
    assert _sweep._sweep_workers(None, 10, [GiB // 4, GiB, GiB]) == 1   # the two largest: 2 GiB > 1.5 GiB
    assert _sweep._sweep_workers(None, 10, [GiB, GiB]) == 1
    assert _sweep._sweep_workers(None, 10, [GiB // 2, GiB]) == 2    # 1.5 GiB: fits
    monkeypatch.setattr(_sweep, "available_memory", lambda: None)  # unknown: no limit
    assert _sweep._sweep_workers(None, 10, [64 * GiB]) == 2


def test_explicit_workers_are_kept_and_checked():
    assert _sweep._sweep_workers(3, 1, [1]) == 3
    with pytest.raises(InitArgumentError, match="workers"):
        _sweep._sweep_workers(0, 1, [1])
    with pytest.raises(TypeError, match="workers"):
        _sweep._sweep_workers(1.5, 1, [1])
