"""The generator's promise and the dtype's range, under bad input, zero sizes, Ctrl-C and copies.

docs/api.md section 3: a call that raises writes nothing and does not advance the generator.
Every refusal below is checked for both halves of that promise. The representability line of
the normals comes from the kernels' reach, computed here independently of fastinit:
Phi^-1(1 - 2^-33) for the 32-bit family (the smallest two-sided tail probability of one word is
2^-32) and sqrt(-2 ln 2^-54) for float64's Box-Muller (the smallest 53-bit uniform is 2^-54).
"""

import copy
import math
import pickle
import textwrap
import warnings

import ml_dtypes
import numpy as np
import pytest
from scipy import special

import fastinit
from _subproc import run_interrupted
from fastinit import InitArgumentError
from fastinit._generator import taken_stream

BF16 = np.dtype(ml_dtypes.bfloat16)
REACH = {"family32": float(-special.ndtri(2.0**-33)), "float64": math.sqrt(108 * math.log(2))}


def dtype_max(dtype):
    return float(ml_dtypes.finfo(dtype).max) if np.dtype(dtype) == BF16 else float(np.finfo(dtype).max)


def reach(dtype):
    return REACH["float64" if np.dtype(dtype) == np.float64 else "family32"]


def refused(call, dtype=np.float32, shape=(5, 4), exc=InitArgumentError, match=None):
    """``call(w, g)`` must raise, write nothing, take no stream and leak no warning."""
    w = np.full(shape, 7.0, dtype)
    g = fastinit.Generator(9)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(exc, match=match):
            call(w, g)
    assert (w.astype(np.float64) == 7.0).all(), "nothing may be written"
    assert g.get_state() == (9, 0), "no stream may be taken"


# ---- argument errors found only with the dtype: refused before the stream ---------------------

@pytest.mark.parametrize("call, dtype, match", [
    (lambda w, g: fastinit.uniform_(w, 1.0001, 1.0002, generator=g), np.float16, r"no float16 value lies in \[a, b\)"),
    (lambda w, g: fastinit.trunc_normal_(w, 1.0, 1.0, 1.0001, 1.0002, generator=g), np.float16,
     r"no float16 value lies in \[a, b\]"),
    (lambda w, g: fastinit.uniform_(w, 0.0, 1e39, generator=g), np.float32, "float32"),
    (lambda w, g: fastinit.uniform_(w, -3e38, 3e38, generator=g), np.float32, "b - a"),
    (lambda w, g: fastinit.uniform_(w, -3e38, 3e38, generator=g), BF16, "b - a"),
    (lambda w, g: fastinit.uniform_(w, -1e308, 1e308, generator=g), np.float64, "b - a"),
    (lambda w, g: fastinit.normal_(w, 1e39, 1.0, generator=g), np.float32, "mean"),
    (lambda w, g: fastinit.normal_(w, 0.0, 1e39, generator=g), np.float32, "std"),
    (lambda w, g: fastinit.variance_scaling_(w, 1e300, distribution="normal", generator=g), np.float32, "scale"),
    (lambda w, g: fastinit.variance_scaling_(w, 1e300, generator=g), np.float32, "scale"),
    (lambda w, g: fastinit.variance_scaling_(w, 1e300, distribution="uniform", generator=g), np.float32, "scale"),
    (lambda w, g: fastinit.xavier_normal_(w, 1e200, generator=g), np.float32, "gain"),
    (lambda w, g: fastinit.normal_(w, generator=g, offset=2**66 - 19), np.float32, "offset"),
    (lambda w, g: fastinit.uniform_(w, generator=g, offset=2**65 - 19), np.float64, "offset"),
    (lambda w, g: fastinit.kaiming_uniform_(w, generator=g, offset=2**66), np.float16, "offset"),
])
def test_refused_before_taking_a_stream(call, dtype, match):
    refused(call, dtype, match=match)


def test_offset_up_to_the_end_of_the_stream_is_accepted():
    # the last 20 elements of the stream of a 32-bit dtype: 2^66 - 20 .. 2^66 - 1
    w = fastinit.normal_(np.empty((5, 4), np.float32), generator=3, offset=2**66 - 20)
    assert np.isfinite(w).all()


# ---- results that would not be finite in the dtype --------------------------------------------

