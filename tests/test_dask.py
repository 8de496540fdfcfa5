"""fastinit.dask: lazy arrays equal to the in-memory constructors for every chunking, on the threaded
scheduler and on a two-process dask.distributed cluster; zarr round trips; bad input at creation."""

import math

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
zarr = pytest.importorskip("zarr")

import dask  # noqa: E402  (after the importorskip guards)

import fastinit  # noqa: E402
import fastinit.dask as fd  # noqa: E402
from _subproc import run_python  # noqa: E402
from fastinit import Block, Generator, InitArgumentError  # noqa: E402
from fastinit._fill import bfloat16_dtype, float_dtypes  # noqa: E402

# (name, args, kwargs, shape, three chunkings that tile the shape differently)
CASES = [
    ("uniform", (-1.0, 2.0), {}, (13, 17), [(13, 17), (4, 5), ((1, 12), (16, 1))]),
    ("normal", (0.5, 2.0), {}, (9, 10, 11), [(9, 10, 11), (2, 3, 4), ((5, 4), (10,), (1, 1, 9))]),
    ("trunc_normal", (0.0, 1.0, -1.5, 0.5), {}, (20, 7), [(20, 7), 3, ((7, 13), (2, 5))]),
    ("constant", (0.25,), {}, (6, 5), [(6, 5), 2, ((1, 5), (5,))]),
    ("ones", (), {}, (7,), [7, 2, ((3, 4),)]),
    ("zeros", (), {}, (4, 3), [(4, 3), 1, ((2, 2), (1, 2))]),
    ("eye", (), {}, (7, 5), [(7, 5), 2, ((3, 4), (4, 1))]),
    ("dirac", (2,), {}, (6, 4, 3, 3), [(6, 4, 3, 3), (2, 3, 2, 1), ((1, 5), (4,), (3,), (2, 1))]),
    ("xavier_uniform", (1.5,), {}, (16, 24), [(16, 24), (5, 7), ((15, 1), (8, 16))]),
    ("xavier_normal", (0.5,), {}, (8, 4, 3, 3), [(8, 4, 3, 3), (3, 2, 2, 2), ((8,), (1, 3), (3,), (1, 2))]),
    ("kaiming_uniform", (5 ** 0.5,), {}, (16, 3, 3, 3), [(16, 3, 3, 3), (5, 2, 2, 2), ((4, 12), (3,), (1, 2), (3,))]),
    ("kaiming_normal", (0, "fan_out", "relu"), {}, (24, 16), [(24, 16), (7, 5), ((20, 4), (1, 15))]),
    ("variance_scaling", (2.0, "fan_avg", "uniform"), {"in_axis": -2, "out_axis": -1}, (3, 3, 8, 16),
     [(3, 3, 8, 16), (2, 2, 3, 5), ((3,), (1, 2), (8,), (4, 12))]),
    ("lecun_uniform", (), {}, (32, 8), [(32, 8), (10, 3), ((31, 1), (8,))]),
    ("lecun_normal", (), {"in_axis": 0, "out_axis": 1}, (12, 30), [(12, 30), (5, 7), ((12,), (29, 1))]),
    ("sparse", (0.3,), {}, (23, 9), [(23, 9), (4, 4), ((11, 12), (1, 8))]),
    ("orthogonal", (1.5,), {}, (24, 10), [(24, 10), (7, 4), ((3, 21), (10,))]),
    ("orthogonal", (1.0,), {}, (4, 3, 5), [(4, 3, 5), (2, 2, 3), ((4,), (1, 2), (5,))]),  # wide (4, 15)
]
RANDOM = {name for name, *_ in CASES} - {"constant", "ones", "zeros", "eye", "dirac"}
NAMES = sorted({name for name, *_ in CASES})
DTYPES = [np.dtype(d) for d in float_dtypes()]


def _eps(dtype) -> float:
    return float(np.finfo(np.float64 if dtype == np.float64 else np.float32).eps)


def assert_same(lazy: np.ndarray, full: np.ndarray, name: str, gain: float = 1.0) -> None:
    """Bit for bit, or (orthogonal) within the block tolerance of docs/api.md: 4 sqrt(n) eps |gain|,
    plus one unit in the last place at |gain| for float16 and bfloat16."""
    assert lazy.shape == full.shape and lazy.dtype == full.dtype
    if name != "orthogonal":
        assert np.array_equal(np.ascontiguousarray(lazy).view(np.uint8), np.ascontiguousarray(full).view(np.uint8))
        return
    n = max(full.shape[0], math.prod(full.shape[1:]))
    tol = 4 * math.sqrt(n) * _eps(full.dtype) * abs(gain)
    if full.dtype.itemsize == 2:  # one unit in the last place at |gain|: 10 (float16) or 7 (bfloat16) fraction bits
        tol += 2.0 ** (math.floor(math.log2(abs(gain))) - (10 if full.dtype == np.float16 else 7))
    err = np.abs(lazy.astype(np.float64) - full.astype(np.float64)).max()
    assert err <= tol, f"orthogonal chunk error {err} above the block tolerance {tol}"


