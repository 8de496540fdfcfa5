"""The stream contract: raw words, transforms rebuilt from them, slices, threads, generators."""

import threading

import ml_dtypes
import numba
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import special

import fastinit
from _subproc import run_python
from fastinit import _fill

SEED, STREAM = 20240601, 3


def words(n, offset=0, seed=SEED, stream=STREAM):
    return fastinit.raw_uint32(n, seed, stream=stream, offset=offset).astype(np.uint64)


@given(st.integers(0, 5000), st.integers(0, 300))
def test_raw_slice_equals_slice_of_whole(start, length):
    whole = fastinit.raw_uint32(5300, SEED, STREAM)
    assert (fastinit.raw_uint32(length, SEED, STREAM, offset=start) == whole[start : start + length]).all()


def test_raw_streams_and_seeds_differ():
    a = fastinit.raw_uint32(1000, 1, 0)
    assert (a != fastinit.raw_uint32(1000, 1, 1)).mean() > 0.99
    assert (a != fastinit.raw_uint32(1000, 2, 0)).mean() > 0.99
    assert (fastinit.raw_uint32(4, -1) == fastinit.raw_uint32(4, 2**64 - 1)).all()


def test_raw_bad_arguments():
    with pytest.raises(ValueError, match="count"):
        fastinit.raw_uint32(-1, 0)
    with pytest.raises(TypeError, match="seed"):
        fastinit.raw_uint32(4, 1.5)
    with pytest.raises(ValueError, match="stream"):
        fastinit.raw_uint32(4, 0, stream=2**64)
    with pytest.raises(ValueError, match="offset"):
        fastinit.raw_uint32(4, 0, offset=-3)


# ---- transforms rebuilt from the raw words with one-line NumPy formulas ------------------

@pytest.mark.parametrize("offset", [0, 1, 3, 4098])
def test_uniform_f32_from_words(offset):
    n, a, b = 10001, -0.5, 2.0
    out = _fill.fill_uniform(np.empty(n, np.float32), a, b, SEED, STREAM, offset=offset)
    u = (words(n, offset) >> 8).astype(np.float32) * np.float32(2.0**-24)
    expected = np.float32(a) + (np.float32(b) - np.float32(a)) * u
    assert (out == expected).all()
    assert u.min() >= 0 and u.max() < 1


@pytest.mark.parametrize("offset", [0, 1, 777])
def test_uniform_f64_from_words(offset):
    n, a, b = 5001, -3.0, 5.0
    out = _fill.fill_uniform(np.empty(n, np.float64), a, b, SEED, STREAM, offset=offset)
    w = words(2 * n, 2 * offset)
    u = (((w[0::2] << 32) | w[1::2]) >> 11).astype(np.float64) * 2.0**-53
    assert (out == a + (b - a) * u).all()


def _normal_f32_reference(w):
    """The exact quantile each word stands for in the float32 normal (fastinit.h): sign bit 0,
    q = z 2^-32 with z = w | 1, octave lz = clz(z), t from the 23 bits after z's leading one,
    |x| = Phi^-1(1 - q'/2) at q' = 2^-(lz+1) (3/2 + t + delta)."""
    z = w | 1
    lz = 31 - np.floor(np.log2(z.astype(np.float64))).astype(np.int64)  # exact: z < 2^32 is odd
    mant = (((z << lz.astype(np.uint64)) & 0xFFFFFFFF) >> 8) & 0x7FFFFF
    t = mant.astype(np.float64) * 2.0**-23 - 0.5
    q = 2.0 ** -(lz + 1) * (1.5 + t + np.where(lz < 8, 2.0**-24, 0.0))
    return np.where(w & 1, 1.0, -1.0) * special.ndtri(q / 2), lz


def test_normal_f32_from_words():
    """Every element against the exact quantile of its word, over 2^20 words: the octave table
    (kernels/fit_normal_octaves.py) is within 2.2 x 2^-24 max(|x|, 1) in float32; with the
    rounding of mean + std x the bound checked is 4 x 2^-24 max(|x|, 1) std + one ulp."""
    n = 1 << 20
    mean, std = 0.25, 1.5
    out = _fill.fill_normal(np.empty(n, np.float32), mean, std, SEED, STREAM).astype(np.float64)
    x, lz = _normal_f32_reference(words(n))
    assert lz.min() == 0 and lz.max() >= 16  # deep octaves too: AVX-512's full-lookup path runs
    expected = mean + std * x
    tol = 4 * 2.0**-24 * np.maximum(np.abs(x), 1) * std + np.spacing(np.abs(expected).astype(np.float32))
    assert np.all(np.abs(out - expected) <= tol), np.max(np.abs(out - expected) / tol)


