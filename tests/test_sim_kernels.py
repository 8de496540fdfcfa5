"""The simulator's compiled pieces: its activation arithmetic against NumPy/SciPy (fastinit.sim._fastmath),
the same bits from a first (compiling) run and a cached one, the wide-vector request, and the recycled
working arrays (fastinit.sim._workspace) changing nothing."""

import math
import os
import subprocess
import sys

import numpy as np
from numba import njit

from _sim_helpers import apply_compiled
from fastinit.sim import simulate_mlp, sweep


def test_fast_activations_match_numpy_forms():
    """The simulator's inlinable activations (polynomial exp/expm1, Cody's erfc) agree with the
    NumPy/SciPy forms of fastinit._activations to a few ulp when compiled the way the fused
    kernels compile them (reassociation allowed), including infinities and NaN."""
    from scipy import special

    from fastinit._activations import get_activation

    xs = np.concatenate([np.linspace(-40, 40, 20001), np.geomspace(1e-300, 30, 500),
                         -np.geomspace(1e-300, 30, 500), [0.0, -0.0, np.inf, -np.inf, np.nan]])
    # stable closed forms of phi' (the registry's 1 - tanh^2 and s (1 - s) cancel in the tails)
    e = np.exp(-np.abs(xs))
    s = np.where(xs >= 0, 1 / (1 + e), e / (1 + e))
    with np.errstate(invalid="ignore"):
        exact_d = {
            "tanh": 4 * e ** 2 / (1 + e ** 2) ** 2,
            "sigmoid": e / (1 + e) ** 2,
            "silu": s + xs * e / (1 + e) ** 2,
            "gelu": special.ndtr(xs) + xs * np.exp(-xs ** 2 / 2) / math.sqrt(2 * math.pi),
        }
    from fastinit._activations import ACTIVATIONS
    from fastinit.sim._fastmath import KERNEL_ACTIVATIONS

    for name in ACTIVATIONS:  # what the kernels inline for each registry kind
        act = get_activation(name)
        phi, dphi = KERNEL_ACTIVATIONS[act.kind_id]
        a, d = apply_compiled(phi, dphi, act.param, xs)
        with np.errstate(all="ignore"):
            want = act.phi(xs, act.param)
            want_d = exact_d.get(name, act.dphi(xs, act.param))
        if name == "relu":
            want[np.isnan(xs)] = 0.0  # relu(NaN) = 0 in the kernels, as in _activations.phi_nb
        # GELU: x Phi(x) inherits the rounding of x / sqrt 2 (~1e-13 relative in the far tail);
        # gelu' and silu' have zeros (x = -0.75, -1.28) where only the absolute error is small
        rtol, atol = (2e-13, 1e-15) if name in ("gelu", "silu") else (4e-15, 0.0)
        np.testing.assert_allclose(a, want, rtol=rtol, atol=atol, err_msg=f"{name} phi")
        np.testing.assert_allclose(d, want_d, rtol=rtol, atol=atol, err_msg=f"{name} phi'")


def test_fast_exp_and_expm1_match_numpy():
    """The kernels' exp and expm1 (one shared range reduction; expm1 as 2^k p + (2^k - 1)) agree with
    numpy to a few ulp over the whole range: both sides of every k = 0, +-1 switch, the k > 52 branch,
    the overflow and underflow ends, infinities and NaN."""
    from fastinit.sim import _fastmath as fm
    from fastinit.sim import _kernels as k

    @njit(**k.ROW_FLAGS)
    def run(xs):
        e = np.empty_like(xs)
        m = np.empty_like(xs)
        for i in range(xs.size):
            e[i] = fm._exp(xs[i])
            m[i] = fm._expm1(xs[i])
        return e, m

    ln2 = math.log(2.0)
    edges = np.array([j * ln2 / 2 for j in range(-5, 6)] + [52.5 * ln2, 709.78, -708.0])
    xs = np.concatenate([np.linspace(-750, 720, 40001), np.linspace(-3, 3, 20001), np.geomspace(1e-300, 1, 300),
                         -np.geomspace(1e-300, 1, 300), (edges[:, None] * (1 + np.linspace(-1e-6, 1e-6, 41))).ravel(),
                         [0.0, -0.0, np.inf, -np.inf, np.nan]])
    e, m = run(xs)
    with np.errstate(over="ignore"):
        want_e, want_m = np.exp(xs), np.expm1(xs)
    sub = (xs > -708) & (xs < 709.78)
    np.testing.assert_allclose(e[sub], want_e[sub], rtol=4e-16 * 8, atol=0)
    np.testing.assert_allclose(m[sub], want_m[sub], rtol=4e-16 * 8, atol=0)
    assert np.all(e[xs <= -708] < 3.4e-308) and np.all(m[xs <= -708] == -1.0)
    assert np.all(np.isinf(e[xs > 709.79])) and np.all(np.isinf(m[xs > 709.79]))
    assert np.isnan(e[-1]) and np.isnan(m[-1])


