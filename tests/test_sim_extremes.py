"""The simulator's activation arithmetic and fused kernels at extreme inputs: huge (exploding networks), tiny
(vanishing ones, squares subnormal), subnormal, +-0, +-inf and NaN. Against NumPy/SciPy, and against the same
code at moderate inputs wherever the mathematics fixes the answer (a saturated tanh is +-1 exactly, a tiny
input gives phi'(0) exactly, power-of-two scaling is exact)."""

import functools

import numpy as np
import pytest

from _sim_helpers import apply_compiled
from fastinit._activations import ACTIVATIONS, SELU_ALPHA, SELU_LAMBDA, get_activation
from fastinit.sim import _kernels as K
from fastinit.sim import _passes as P
from fastinit.sim._fastmath import KERNEL_ACTIVATIONS

_TINIEST = 5e-324          # the smallest subnormal
_MAX = np.finfo(np.float64).max


@functools.cache
def _compiled_pair(name):
    """phi and phi' of ``name`` as the kernels inline them, over an array."""
    act = get_activation(name)
    phi, dphi = KERNEL_ACTIVATIONS[act.kind_id]
    return lambda xs: apply_compiled(phi, dphi, act.param, np.asarray(xs, dtype=np.float64))


def _extreme_values():
    with np.errstate(over="ignore"):
        mags = np.geomspace(_TINIEST, _MAX, 6001)
    subnormal = np.ldexp(np.linspace(0.5, 1.0, 101), -1022) * np.geomspace(1.0, 2.0 ** -52, 101)[:, None]
    specials = [0.0, -0.0, np.inf, -np.inf, np.nan, _TINIEST, -_TINIEST, _MAX, -_MAX, 2.0 ** -1022, -(2.0 ** -1022)]
    return np.concatenate([mags, -mags, subnormal.ravel(), -subnormal.ravel(), specials])


def _stable_exact_d(xs):
    """phi' in forms that neither cancel nor overflow in the tails (the registry's 1 - tanh^2 and s (1 - s) do)."""
    from scipy import special

    with np.errstate(all="ignore"):
        e = np.exp(-np.abs(xs))
        s = np.where(xs >= 0, 1 / (1 + e), e / (1 + e))
        return {"tanh": 4 * e ** 2 / (1 + e ** 2) ** 2, "sigmoid": e / (1 + e) ** 2,
                "silu": s + xs * e / (1 + e) ** 2,
                "gelu": special.ndtr(xs) + xs * np.exp(-0.5 * xs * xs) / np.sqrt(2 * np.pi)}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activations_at_extreme_inputs_match_numpy(name):
    """phi and phi' of every registry activation, as the kernels inline them, agree with NumPy/SciPy from the
    smallest subnormal to the largest float, both signs, +-0, +-inf and NaN (NaN where NumPy gives NaN: gelu
    at -inf, gelu' at +-inf). Absolute differences below 1e-300 are not counted here (the kernels' exp is 0
    below e^-708, where the true tanh'(355..372) is subnormal); the tiny end is checked bit for bit in
    test_tiny_inputs_give_the_first_taylor_term."""
    act = get_activation(name)
    xs = _extreme_values()
    a, d = _compiled_pair(name)(xs)
    with np.errstate(all="ignore"):
        want = act.phi(xs, act.param)
        want_d = _stable_exact_d(xs).get(name, act.dphi(xs, act.param))
    if name == "relu":
        want[np.isnan(xs)] = 0.0  # relu(NaN) = 0 in the kernels, as in _activations.phi_nb
    rtol = 2e-13 if name in ("gelu", "silu") else 4e-15
    np.testing.assert_allclose(a, want, rtol=rtol, atol=1e-300, err_msg=f"{name} phi")
    np.testing.assert_allclose(d, want_d, rtol=rtol, atol=1e-300, err_msg=f"{name} phi'")


def _bits(x):
    return np.asarray(x, dtype=np.float64).view(np.int64)