def test_normal_f64_from_words():
    n = 20000
    out = _fill.fill_normal(np.empty(n, np.float64), 0.0, 1.0, SEED, STREAM)
    w = words(2 * n)
    k1 = ((w[0::4] << 32 | w[1::4]) >> 11).astype(np.float64)
    k2 = ((w[2::4] << 32 | w[3::4]) >> 11).astype(np.float64)
    r = np.sqrt(-2 * np.log((k1 + 0.5) * 2.0**-53))
    theta = 2 * np.pi * k2 * 2.0**-53
    expected = np.empty(n)
    expected[0::2], expected[1::2] = r * np.cos(theta), r * np.sin(theta)
    assert np.allclose(out, expected, rtol=0, atol=1e-14 * max(1, r.max()))


def _trunc_uniforms(w, mode):
    """The uniform each float32 kernel mode uses for the words w (exactly, in float64)."""
    if mode == 4:  # table: segment w >> 27, position t = (w & 0x7fffff) 2^-23 - 1/2 (fastinit.h)
        t = (w & 0x7FFFFF).astype(np.float64) * 2.0**-23 - 0.5
        return ((w >> 27).astype(np.float64) + t + 0.5 + 2.0**-24) / 32
    return (w.astype(np.float64) + 0.5) * 2.0**-32


def _trunc_quantiles(u, alpha, beta, mode):
    """The exact standardised quantile each float32 kernel mode evaluates for the uniforms u."""
    if mode >= 2:  # float32 modes: p = Phi(alpha) + u mass, no mirroring; each side taken accurately
        pa, qb = special.ndtr(alpha), special.ndtr(-beta)
        mass = 1 - pa - qb if alpha < 0 < beta else (
            special.ndtr(beta) - pa if beta <= 0 else special.ndtr(-alpha) - qb)
        p, q = pa + u * mass, qb + (1 - u) * mass
        return np.where(p < 0.5, special.ndtri(p), -special.ndtri(q))
    s = 1.0  # double modes: mirrored (s = -1) when alpha + beta > 0, lower side evaluated
    if alpha + beta > 0:
        alpha, beta, s = -beta, -alpha, -1.0
    ratio = np.exp(special.log_ndtr(alpha) - special.log_ndtr(beta))  # in log space: any depth
    return s * special.ndtri_exp(special.log_ndtr(beta) + np.log(ratio + u * (1 - ratio)))


@pytest.mark.parametrize("mean, std, a, b, mode", [
    (0.1, 0.7, -1.3, 0.5, 4), (0.1, 0.7, -0.5, 1.3, 4), (0.0, 0.02, -0.04, 0.04, 4), (0.0, 1.0, 2.0, 2.6, 4),
    (0.0, 1.0, -8.0, -7.9, 4), (3.0, 0.5, 2.1, 4.0, 4),
    (0.1, 0.7, -2.0, 2.2, 2), (0.0, 1.0, -2.2, 2.2, 2),
    (0.0, 0.02, -2.0, 2.0, 3), (0.0, 1.0, -6.0, 6.0, 3), (0.0, 1.0, 2.5, 7.0, 0), (0.0, 1.0, -40.0, -39.5, 5)])
def test_trunc_normal_f32_from_words(mean, std, a, b, mode):
    """x = mean + std Phi^-1(Phi(alpha) + u (Phi(beta) - Phi(alpha))), with each mode's u.

    The float32 modes evaluate the quantile in single precision. Measured over 2^23 words per
    interval, modes 2 and 3 stay below 6 x 2^-24 max(|x|, 1) (kernels/fi_math.h); mode 4 is
    accepted only when the table builder's check finds at most 2.5 x 2^-24 (its kernel error is
    below 4 x 2^-24 in every interval tried). The bound checked is 8 x 2^-24 max(|x|, 1) std plus
    the final roundings; the double modes are checked to 2^-24 relative."""
    n = 20000
    assert _fill.trunc_params(mean, std, a, b, single=True)[0] == mode
    out = _fill.fill_trunc_normal(np.empty(n, np.float32), mean, std, a, b, SEED, STREAM)
    u = _trunc_uniforms(words(n), mode)
    x = _trunc_quantiles(u, (a - mean) / std, (b - mean) / std, mode)
    expected = np.clip(mean + std * x, a, b)
    spacing = np.spacing(np.abs(expected).astype(np.float32)).astype(np.float64)
    if mode >= 2:
        tol = 8 * 2.0**-24 * np.maximum(np.abs(x), 1) * std + 2 * spacing + 2.0**-24 * abs(mean)
    else:
        tol = 2.0**-24 * np.abs(expected) + spacing
    err = np.abs(out - expected)
    assert np.all(err <= tol), np.max(err / tol)
    assert out.min() >= np.float32(a) and out.max() <= np.float32(b)


