"""The orthogonal_ engine: orthogonality, exact values against slow NumPy constructions,
reproducibility, thread invariance, and the Haar law.

Statistical tests use fixed seeds (no seed shopping) and thresholds from the sampling law,
with the two-sided p-value of each threshold written beside it. Each statistic is also run on
a wrong method (QR without the sign correction) to show that it can fail.
"""

import numpy as np
import pytest
from scipy import stats

from fastinit import _householder as hh
from fastinit._fill import fill_normal
from fastinit._orthogonal import orthogonal_matrix_, orthogonal_tensor_
from fastinit._reference.orthogonal import haar_orthogonal

EPS = {np.float32: np.finfo(np.float32).eps, np.float64: np.finfo(np.float64).eps}
DTYPES = [np.float32, np.float64]
METHODS = ["householder", "qr"]
SEED = 20240601  # fixed key for every statistical test

# tall, wide, square, degenerate, and across the 16/64-column block edges
SHAPES = [(1, 1), (1, 7), (7, 1), (2, 2), (8, 8), (9, 4), (4, 9), (65, 65), (130, 70),
          (70, 130), (300, 300), (520, 64)]


def _orth_error(w, gain=1.0):
    w = w.astype(np.float64) / gain
    g = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
    return np.linalg.norm(g - np.eye(g.shape[0]), 2)


# ---------------------------------------------------------------------------------------
# orthogonality, API
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_orthonormal(shape, dtype, method):
    w = np.empty(shape, dtype)
    out = orthogonal_matrix_(w, 1.0, 3, 4, method)
    assert out is w and w.dtype == dtype
    err = _orth_error(w)
    bound = max(shape) * EPS[dtype]  # ||W^T W - I||_2 <= n eps (observed 10-100x lower)
    assert err <= bound, f"||W^T W - I||_2 = {err:.3g} > n eps = {bound:.3g}"


@pytest.mark.parametrize("method", METHODS)
def test_gain_and_torch_criterion(method):
    w = orthogonal_matrix_(np.empty((64, 48)), 2.5, 1, 0, method)
    assert np.allclose(w.T @ w, 6.25 * np.eye(48), atol=1e-6, rtol=0)  # torch's test_orthogonal
    w2 = orthogonal_matrix_(np.empty((64, 48)), 1.0, 1, 0, method)
    assert np.allclose(w, 2.5 * w2, atol=1e-15, rtol=0)  # gain only scales
    neg = orthogonal_matrix_(np.empty((64, 48)), -1.0, 1, 0, method)
    assert np.array_equal(neg, -w2)


def test_property_shapes_blocks():
    """hypothesis: any shape, dtype, method and block size gives an orthonormal result."""
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies

    @hypothesis.given(rows=st.integers(1, 48), cols=st.integers(1, 48), dtype=st.sampled_from(DTYPES),
                      method=st.sampled_from(METHODS), block=st.one_of(st.none(), st.integers(1, 9)),
                      seed=st.integers(0, 2**32 - 1))
    def check(rows, cols, dtype, method, block, seed):
        w = orthogonal_matrix_(np.empty((rows, cols), dtype), 1.0, seed, 0, method, block)
        assert _orth_error(w) <= max(rows, cols, 2) * EPS[dtype]

    check()


def test_errors_and_empty():
    with pytest.raises(ValueError):
        orthogonal_matrix_(np.empty(5), 1.0, 0, 0)
    with pytest.raises(ValueError):
        orthogonal_matrix_(np.empty((6, 4))[:, ::2], 1.0, 0, 0)
    with pytest.raises(TypeError):
        orthogonal_matrix_(np.empty((4, 4), np.float16), 1.0, 0, 0)
    with pytest.raises(ValueError):
        orthogonal_matrix_(np.empty((4, 4)), 1.0, 0, 0, method="svd")
    for shape in [(0, 3), (3, 0)]:
        assert orthogonal_matrix_(np.empty(shape), 1.0, 0, 0).shape == shape


