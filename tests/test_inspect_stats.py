"""The one-pass kernels behind fastinit.torch.inspect against NumPy recomputations."""

import numba
import numpy as np
import pytest

from fastinit import _stats

pytest.importorskip("torch")


def _data(shape, seed=0, dtype=np.float32, specials=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(dtype)
    x[rng.random(shape) < 0.05] = 0.0
    flat = x.reshape(-1)
    if specials:
        pos = rng.choice(flat.size, size=specials, replace=False)
        flat[pos] = rng.choice([np.nan, np.inf, -np.inf], size=specials)
    return x


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("specials", [0, 7])
@pytest.mark.parametrize("shape", [(1, 1), (3, 1), (1, 9), (97, 13), (300, 64)])
def test_moments_equal_numpy(shape, specials, dtype):
    x = _data(shape, seed=sum(shape), dtype=dtype, specials=min(specials, int(np.prod(shape))))
    alive = np.zeros(shape[1], np.bool_)
    s1, s2, counts = _stats.moments(x, alive)
    fin = np.isfinite(x)
    v = x[fin].astype(np.float64)
    assert s1 == pytest.approx(v.sum(), rel=1e-12, abs=1e-9)
    assert s2 == pytest.approx((v * v).sum(), rel=1e-12)
    assert counts[_stats.FINITE] == fin.sum() and counts[_stats.NAN] == np.isnan(x).sum()
    assert counts[_stats.ZEROS] == (v == 0).sum() and counts[_stats.INACTIVE] == (v <= 0).sum()
    assert (alive == np.where(fin, x, 0).__gt__(0).any(axis=0)).all()


def test_moments_and_sumsq_do_not_depend_on_the_thread_count():
    x = _data((1001, 77), seed=5)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = _stats.moments(x, np.zeros(77, np.bool_))[:2], _stats.sumsq(x)
        numba.set_num_threads(before)
        many = _stats.moments(x, np.zeros(77, np.bool_))[:2], _stats.sumsq(x)
    finally:
        numba.set_num_threads(before)
    assert one == many


@pytest.mark.parametrize("specials", [0, 11])
def test_histogram_equals_numpy_and_both_paths_agree(specials):
    x = _data((400, 50), seed=2, specials=specials)
    x[0, :4] = [-2.0, 2.0, np.nextafter(np.float32(2.0), np.float32(3.0)), -2.5]  # both edges, just above, below
    edges = np.linspace(-2.0, 2.0, 33)
    x[1, :3] = edges[[1, 16, 31]]  # on inner edges: the bin to their right, as numpy.histogram
    x[2, :3] = np.nextafter(edges[[1, 16, 31]].astype(np.float32), np.float32(-3.0))  # just left of them
    counts, under, over = _stats.histogram(x, edges, specials == 0)
    fin = x[np.isfinite(x)].astype(np.float64)
    ref, _ = np.histogram(fin, bins=edges)
    assert (counts == ref).all()
    assert under == (fin < -2.0).sum() and over == (fin > 2.0).sum()
    slow = _stats.histogram(x, edges, False)
    assert (slow[0] == counts).all() and slow[1:] == (under, over)


def test_sumsq_equals_numpy():
    x = _data((123, 45), seed=9, dtype=np.float64)
    assert _stats.sumsq(x) == pytest.approx((x * x).sum(), rel=1e-13)
    assert _stats.sumsq(_stats.as_matrix(x[0])) == pytest.approx((x[0] ** 2).sum(), rel=1e-13)