def test_trunc_table_builder():
    """fi_trunc_table writes exactly FI_TT_SIZE floats, measures wide intervals as unusable, and
    its error estimate bounds the kernel's error over many words up to the rounding of t."""
    guard = np.full(_fill._TABLE_SIZE + 16, np.float32(7.5))
    pa, mass, qb = special.ndtr(-2.0), 1 - 2 * special.ndtr(-2.0), special.ndtr(-2.0)
    est = fastinit._lib.lib.fi_trunc_table(pa, mass, qb, 0.0, 1.0, guard.ctypes.data)
    assert np.all(guard[_fill._TABLE_SIZE:] == np.float32(7.5)) and np.all(guard[: _fill._TABLE_SIZE] != 7.5)
    assert 0 < est <= _fill._TABLE_MAX_ERR
    wide = np.empty(_fill._TABLE_SIZE, np.float32)
    assert fastinit._lib.lib.fi_trunc_table(special.ndtr(-3.0), 1 - 2 * special.ndtr(-3.0),
                                            special.ndtr(-3.0), 0.0, 1.0, wide.ctypes.data) > 100
    assert _fill.trunc_params(0.0, 1.0, -3.0, 3.0, single=True)[0] != 4
    # the table of mean + std x is the standardised one scaled (each entry rounded once)
    scaled = np.empty(_fill._TABLE_SIZE, np.float32)
    fastinit._lib.lib.fi_trunc_table(pa, mass, qb, 0.25, 0.5, scaled.ctypes.data)
    unit = guard[: _fill._TABLE_SIZE].astype(np.float64)
    shift = np.zeros(_fill._TABLE_SIZE)
    shift[:32] = 0.25
    assert np.allclose(scaled, 0.5 * unit + shift, rtol=2.0**-23, atol=2.0**-25)
    # the kernel over 2^20 words, against the exact quantile
    n = 1 << 20
    out = _fill.fill_trunc_normal(np.empty(n, np.float32), 0.0, 1.0, -2.0, 2.0, SEED, STREAM)
    x = _trunc_quantiles(_trunc_uniforms(words(n), 4), -2.0, 2.0, 4)
    err = np.abs(out - x) / np.maximum(np.abs(x), 1) / 2.0**-24
    assert err.max() <= est + 1.5, (err.max(), est)


# ---- dtypes: one seed, the same numbers in every 32-bit-family precision ------------------

@pytest.mark.parametrize("dtype", [np.float16, ml_dtypes.bfloat16])
@pytest.mark.parametrize("kind", ["normal", "uniform", "trunc"])
def test_16bit_types_are_float32_rounded(dtype, kind):
    n = 50000
    fill = {"normal": lambda o: _fill.fill_normal(o, 0.2, 1.5, SEED, STREAM),
            "uniform": lambda o: _fill.fill_uniform(o, -1.0, 3.0, SEED, STREAM),
            "trunc": lambda o: _fill.fill_trunc_normal(o, 0.0, 1.0, -1.5, 2.5, SEED, STREAM)}[kind]
    ref = fill(np.empty(n, np.float32))
    got = fill(np.empty(n, dtype))
    expected = ref.astype(dtype)  # numpy / ml_dtypes round to nearest even
    if kind == "uniform":  # b stays excluded: a value rounding to b moves one step down
        below_b = np.nextafter(np.array(3.0, dtype), np.array(-np.inf, dtype)) if dtype == np.float16 else \
            (np.array(3.0, np.float32).astype(dtype).view(np.uint16) - 1).view(dtype)
        expected = np.where(expected.astype(np.float64) >= 3.0, below_b, expected)
    assert (got.view(np.uint16) == expected.view(np.uint16)).all()


# ---- threads and chunking cannot change the bytes ------------------------------------------

def _all_kinds(n=300_001):
    return [
        _fill.fill_uniform(np.empty(n, np.float32), -1, 1, SEED, STREAM, offset=5),
        _fill.fill_normal(np.empty(n, np.float64), 0, 1, SEED, STREAM, offset=3),
        _fill.fill_normal(np.empty(n, np.float16), 0, 1, SEED, STREAM),
        _fill.fill_trunc_normal(np.empty(n, np.float32), 0, 0.02, -0.04, 0.04, SEED, STREAM, offset=1),
        fastinit.raw_uint32(n, SEED, STREAM, offset=2),
    ]