_FRESH_VS_CACHED = """
import hashlib, numpy as np
from fastinit import sim
r = sim.simulate_mlp(depth=6, width=40, batch=64, activation="gelu", init="xavier_normal", dtype="float64",
                     theory=False)
print(hashlib.sha256(b"".join(np.asarray(r.per_network[k]).tobytes() for k in sorted(r.per_network))).hexdigest())
"""


def test_first_run_and_cached_runs_have_the_same_bits(tmp_path):
    """A process that compiles the kernels (fresh Numba cache) and one that loads them from the cache
    give the same bits: the first used to run the separately compiled row functions and later ones the
    copy inside the cached kernel, optimised differently under fast-math flags (last-bit differences
    in the gradients)."""
    cache = tmp_path / "numba-cache"
    env = {**os.environ, "NUMBA_CACHE_DIR": str(cache), "FASTINIT_NUMBA_CACHE": "1"}
    # cwd: not the checkout, whose source tree (without the compiled core) would shadow the installed package
    runs = [subprocess.run([sys.executable, "-c", _FRESH_VS_CACHED], capture_output=True, text=True, env=env,
                           cwd=str(tmp_path), timeout=600) for _ in range(2)]
    for r in runs:
        assert r.returncode == 0, r.stderr[-2000:]
    assert any(cache.rglob("*.nbc"))  # the first run wrote the cache the second one read
    assert runs[0].stdout == runs[1].stdout


def test_row_loops_ask_for_wide_vectors():
    """prefer_wide_vectors puts the prefer-vector-width attribute on the calling function (this llvmlite
    supports it: the probe says so), and the activation row functions carry it."""
    from fastinit._activations import get_activation
    from fastinit.sim import _fastmath, _kernels

    assert _fastmath._WIDE_OK

    @njit
    def f(x):
        _fastmath.prefer_wide_vectors()
        return x + 1.0

    assert f(1.0) == 2.0
    assert any('"prefer-vector-width"="512"' in ir for ir in f.inspect_llvm().values())
    phi_row = _kernels._row_functions(get_activation("tanh").kind_id)[0]
    z = np.zeros((2, 3), np.float32)
    phi_row(z, np.zeros(3), np.empty(3), 0, 0.0)
    assert any('"prefer-vector-width"="512"' in ir for ir in phi_row.inspect_llvm().values())


def test_workspace_recycles_only_its_own_arrays():
    """Arrays given back are handed out again (same memory) only at the same byte size; foreign
    arrays are ignored; buffers outlive a pass only inside keep_buffers, and only the sizes the
    last pass used."""
    from fastinit.sim import _workspace

    with _workspace.Workspace() as ws:
        a = ws.empty((4, 8), np.float32)
        foreign = np.empty((4, 8), np.float32)
        ws.give(a, foreign, None)
        b = ws.empty((8, 4), np.float32)           # 128 bytes: a's buffer
        assert np.shares_memory(a, b)
        c = ws.empty((4, 8), np.float32)           # a is out again (as b): a fresh one
        assert not np.shares_memory(b, c)
        d = ws.empty((2, 8), np.float64)           # same bytes, other dtype: a free buffer is reused
        assert d.dtype == np.float64 and d.shape == (2, 8)
    with _workspace.Workspace() as ws:             # outside keep_buffers: nothing survived
        assert not np.shares_memory(ws.empty((4, 8), np.float32), b)
    with _workspace.keep_buffers():
        with _workspace.Workspace({128}) as ws:
            x = ws.empty((32,), np.float32)
            y = ws.empty((64,), np.float32)        # 256 bytes
        with _workspace.keep_buffers():            # nested: the outer block keeps them
            with _workspace.Workspace({128}) as ws:  # 256-byte buffers are dropped here
                x2 = ws.empty((32,), np.float32)
                y2 = ws.empty((64,), np.float32)
        assert np.shares_memory(x, x2) and not np.shares_memory(y, y2)
    with _workspace.Workspace({128}) as ws:        # the outermost block ended: pool emptied
        assert not np.shares_memory(ws.empty((32,), np.float32), x)


def test_kept_buffers_do_not_change_results():
    """A sweep (buffers kept between runs, in one or several threads) gives each network the bits of
    its own simulate_mlp call (fresh buffers)."""
    kw = dict(depths=[3], widths=[16, 24], seeds=[0, 1], batch=32, theory=False)
    for workers in (1, 2):
        sw = sweep(inits=["xavier_normal", "orthogonal"], activations=["tanh", "relu"], workers=workers, **kw)
        assert len(sw.results) == 8
        for (init, act, depth, width), res in sw.results.items():
            for i, seed in enumerate(kw["seeds"]):
                one = simulate_mlp(depth=depth, width=width, batch=32, init=init, activation=act, seed=seed,
                                   theory=False)
                for name in ("preact_m2", "post_m2", "grad_preact_m2", "grad_weight_m2_batchmean", "grad_input_m2"):
                    np.testing.assert_array_equal(res.per_network[name][i], one.per_network[name][0])