@pytest.mark.parametrize("call, dtype, match", [
    (lambda w, g: fastinit.normal_(w, 0.0, 1e5, generator=g), np.float16, "float16"),      # was 51% inf
    (lambda w, g: fastinit.normal_(w, 0.0, 1e38, generator=g), np.float32, "float32"),     # had infs
    (lambda w, g: fastinit.normal_(w, 0.0, 1e38, generator=g), BF16, "bfloat16"),
    (lambda w, g: fastinit.normal_(w, 1.7e308, 1e307, generator=g), np.float64, "float64"),
    (lambda w, g: fastinit.constant_(w, 1e6), np.float16, "val"),                          # filled inf
    (lambda w, g: fastinit.constant_(w, -65520.0), np.float16, "val"),                     # rounds to -inf
    (lambda w, g: fastinit.uniform_(w, 0.0, 1e6, generator=g), np.float16, "float16"),     # 93% at 65504
    (lambda w, g: fastinit.uniform_(w, -4e4, 4e4, generator=g), np.float16, "b - a"),       # torch's rule
    (lambda w, g: fastinit.orthogonal_(w, gain=1e6, generator=g), np.float16, "gain"),
    (lambda w, g: fastinit.sparse_(w, 0.5, std=1e5, generator=g), np.float16, "std"),
    (lambda w, g: fastinit.trunc_normal_(w, 0.0, 1e5, -np.inf, np.inf, generator=g), np.float16, "float16"),
    (lambda w, g: fastinit.trunc_normal_(w, 0.0, 1.0, 1e6, 1e6, generator=g), np.float16, "float16"),
    (lambda w, g: fastinit.trunc_normal_(w, 0.0, 1e39, -np.inf, 0.0, generator=g), np.float32, "float32"),
    (lambda w, g: fastinit.kaiming_normal_(w, generator=g), np.float16, None),             # fine: control
])
def test_values_not_finite_in_the_dtype_are_refused(call, dtype, match):
    if match is None:  # the control case must work
        assert np.isfinite(call(np.empty((5, 4), dtype), 0).astype(np.float64)).all()
        return
    refused(call, dtype, match=match)


@pytest.mark.parametrize("dtype", [np.float16, BF16, np.float32, np.float64])
def test_the_normal_line_is_the_kernels_reach(dtype):
    """|mean| + reach * std <= the largest finite value: just inside works (and is finite), just
    outside is refused. The reach is computed from the kernels' smallest tail probability."""
    top = dtype_max(dtype) / reach(dtype)
    inside = fastinit.normal_(np.empty(100_000, dtype), 0.0, top * 0.999, generator=1)
    assert np.isfinite(inside.astype(np.float64)).all()
    refused(lambda w, g: fastinit.normal_(w, 0.0, top * 1.001, generator=g), dtype, match="std")
    mean = dtype_max(dtype) / 2
    refused(lambda w, g: fastinit.normal_(w, -mean, mean / reach(dtype) * 1.001, generator=g), dtype, match="mean")


@pytest.mark.parametrize("dtype", [np.float16, BF16, np.float32])
def test_uniform_and_constant_accept_the_largest_finite_value(dtype):
    big = dtype_max(dtype)
    w = fastinit.uniform_(np.empty(1000, dtype), -big / 2, big / 2, generator=1).astype(np.float64)
    assert np.isfinite(w).all() and w.min() >= -big / 2 and w.max() < big / 2
    assert (fastinit.constant_(np.empty(3, dtype), big).astype(np.float64) == big).all()
    assert np.isposinf(fastinit.constant_(np.empty(3, dtype), np.inf).astype(np.float64)).all()  # explicit inf


# ---- zero-size targets take no stream -------------------------------------------------------

@pytest.mark.parametrize("shape", [(0,), (3, 0), (0, 4, 2)])
@pytest.mark.parametrize("fn", [fastinit.uniform_, fastinit.normal_, fastinit.trunc_normal_, fastinit.sparse_,
                                fastinit.xavier_uniform_, fastinit.kaiming_normal_, fastinit.variance_scaling_,
                                fastinit.orthogonal_])
def test_zero_size_targets_take_no_stream(fn, shape):
    if fn is fastinit.sparse_ and len(shape) != 2:
        return
    if fn in (fastinit.xavier_uniform_, fastinit.kaiming_normal_, fastinit.variance_scaling_,
              fastinit.orthogonal_) and len(shape) < 2:
        return
    g = fastinit.Generator(4)
    args = (0.5,) if fn is fastinit.sparse_ else ()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # kaiming's torch-compatible zero-element warning
        assert fn(np.empty(shape, np.float32), *args, generator=g) is not None
    assert g.get_state() == (4, 0)
    # the next call draws exactly what a fresh generator's first call draws
    a = fastinit.normal_(np.empty(50, np.float32), generator=g)
    assert np.array_equal(a, fastinit.normal_(np.empty(50, np.float32), generator=fastinit.Generator(4)))


def test_zero_size_targets_still_check_their_arguments():
    refused(lambda w, g: fastinit.normal_(w, 0.0, -1.0, generator=g), shape=(0,), exc=RuntimeError, match="std")
    with pytest.raises(TypeError, match="generator"):
        fastinit.uniform_(np.empty(0, np.float32), generator=1.5)


