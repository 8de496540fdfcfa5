"""How a sweep runs: how many runs at once by default (fastinit.sim._sweep._sweep_workers), and the
weights its runs share (fastinit.sim._schemes.SharedWeights)."""

import threading

import numba
import numpy as np
import pytest

from fastinit import InitArgumentError
from fastinit._numba import _SAFE_LAYERS, threading_layer
from fastinit.sim import _schemes, _sweep, simulate_mlp, sweep

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


def test_shared_weights_are_drawn_once_per_group_and_dropped_after_its_last_run():
    store = _schemes.SharedWeights()
    store.expect("g", 2)
    draws = []

    def weight():
        return _schemes.make_weight((3, 4), "xavier_normal", {"gain": 1.0}, 5, 11, np.float32)

    real = _schemes._draw_weight
    try:
        _schemes._draw_weight = lambda *a: draws.append(a) or real(*a)
        with store.run("g"):
            w1 = weight()
        assert len(draws) == 1 and store._groups          # one run of two ended: kept
        with store.run("g"):
            w2 = weight()
            other = _schemes.make_weight((3, 4), "xavier_normal", {"gain": 1.0}, 5, 12, np.float32)
        assert w2 is w1 and len(draws) == 2               # same key: the same array; another stream: drawn
        assert not store._groups                          # the group's last run ended: dropped
        with store.run("unannounced"):
            weight()
        assert len(draws) == 3 and not store._groups      # nothing kept for a group nobody announced
        weight()                                          # outside any run: drawn, never stored
        assert len(draws) == 4
    finally:
        _schemes._draw_weight = real
    fresh = np.empty((3, 4), np.float32)
    from fastinit import Generator, init
    init.xavier_normal_(fresh, generator=Generator(5).set_state((5, 11)))
    np.testing.assert_array_equal(w1, fresh)              # the public initializer's bits
    assert not np.array_equal(other, w1)


def test_a_run_that_asks_while_another_draws_waits_for_that_draw():
    store = _schemes.SharedWeights()
    store.expect("g", 2)
    started, release, got = threading.Event(), threading.Event(), []

    def slow_draw():
        started.set()
        release.wait(10)
        return np.ones(2)

    def first():
        with store.run("g"):
            got.append(store.get("g", "k", slow_draw))

    t = threading.Thread(target=first)
    t.start()
    assert started.wait(10)
    waiter = threading.Thread(target=lambda: got.append(store.get("g", "k", lambda: pytest.fail("drawn twice"))))
    waiter.start()
    release.set()
    t.join(10)
    waiter.join(10)
    assert len(got) == 2 and got[0] is got[1]


def test_a_failed_draw_raises_in_every_waiting_run_and_is_tried_again_later():
    store = _schemes.SharedWeights()
    store.expect("g", 3)

    def fail():
        raise MemoryError("no room")

    with pytest.raises(MemoryError, match="no room"):
        store.get("g", "k", fail)
    assert store.get("g", "k", lambda: np.zeros(1)).shape == (1,)   # not cached as a failure


def test_a_sweep_draws_each_weight_once_for_all_its_activations(monkeypatch):
    draws = []
    real = _schemes._draw_weight
    monkeypatch.setattr(_schemes, "_draw_weight", lambda *a: draws.append(a[1:5:2] + a[4:5]) or real(*a))
    kw = dict(depths=[2], widths=[8], seeds=[0, 1], batch=16, theory=False)
    for workers in (1, 2):
        draws.clear()
        sw = sweep(inits=["xavier_normal", "orthogonal"], activations=["tanh", "relu", "gelu"], workers=workers, **kw)
        mine = [d for d in draws if d[0] in ("xavier_normal", "orthogonal")]  # not the kernels' warm-up runs
        assert len(mine) == len(set(mine)) == 2 * 2 * 2    # schemes x seeds x layers, not x 3 activations
        for (init, act, depth, width), res in sw.results.items():
            for i, seed in enumerate(kw["seeds"]):
                one = simulate_mlp(depth=depth, width=width, batch=16, init=init, activation=act, seed=seed,
                                   theory=False)
                np.testing.assert_array_equal(res.per_network["grad_weight_m2_batchmean"][i],
                                              one.per_network["grad_weight_m2_batchmean"][0])


def test_weights_of_several_networks_are_shared_only_when_they_fit(monkeypatch):
    """A group of runs keeps all n_networks networks' weights until its last run: that many more
    bytes must fit in half the available memory, else every run draws its own."""
    from fastinit.sim import _passes

    draws = []
    real = _schemes._draw_weight
    monkeypatch.setattr(_schemes, "_draw_weight", lambda *a: draws.append(a[1]) or real(*a))
    need = _passes.mlp_bytes([8, 8, 8], 16, 4)
    extra = 1 * (2 - 1) * 4 * (8 * 8 + 8 * 8)             # one run at once, one more network of two layers
    kw = dict(inits=["xavier_normal"], activations=["tanh", "relu"], depths=[2], widths=[8], seeds=[0], batch=16,
              n_networks=2, theory=False, workers=1)
    for avail, shared in ((2 * (need + extra), True), (2 * (need + extra) - 2, False)):
        monkeypatch.setattr(_sweep, "available_memory", lambda avail=avail: avail)
        draws.clear()
        sweep(**kw)
        assert len(draws) == (2 * 2 if shared else 2 * 2 * 2), avail    # networks x layers (x activations)
