"""The public init API: shapes, dtypes, layouts, return values, reproducibility and bad input.

Everything is driven by ``INITIALIZERS``. Expected fans and gains are written from torch's
documented conventions (``shared/reference/torch_init_semantics.md``), never from fastinit's
output. Torch itself is compared in ``test_torch_compat.py``.
"""

import math
import warnings

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import fastinit
from _subproc import run_python
from fastinit import InitArgumentError

DTYPES = [np.float16, ml_dtypes.bfloat16, np.float32, np.float64]
S2 = [(7, 5), (1, 9), (9, 1)]
SN = [(6, 4, 3), (8, 3, 2, 2), (4, 2, 3, 1, 2)]

# (name, call(w, generator), shapes, dtypes, random?)
INITIALIZERS = [
    ("uniform_", lambda w, g: fastinit.uniform_(w, -0.5, 2.0, generator=g), [(), (5,)] + S2 + SN, DTYPES, True),
    ("normal_", lambda w, g: fastinit.normal_(w, 1.0, 3.0, generator=g), [(), (5,)] + S2 + SN, DTYPES, True),
    ("trunc_normal_", lambda w, g: fastinit.trunc_normal_(w, 0.0, 1.0, -1.0, 2.0, generator=g),
     [(), (5,)] + S2 + SN, DTYPES, True),
    ("constant_", lambda w, g: fastinit.constant_(w, 0.25), [(), (5,)] + S2 + SN, DTYPES, False),
    ("ones_", lambda w, g: fastinit.ones_(w), [(), (5,)] + S2, DTYPES, False),
    ("zeros_", lambda w, g: fastinit.zeros_(w), [(), (5,)] + S2, DTYPES, False),
    ("eye_", lambda w, g: fastinit.eye_(w), S2, DTYPES, False),
    ("dirac_", lambda w, g: fastinit.dirac_(w), SN, DTYPES, False),
    ("xavier_uniform_", lambda w, g: fastinit.xavier_uniform_(w, 1.5, generator=g), S2 + SN, DTYPES, True),
    ("xavier_normal_", lambda w, g: fastinit.xavier_normal_(w, 1.5, generator=g), S2 + SN, DTYPES, True),
    ("kaiming_uniform_", lambda w, g: fastinit.kaiming_uniform_(w, generator=g), S2 + SN, DTYPES, True),
    ("kaiming_normal_", lambda w, g: fastinit.kaiming_normal_(w, mode="fan_out", generator=g), S2 + SN, DTYPES, True),
    ("lecun_uniform_", lambda w, g: fastinit.lecun_uniform_(w, generator=g), S2 + SN, DTYPES, True),
    ("lecun_normal_", lambda w, g: fastinit.lecun_normal_(w, generator=g), S2 + SN, DTYPES, True),
    ("variance_scaling_", lambda w, g: fastinit.variance_scaling_(w, 2.0, "fan_avg", "uniform", generator=g),
     S2 + SN, DTYPES, True),
    ("orthogonal_", lambda w, g: fastinit.orthogonal_(w, 2.0, generator=g), S2 + SN, DTYPES, True),
    ("sparse_", lambda w, g: fastinit.sparse_(w, 0.3, generator=g), S2, DTYPES, True),
]
IDS = [r[0] for r in INITIALIZERS]
RANDOM = [r for r in INITIALIZERS if r[4]]
FAN_BASED = {"xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "lecun_uniform_",
             "lecun_normal_", "variance_scaling_"}


def _cases():
    for name, call, shapes, dtypes, _ in INITIALIZERS:
        for shape in shapes:
            for dtype in dtypes:
                yield pytest.param(call, shape, dtype, id=f"{name}-{shape}-{np.dtype(dtype).name}")


def f64(a):
    return np.asarray(a).astype(np.float64)


# ---- shapes, dtypes, return value ------------------------------------------------------------