def _memory(name, args, kwargs, shape, dtype, generator):
    return getattr(fastinit, name)(shape, *args, dtype=dtype, **kwargs,
                                   **({"generator": generator} if name in RANDOM else {}))


def _lazy(name, args, kwargs, shape, dtype, generator, chunks):
    return getattr(fd, name)(shape, *args, chunks=chunks, dtype=dtype, **kwargs,
                             **({"generator": generator} if name in RANDOM else {}))


@pytest.fixture(scope="module")
def client():
    """Two worker processes of one thread each (the dask.distributed path: pickled tasks, other processes)."""
    with distributed.LocalCluster(processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None,
                                  memory_limit="1GiB") as cluster, distributed.Client(cluster) as c:
        yield c


# ---- the threaded scheduler: every constructor, every dtype, three chunkings ---------------------

@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}{c[3]}")
def test_chunkings_equal_in_memory(case, dtype):
    name, args, kwargs, shape, chunkings = case
    full = _memory(name, args, kwargs, shape, dtype, 1234)
    for chunks in chunkings:
        x = _lazy(name, args, kwargs, shape, dtype, 1234, chunks)
        assert x.dtype == dtype and x.shape == shape
        got = x.compute(scheduler="threads")
        assert_same(got, full, name, args[0] if name == "orthogonal" else 1.0)
    if name in ("uniform", "normal", "kaiming_normal"):  # the sampled values really change with the seed
        other = _lazy(name, args, kwargs, shape, dtype, 1235, chunkings[1]).compute(scheduler="threads")
        assert not np.array_equal(other, full)


@pytest.mark.parametrize("name", ["normal", "sparse", "orthogonal"])
def test_one_independent_task_per_chunk(name):
    case = next(c for c in CASES if c[0] == name)
    _, args, kwargs, shape, chunkings = case
    x = _lazy(name, args, kwargs, shape, np.float32, 0, chunkings[1])
    graph = x.__dask_graph__()
    assert len(graph) == math.prod(x.numblocks)
    assert graph.dependencies == {x.name: set()}  # one layer, depending on nothing
    deps = dask.core.get_dependencies  # no task reads another task's output
    assert all(not deps(dict(graph), key) for key in graph)


def test_generator_sequence_matches_in_memory():
    """The stream is taken at creation, as the in-memory call takes it: interleaved lazy calls on one
    Generator give the in-memory sequence; constructors without a stream and empty arrays take none."""
    g, h = Generator(99), Generator(99)
    lazy = [fd.normal((5, 6), chunks=2, generator=g), fd.ones((3,), chunks=1),
            fd.uniform((0, 4), chunks=2, generator=g), fd.kaiming_uniform((6, 4), chunks=(4, 3), generator=g),
            fd.sparse((8, 3), 0.25, chunks=(3, 2), generator=g)]
    mem = [fastinit.normal((5, 6), generator=h), fastinit.ones((3,)), fastinit.uniform((0, 4), generator=h),
           fastinit.kaiming_uniform((6, 4), generator=h), fastinit.sparse((8, 3), 0.25, generator=h)]
    assert g.get_state() == h.get_state() == (99, 3)
    for x, m in zip(dask.compute(*lazy, scheduler="sync"), mem, strict=True):
        assert_same(x, m, "normal")


def test_default_generator_taken_once_at_creation():
    fastinit.manual_seed(5)
    x = fd.normal((4, 4), chunks=2)
    assert fastinit.default_generator.get_state() == (5, 1)
    x.compute(scheduler="sync")
    x.compute(scheduler="threads")
    assert fastinit.default_generator.get_state() == (5, 1)
    assert_same(x.compute(), fastinit.normal((4, 4), generator=Generator(5)), "normal")


# ---- a two-process cluster ---------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
def test_distributed_equals_in_memory(client, name):
    for case in (c for c in CASES if c[0] == name):
        _, args, kwargs, shape, chunkings = case
        for dtype, chunks in zip((np.float32, np.float64, bfloat16_dtype()), chunkings, strict=True):
            g, h = Generator(7), Generator(7)
            g.take_stream(), h.take_stream()  # stream 1 of a Generator (not a plain seed's stream 0)
            full = _memory(name, args, kwargs, shape, dtype, h)
            got = client.compute(_lazy(name, args, kwargs, shape, dtype, g, chunks)).result()
            assert_same(got, full, name, args[0] if name == "orthogonal" else 1.0)


def test_distributed_large_chunking_invariance(client):
    """A 2**22-element array on the cluster: 1, 16 and 97 x 13 chunks give the in-memory values."""
    shape = (2048, 2048)
    full = fastinit.normal(shape, std=0.02, generator=3)
    for chunks in [shape, (512, 512), (97, 1000)]:
        got = client.compute(fd.normal(shape, std=0.02, chunks=chunks, generator=3)).result()
        assert np.array_equal(got, full)