@pytest.mark.parametrize("dtype_name", ["float16", "bfloat16"])
def test_low_precision_from_float32(dtype_name):
    if dtype_name == "bfloat16":
        dtype = pytest.importorskip("ml_dtypes").bfloat16
        tol = 2.0**-8  # bfloat16 keeps 8 significant bits
    else:
        dtype, tol = np.float16, 2.0**-11
    w = orthogonal_tensor_(np.empty((40, 24), dtype), 1.0, 9, 2)
    ref = orthogonal_matrix_(np.empty((40, 24), np.float32), 1.0, 9, 2)
    assert w.dtype == dtype
    assert np.array_equal(w, ref.astype(dtype))  # exactly the float32 result, rounded
    assert _orth_error(w.astype(np.float32)) < 40 * tol


# ---------------------------------------------------------------------------------------
# exact values against slow constructions from the same Gaussians
# ---------------------------------------------------------------------------------------


def _naive_stewart(m, n, seed, stream):
    """Householder vector k = N(0, I_{m-k}) at stream offset sum_{i<k}(m-i); Q = H_0..H_{n-1} D."""
    vs, taus, signs = [], [], []
    offset = 0
    for k in range(n):
        x = fill_normal(np.empty(m - k), 0.0, 1.0, seed, stream, offset)
        offset += m - k
        alpha, xnorm = x[0], np.linalg.norm(x[1:])
        if xnorm == 0:
            v, tau, beta = x * 0, 0.0, alpha
        else:
            beta = -np.copysign(np.hypot(alpha, xnorm), alpha)
            v, tau = x / (alpha - beta), (beta - alpha) / beta
            v[0] = 1.0
        vs.append(v)
        taus.append(tau)
        signs.append(1.0 if beta >= 0 else -1.0)
    q = np.eye(m)[:, :n]
    for k in range(n - 1, -1, -1):
        q[k:] -= taus[k] * np.outer(vs[k], vs[k] @ q[k:])
    return q * np.array(signs)


@pytest.mark.parametrize("shape, block", [((9, 9), 3), ((12, 5), 2), ((5, 12), 4), ((150, 70), None),
                                          ((40, 40), 40), ((33, 1), None)])
def test_householder_equals_naive_stewart(shape, block):
    w = orthogonal_matrix_(np.empty(shape), 1.0, 11, 5, block=block)
    m, n = max(shape), min(shape)
    q = _naive_stewart(m, n, 11, 5)
    ref = q if shape[0] >= shape[1] else q.T
    err = np.abs(w - ref).max()
    assert err < 50 * m * EPS[np.float64], f"max |W - naive Stewart| = {err:.3g}"


@pytest.mark.parametrize("shape", [(9, 9), (40, 17), (17, 40), (150, 70)])
def test_qr_method_equals_numpy_qr_with_sign_fix(shape):
    m, n = max(shape), min(shape)
    g = fill_normal(np.empty((n, m)), 0.0, 1.0, 11, 5, 0).T  # G[i, k] at offset k*m + i
    q, r = np.linalg.qr(g)
    q = q * np.where(np.diagonal(r) >= 0, 1.0, -1.0)
    ref = q if shape[0] >= shape[1] else q.T
    w = orthogonal_matrix_(np.empty(shape), 1.0, 11, 5, "qr")
    # kappa(G) < 30 for these Gaussian shapes, so Q is determined to ~kappa n eps
    err = np.abs(w - ref).max()
    assert err < 1e-11, f"max |W - sign-fixed numpy QR| = {err:.3g}"


# ---------------------------------------------------------------------------------------
# reproducibility and thread invariance
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
def test_reproducible_from_seed_and_stream(method):
    def draw(seed, stream, block=None):
        return orthogonal_matrix_(np.empty((90, 70), np.float32), 1.0, seed, stream, method, block)

    a = draw(5, 0)
    assert a.tobytes() == draw(5, 0).tobytes()
    assert not np.allclose(a, draw(6, 0)) and not np.allclose(a, draw(5, 1))
    # the Gaussians are indexed by position, not by block: other blocks change only rounding
    assert np.allclose(a, draw(5, 0, block=7), atol=2e-6, rtol=0)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("shape", [(700, 600), (600, 700), (5000, 70)])
def test_thread_count_invariant_bytes(shape, method):
    """1 vs 2 Numba threads (several 256-column chunks; (5000, 70) chunks the Gram product)."""
    numba = pytest.importorskip("numba")
    old = numba.get_num_threads()
    out = []
    try:
        for t in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(t)
            out.append(orthogonal_matrix_(np.empty(shape), 1.0, 7, 3, method).tobytes())
    finally:
        numba.set_num_threads(old)
    assert out[0] == out[1]


