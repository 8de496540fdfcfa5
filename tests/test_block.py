"""Blocks of a logical tensor (fastinit.Block, block= on every initializer).

Element-wise initializers: the block equals full[index] bit for bit, for every dtype and N-D
shape. sparse_: bit for bit too. orthogonal_: to the tolerance stated in docs/api.md. Bad blocks:
clear errors naming the argument, nothing written, no stream taken.
"""

import math

import numpy as np
import pytest

import fastinit
from fastinit import Block, InitArgumentError
from fastinit._fill import float_dtypes

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

# name -> call(tensor, generator, block); each an element-wise initializer with non-default arguments
ELEMENTWISE = {
    "uniform_": lambda t, g, b: fastinit.uniform_(t, -0.5, 2.0, generator=g, block=b),
    "normal_": lambda t, g, b: fastinit.normal_(t, 0.25, 0.5, generator=g, block=b),
    "trunc_normal_": lambda t, g, b: fastinit.trunc_normal_(t, 0.0, 1.0, -1.5, 0.5, generator=g, block=b),
    "trunc_normal_wide": lambda t, g, b: fastinit.trunc_normal_(t, 0.0, 1.0, -1.0, 12.0, generator=g, block=b),
    "xavier_uniform_": lambda t, g, b: fastinit.xavier_uniform_(t, 1.5, generator=g, block=b),
    "xavier_normal_": lambda t, g, b: fastinit.xavier_normal_(t, generator=g, block=b),
    "kaiming_uniform_": lambda t, g, b: fastinit.kaiming_uniform_(t, a=5 ** 0.5, generator=g, block=b),
    "kaiming_normal_": lambda t, g, b: fastinit.kaiming_normal_(t, mode="fan_out", nonlinearity="relu",
                                                                generator=g, block=b),
    "lecun_uniform_": lambda t, g, b: fastinit.lecun_uniform_(t, generator=g, block=b),
    "lecun_normal_": lambda t, g, b: fastinit.lecun_normal_(t, generator=g, block=b),
    "variance_scaling_": lambda t, g, b: fastinit.variance_scaling_(t, 2.0, "fan_avg", "normal", generator=g,
                                                                    in_axis=-2, out_axis=-1, block=b),
    "constant_": lambda t, g, b: fastinit.constant_(t, 0.75, block=b),
    "ones_": lambda t, g, b: fastinit.ones_(t, block=b),
    "zeros_": lambda t, g, b: fastinit.zeros_(t, block=b),
}
DTYPES = [pytest.param(d, id=str(d)) for d in float_dtypes()]

# (global shape, blocks): row blocks, column blocks, interior blocks, single elements, empty blocks
SHAPES = {
    (37, 29): [np.s_[5:17], np.s_[:, 3:11], np.s_[4:30, 1:28], np.s_[36:37, 28:29], np.s_[0:0, 2:5],
               np.s_[3:4], np.s_[:, 0:1], np.s_[:, 28:29], np.s_[:, :]],
    (6, 5, 3, 3): [np.s_[1:4], np.s_[:, 2:4], np.s_[2:5, 1:4, 1:3, 0:2], np.s_[:, :, :, 1:2],
                   np.s_[5:6, 4:5, 2:3, 2:3], np.s_[:, :, 1:1], np.s_[:, 0:5, 0:3]],
}
CASES = [pytest.param(shape, idx, id=f"{shape}-{Block(shape, idx)!r}") for shape, blocks in SHAPES.items()
         for idx in blocks]


def _full_and_block(call, shape, idx, dtype, seed=11):
    full = call(np.full(shape, np.nan, dtype), seed, None)
    b = Block(shape, idx)
    part = call(np.full(b.shape, np.nan, dtype), seed, b)
    return full[idx], part


def _same_bits(a, b):
    return a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, idx", CASES)
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_block_equals_the_full_tensors_block(name, shape, idx, dtype):
    expect, part = _full_and_block(ELEMENTWISE[name], shape, idx, dtype)
    assert _same_bits(expect, part), f"{name} {shape}[{idx}] {dtype}: {np.argwhere(expect != part)[:5]}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, idx", [((7, 9), np.s_[2:6, 1:8]), ((7, 9), np.s_[:, 5:9]), ((4, 9), np.s_[3:4])])