# ---- zarr ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=str)
def test_to_zarr_reads_back_the_constructor(client, tmp_path, dtype):
    shape, chunks = (1000, 1200), (250, 300)
    x = fd.normal(shape, 1.0, 0.5, chunks=chunks, dtype=dtype, generator=11)
    store = tmp_path / "w.zarr"
    stored = da.to_zarr(x, str(store), compute=False)
    graph = dict(stored.__dask_graph__())
    # bounded memory: no task gathers chunks, each store task reads at most one chunk of x
    chunk_keys = set(dict(x.__dask_graph__()))
    assert all(len(dask.core.get_dependencies(graph, k) & chunk_keys) <= 1 for k in graph)
    client.compute(stored).result()
    z = zarr.open_array(str(store), mode="r")
    assert z.shape == shape and z.dtype == dtype
    rng = np.random.default_rng(0)
    for _ in range(6):  # sampled blocks, across chunk borders
        r0, c0 = int(rng.integers(0, shape[0] - 64)), int(rng.integers(0, shape[1] - 80))
        idx = np.s_[r0:r0 + 64, c0:c0 + 80]
        want = fastinit.normal((64, 80), 1.0, 0.5, dtype=dtype, generator=11, block=Block(shape, idx))
        assert np.array_equal(z[idx], want)
    assert np.array_equal(z[:], fastinit.normal(shape, 1.0, 0.5, dtype=dtype, generator=11))


# ---- bad input, at creation --------------------------------------------------------------------

@pytest.mark.parametrize("chunks", [((2, 2), (8,)), ((5,), (4, 5)), ((5,),), (2, 2, 2), ((2, 3), (8, 0, 1))])
def test_chunks_that_do_not_tile_the_shape(chunks):
    g = Generator(1)
    with pytest.raises(InitArgumentError, match=r"chunks .* do not tile shape \(5, 8\)"):
        fd.normal((5, 8), chunks=chunks, generator=g)
    assert g.get_state() == (1, 0)


@pytest.mark.parametrize("call, exc, match", [
    (lambda g: fd.normal((4, 4), std=-1.0, generator=g), InitArgumentError, "std"),
    (lambda g: fd.uniform((4, 4), 2.0, 1.0, generator=g), InitArgumentError, "b"),
    (lambda g: fd.normal((4, 4), 0.0, 1e5, dtype=np.float16, generator=g), InitArgumentError, "float16"),
    (lambda g: fd.kaiming_normal((4,), generator=g), ValueError, "fewer than 2 dimensions"),
    (lambda g: fd.kaiming_normal((4, 4), mode="fan_sideways", generator=g), ValueError, "fan_sideways"),
    (lambda g: fd.orthogonal((4,), generator=g), ValueError, "2 or more dimensions"),
    (lambda g: fd.sparse((4, 4), 1.5, generator=g), InitArgumentError, "sparsity"),
    (lambda g: fd.eye((2, 2, 2)), ValueError, "2"),
    (lambda g: fd.dirac((6, 4, 3), groups=4), ValueError, "dim"),
    (lambda g: fd.normal((4, 4), dtype=np.int32, generator=g), TypeError, "int32"),
    (lambda g: fd.normal((4, -1), generator=g), InitArgumentError, "shape"),
    (lambda g: fd.normal(np.zeros((2, 2)), generator=g), TypeError, "shape"),
    (lambda g: fd.normal((2, 2), generator="seed"), TypeError, "generator"),
    (lambda g: fd.normal((2, 2), chunks="lots", generator=g), InitArgumentError, "chunks"),
])
def test_bad_arguments_raise_at_creation_and_take_no_stream(call, exc, match):
    g = Generator(3)
    with pytest.raises(exc, match=match):
        call(g)
    assert g.get_state() == (3, 0)


def test_torch_dtype_is_refused():
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="torch dtype"):
        fd.normal((2, 2), dtype=torch.float32)


def test_import_fastinit_does_not_import_dask():
    code = "import sys, fastinit; assert 'dask' not in sys.modules and 'distributed' not in sys.modules"
    r = run_python(code)  # outside the checkout, so the installed package is the one imported
    assert r.returncode == 0, r.stderr


def test_all_constructors_covered():
    """Every out-of-place constructor of fastinit has its lazy twin, with the same argument names."""
    import inspect

    from fastinit import _constructors
    for name in _constructors.__all__:
        mem = inspect.signature(getattr(_constructors, name)).parameters
        lazy = inspect.signature(getattr(fd, name)).parameters
        assert set(mem) - {"offset", "block"} | {"chunks"} == set(lazy), name
        for p in set(mem) - {"offset", "block"}:
            assert mem[p].default == lazy[p].default, (name, p)


def test_zero_dim_and_empty_arrays():
    """A 0-D array is one chunk with the in-memory scalar; an empty array takes no stream (as in memory)."""
    x = fd.normal((), 1.0, 3.0, generator=3)
    assert x.shape == () and x.compute() == fastinit.normal((), 1.0, 3.0, generator=3)
    g, h = Generator(1), Generator(1)
    y = fd.uniform((0, 5), chunks=2, generator=g)
    fastinit.uniform((0, 5), generator=h)
    assert y.compute().shape == (0, 5) and g.get_state() == h.get_state() == (1, 0)