@pytest.mark.parametrize("call, shape, dtype", list(_cases()))
def test_fills_in_place_and_returns_the_same_array(call, shape, dtype):
    w = np.full(shape, np.nan, dtype)
    out = call(w, 123)
    assert out is w
    assert w.dtype == dtype and w.shape == shape
    assert np.isfinite(f64(w)).all()


@pytest.mark.parametrize("name, call, shapes, dtypes, rnd", RANDOM, ids=[r[0] for r in RANDOM])
def test_same_seed_same_values_and_generator_streams(name, call, shapes, dtypes, rnd):
    shape = shapes[-1]
    a = call(np.empty(shape, np.float32), 7)
    b = call(np.empty(shape, np.float32), 7)
    assert np.array_equal(a, b)
    g = fastinit.Generator(7)
    c = call(np.empty(shape, np.float32), g)
    d = call(np.empty(shape, np.float32), g)
    assert not np.array_equal(c, d)          # each call takes a fresh stream
    assert g.get_state() == (7, 2)
    g.manual_seed(7)
    assert np.array_equal(call(np.empty(shape, np.float32), g), c)
    assert np.array_equal(c, a)              # an int seed is stream 0 of that seed


@pytest.mark.parametrize("name, call, shapes, dtypes, rnd", INITIALIZERS, ids=IDS)
def test_any_layout_gives_the_contiguous_values(name, call, shapes, dtypes, rnd):
    shape = shapes[-1]
    if len(shape) < 2:
        return
    for dtype in (np.float32, ml_dtypes.bfloat16):
        ref = call(np.zeros(shape, dtype), 11)
        views = {
            "F-order": np.zeros(shape, dtype, order="F"),
            "transposed": np.zeros(shape[::-1], dtype).T,
            "strided": np.zeros(tuple(2 * n for n in shape), dtype)[tuple(slice(None, None, 2) for _ in shape)],
        }
        for kind, v in views.items():
            base = v.base if v.base is not None else v
            before = f64(base).copy()
            out = call(v, 11)
            assert out is v
            if name == "orthogonal_":  # QR rounding may differ with the code path; law-level equality
                np.testing.assert_allclose(f64(v), f64(ref), atol=2e-2 if dtype != np.float32 else 1e-5)
            else:
                assert np.array_equal(f64(v), f64(ref)), kind
            if kind == "strided":  # the elements between the view's elements are untouched
                mask = np.ones(base.shape, bool)
                mask[tuple(slice(None, None, 2) for _ in shape)] = False
                assert np.array_equal(f64(base)[mask], before[mask])


def test_broadcast_view_is_rejected():
    w = np.lib.stride_tricks.as_strided(np.zeros(3, np.float32), shape=(4, 3), strides=(0, 4))
    with pytest.raises(ValueError, match="broadcast"):
        fastinit.normal_(w)


# ---- offsets (sharding) ----------------------------------------------------------------------

@pytest.mark.parametrize("fn", [fastinit.uniform_, fastinit.normal_, fastinit.trunc_normal_,
                                fastinit.kaiming_uniform_, fastinit.kaiming_normal_])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_row_shards_with_offsets_equal_one_call(fn, dtype):
    full = fn(np.empty((10, 13), dtype), generator=5)
    top = fn(np.empty((3, 13), dtype), generator=5)
    bottom = fn(np.empty((7, 13), dtype), generator=5, offset=3 * 13)
    assert np.array_equal(np.concatenate([top, bottom]), full)


def test_offset_must_be_a_non_negative_int():
    # one policy (fastinit._checks): a wrong type is a TypeError, a bad value an InitArgumentError
    with pytest.raises(InitArgumentError, match="offset"):
        fastinit.uniform_(np.empty(3, np.float32), offset=-1)
    for bad in (1.5, True, "3"):
        with pytest.raises(TypeError, match="offset"):
            fastinit.uniform_(np.empty(3, np.float32), offset=bad)