def test_thread_count_invariance():
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = _all_kinds()
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = _all_kinds()
    finally:
        numba.set_num_threads(before)
    for x, y in zip(one, many, strict=True):
        assert x.tobytes() == y.tobytes()


def test_numba_num_threads_env_gives_same_bytes():
    code = ("import hashlib, numpy as np, fastinit\nfrom fastinit import _fill\n"
            "a = _fill.fill_normal(np.empty(1_000_003, np.float32), 0, 1, 7, 1)\n"
            "print(hashlib.sha256(a.tobytes()).hexdigest())")
    hashes = set()
    for threads in ("1", "2", "3"):
        proc = run_python(code, env={"NUMBA_NUM_THREADS": threads})
        assert proc.returncode == 0, proc.stderr
        hashes.add(proc.stdout.strip())
    import hashlib
    hashes.add(hashlib.sha256(_fill.fill_normal(np.empty(1_000_003, np.float32), 0, 1, 7, 1).tobytes()).hexdigest())
    assert len(hashes) == 1


@given(st.lists(st.integers(1, 70_000), min_size=1, max_size=6))
def test_any_chunking_gives_the_whole(cuts):
    """Shards generated on their own, at their offsets, concatenate to the whole tensor."""
    n = sum(cuts)
    whole = _fill.fill_normal(np.empty(n, np.float32), 0, 1, SEED, STREAM)
    parts, start = [], 0
    for c in cuts:
        parts.append(_fill.fill_normal(np.empty(c, np.float32), 0, 1, SEED, STREAM, offset=start))
        start += c
    assert np.concatenate(parts).tobytes() == whole.tobytes()


# ---- Generator -------------------------------------------------------------------------------

def test_generator_successive_calls_take_successive_streams():
    g = fastinit.Generator(11)
    a = _fill.fill_normal(np.empty(100, np.float32), 0, 1, *g.take_stream())
    b = _fill.fill_normal(np.empty(100, np.float32), 0, 1, *g.take_stream())
    assert g.get_state() == (11, 2)
    assert (a == _fill.fill_normal(np.empty(100, np.float32), 0, 1, 11, 0)).all()
    assert (b == _fill.fill_normal(np.empty(100, np.float32), 0, 1, 11, 1)).all()
    g.manual_seed(11)
    assert g.take_stream() == (11, 0)
    g.set_state((11, 1))
    assert g.take_stream() == (11, 1)


def test_generator_argument_forms():
    from fastinit._generator import resolve_generator

    assert resolve_generator(5) == (5, 0) and resolve_generator(5) == (5, 0)
    fastinit.manual_seed(9)
    assert resolve_generator(None) == (9, 0) and resolve_generator(None) == (9, 1)
    with pytest.raises(TypeError, match="generator"):
        resolve_generator(1.0)
    with pytest.raises(TypeError, match="generator"):
        resolve_generator(True)
    with pytest.raises(TypeError, match="seed"):
        fastinit.Generator("0")


def test_generator_is_thread_safe():
    g = fastinit.Generator(0)
    taken = []

    def work():
        taken.extend(g.take_stream()[1] for _ in range(2000))

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(taken) == list(range(16000))


@pytest.mark.parametrize("kind", ["uniform", "normal", "trunc_table"])
def test_streaming_stores_give_the_same_bytes(kind, monkeypatch):
    """Large float32 fills use non-temporal stores from a 64-byte boundary on (a peeled partial
    step first); the bytes must equal the cached path's for any alignment, offset and size."""
    def fill(a, offset):
        if kind == "uniform":
            return _fill.fill_uniform(a, -0.3, 0.7, SEED, STREAM, offset=offset)
        if kind == "normal":
            return _fill.fill_normal(a, 0.1, 1.3, SEED, STREAM, offset=offset)
        return _fill.fill_trunc_normal(a, 0.0, 0.02, -0.04, 0.04, SEED, STREAM, offset=offset)

    buf = np.empty(300_000 + 32, np.float32)
    for shift in (0, 1, 3, 4, 12, 13):
        for offset in (0, 5, 2**32 + 7):
            for n in (1, 200, 300_000):
                a = buf[shift : shift + n]
                monkeypatch.setattr(fastinit._numba, "STREAM_MIN_BYTES", 1 << 62)
                cached = fill(a, offset).copy()
                monkeypatch.setattr(fastinit._numba, "STREAM_MIN_BYTES", 0)
                a[...] = np.nan
                assert np.array_equal(fill(a, offset), cached), (shift, offset, n)
