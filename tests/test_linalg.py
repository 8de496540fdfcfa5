"""fastinit.linalg.qr and the Householder kernels under it.

Tolerances are multiples of ``n * eps`` (Householder QR is backward stable: ``||A - QR|| <=
c n eps ||A||`` and ``||Q^T Q - I|| <= c n eps`` for any condition number), with ``c`` a small
constant; the observed values are about 10-100 times below the bounds used here.
"""

import numpy as np
import pytest

from fastinit import _householder as hh
from fastinit.linalg import qr

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

EPS = {np.float32: np.finfo(np.float32).eps, np.float64: np.finfo(np.float64).eps}
DTYPES = [np.float32, np.float64]

# shapes around the block edges: inner block 16, outer block 64 (128 from k = 1024)
SHAPES = [(1, 1), (1, 5), (5, 1), (7, 5), (5, 7), (16, 16), (17, 17), (70, 65), (65, 70),
          (130, 129), (200, 64), (64, 200), (300, 150)]


def _check_qr(a, q, r, c=4.0):
    m, n = a.shape
    k = min(m, n)
    dt = a.dtype.type
    eps = EPS[dt]
    scale = max(m, n) * eps
    a64, q64, r64 = (x.astype(np.float64) for x in (a, q, r))
    anorm = max(np.linalg.norm(a64, 2), np.finfo(np.float64).tiny)
    resid = np.linalg.norm(a64 - q64 @ r64, 2) / anorm
    orth = np.linalg.norm(q64.T @ q64 - np.eye(q.shape[1]), 2)
    assert resid <= c * scale, f"||A - QR|| / ||A|| = {resid:.3g} > {c} n eps = {c * scale:.3g}"
    assert orth <= c * scale, f"||Q^T Q - I|| = {orth:.3g} > {c} n eps = {c * scale:.3g}"
    assert np.array_equal(r, np.triu(r)), "R is not upper triangular"
    assert q.dtype == a.dtype and r.dtype == a.dtype
    return k


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_qr_matches_numpy(shape, dtype, rng):
    a = rng.standard_normal(shape).astype(dtype)
    a_copy = a.copy()
    q, r = qr(a)
    assert np.array_equal(a, a_copy), "qr modified its input"
    k = _check_qr(a, q, r)
    assert q.shape == (shape[0], k) and r.shape == (k, shape[1])
    qn, rn = np.linalg.qr(a.astype(np.float64))
    # Same LAPACK sign convention, so the factors themselves agree. Perturbation bound:
    # ||dQ|| <~ kappa(A) n eps; these Gaussian matrices have kappa < 60 (square ones < 1e3).
    kappa = np.linalg.cond(a.astype(np.float64)[:, :k] if shape[0] >= shape[1] else a.astype(np.float64))
    tol = 8 * kappa * max(shape) * EPS[dtype]
    assert np.abs(q - qn).max() <= tol, f"max |Q - Q_numpy| = {np.abs(q - qn).max():.3g} > {tol:.3g}"
    rtol = tol * np.abs(rn).max()
    assert np.abs(r - rn).max() <= rtol, f"max |R - R_numpy| = {np.abs(r - rn).max():.3g} > {rtol:.3g}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cond_log10", [3, 8, 14])
def test_qr_ill_conditioned(cond_log10, dtype, rng):
    """A = U diag(s) V^T with s from 1 down to 10^-cond: backward error stays O(n eps)."""
    m, n = 150, 100
    u, _ = np.linalg.qr(rng.standard_normal((m, n)))
    v, _ = np.linalg.qr(rng.standard_normal((n, n)))
    s = np.logspace(0, -cond_log10, n)
    a = ((u * s) @ v.T).astype(dtype)
    q, r = qr(a)
    _check_qr(a, q, r)
    # R's singular values are A's (up to backward error); its largest is 1
    assert abs(np.linalg.norm(r.astype(np.float64), 2) - 1) < 4 * n * EPS[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
def test_qr_rank_deficient_and_exact_zeros(dtype):
    """Zero columns and already-triangular columns take the tau = 0 path (H = I)."""
    a = np.zeros((40, 30), dtype)
    a[:, 3] = 1.0
    a[:, 7] = np.arange(40)
    a[:, 8] = 2 * a[:, 7]  # rank deficient
    a[:5, 20] = 3.0
    q, r = qr(a)
    _check_qr(a, q, r)
    assert np.all(np.diagonal(r)[:3] == 0)  # first three columns are zero: H = I, R_kk = 0
    e = np.triu(np.arange(1.0, 26.0).reshape(5, 5)).astype(dtype)
    q, r = qr(e)  # already upper triangular: every tau is 0, Q = I exactly
    assert np.array_equal(q, np.eye(5, dtype=dtype)) and np.array_equal(r, e)


@pytest.mark.parametrize("scale", [1e-200, 1e200])
def test_qr_no_overflow_or_underflow(scale, rng):
    """The reflector norm is rescaled when a sum of squares would over/underflow (float64)."""
    a = rng.standard_normal((50, 20))
    q, r = qr(a * scale)
    assert np.all(np.isfinite(q)) and np.all(np.isfinite(r))
    q1, r1 = qr(a)
    assert np.allclose(q, q1, atol=1e-13, rtol=0)
    assert np.allclose(r / scale, r1, atol=1e-12, rtol=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(9, 4), (4, 9), (6, 6)])