def test_eye_block(shape, idx, dtype):
    expect, part = _full_and_block(lambda t, g, b: fastinit.eye_(t, block=b), shape, idx, dtype)
    assert _same_bits(expect, part)


@pytest.mark.parametrize("shape, groups, idx", [((8, 3, 3, 3), 2, np.s_[1:7, 1:3, 1:2]), ((6, 6, 5), 3, np.s_[:, 2:5]),
                                                ((4, 4, 2, 3, 3), 1, np.s_[2:4, :, 1:2, 0:2, 1:3])])
def test_dirac_block(shape, groups, idx):
    expect, part = _full_and_block(lambda t, g, b: fastinit.dirac_(t, groups, block=b), shape, idx, np.float32)
    assert expect.sum() > 0 or part.sum() == 0
    assert _same_bits(expect, part)


@st.composite
def _blocks(draw):
    shape = tuple(draw(st.lists(st.integers(1, 9), min_size=2, max_size=4)))
    idx = []
    for n in shape:
        a = draw(st.integers(0, n))
        idx.append(slice(a, draw(st.integers(a, n))))
    return shape, tuple(idx)


@given(_blocks(), st.sampled_from(["uniform_", "normal_", "trunc_normal_", "kaiming_normal_", "lecun_normal_"]),
       st.sampled_from(float_dtypes()))
def test_random_blocks_equal_the_full_tensors_block(block, name, dtype):
    shape, idx = block
    expect, part = _full_and_block(ELEMENTWISE[name], shape, idx, dtype)
    assert _same_bits(expect, part)


@pytest.mark.parametrize("shape, idx, dtype", [
    ((3, 200_000), np.s_[:, 1:70_001], np.float32),  # runs longer than a parallel task (2**16 elements)
    ((3, 4, 100_000), np.s_[:, 1:3, 3:65_540], np.float64),
    ((70_000, 300), np.s_[3:69_990, 1:5], np.float32),  # more short runs than one task holds
    ((70_000, 300), np.s_[:, 17:23], np.float64),
    ((3, 70_000), np.s_[:, 5:69_999], np.float32),
    ((70_000, 40), np.s_[3:69_990, 1:4], np.float16),  # short runs, short gaps: one span, gaps included
    ((50_000, 20), np.s_[:, 0:20 - 1], np.float32),
])
def test_long_runs_many_runs_and_short_gaps(shape, idx, dtype):
    for name in ("normal_", "trunc_normal_"):
        expect, part = _full_and_block(ELEMENTWISE[name], shape, idx, dtype)
        assert _same_bits(expect, part)


@pytest.mark.parametrize("layout", ["transposed", "strided"])
def test_any_local_layout(layout):
    shape, idx = (40, 33), np.s_[3:37, 2:30]
    expect, _ = _full_and_block(ELEMENTWISE["trunc_normal_"], shape, idx, np.float32)
    b = Block(shape, idx)
    if layout == "transposed":
        local = np.empty(b.shape[::-1], np.float32).T
    else:
        local = np.empty((b.shape[0], 2 * b.shape[1]), np.float32)[:, ::2]
    ELEMENTWISE["trunc_normal_"](local, 11, b)
    assert _same_bits(expect, np.ascontiguousarray(local))


def test_blocks_of_one_generator_stay_in_step():
    """Every holder of a block takes the stream the full call takes (an empty block too)."""
    g_full, g_a, g_b = fastinit.Generator(5), fastinit.Generator(5), fastinit.Generator(5)
    full1 = fastinit.normal_(np.empty((4, 6), np.float32), generator=g_full)
    full2 = fastinit.uniform_(np.empty((4, 6), np.float32), generator=g_full)
    top, empty = Block((4, 6), np.s_[0:4, 0:3]), Block((4, 6), np.s_[2:2])
    a1 = fastinit.normal_(np.empty(top.shape, np.float32), generator=g_a, block=top)
    fastinit.normal_(np.empty(empty.shape, np.float32), generator=g_b, block=empty)
    a2 = fastinit.uniform_(np.empty(top.shape, np.float32), generator=g_a, block=top)
    b2 = fastinit.uniform_(np.empty(top.shape, np.float32), generator=g_b, block=top)
    assert g_full.get_state() == g_a.get_state() == g_b.get_state() == (5, 2)
    assert _same_bits(full1[:, :3], a1) and _same_bits(full2[:, :3], a2) and _same_bits(a2, b2)