@pytest.mark.slow
def test_blas_thread_count_invariant_bytes():
    """Subprocesses with OPENBLAS_NUM_THREADS=1 and 2 give the same bytes.

    OpenBLAS's own threaded GEMM would not (its edge kernels depend on the split); the
    kernels run it single-threaded on fixed chunks.
    """
    import hashlib
    import os
    import subprocess
    import sys

    code = ("import hashlib, numpy as np\n"
            "from fastinit._orthogonal import orthogonal_matrix_\n"
            "w = orthogonal_matrix_(np.empty((700, 600), np.float32), 1.0, 7, 3)\n"
            "print(hashlib.sha256(w.tobytes()).hexdigest())\n")
    hashes = []
    for t in ("1", "2"):
        env = dict(os.environ, OPENBLAS_NUM_THREADS=t)
        # run outside the checkout, so the installed package (not the unbuilt source tree) is imported
        res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True,
                             cwd=__import__("tempfile").gettempdir())
        hashes.append(res.stdout.strip())
    assert hashes[0] == hashes[1] and len(hashes[0]) == len(hashlib.sha256().hexdigest())


# ---------------------------------------------------------------------------------------
# Haar law
# ---------------------------------------------------------------------------------------

Z = 5.0  # |z| <= 5: two-sided p ~ 5.7e-7 for a correct sampler


def _draws(source, shape, count, dtype=np.float64, stream0=0):
    """``count`` matrices from ``source``: a fastinit method name, "reference" or "no_sign_fix"."""
    out = np.empty((count,) + shape, dtype)
    for i in range(count):
        if source in ("reference", "no_sign_fix"):
            out[i] = haar_orthogonal(*shape, rng=[SEED, i], dtype=dtype, sign_fix=source == "reference")
        else:
            method, _, block = source.partition(":")
            orthogonal_matrix_(out[i], 1.0, SEED, stream0 + i, method, int(block) if block else None)
    return out


def _trace_z(q):
    """z-scores of E[tr Q] = 0, E[(tr Q)^2] = 1 and P(det Q > 0) = 1/2 for Haar O(n), n >= 4.

    For Haar O(n) the moments of tr Q up to order n equal those of N(0, 1) (Diaconis and
    Shahshahani 1994), so Var(tr Q) = 1 and Var((tr Q)^2) = E[t^4] - 1 = 2.
    """
    n_draws = q.shape[0]
    t = np.trace(q, axis1=1, axis2=2)
    z_mean = t.mean() / np.sqrt(1.0 / n_draws)
    z_sq = (np.mean(t**2) - 1.0) / np.sqrt(2.0 / n_draws)
    pos = np.sum(np.linalg.det(q) > 0)
    z_det = (pos - n_draws / 2) / np.sqrt(n_draws / 4)
    return z_mean, z_sq, z_det


@pytest.mark.parametrize("source", ["householder", "householder:3", "qr", "qr:3", "reference"])
def test_haar_trace_moments_and_det(source):
    # n = 8, 2000 draws: a mean-diagonal bias of 0.02 (0.16 in tr Q) shows as |z| > 7
    z_mean, z_sq, z_det = _trace_z(_draws(source, (8, 8), 2000))
    assert abs(z_mean) < Z, f"E[tr Q]: z = {z_mean:.2f} (expected 0)"  # p ~ 5.7e-7
    assert abs(z_sq) < Z, f"E[(tr Q)^2]: z = {z_sq:.2f} (expected 1)"  # p ~ 5.7e-7 (CLT)
    assert abs(z_det) < Z, f"P(det > 0): z = {z_det:.2f} (expected 1/2)"  # p ~ 5.7e-7


def test_haar_trace_test_rejects_qr_without_sign_fix():
    z_mean, z_sq, z_det = _trace_z(_draws("no_sign_fix", (8, 8), 2000))
    assert abs(z_mean) > Z or abs(z_sq) > Z or abs(z_det) > Z