# ---- constructors ----------------------------------------------------------------------------

CONSTRUCTORS = [
    ("uniform", (), {"a": -1.0, "b": 3.0}),
    ("normal", (), {"mean": 1.0, "std": 2.0}),
    ("trunc_normal", (), {"std": 0.5}),
    ("xavier_uniform", (), {"gain": 2.0}),
    ("xavier_normal", (), {}),
    ("kaiming_uniform", (), {"a": 5 ** 0.5}),
    ("kaiming_normal", (), {"mode": "fan_out", "nonlinearity": "relu"}),
    ("lecun_uniform", (), {}),
    ("lecun_normal", (), {}),
    ("variance_scaling", (2.0, "fan_avg", "normal"), {}),
    ("orthogonal", (), {"gain": 0.5}),
    ("sparse", (0.25,), {}),
]


@pytest.mark.parametrize("name, args, kwargs", CONSTRUCTORS, ids=[c[0] for c in CONSTRUCTORS])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, ml_dtypes.bfloat16])
def test_constructor_equals_in_place_call(name, args, kwargs, dtype):
    shape = (12, 8)
    new = getattr(fastinit, name)(shape, *args, dtype=dtype, generator=fastinit.Generator(3), **kwargs)
    ref = getattr(fastinit, name + "_")(np.empty(shape, dtype), *args, generator=fastinit.Generator(3), **kwargs)
    assert new.shape == shape and new.dtype == dtype
    assert np.array_equal(f64(new), f64(ref))


def test_deterministic_constructors():
    assert np.array_equal(fastinit.zeros((2, 3)), np.zeros((2, 3), np.float32))
    assert np.array_equal(fastinit.ones(4, dtype=np.float64), np.ones(4))
    assert np.array_equal(fastinit.constant((2,), 1.5), np.full(2, 1.5, np.float32))
    assert np.array_equal(fastinit.eye((3, 4)), np.eye(3, 4, dtype=np.float32))
    assert fastinit.dirac((4, 4, 3)).sum() == 4
    assert fastinit.normal(5, dtype="bfloat16").dtype == ml_dtypes.bfloat16


def test_constructor_rejects_arrays_and_bad_dtypes():
    with pytest.raises(TypeError, match="normal_"):
        fastinit.normal(np.empty(3))
    with pytest.raises(TypeError, match="dtype"):
        fastinit.uniform((3,), dtype=np.int32)
    with pytest.raises(ValueError, match="non-negative"):
        fastinit.zeros((2, -1))


# ---- deterministic fills ---------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(3, 3), (2, 5), (5, 2), (0, 3)])
def test_eye(shape):
    assert np.array_equal(fastinit.eye_(np.full(shape, 7.0)), np.eye(*shape))