def test_fans_come_from_the_global_shape():
    b = Block((64, 1024), np.s_[:, :16])
    w = fastinit.kaiming_uniform_(np.empty(b.shape), generator=0, block=b)
    bound = math.sqrt(2) * math.sqrt(3 / 1024)
    assert np.abs(w).max() < bound and np.abs(w).max() > 0.9 * bound  # local fan_in 16 would give 4x


# ---- sparse_ and orthogonal_ -------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, idx", [((50, 40), np.s_[10:35, 5:22]), ((50, 40), np.s_[:, 39:40]),
                                        ((50, 40), np.s_[49:50]), ((7, 300), np.s_[2:5, 100:300]),
                                        ((50, 40), np.s_[3:3, 1:5])])
def test_sparse_block_equals_the_full_tensors_block(shape, idx, dtype):
    call = lambda t, g, b: fastinit.sparse_(t, 0.4, std=0.5, generator=g, block=b)  # noqa: E731
    expect, part = _full_and_block(call, shape, idx, dtype)
    assert _same_bits(expect, part)
    if idx == np.s_[:, 39:40]:
        assert (part == 0).sum() == math.ceil(0.4 * shape[0])


def _ortho_tol(shape, dtype, gain):
    """docs/api.md: |block - full[index]| <= 4 sqrt(n) eps |gain| in the working precision (n the
    long side), plus for float16/bfloat16 one unit in the last place at |gain| (both are rounded
    from working values that differ by that rounding)."""
    work = np.float64 if dtype == np.float64 else np.float32
    n = max(shape[0], math.prod(shape[1:]))
    tol = 4 * math.sqrt(n) * np.finfo(work).eps * abs(gain)
    if dtype not in (np.float32, np.float64):
        mantissa = 10 if dtype == np.float16 else 7
        tol += 2.0 ** (math.floor(math.log2(abs(gain))) - mantissa)
    return tol


ORTHO = [((97, 60), np.s_[10:50]), ((97, 60), np.s_[:, 17:41]), ((97, 60), np.s_[20:70, 5:9]),
         ((60, 97), np.s_[13:29]), ((60, 97), np.s_[:, 40:97]), ((80, 80), np.s_[40:80]),
         ((16, 8, 3, 3), np.s_[4:12, 2:5, :, 1:3]), ((300, 300), np.s_[150:300]), ((300, 300), np.s_[:, 0:100]),
         ((40, 40), np.s_[7:7])]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape, idx", ORTHO)
def test_orthogonal_block_equals_the_full_matrix_to_rounding(shape, idx, dtype):
    gain = 1.5
    call = lambda t, g, b: fastinit.orthogonal_(t, gain, generator=g, block=b)  # noqa: E731
    expect, part = _full_and_block(call, shape, idx, dtype)
    assert part.shape == expect.shape
    err = np.abs(part.astype(np.float64) - expect.astype(np.float64)).max(initial=0.0)
    tol = _ortho_tol(shape, dtype, gain)
    assert err <= tol, f"max |block - full| = {err:.3g} > {tol:.3g}"


@st.composite
def _matrix_blocks(draw, ndim):
    shape = tuple(draw(st.lists(st.integers(1, 40), min_size=ndim, max_size=ndim)))
    idx = []
    for n in shape:
        a = draw(st.integers(0, n))
        idx.append(slice(a, draw(st.integers(a, n))))
    return shape, tuple(idx)


@given(_matrix_blocks(2), st.floats(0.0, 1.0), st.sampled_from([np.float32, np.float64]))
def test_random_sparse_blocks(block, sparsity, dtype):
    shape, idx = block
    call = lambda t, g, b: fastinit.sparse_(t, sparsity, generator=g, block=b)  # noqa: E731
    expect, part = _full_and_block(call, shape, idx, dtype)
    assert _same_bits(expect, part)


