"""Parity with torch.nn.init (torch optional: the whole module skips without it).

Gains, fans, errors and warnings are compared with torch itself; distributions with two-sample
KS tests between torch's values (seeded with torch.manual_seed) and fastinit's, p > 0.01 at fixed
seeds (n = 20 000 each: critical distance 1.63 sqrt(2/n) = 0.016, so a wrong fan or gain fails).
Tensors: Parameters, bf16/f16, non-contiguous views, devices. accelerate(): routing, values,
reproducibility, fall-backs, threads and restoration.
"""

import math
import threading
import warnings

import ml_dtypes
import numpy as np
import pytest
from scipy import stats

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402
from torch.nn import init as tinit  # noqa: E402

import fastinit  # noqa: E402
import fastinit.torch as ft  # noqa: E402

SEED = 20240601
TORCH_DTYPES = [torch.float16, torch.bfloat16, torch.float32, torch.float64]
NP_OF = {torch.float16: np.float16, torch.bfloat16: ml_dtypes.bfloat16, torch.float32: np.float32,
         torch.float64: np.float64}


def f64(t):
    return t.detach().to(torch.float64).numpy() if isinstance(t, torch.Tensor) else np.asarray(t, np.float64)


def _outcome(fn, *args, **kwargs):
    """('ok', warnings) or (exception class, warnings)."""
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        try:
            fn(*args, **kwargs)
            result = "ok"
        except Exception as e:  # noqa: BLE001
            result = type(e)
    return result, sorted({(w.category, str(w.message)) for w in rec})


# ---- gains and fans --------------------------------------------------------------------------