# ---- a call that raises while writing gives its stream back ----------------------------------

def test_stream_is_given_back_when_the_fill_raises(monkeypatch):
    from fastinit import _plain

    def interrupted(*args):
        raise KeyboardInterrupt

    g = fastinit.Generator(6)
    fastinit.normal_(np.empty(3, np.float32), generator=g)
    monkeypatch.setattr(_plain, "fill_normal", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fastinit.normal_(np.empty(3, np.float32), generator=g)
    assert g.get_state() == (6, 1)


def test_stream_is_kept_when_another_call_took_one_meanwhile():
    """The concurrent case (documented): the other call's stream stays its own, so the
    interrupted stream is skipped rather than handed out twice."""
    g = fastinit.Generator(6)
    with pytest.raises(KeyboardInterrupt):
        with taken_stream(g) as (_, stream):
            other = g.take_stream()
            raise KeyboardInterrupt
    assert (stream, other[1]) == (0, 1)
    assert g.get_state() == (6, 2)
    with pytest.raises(ValueError):
        with taken_stream(g):
            g.manual_seed(6)          # a re-seed in between: nothing to give back either
            raise ValueError
    assert g.get_state() == (6, 0)


def test_ctrl_c_during_a_fill_does_not_advance_the_generator():
    """A real SIGINT during large fills: afterwards the generator is where the completed calls
    left it, so a retry draws what an uninterrupted run draws."""
    code = textwrap.dedent("""
        import signal, numpy as np, fastinit
        signal.signal(signal.SIGINT, signal.default_int_handler)  # see test_concurrency.py
        g = fastinit.Generator(3)
        big = np.empty(1 << 27, np.float32)   # 512 MiB: the interrupt lands inside a fill
        completed = 0
        print("ready", flush=True)
        try:
            for _ in range(1000):
                fastinit.normal_(big, generator=g)
                completed += 1
        except KeyboardInterrupt:
            pass
        retry = fastinit.normal_(np.empty(1000, np.float32), generator=g)
        fresh = fastinit.Generator(3).set_state((3, completed))
        same = (retry == fastinit.normal_(np.empty(1000, np.float32), generator=fresh)).all()
        print("completed", completed, "next", g.get_state()[1] - 1, "same" if same else "different")
    """)
    out, err = run_interrupted(code, delay=1.5)
    words = out.split()
    assert words[0] == "completed" and words[2] == "next", out + err
    assert words[1] == words[3], out + err           # the interrupted call's stream was given back
    assert words[-1] == "same", out + err


# ---- copies and pickles ---------------------------------------------------------------------

@pytest.mark.parametrize("clone", [copy.copy, copy.deepcopy, lambda g: pickle.loads(pickle.dumps(g))],
                         ids=["copy", "deepcopy", "pickle"])
def test_copies_continue_the_identical_stream_with_their_own_lock(clone):
    g = fastinit.Generator(11)
    fastinit.uniform_(np.empty(4, np.float32), generator=g)
    h = clone(g)
    assert h.get_state() == g.get_state() == (11, 1)
    assert h._lock is not g._lock
    a = fastinit.normal_(np.empty(100, np.float32), generator=h)
    b = fastinit.normal_(np.empty(100, np.float32), generator=g)
    assert np.array_equal(a, b)
    fastinit.normal_(np.empty(1, np.float32), generator=h)
    assert (h.get_state(), g.get_state()) == ((11, 3), (11, 2))   # independent counters
    with h._lock:   # holding one lock does not block the other
        assert g.take_stream() == (11, 2)


def test_default_generator_and_containers_deep_copy():
    state = {"gen": fastinit.default_generator, "seed": 1}
    dup = copy.deepcopy(state)
    assert dup["gen"].get_state() == fastinit.default_generator.get_state()
    assert dup["gen"] is not fastinit.default_generator


@pytest.mark.parametrize("name, args", [
    ("constant_", (1e6,)), ("constant_", (65505.0,)), ("constant_", (65504.0,)), ("constant_", (np.inf,)),
    ("uniform_", (0.0, 1e6)), ("uniform_", (0.0, 65505.0)), ("uniform_", (0.0, 65504.0)),
    ("uniform_", (-65504.0, 65504.0)), ("uniform_", (-32752.0, 32752.0)),
])
def test_range_rule_of_constant_and_uniform_is_torchs(name, args):
    """torch refuses (RuntimeError) exactly where fastinit does; InitArgumentError is a RuntimeError."""
    torch = pytest.importorskip("torch")
    outcomes = []
    for fn in (getattr(torch.nn.init, name), getattr(fastinit, name)):
        try:
            fn(torch.empty(3, dtype=torch.float16), *args)
            outcomes.append("ok")
        except RuntimeError:
            outcomes.append("refused")
    assert outcomes[0] == outcomes[1], outcomes