def test_saturated_inputs_give_the_limits_bitwise():
    """Beyond the point where phi and phi' round to their limits, every larger input, up to the largest float,
    gives exactly the bits of that moderate input (before, the kernels' GELU derivative was NaN beyond
    |x| ~ 2e55: an overflowing correction factor times a zero Gaussian)."""
    with np.errstate(over="ignore"):
        big = np.geomspace(40.0, _MAX, 3001)
        huge = np.geomspace(800.0, _MAX, 3001)   # beyond e^-708, where the kernels' exp returns 0
    cases = {  # name: [(inputs, reference input)]
        "tanh": [(big, 40.0), (-big, -40.0)], "sigmoid": [(big, 40.0), (-huge, -800.0)],
        "selu": [(-big, -40.0)], "gelu": [(-big, -40.0)], "silu": [(-huge, -800.0)],
    }
    for name, pairs in cases.items():
        run = _compiled_pair(name)
        for xs, x0 in pairs:
            a, _ = run(xs)
            a0, _ = run(np.array([x0]))
            assert np.all(_bits(a) == _bits(a0)[0]), (name, x0)
    # phi' at its limit (0 or 1) for every large input, and the identity tails (phi(x) = x)
    for name in ("tanh", "sigmoid", "selu", "gelu", "silu"):
        a, d = _compiled_pair(name)(np.concatenate([huge, -huge]))
        limit = {"tanh": (0.0, 0.0), "sigmoid": (0.0, 0.0), "selu": (SELU_LAMBDA, 0.0), "gelu": (1.0, 0.0),
                 "silu": (1.0, 0.0)}[name]
        np.testing.assert_array_equal(d[:huge.size], limit[0], err_msg=name)
        np.testing.assert_array_equal(d[huge.size:], limit[1], err_msg=name)
        if name in ("gelu", "silu"):
            np.testing.assert_array_equal(a[:huge.size], huge, err_msg=name)
    a, d = _compiled_pair("tanh")(np.array([354.5, 360.0, 371.0]))
    np.testing.assert_array_equal(d, 0.0)   # tanh' is subnormal there; the kernels keep their 0
    np.testing.assert_array_equal(a, 1.0)


def test_tiny_inputs_give_the_first_taylor_term():
    """Below 1e-20 (down to the smallest subnormal), phi' is phi'(+-0) and phi its first Taylor term, bit for
    bit: tanh x = x, sigmoid x = 1/2, selu x = lambda x or lambda alpha x, gelu x = silu x = x / 2."""
    mags = np.concatenate([np.geomspace(_TINIEST, 1e-20, 4001), np.ldexp(1.0, np.arange(-1074, -66))])
    for sign in (1.0, -1.0):
        xs = sign * mags
        with np.errstate(under="ignore"):
            first = {"tanh": xs, "sigmoid": np.full_like(xs, 0.5), "gelu": xs * 0.5, "silu": xs * 0.5,
                     "selu": (SELU_LAMBDA * xs) if sign > 0 else (SELU_LAMBDA * SELU_ALPHA) * xs}
        for name, want in first.items():
            a, d = _compiled_pair(name)(xs)
            _, d0 = _compiled_pair(name)(np.array([sign * 0.0]))
            if name == "selu" and sign > 0:
                d0 = np.array([SELU_LAMBDA])   # selu'(0) is the left derivative; x > 0 is the linear side
            np.testing.assert_array_equal(_bits(a), _bits(want), err_msg=f"{name} phi at {sign} tiny")
            assert np.all(_bits(d) == _bits(d0)[0]), f"{name} phi' at {sign} tiny"


# ------------------------------------------------------------------------------------------------
# The fused kernels on whole blocks
# ------------------------------------------------------------------------------------------------
_ALL = K.F_ZMOM | K.F_POST | K.F_SPREAD | K.F_INACT | K.F_SAT | K.F_DEAD