def _first_column_pvalue(q):
    """KS p-value of Q[0, 0] against its Haar law: (u + 1) / 2 ~ Beta((m-1)/2, (m-1)/2).

    The first column of a Haar matrix is uniform on the sphere S^{m-1}; one coordinate of
    a uniform unit vector has this law. It is symmetric, so a sign bias fails it.
    """
    m = q.shape[1]
    u = q[:, 0, 0]
    return stats.kstest((u + 1) / 2, stats.beta((m - 1) / 2, (m - 1) / 2).cdf).pvalue


@pytest.mark.parametrize("source", ["householder", "qr", "householder:2"])
@pytest.mark.parametrize("shape", [(6, 3), (3, 6), (5, 5)])
def test_haar_first_column_uniform_on_sphere(source, shape):
    q = _draws(source, shape, 2000)
    if shape[0] < shape[1]:
        q = np.swapaxes(q, 1, 2)  # wide: the rows are orthonormal, so the first row is uniform
    p = _first_column_pvalue(q)
    assert p > 0.01, f"KS p = {p:.3g} for Q[0, 0] vs Beta((m-1)/2, (m-1)/2)"  # JAX's KS threshold


def test_first_column_test_rejects_qr_without_sign_fix():
    # Householder QR without the fix gives Q[0, 0] = -|g_0| / ||g|| <= 0 always
    assert _first_column_pvalue(_draws("no_sign_fix", (6, 3), 2000)) < 1e-6


@pytest.mark.parametrize("shape", [(8, 8), (7, 4)])
def test_methods_agree_in_distribution(shape):
    """Two-sample KS on a few entries and the trace: default vs "qr" vs the NumPy reference."""
    a = _draws("householder", shape, 1500)
    b = _draws("qr", shape, 1500, stream0=10**6)  # independent streams
    c = _draws("reference", shape, 1500)
    m, n = shape
    picks = {
        "Q[0,0]": lambda q: q[:, 0, 0],
        "Q[1,2]": lambda q: q[:, 1, 2],
        "Q[m-1,n-1]": lambda q: q[:, m - 1, n - 1],
        "tr Q": lambda q: np.trace(q[:, :n, :n], axis1=1, axis2=2),
    }
    for name, f in picks.items():
        for other, label in ((b, "qr"), (c, "reference")):
            p = stats.ks_2samp(f(a), f(other)).pvalue
            # 8 comparisons at p > 1e-3 each: family-wise false alarm < 0.8% for a fixed seed
            assert p > 1e-3, f"{name}: householder vs {label}, KS p = {p:.3g}"


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", METHODS)
def test_haar_trace_moments_multiblock(method, dtype):
    """n = 150 with the default 64-reflector blocks (3 blocks, two 16-column sub-panels)."""
    z_mean, z_sq, z_det = _trace_z(_draws(method, (150, 150), 1000, dtype).astype(np.float64))
    assert abs(z_mean) < Z and abs(z_sq) < Z and abs(z_det) < Z, (z_mean, z_sq, z_det)  # p ~ 5.7e-7


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_haar_entry_variance_tall(method):
    """Entries of a Haar m x n matrix have mean 0 and variance 1/m; here m = 200, n = 70."""
    q = _draws(method, (200, 70), 300)
    x = q.reshape(-1) * np.sqrt(200)
    # entries are dependent within a matrix; per-matrix sums of squares are exactly n, so test
    # a single entry position across draws: Var(m Q_ij^2) = m^2 * (3/(m(m+2)) - 1/m^2) ~ 2
    e = q[:, 3, 5] * np.sqrt(200)
    assert abs(e.mean()) < Z * np.sqrt(1 / 300)  # p ~ 5.7e-7
    assert abs(np.mean(e**2) - 1) < Z * np.sqrt(2 / 300)  # p ~ 5.7e-7 (CLT)
    assert abs(np.mean(x**2) - 1) < 1e-10  # sum of squares of an orthonormal-column matrix is n


@pytest.mark.slow
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", METHODS)
def test_orthonormal_large(method, dtype):
    assert hh.block_size(1030) == 128  # the first two shapes use 128-reflector blocks
    for shape in [(1100, 1100), (4096, 1030), (512, 4608)]:
        w = orthogonal_matrix_(np.empty(shape, dtype), 1.0, 2, 1, method)
        err = _orth_error(w)
        assert err <= max(shape) * EPS[dtype], f"{shape}: ||W^T W - I||_2 = {err:.3g}"