GAIN_CASES = [(n, None) for n in ("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                                  "conv_transpose3d", "sigmoid", "tanh", "relu", "selu", "leaky_relu")] + \
    [("leaky_relu", p) for p in (0, 1, 10, 0.2, -0.3, 3)] + [("relu", "x"), ("tanh", [1])]


@pytest.mark.parametrize("name, param", GAIN_CASES)
def test_gain_equals_torch(name, param):
    ours, theirs = fastinit.calculate_gain(name, param), tinit.calculate_gain(name, param)
    assert ours == theirs and type(ours) is type(theirs)


@pytest.mark.parametrize("name, param", [("ReLU", None), ("gelu", None), ("", None), ("leaky_relu", True),
                                         ("leaky_relu", "0.1"), ("leaky_relu", [0.1]), ("leaky_relu", {})])
def test_gain_errors_equal_torch(name, param):
    with pytest.raises(ValueError) as theirs:
        tinit.calculate_gain(name, param)
    with pytest.raises(ValueError) as ours:
        fastinit.calculate_gain(name, param)
    assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize("shape", [(50, 20), (32, 16, 3, 3), (16, 2, 3, 3), (8, 16, 3, 3), (4, 3, 2, 5, 7), (0, 3),
                                   (3, 0, 2), (1, 1)])
def test_fans_equal_torch(shape):
    t = torch.empty(shape)
    assert fastinit.calculate_fan_in_and_fan_out(t) == tinit._calculate_fan_in_and_fan_out(t)


# ---- errors and warnings ---------------------------------------------------------------------

ERROR_CASES = [
    ("xavier_uniform_", (), {}), ("xavier_normal_", (5,), {}), ("kaiming_uniform_", (), {}),
    ("kaiming_normal_", (5,), {}), ("kaiming_uniform_", (0,), {}), ("kaiming_normal_", (0, 3), {"mode": "bogus"}),
    ("kaiming_uniform_", (4, 3), {"mode": "fan_avg"}), ("kaiming_uniform_", (4, 3), {"mode": "FAN_OUT"}),
    ("kaiming_normal_", (4, 3), {"nonlinearity": "gelu"}), ("kaiming_normal_", (4, 3), {"a": "x"}),
    ("kaiming_normal_", (4, 3), {"a": True}), ("kaiming_uniform_", (4, 3), {"a": None}),
    ("kaiming_uniform_", (4, 3), {"nonlinearity": "relu", "a": "ignored"}),
    ("orthogonal_", (5,), {}), ("orthogonal_", (0, 3), {}), ("orthogonal_", (3, 0, 2), {}),
    ("eye_", (2, 2, 2), {}), ("eye_", (3,), {}), ("eye_", (0, 4), {}),
    ("dirac_", (4, 4), {}), ("dirac_", (4, 4, 3), {"groups": 3}), ("dirac_", (4, 4, 3, 3, 3, 3), {}),
    ("sparse_", (3, 3, 3), {"sparsity": 0.1}), ("sparse_", (0, 4), {"sparsity": 0.5}),
    ("uniform_", (4,), {"a": 1.0, "b": 0.0}), ("uniform_", (), {}), ("normal_", (4,), {"std": -1.0}),
    ("normal_", (4,), {"std": 0.0}), ("uniform_", (4,), {"a": 1.0, "b": 1.0}),
    ("trunc_normal_", (100,), {"mean": 5.0}), ("trunc_normal_", (100,), {"mean": -4.1}),
    ("trunc_normal_", (100,), {"a": 1.0, "b": -1.0}), ("xavier_uniform_", (0, 3), {}),
    ("xavier_uniform_", (4, 3), {"gain": -1.0}), ("xavier_normal_", (4, 3), {"gain": -1.0}),
    ("constant_", (2, 2), {"val": 3}), ("ones_", (), {}), ("zeros_", (0,), {}),
]


@pytest.mark.parametrize("name, shape, kwargs", ERROR_CASES)
def test_errors_and_warnings_equal_torch(name, shape, kwargs):
    theirs = _outcome(getattr(tinit, name), torch.empty(shape), **kwargs)
    ours = _outcome(getattr(fastinit, name), torch.empty(shape), **kwargs)
    if theirs[0] == "ok":
        assert ours[0] == "ok"
    else:
        assert ours[0] != "ok" and issubclass(ours[0], theirs[0]), (ours, theirs)
    assert [c for c, _ in ours[1]] == [c for c, _ in theirs[1]]
    assert [m for _, m in ours[1]] == [m for _, m in theirs[1]]


@pytest.mark.parametrize("name, shape, kwargs, torch_exc", [
    ("xavier_uniform_", (0, 0), {}, ZeroDivisionError),        # fastinit: silent no-op, like (0, 3)
    ("dirac_", (4, 4, 3), {"groups": 0}, ZeroDivisionError),   # fastinit: ValueError
    ("trunc_normal_", (4,), {"std": 0.0}, ZeroDivisionError),  # fastinit: InitArgumentError
    ("sparse_", (10, 4), {"sparsity": 1.5}, None),             # torch: all zeros; fastinit: error
    ("sparse_", (10, 4), {"sparsity": -0.1}, None),            # torch: negative slicing; fastinit: error
    ("normal_", (4,), {"mean": math.nan}, None),               # torch: NaN values; fastinit: error
])
def test_documented_deviations(name, shape, kwargs, torch_exc):
    theirs = _outcome(getattr(tinit, name), torch.empty(shape), **kwargs)[0]
    assert theirs == (torch_exc or "ok")
    ours = _outcome(getattr(fastinit, name), torch.empty(shape), **kwargs)[0]
    assert (ours == "ok") == (name == "xavier_uniform_")
    if ours != "ok":
        assert issubclass(ours, ValueError)


# ---- distributions vs torch ------------------------------------------------------------------

DIST_CASES = [
    ("uniform_", {"a": -0.5, "b": 2.0}), ("normal_", {"mean": 1.0, "std": 3.0}),
    ("trunc_normal_", {"mean": 0.5, "std": 1.5, "a": -1.0, "b": 2.0}), ("trunc_normal_", {"std": 5.0}),
    ("trunc_normal_", {"std": 0.02}),
    ("xavier_uniform_", {"gain": 1.5}), ("xavier_normal_", {"gain": 0.5}),
    ("kaiming_uniform_", {}), ("kaiming_uniform_", {"a": math.sqrt(5)}),
    ("kaiming_normal_", {"mode": "fan_out", "nonlinearity": "relu"}), ("kaiming_normal_", {"a": 0.3}),
    ("sparse_", {"sparsity": 0.3, "std": 0.5}),
]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("name, kwargs", DIST_CASES, ids=[f"{n}-{k}" for n, k in DIST_CASES])
def test_same_law_as_torch(name, kwargs, dtype):
    shape = (100, 200)       # fan_in 200, fan_out 100
    torch.manual_seed(SEED)
    theirs = f64(getattr(tinit, name)(torch.empty(shape, dtype=dtype), **kwargs)).ravel()
    ours = f64(getattr(fastinit, name)(torch.empty(shape, dtype=dtype), **kwargs, generator=SEED)).ravel()
    p = stats.ks_2samp(ours, theirs).pvalue
    assert p > 0.01, f"two-sample KS p = {p:.3g}"


def test_orthogonal_same_law_as_torch():
    torch.manual_seed(SEED)
    g = fastinit.Generator(SEED)
    theirs = np.stack([f64(tinit.orthogonal_(torch.empty(4, 4, dtype=torch.float64))) for _ in range(500)])
    ours = np.stack([f64(fastinit.orthogonal_(torch.empty(4, 4, dtype=torch.float64), generator=g))
                     for _ in range(500)])
    for i, j in [(0, 0), (2, 1), (3, 3)]:
        assert stats.ks_2samp(ours[:, i, j], theirs[:, i, j]).pvalue > 0.01


# ---- tensors ---------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", TORCH_DTYPES)
def test_parameter_filled_in_place_without_autograd(dtype):
    p = nn.Parameter(torch.empty(30, 20, dtype=dtype))
    ptr, version = p.data_ptr(), p._version
    out = fastinit.kaiming_normal_(p, generator=3)
    assert out is p and p.data_ptr() == ptr
    assert p.requires_grad and p.is_leaf and p.grad_fn is None
    assert p._version > version            # in-place write is visible to autograd's checks
    ref = fastinit.kaiming_normal_(np.empty((30, 20), NP_OF[dtype]), generator=3)
    assert np.array_equal(f64(p), ref.astype(np.float64))   # same seed, same values as NumPy


@pytest.mark.parametrize("dtype", TORCH_DTYPES)
@pytest.mark.parametrize("view", ["T", "strided", "narrow"])
def test_non_contiguous_views(dtype, view):
    base = torch.zeros(12, 10, dtype=dtype)
    v = {"T": lambda b: b.T, "strided": lambda b: b[::2, 1::3], "narrow": lambda b: b[2:7]}[view](base)
    before = base.clone()
    fastinit.normal_(v, 1.0, 2.0, generator=8)
    ref = fastinit.normal_(np.empty(tuple(v.shape), NP_OF[dtype]), 1.0, 2.0, generator=8)
    assert np.array_equal(f64(v), ref.astype(np.float64))
    touched = torch.zeros_like(base, dtype=torch.bool)
    {"T": lambda b: b.T, "strided": lambda b: b[::2, 1::3], "narrow": lambda b: b[2:7]}[view](touched).fill_(True)
    assert torch.equal(base[~touched], before[~touched])


def test_autograd_detects_modified_saved_tensor():
    w = nn.Parameter(torch.ones(3, 3))
    y = (w * w).sum()                       # saves w for backward
    fastinit.normal_(w, generator=0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.backward()


def test_unsupported_tensors():
    with pytest.raises(TypeError, match="dtype|float16"):
        fastinit.normal_(torch.empty(3, dtype=torch.int64))
    with pytest.raises(TypeError):
        fastinit.normal_(torch.empty(3, dtype=torch.complex64))
    with pytest.raises(ValueError, match="meta"):
        fastinit.normal_(torch.empty(3, device="meta"))
    with pytest.raises(ValueError, match="broadcast"):
        fastinit.normal_(torch.zeros(3).expand(4, 3))
    with pytest.raises(TypeError, match="layout"):
        fastinit.normal_(torch.zeros(3, 3).to_sparse())
    with pytest.raises(TypeError, match="generator"):
        fastinit.normal_(torch.empty(3), generator=torch.Generator())


def test_constructor_with_torch_dtype():
    t = fastinit.normal((4, 5), dtype=torch.bfloat16, generator=2)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.bfloat16 and t.shape == (4, 5)
    assert np.array_equal(f64(t), fastinit.normal((4, 5), dtype=ml_dtypes.bfloat16, generator=2).astype(np.float64))


# ---- accelerate() ----------------------------------------------------------------------------

def _originals():
    import torch.nn.modules.activation as act

    return {name: getattr(tinit, name) for name in ft.ROUTED} | {"act.xavier_uniform_": act.xavier_uniform_}


def test_linear_routed_to_fastinit_values():
    """Inside accelerate(seed), nn.Linear's weight and bias are fastinit's kaiming_uniform_/uniform_ calls."""
    with ft.accelerate(generator=5):
        lin = nn.Linear(64, 48)
    g = fastinit.Generator(5)
    w = fastinit.kaiming_uniform_(np.empty((48, 64), np.float32), a=math.sqrt(5), generator=g)
    b = fastinit.uniform_(np.empty(48, np.float32), -1 / 8, 1 / 8, generator=g)
    assert np.array_equal(lin.weight.detach().numpy(), w)
    assert np.array_equal(lin.bias.detach().numpy(), b)
    assert lin.weight.requires_grad and lin.weight.is_leaf


def test_models_reproducible_and_same_law():
    def build():
        return nn.Sequential(nn.Conv2d(3, 16, 3), nn.Linear(16, 32), nn.Embedding(500, 40), nn.LayerNorm(8),
                             nn.MultiheadAttention(16, 2))
    with ft.accelerate(generator=1):
        a = build()
    with ft.accelerate(generator=1):
        b = build()
    with ft.accelerate(generator=2):
        c = build()
    for (n, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters(), strict=True):
        assert torch.equal(pa, pb), n
        if pa.numel() > 1 and pa.std() > 0:
            assert not torch.equal(pa, pc), n
    torch.manual_seed(0)
    stock = build()
    for (n, pa), ps in zip(a.named_parameters(), stock.parameters(), strict=True):
        if pa.numel() >= 400:
            assert stats.ks_2samp(f64(pa).ravel(), f64(ps).ravel()).pvalue > 0.01, n
    emb = f64(a[2].weight).ravel()               # nn.Embedding: N(0, 1)
    assert stats.kstest(emb, "norm").pvalue > 0.01


def test_default_generator_follows_torch_manual_seed():
    torch.manual_seed(3)
    with ft.accelerate():
        a = nn.Linear(8, 8)
    torch.manual_seed(3)
    with ft.accelerate():
        b = nn.Linear(8, 8)
    assert torch.equal(a.weight, b.weight)
    torch.manual_seed(3)
    stock = nn.Linear(8, 8)
    assert not torch.equal(a.weight, stock.weight)


def test_restored_exactly_also_after_exceptions_and_nesting():
    before = _originals()
    with pytest.raises(KeyError):
        with ft.accelerate(0):
            assert getattr(tinit.kaiming_uniform_, "__fastinit_routed__", False)
            with ft.accelerate(1):
                pass
            assert getattr(tinit.kaiming_uniform_, "__fastinit_routed__", False)   # outer still open
            raise KeyError("boom")
    after = _originals()
    assert all(after[k] is before[k] for k in before)


def test_fallbacks_to_torch():
    gen = torch.Generator().manual_seed(4)
    ref = tinit.normal_(torch.empty(50), generator=gen)
    with ft.accelerate(0):
        got = tinit.normal_(torch.empty(50), generator=torch.Generator().manual_seed(4))   # explicit torch gen
        meta = nn.Linear(4, 4, device="meta")                                               # meta tensors
        ints = tinit.constant_(torch.empty(3, dtype=torch.int64), 2)                        # int tensors
        allzero = tinit.sparse_(torch.empty(10, 4), sparsity=1.5)                           # torch's quirk
        with pytest.raises(ValueError, match="Mode"):
            tinit.kaiming_normal_(torch.empty(3, 3), mode="fan_avg")                        # torch's error
    assert torch.equal(got, ref)
    assert meta.weight.is_meta
    assert ints.tolist() == [2, 2, 2]
    assert not allzero.any()


def test_other_threads_keep_stock_torch():
    ready, done = threading.Event(), threading.Event()
    results = {}

    def worker():
        ready.wait()
        torch.manual_seed(11)
        results["routed"] = getattr(tinit.normal_, "__fastinit_routed__", False)
        t = torch.empty(20)
        tinit.normal_(t)
        results["stock_call"] = t
        done.set()

    th = threading.Thread(target=worker)
    th.start()
    with ft.accelerate(0):
        ready.set()
        done.wait(30)
    th.join()
    assert results["routed"]                         # the patch is global while a block is open...
    torch.manual_seed(11)
    expected = torch.empty(20)
    tinit.normal_(expected)
    assert torch.equal(results["stock_call"], expected)   # ...but this thread's calls went to torch


def test_accelerate_rejects_bad_generators():
    with pytest.raises(TypeError):
        with ft.accelerate(generator=1.5):
            pass
    assert not getattr(tinit.normal_, "__fastinit_routed__", False)