def _run_block(name, z0, g, scale=1.5, sat_thr=2.0):
    """Forward (every statistic group) and backward kernels on one block, split into the drivers' row
    blocks; returns z after the (zero) bias, phi(z), the pooled statistics, and delta."""
    act = get_activation(name)
    kind = act.kind_id
    B, n = z0.shape
    bounds = P.row_blocks(B, n, 4)
    nb = len(bounds) - 1
    z, out, d = z0.copy(), np.empty_like(z0), np.empty_like(z0)
    bias = np.zeros(n)
    ush, us1, us2 = np.zeros((nb, n)), np.zeros((nb, n)), np.zeros((nb, n))
    umax, part, rowsq = np.full((nb, n), -np.inf), np.zeros((nb, K.N_PART)), np.zeros(B)
    fwd = K.compiled(K.forward_block, kind, z, bias, out, z, 1.0, False, act.param, sat_thr, _ALL, 0, 0, 0,
                     ush, us1, us2, umax, part, rowsq)
    for c in range(nb):
        fwd(kind, z, bias, out, z, 1.0, False, act.param, sat_thr, _ALL, bounds[c], bounds[c + 1], c,
            ush, us1, us2, umax, part, rowsq)
    pooled = K.forward_reduce(np.asarray(bounds, dtype=np.int64), ush, us1, us2, umax, part)
    rowsq_b = np.zeros(B)
    bw = K.compiled(K.backward_block, kind, g, g, False, z, d, act.param, scale, 0, 0, rowsq_b)
    bw(kind, g, g, False, z, d, act.param, scale, 0, B, rowsq_b)
    return z, out, pooled, d, rowsq_b


def _assert_same_bits(a, b, msg):
    """The same bits, NaN for NaN (a NaN's sign and payload depend on the operation that made it)."""
    nan = np.isnan(a)
    np.testing.assert_array_equal(nan, np.isnan(b), err_msg=msg)
    ints = np.int32 if a.dtype == np.float32 else np.int64
    np.testing.assert_array_equal(a[~nan].view(ints), b[~nan].view(ints), err_msg=msg)


def _blocks():
    rng = np.random.default_rng(20261206)
    shape = (64, 48)
    base = rng.standard_normal(shape)
    g = rng.standard_normal(shape)
    mix = np.ldexp(rng.uniform(0.5, 1.0, shape), rng.integers(-1074, 1024, shape)) * rng.choice([-1.0, 1.0], shape)
    mix.ravel()[rng.choice(mix.size, 60, replace=False)] = rng.choice(
        [0.0, -0.0, np.inf, -np.inf, np.nan, _TINIEST, -_TINIEST], 60)
    with np.errstate(all="ignore"):
        return [("float64", base * 1e200, g), ("float64", base * 1e-160, g), ("float64", base * 1e-310, g),
                ("float64", mix, g), ("float32", base * 1e30, g), ("float32", base * 1e-42, g),
                ("float32", mix.astype(np.float32), g)]