def test_qr_modes_match_numpy(shape, dtype, rng):
    a = rng.standard_normal(shape).astype(dtype)
    q, r = qr(a, mode="complete")
    qn, rn = np.linalg.qr(a, mode="complete")
    assert q.shape == qn.shape and r.shape == rn.shape
    _check_qr(a, q, r)
    tol = 200 * EPS[dtype]
    assert np.allclose(r, rn, atol=tol * 10, rtol=0)
    k = min(shape)
    assert np.allclose(q[:, :k], qn[:, :k], atol=tol, rtol=0)  # the rest is any completion
    assert np.allclose(qr(a, mode="r"), np.linalg.qr(a, mode="r"), atol=tol * 10, rtol=0)
    h, tau = qr(a, mode="raw")
    hn, taun = np.linalg.qr(a, mode="raw")
    assert h.shape == hn.shape and tau.shape == taun.shape
    assert np.allclose(h, hn, atol=tol * 10, rtol=0) and np.allclose(tau, taun, atol=tol, rtol=0)


def test_qr_empty_and_dtypes():
    for shape in [(0, 3), (3, 0), (0, 0)]:
        q, r = qr(np.zeros(shape))
        qn, rn = np.linalg.qr(np.zeros(shape))
        assert q.shape == qn.shape and r.shape == rn.shape
    q, r = qr(np.arange(6).reshape(3, 2))  # integers become float64, like numpy
    assert q.dtype == np.float64
    with pytest.raises(TypeError):
        qr(np.ones((3, 3), np.complex128))
    with pytest.raises(TypeError):
        qr(np.ones((3, 3), np.float16))
    with pytest.raises(ValueError):
        qr(np.ones((2, 3, 3)))
    with pytest.raises(ValueError):
        qr(np.ones((3, 3)), mode="economic")


def test_qr_noncontiguous_input(rng):
    a = rng.standard_normal((40, 60))
    for view in (a[::2, 1::3], a.T, np.asfortranarray(a)):
        q, r = qr(view)
        _check_qr(np.ascontiguousarray(view), q, r)


@given(m=st.integers(1, 40), n=st.integers(1, 40), seed=st.integers(0, 2**32 - 1),
       dtype=st.sampled_from(DTYPES))
def test_qr_property(m, n, seed, dtype):
    a = np.random.default_rng(seed).standard_normal((m, n)).astype(dtype)
    q, r = qr(a)
    _check_qr(a, q, r)


def _layouts(x):
    """The same matrix as C-order, F-order and strided-view operands."""
    big = np.zeros((x.shape[0] + 3, x.shape[1] + 5), x.dtype)
    big[2:2 + x.shape[0], 1:1 + x.shape[1]] = x
    bigf = np.asfortranarray(big)
    return [np.ascontiguousarray(x), np.asfortranarray(x),
            big[2:2 + x.shape[0], 1:1 + x.shape[1]], bigf[2:2 + x.shape[0], 1:1 + x.shape[1]]]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mnk", [(5, 7, 3), (1, 6, 4), (6, 1, 4), (4, 5, 1), (1, 1, 1), (3, 4, 0)])
def test_gemm_all_layouts(mnk, dtype, rng):
    """The GEMM wrapper maps every combination of row-/column-major views onto BLAS."""
    m, n, k = mnk
    a = rng.standard_normal((m, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    c0 = rng.standard_normal((m, n)).astype(dtype)
    expect = 0.5 * (a.astype(np.float64) @ b) - 2.0 * c0
    for av in _layouts(a):
        for bv in _layouts(b):
            for cv in _layouts(c0):
                cv = cv.copy() if cv.base is None else cv
                cv[...] = c0
                hh._gemm(0.5, av, bv, -2.0, cv)
                assert np.allclose(cv, expect, atol=50 * EPS[dtype], rtol=50 * EPS[dtype]), (
                    av.flags.c_contiguous, bv.flags.c_contiguous, cv.flags.c_contiguous)


def test_qr_thread_invariant_bytes(rng):
    numba = pytest.importorskip("numba")
    a = rng.standard_normal((600, 520))
    old = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        q1, r1 = qr(a)
        numba.set_num_threads(min(2, numba.config.NUMBA_NUM_THREADS))
        q2, r2 = qr(a)
    finally:
        numba.set_num_threads(old)
    assert q1.tobytes() == q2.tobytes() and r1.tobytes() == r2.tobytes()


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1100, 1030), (2100, 700), (700, 2100)])
def test_qr_large_blocks(shape, dtype, rng):
    """k >= 1024 switches to 128-column blocks and several parallel column chunks."""
    a = rng.standard_normal(shape).astype(dtype)
    q, r = qr(a)
    _check_qr(a, q, r)