@pytest.mark.parametrize("shape, groups", [((4, 4, 3), 1), ((6, 2, 4, 4), 3), ((4, 6, 3, 3, 3), 2), ((8, 2, 2), 1)])
def test_dirac_is_an_identity_convolution(shape, groups):
    w = fastinit.dirac_(np.full(shape, 7.0), groups)
    per_group = shape[0] // groups
    m = min(per_group, shape[1])
    assert w.sum() == m * groups and set(np.unique(w)) <= {0.0, 1.0}
    centre = tuple(k // 2 for k in shape[2:])   # torch: k // 2 (upper middle for even k)
    for g in range(groups):
        for d in range(m):
            assert w[(g * per_group + d, d) + centre] == 1
    # as a stride-1 valid cross-correlation with groups, output channel g*opg+d copies input d of group g
    if len(shape) == 3 and groups == 1:
        x = np.random.default_rng(0).normal(size=(shape[1], 10))
        k = shape[2]
        y = np.stack([sum(np.correlate(x[i], w[o, i], "valid") for i in range(shape[1])) for o in range(shape[0])])
        for d in range(m):
            np.testing.assert_allclose(y[d], x[d, k // 2: k // 2 + y.shape[1]])


# ---- fans and gains (torch conventions, from the reference document) ---------------------------

@pytest.mark.parametrize("shape, expected", [
    ((50, 20), (20, 50)),
    ((32, 16, 3, 3), (144, 288)),
    ((16, 2, 3, 3), (18, 144)),        # grouped conv: fan_in uses in/groups
    ((8, 16, 3, 3), (144, 72)),        # ConvTranspose layout quirk, as torch
    ((4, 3, 2, 5, 7), (210, 280)),
    ((0, 3), (3, 0)),
])
def test_fans(shape, expected):
    assert fastinit.calculate_fan_in_and_fan_out(np.empty(shape, np.float32)) == expected
    assert fastinit.calculate_fan_in_and_fan_out(shape) == expected


@pytest.mark.parametrize("shape", [(), (5,)])
def test_fans_need_two_dims(shape):
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        fastinit.calculate_fan_in_and_fan_out(np.empty(shape))


@given(st.lists(st.integers(1, 6), min_size=2, max_size=5))
def test_fans_property(shape):
    fi, fo = fastinit.calculate_fan_in_and_fan_out(tuple(shape))
    assert fi * shape[0] == fo * shape[1] == math.prod(shape)
    assert fi == shape[1] * math.prod(shape[2:]) and fo == shape[0] * math.prod(shape[2:])


@pytest.mark.parametrize("name, param, expected", [
    ("linear", None, 1), ("conv1d", None, 1), ("conv2d", None, 1), ("conv3d", None, 1),
    ("conv_transpose1d", None, 1), ("conv_transpose2d", None, 1), ("conv_transpose3d", None, 1),
    ("sigmoid", None, 1), ("tanh", None, 5 / 3), ("relu", None, math.sqrt(2)), ("selu", None, 0.75),
    ("leaky_relu", None, math.sqrt(2 / (1 + 0.01**2))), ("leaky_relu", 0, math.sqrt(2)),
    ("leaky_relu", 1, 1.0), ("leaky_relu", 0.2, math.sqrt(2 / 1.04)), ("leaky_relu", -0.2, math.sqrt(2 / 1.04)),
    ("leaky_relu", 10, math.sqrt(2 / 101)), ("relu", "ignored", math.sqrt(2)),
])
def test_gain_table(name, param, expected):
    g = fastinit.calculate_gain(name, param)
    assert g == pytest.approx(expected, rel=1e-15, abs=0)
    if type(expected) is int:
        assert type(g) is int   # torch returns the int 1


@pytest.mark.parametrize("name", ["ReLU", "Linear", "identity", "gelu", "elu", "", None, 3])
def test_unknown_nonlinearity(name):
    with pytest.raises(ValueError, match="Unsupported nonlinearity"):
        fastinit.calculate_gain(name)


@pytest.mark.parametrize("param", [True, False, "0.1", [0.1], {}, float("nan"), float("inf")])
def test_bad_leaky_relu_slope(param):
    with pytest.raises(ValueError, match="negative_slope"):
        fastinit.calculate_gain("leaky_relu", param)


def test_numpy_scalar_slope_is_accepted():
    assert fastinit.calculate_gain("leaky_relu", np.float32(0.5)) == pytest.approx(math.sqrt(2 / 1.25))


# ---- bad input: clear errors, nothing written, no stream taken ---------------------------------

@pytest.mark.parametrize("call", [r[1] for r in INITIALIZERS], ids=IDS)
@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.bool_, np.complex64, np.uint8])
def test_non_float_arrays_are_rejected(call, dtype):
    with pytest.raises(TypeError, match="dtype"):
        call(np.zeros((4, 3, 2), dtype), 0)


@pytest.mark.parametrize("call", [r[1] for r in INITIALIZERS], ids=IDS)
def test_read_only_and_non_arrays_are_rejected(call):
    w = np.zeros((4, 3, 2), np.float32)
    w.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        call(w, 0)
    with pytest.raises(TypeError):
        call([[0.0, 1.0]], 0)


def _check_rejected(fn, exc, match, shape=(6, 4), dtype=np.float32, **kwargs):
    w = np.full(shape, 7.0, dtype)
    g = fastinit.Generator(9)
    with pytest.raises(exc, match=match):
        fn(w, generator=g, **kwargs) if "generator" in fn.__code__.co_varnames else fn(w, **kwargs)
    assert (w == 7).all(), "nothing may be written"
    assert g.get_state() == (9, 0), "no stream may be taken"


NAN, INF = float("nan"), float("inf")


@pytest.mark.parametrize("fn, exc, match, kwargs", [
    (fastinit.uniform_, RuntimeError, "a <= b", {"a": 2.0, "b": 1.0}),
    (fastinit.uniform_, InitArgumentError, "finite", {"a": NAN}),
    (fastinit.uniform_, InitArgumentError, "finite", {"b": INF}),
    (fastinit.uniform_, TypeError, "real number", {"a": 1j}),
    (fastinit.uniform_, TypeError, "real number", {"b": True}),
    (fastinit.normal_, RuntimeError, "std >= 0", {"std": -1.0}),
    (fastinit.normal_, InitArgumentError, "finite", {"mean": NAN}),
    (fastinit.normal_, InitArgumentError, "finite", {"std": INF}),
    (fastinit.trunc_normal_, InitArgumentError, "std > 0", {"std": 0.0}),
    (fastinit.trunc_normal_, InitArgumentError, "std > 0", {"std": -1.0}),
    (fastinit.trunc_normal_, RuntimeError, "a <= b", {"a": 1.0, "b": -1.0}),
    (fastinit.trunc_normal_, InitArgumentError, "finite", {"a": NAN}),
    (fastinit.constant_, InitArgumentError, "finite", {"val": NAN}),
    (fastinit.constant_, TypeError, "real number", {"val": "1"}),
    (fastinit.xavier_uniform_, RuntimeError, "gain", {"gain": -1.0}),
    (fastinit.xavier_normal_, InitArgumentError, "finite", {"gain": NAN}),
    (fastinit.kaiming_uniform_, ValueError, "Mode fan_avg not supported", {"mode": "fan_avg"}),
    (fastinit.kaiming_normal_, ValueError, "Mode", {"mode": None}),
    (fastinit.kaiming_normal_, ValueError, "Unsupported nonlinearity", {"nonlinearity": "gelu"}),
    (fastinit.kaiming_uniform_, ValueError, "negative_slope", {"a": "x"}),
    (fastinit.kaiming_uniform_, ValueError, "negative_slope", {"a": NAN}),
    (fastinit.variance_scaling_, ValueError, "Mode", {"scale": 1.0, "mode": "fan_sum"}),
    (fastinit.variance_scaling_, ValueError, "distribution", {"distribution": "cauchy"}),
    (fastinit.variance_scaling_, InitArgumentError, "scale", {"scale": -1.0}),
    (fastinit.variance_scaling_, InitArgumentError, "finite", {"scale": INF}),
    (fastinit.variance_scaling_, ValueError, "in_axis", {"in_axis": 2}),
    (fastinit.variance_scaling_, ValueError, "differ", {"in_axis": 0}),
    (fastinit.variance_scaling_, TypeError, "in_axis", {"in_axis": 1.0}),
    (fastinit.lecun_normal_, TypeError, "out_axis", {"out_axis": True}),
    (fastinit.orthogonal_, InitArgumentError, "finite", {"gain": NAN}),
    (fastinit.sparse_, InitArgumentError, "sparsity", {"sparsity": 1.5}),
    (fastinit.sparse_, InitArgumentError, "sparsity", {"sparsity": -0.1}),
    (fastinit.sparse_, InitArgumentError, "finite", {"sparsity": NAN}),
    (fastinit.sparse_, InitArgumentError, "std", {"sparsity": 0.1, "std": -1.0}),
    (fastinit.dirac_, ValueError, "Only tensors with 3, 4, or 5", {}),
])
def test_bad_arguments(fn, exc, match, kwargs):
    shape = (6, 4, 3) if fn is fastinit.dirac_ and kwargs else (6, 4)
    _check_rejected(fn, exc, match, shape=shape, **kwargs)


def test_bad_generator():
    for bad in (1.5, "seed", np.random.default_rng(0), True):
        w = np.full(4, 7.0, np.float32)
        with pytest.raises(TypeError, match="generator"):
            fastinit.normal_(w, generator=bad)
        assert (w == 7).all()


@pytest.mark.parametrize("fn", [fastinit.xavier_uniform_, fastinit.xavier_normal_, fastinit.kaiming_uniform_,
                                fastinit.kaiming_normal_, fastinit.lecun_uniform_, fastinit.lecun_normal_,
                                fastinit.variance_scaling_])
@pytest.mark.parametrize("shape", [(), (5,)])
def test_fan_based_need_two_dims(fn, shape):
    _check_rejected(fn, ValueError, "fewer than 2 dimensions", shape=shape)


@pytest.mark.parametrize("fn, shapes, match", [
    (fastinit.orthogonal_, [(), (5,)], "2 or more dimensions"),
    (fastinit.eye_, [(), (5,), (2, 2, 2)], "Only tensors with 2 dimensions"),
    (fastinit.sparse_, [(), (5,), (2, 2, 2)], "Only tensors with 2 dimensions"),
    (fastinit.dirac_, [(), (5,), (2, 2), (1, 1, 1, 1, 1, 1)], "Only tensors with 3, 4, or 5"),
])
def test_ndim_restrictions(fn, shapes, match):
    kwargs = {"sparsity": 0.5} if fn is fastinit.sparse_ else {}
    for shape in shapes:
        _check_rejected(fn, ValueError, match, shape=shape, **kwargs)


@pytest.mark.parametrize("groups, match", [(0, "positive"), (-1, "positive"), (1.5, "positive"), (True, "positive"),
                                           (4, "divisible")])
def test_dirac_groups(groups, match):
    _check_rejected(fastinit.dirac_, ValueError, match, shape=(6, 3, 3), groups=groups)


def test_mode_is_case_insensitive_like_torch():
    a = fastinit.kaiming_normal_(np.empty((6, 4)), mode="FAN_OUT", generator=1)
    b = fastinit.kaiming_normal_(np.empty((6, 4)), mode="fan_out", generator=1)
    assert np.array_equal(a, b)


# ---- zero-size tensors -----------------------------------------------------------------------

@pytest.mark.parametrize("fn", [fastinit.kaiming_uniform_, fastinit.kaiming_normal_])
@pytest.mark.parametrize("shape", [(0,), (0, 3), (3, 0, 2)])
def test_kaiming_warns_on_zero_elements_before_other_checks(fn, shape):
    w = np.empty(shape, np.float32)
    g = fastinit.Generator(1)
    with pytest.warns(UserWarning, match="zero-element"):
        assert fn(w, mode="bogus", generator=g) is w
    assert g.get_state() == (1, 0)


@pytest.mark.parametrize("name, call, shapes, dtypes, rnd", INITIALIZERS, ids=IDS)
def test_other_functions_are_silent_no_ops_on_zero_size(name, call, shapes, dtypes, rnd):
    nd = len(shapes[-1])
    shape = (0,) * nd if name in ("eye_", "sparse_", "orthogonal_") or name in FAN_BASED else (0, 3, 2)[:max(nd, 1)]
    if name == "dirac_":
        shape = (0, 2, 3)
    w = np.empty(shape, np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        if name.startswith("kaiming"):
            with pytest.warns(UserWarning):
                assert call(w, 0) is w
        else:
            assert call(w, 0) is w


# ---- the sparse pattern ----------------------------------------------------------------------

@pytest.mark.parametrize("rows, sparsity", [(10, 0.3), (7, 0.0), (7, 1.0), (5, 0.21), (1, 0.5)])
def test_sparse_zero_count_and_reproducibility(rows, sparsity):
    w = fastinit.sparse_(np.empty((rows, 300), np.float64), sparsity, std=2.0, generator=4)
    zeros = (w == 0).sum(axis=0)
    assert (zeros == math.ceil(sparsity * rows)).all()
    again = fastinit.sparse_(np.empty((rows, 300), np.float64), sparsity, std=2.0, generator=4)
    assert np.array_equal(w, again)           # reproducible from the generator alone
    other = fastinit.sparse_(np.empty((rows, 300), np.float64), sparsity, std=2.0, generator=5)
    if 0 < sparsity < 1 and rows > 1:
        assert not np.array_equal(w == 0, other == 0)


@pytest.mark.parametrize("n, k, distinct", [(1, 1, 10), (2, 1, 2), (50, 7, 3), (50, 49, 1000), (1000, 100, 5),
                                             (1000, 999, 2**63), (4096, 410, 2**63)])
def test_sparse_selection_is_the_k_smallest_key_row_pairs(n, k, distinct):
    """The selection behind sparse_ returns the rows of the k smallest (key, row) pairs, ties
    broken by row (keys drawn from few distinct values force ties), for any k."""
    from fastinit import _sparse

    rng = np.random.default_rng(n * 7919 + k)
    keys = rng.integers(0, distinct, size=n, dtype=np.uint64)
    out = np.full(k, -1, np.int64)
    _sparse.smallest_rows(keys.copy(), k, out)
    expected = np.sort(np.lexsort((np.arange(n), keys))[:k])  # by key, then by row
    assert out.tolist() == expected.tolist()


def test_sparse_pattern_matches_a_numpy_sort_of_the_keys():
    """Column j's zeros are the rows of its num_zeros smallest keys, k = 2^32 w[2m] + w[2m+1] with
    m = j rows + i, from the raw words at SPARSE_WORD0 + 2m: the documented pattern."""
    from fastinit._generator import resolve_generator
    from fastinit._matrices import SPARSE_WORD0

    rows, cols, sparsity = 37, 60, 0.3
    w = fastinit.sparse_(np.empty((rows, cols)), sparsity, generator=2)
    seed, stream = resolve_generator(2)
    words = fastinit.raw_uint32(2 * rows * cols, seed, stream, offset=SPARSE_WORD0).astype(np.uint64)
    keys = ((words[0::2] << np.uint64(32)) | words[1::2]).reshape(cols, rows)
    nz = math.ceil(sparsity * rows)
    expected = np.ones((rows, cols), bool)
    for j in range(cols):
        expected[np.argsort(keys[j], kind="stable")[:nz], j] = False
    assert np.array_equal(w != 0, expected)


# ---- numeric behaviour at the edges ----------------------------------------------------------

def test_uniform_bounds_are_exact_in_every_dtype():
    for dtype in DTYPES:
        w = fastinit.uniform_(np.empty((200, 50), dtype), -0.3, 0.7, generator=0)
        assert f64(w).min() >= -0.3 and f64(w).max() < 0.7 + 1e-12


@pytest.mark.parametrize("fn, bound", [
    (lambda w: fastinit.kaiming_uniform_(w, a=5 ** 0.5, generator=0), lambda fi, fo: 1 / math.sqrt(fi)),
    (lambda w: fastinit.xavier_uniform_(w, gain=2.0, generator=0), lambda fi, fo: 2 * math.sqrt(6 / (fi + fo))),
    (lambda w: fastinit.lecun_uniform_(w, generator=0), lambda fi, fo: math.sqrt(3 / fi)),
    (lambda w: fastinit.lecun_normal_(w, generator=0), lambda fi, fo: 2 / math.sqrt(fi) / 0.87962566103423978),
])
@given(shape=st.lists(st.integers(1, 7), min_size=2, max_size=4))
def test_bounded_initialisers_stay_within_their_bound(fn, bound, shape):
    w = fn(np.empty(shape, np.float64))
    fi = shape[1] * math.prod(shape[2:])
    fo = shape[0] * math.prod(shape[2:])
    assert np.abs(w).max() <= bound(fi, fo) * (1 + 1e-12)


def test_zero_gain_and_zero_std_fill_zeros():
    assert not fastinit.xavier_normal_(np.ones((3, 4)), gain=0.0, generator=0).any()
    assert not fastinit.xavier_uniform_(np.ones((3, 4)), gain=0.0, generator=0).any()
    assert not fastinit.variance_scaling_(np.ones((3, 4)), 0.0, generator=0).any()
    assert (fastinit.normal_(np.ones((3, 4)), 2.0, 0.0, generator=0) == 2.0).all()


def test_trunc_normal_warns_like_torch_and_stays_inside():
    with pytest.warns(UserWarning, match="more than 2 std"):
        w = fastinit.trunc_normal_(np.empty(1000), mean=5.0, std=1.0, a=-1.0, b=1.0, generator=0)
    assert w.min() >= -1 and w.max() <= 1


def test_variance_scaling_axes_give_jax_fans():
    # HWIO kernel (3, 3, 16, 32): JAX fan_in 144, fan_out 288; same law as the OIHW (32, 16, 3, 3) weight.
    hwio = fastinit.variance_scaling_(np.empty((3, 3, 16, 32)), 1.0, "fan_out", "uniform", generator=0,
                                      in_axis=-2, out_axis=-1)
    assert np.abs(hwio).max() <= math.sqrt(3 / 288)
    assert np.abs(hwio).max() > math.sqrt(3 / 288) * 0.95


# ---- docstrings: written once, substituted, complete -----------------------------------------

@pytest.mark.parametrize("name", fastinit.init.__all__)
def test_docstrings_are_substituted_and_name_every_parameter(name):
    """The shared sections (fastinit._docs) are substituted everywhere, and every parameter of
    every public function is documented where the function is defined."""
    import inspect

    fn = getattr(fastinit, name)
    doc = inspect.getdoc(fn)
    assert "%(" not in doc, f"{name}: unsubstituted section"
    assert ">>> " in doc, f"{name}: no example"
    params = [p for p in inspect.signature(fn).parameters if p != "tensor"]
    if params:
        assert "Parameters\n----------\n" in doc, f"{name}: no Parameters section"
    section = doc.split("Parameters\n----------\n", 1)[-1].split("\n\n")[0] if params else ""
    for p in params:
        assert p in section, f"{name}: parameter {p} is not documented"


def test_import_is_light_and_bfloat16_loads_on_use():
    """`import fastinit` loads neither torch nor ml_dtypes (half a second of import); the name
    "bfloat16" still works as a dtype before the user imports ml_dtypes, and arrays made later fill."""
    code = (
        "import sys, numpy as np, fastinit\n"
        "assert 'torch' not in sys.modules and 'ml_dtypes' not in sys.modules, sorted(sys.modules)\n"
        "a = fastinit.init.normal((8,), dtype='bfloat16', generator=fastinit.Generator(3))\n"
        "import ml_dtypes\n"
        "b = np.empty(8, ml_dtypes.bfloat16)\n"
        "fastinit.init.normal_(b, generator=fastinit.Generator(3))\n"
        "assert a.dtype == b.dtype and a.tobytes() == b.tobytes()\n"
    )
    r = run_python(code)
    assert r.returncode == 0, r.stderr