@pytest.mark.parametrize("name", ["tanh", "selu", "gelu", "relu"])
def test_fused_kernels_at_extreme_blocks(name):
    """The forward kernel's phi(z) and the backward kernel's delta = scale phi'(z) g (each rounded to the
    block's dtype) on exploding, vanishing, subnormal and mixed blocks with infinities and NaN: the bits of
    the scalar phi and phi' the kernels inline, and NumPy/SciPy's values to the tolerances of
    test_activations_at_extreme_inputs_match_numpy; the per-row sums of delta^2 as NumPy's."""
    act = get_activation(name)
    run = _compiled_pair(name)
    for dtype, z64, g64 in _blocks():
        with np.errstate(all="ignore"):
            z0, g = z64.astype(dtype), g64.astype(dtype)
        z, out, _, delta, rowsq_b = _run_block(name, z0, g)
        # z += bias (zeros) in place: -0 + 0 = +0, every other value unchanged
        np.testing.assert_array_equal(_bits(z.astype(np.float64)), _bits(z0.astype(np.float64) + 0.0))
        zz = z.astype(np.float64).ravel()
        a, d = run(zz)
        with np.errstate(all="ignore"):
            want_out = a.astype(dtype).reshape(z0.shape)
            want_delta = ((1.5 * d) * g.astype(np.float64).ravel()).astype(dtype).reshape(z0.shape)
            ref = act.phi(zz, act.param)
            ref_delta = 1.5 * _stable_exact_d(zz).get(name, act.dphi(zz, act.param)) * g.astype(np.float64).ravel()
        if name == "relu":
            ref[np.isnan(zz)] = 0.0
        _assert_same_bits(out, want_out, f"{name} {dtype} phi")
        _assert_same_bits(delta, want_delta, f"{name} {dtype} delta")
        rtol = 2e-13 if name in ("gelu", "silu") else 4e-15
        np.testing.assert_allclose(out.astype(np.float64).ravel(), ref.astype(dtype).astype(np.float64),
                                   rtol=max(rtol, 2 * np.finfo(dtype).eps), atol=1e-300, err_msg=name)
        np.testing.assert_allclose(delta.astype(np.float64).ravel(), ref_delta.astype(dtype).astype(np.float64),
                                   rtol=max(rtol, 2 * np.finfo(dtype).eps), atol=1e-300, err_msg=name)
        with np.errstate(all="ignore"):
            np.testing.assert_allclose(rowsq_b, (delta.astype(np.float64) ** 2).sum(axis=1), rtol=1e-12,
                                       atol=1e-300, err_msg=name)


def test_power_of_two_scaling_is_exact_in_the_kernels():
    """Multiplying a block by 2^400 or 2^-400 (exact, and the squares stay normal numbers) scales what the
    maths says exactly: for ReLU every forward statistic by 2^+-400 (means) or 2^+-800 (second moments),
    the fractions not at all, and delta not at all; a saturated tanh gives sign(z) and the post-activation
    statistics of the linear kernel on sign(z); GELU at 2^400 gives ReLU's output and delta."""
    rng = np.random.default_rng(11)
    z = rng.standard_normal((64, 48))
    g = rng.standard_normal((64, 48))
    # the order of MLP_FORWARD_STATISTICS: preact_mean, preact_var, preact_m2, post_mean, post_var, post_m2,
    # preact_unitvar, preact_unitspread, frac_inactive, frac_dead_units, frac_saturated
    seconds = [1, 2, 4, 5, 6, 7]
    fractions = [8, 9, 10]
    _, out1, s1, d1, _ = _run_block("relu", z, g, sat_thr=1.0)
    for k in (400, -400):
        c = 2.0 ** k
        _, out_k, s_k, d_k, _ = _run_block("relu", z * c, g, sat_thr=c)
        np.testing.assert_array_equal(out_k, out1 * c)
        np.testing.assert_array_equal(s_k[[0, 3]], s1[[0, 3]] * c)
        np.testing.assert_array_equal(s_k[seconds], s1[seconds] * c * c)
        np.testing.assert_array_equal(s_k[fractions], s1[fractions])
        np.testing.assert_array_equal(d_k, d1)
    big = z * 2.0 ** 400
    _, out_t, s_t, d_t, _ = _run_block("tanh", big, g)
    _, out_l, s_l, _, _ = _run_block("linear", np.sign(z), g)
    np.testing.assert_array_equal(out_t, np.sign(z))
    np.testing.assert_array_equal(s_t[[3, 4, 5]], s_l[[3, 4, 5]])
    np.testing.assert_array_equal(s_t[10], 1.0)   # every |z| beyond the saturation threshold
    np.testing.assert_array_equal(d_t, 0.0)
    _, out_g, _, d_g, _ = _run_block("gelu", big, g)
    _, out_r, _, d_r, _ = _run_block("relu", big, g)
    np.testing.assert_array_equal(out_g, out_r)
    np.testing.assert_array_equal(d_g, d_r)