@given(st.one_of(_matrix_blocks(2), _matrix_blocks(3)), st.sampled_from([np.float32, np.float64]))
def test_random_orthogonal_blocks(block, dtype):
    shape, idx = block
    call = lambda t, g, b: fastinit.orthogonal_(t, 0.5, generator=g, block=b)  # noqa: E731
    expect, part = _full_and_block(call, shape, idx, dtype)
    assert np.abs(part - expect).max(initial=0.0) <= _ortho_tol(shape, dtype, 0.5)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("parts", [2, 4])
def test_orthogonal_row_blocks_of_a_large_matrix(parts, dtype):
    n = 2048
    full = fastinit.orthogonal_(np.empty((n, n), dtype), generator=3)
    tol = _ortho_tol((n, n), dtype, 1.0)
    for p in range(parts):
        b = Block((n, n), np.s_[p * n // parts:(p + 1) * n // parts])
        part = fastinit.orthogonal_(np.empty(b.shape, dtype), generator=3, block=b)
        assert np.abs(part - full[b.index]).max() <= tol
        c = Block((n, n), np.s_[:, p * n // parts:(p + 1) * n // parts])
        part = fastinit.orthogonal_(np.empty(c.shape, dtype), generator=3, block=c)
        assert np.abs(part - full[c.index]).max() <= tol


@pytest.mark.slow
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_large_column_block_of_a_tall_matrix(name):
    expect, part = _full_and_block(ELEMENTWISE[name], (20_000, 300), np.s_[:, 100:250], np.float32)
    assert _same_bits(expect, part)


# ---- bad blocks --------------------------------------------------------------------------------

@pytest.mark.parametrize("shape, index, exc, match", [
    ((4, 5), np.s_[0:5], InitArgumentError, r"index\[0\] = 0:5 lies outside dimension 0"),
    ((4, 5), np.s_[:, 3:2], InitArgumentError, r"index\[1\] = 3:2"),
    ((4, 5), np.s_[-1:3], InitArgumentError, r"index\[0\] = -1:3"),
    ((4, 5), np.s_[::2], InitArgumentError, r"index\[0\] has step 2"),
    ((4, 5), np.s_[1:3, ::-1], InitArgumentError, r"index\[1\] has step -1"),
    ((4, 5), np.s_[1, :], TypeError, r"index\[0\] must be a slice, got int .*slice\(i, i \+ 1\)"),
    ((4, 5), [slice(0, 2)], TypeError, "index must be a slice or a tuple of slices"),
    ((4, 5), np.s_[..., 1:2], TypeError, r"index\[0\] must be a slice, got ellipsis"),
    ((4, 5), np.s_[0.5:2], TypeError, r"index\[0\] has a start of type float"),
    ((4, 5), np.s_[:, :, :], InitArgumentError, "index has 3 slices for the 2-D global_shape"),
    ((4, -5), np.s_[:], InitArgumentError, "global_shape must have non-negative sizes"),
    ((4, 5.0), np.s_[:], TypeError, "global_shape must be a tuple of ints"),
    ("45", np.s_[:], TypeError, "global_shape must be a tuple of ints"),
])
def test_bad_blocks_are_refused_naming_the_argument(shape, index, exc, match):
    with pytest.raises(exc, match=match):
        Block(shape, index)


@pytest.mark.parametrize("name", sorted(ELEMENTWISE) + ["sparse_", "orthogonal_", "eye_"])
def test_a_block_that_does_not_fit_the_tensor_writes_nothing_and_takes_no_stream(name):
    calls = dict(ELEMENTWISE, sparse_=lambda t, g, b: fastinit.sparse_(t, 0.5, generator=g, block=b),
                 orthogonal_=lambda t, g, b: fastinit.orthogonal_(t, generator=g, block=b),
                 eye_=lambda t, g, b: fastinit.eye_(t, block=b))
    g = fastinit.Generator(1)
    t = np.full((3, 4), np.nan, np.float32)
    with pytest.raises(InitArgumentError, match=r"tensor has shape \(3, 4\) but Block\(\(8, 4\), np.s_\[0:4, 0:4\]\)"):
        calls[name](t, g, Block((8, 4), np.s_[0:4]))
    with pytest.raises(TypeError, match="block must be a fastinit.Block"):
        calls[name](t, g, ((8, 4), np.s_[0:3]))
    assert np.isnan(t).all() and g.get_state() == (1, 0)


def test_offset_and_block_are_exclusive_and_the_logical_tensor_must_fit_one_stream():
    g = fastinit.Generator(1)
    t = np.full((2, 3), np.nan, np.float32)
    with pytest.raises(InitArgumentError, match="offset=6 and block cannot be combined"):
        fastinit.normal_(t, generator=g, offset=6, block=Block((4, 3), np.s_[2:4]))
    with pytest.raises(TypeError, match="offset must be an integer"):
        fastinit.normal_(t, generator=g, offset=1.0, block=Block((4, 3), np.s_[2:4]))
    huge = Block((2 ** 40, 2 ** 30, 3), np.s_[0:2, 0:1])
    with pytest.raises(InitArgumentError, match="block: the logical tensor .* more than the"):
        fastinit.uniform_(np.empty((2, 1, 3), np.float64), generator=g, block=huge)
    assert np.isnan(t).all() and g.get_state() == (1, 0)


def test_global_shape_rules_apply_to_the_global_shape():
    with pytest.raises(ValueError, match="2 dimensions"):
        fastinit.eye_(np.empty((2, 2, 1)), block=Block((2, 2, 1), np.s_[:, :]))
    with pytest.raises(ValueError, match="divisible by groups"):
        fastinit.dirac_(np.empty((2, 2, 3)), 2, block=Block((3, 2, 3), np.s_[0:2]))
    with pytest.warns(UserWarning, match="zero-element"):
        fastinit.kaiming_normal_(np.empty((0, 3)), block=Block((0, 3)))


def test_block_value_semantics():
    a, b = Block((4, 5), np.s_[1:3]), Block([4, 5], (slice(1, 3, 1), slice(None)))
    assert a == b and hash(a) == hash(b) and a != Block((4, 5), np.s_[1:4])
    assert (a.shape, a.start, a.global_shape, a.size, a.global_size) == ((2, 5), (1, 0), (4, 5), 10, 20)
    assert repr(a) == "Block((4, 5), np.s_[1:3, 0:5])"
    assert Block(7, np.s_[2:5]).shape == (3,) and Block((), ()).shape == ()
    import pickle

    assert pickle.loads(pickle.dumps(a)) == a  # sent to worker processes as it is


def test_blocks_do_not_depend_on_the_thread_count():
    import numba

    shape = (600, 700)
    blocks = {"normal_": Block(shape, np.s_[:, 100:450]), "orthogonal_": Block(shape, np.s_[100:500])}
    calls = {"normal_": ELEMENTWISE["normal_"], "orthogonal_": lambda t, g, b: fastinit.orthogonal_(t, generator=g,
                                                                                                     block=b)}
    before = numba.get_num_threads()
    try:
        out = {}
        for threads in (1, before):
            numba.set_num_threads(threads)
            out[threads] = [calls[k](np.empty(b.shape, np.float32), 4, b).tobytes() for k, b in blocks.items()]
    finally:
        numba.set_num_threads(before)
    assert out[1] == out[before]


@pytest.mark.parametrize("name, args", [("uniform", (-1.0, 1.0)), ("normal", (0.0, 2.0)), ("trunc_normal", ()),
                                        ("kaiming_normal", ()), ("lecun_uniform", ()), ("sparse", (0.5,)),
                                        ("eye", ()), ("ones", ())])
def test_constructors_take_a_block(name, args):
    b = Block((12, 9), np.s_[3:10, 2:7])
    kw = {} if name in ("eye", "ones") else {"generator": 6}
    full = getattr(fastinit, name)((12, 9), *args, dtype=np.float64, **kw)
    part = getattr(fastinit, name)(b.shape, *args, dtype=np.float64, block=b, **kw)
    assert _same_bits(full[b.index], part)


def test_torch_tensors_take_a_block():
    torch = pytest.importorskip("torch")
    b = Block((64, 48), np.s_[16:48, 8:40])
    for dtype in (torch.float32, torch.bfloat16):
        full = fastinit.xavier_normal_(torch.empty(64, 48, dtype=dtype), generator=2)
        part = fastinit.xavier_normal_(torch.nn.Parameter(torch.empty(b.shape, dtype=dtype)), generator=2, block=b)
        assert torch.equal(full[16:48, 8:40], part.detach())
