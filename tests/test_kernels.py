"""The C core: Random123 known-answer vectors on every path, and byte-identical SIMD levels.

Each C path is exercised in its own interpreter with FASTINIT_SIMD forced (the level is chosen
once per process), as numpy's test_cpu_features does.
"""

import json
import pathlib
from fractions import Fraction

import numpy as np
import pytest
from scipy import special

import fastinit
from _subproc import run_python
from fastinit._lib import SIMD_LEVELS, lib
from fastinit._philox import philox4x32, philox_block, philox_word

KAT = pathlib.Path(__file__).with_name("data") / "philox4x32_kat.txt"


def kat_vectors(rounds=None):
    out = []
    for line in KAT.read_text().splitlines():
        parts = line.split()
        if not parts or parts[0] != "philox4x32":
            continue
        r, words = int(parts[1]), [int(x, 16) for x in parts[2:]]
        if rounds is None or r == rounds:
            out.append((r, words[0:4], words[4:6], words[6:10]))
    return out


def test_kat_file_has_the_named_cases():
    vecs = kat_vectors()
    assert len(vecs) == 110
    ctrs = {tuple(c) for _, c, _, _ in vecs}
    pi_digits = (0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344)
    assert (0, 0, 0, 0) in ctrs and (0xFFFFFFFF,) * 4 in ctrs and pi_digits in ctrs


@pytest.mark.parametrize("r, ctr, key, expected", kat_vectors())
def test_kat_c_reference(r, ctr, key, expected):
    out = np.zeros(4, np.uint32)
    lib.fi_philox4x32_R(r, np.array(ctr, np.uint32).ctypes.data, np.array(key, np.uint32).ctypes.data,
                        out.ctypes.data)
    assert [hex(x) for x in out] == [hex(x) for x in expected]


@pytest.mark.parametrize("r, ctr, key, expected", kat_vectors())
def test_kat_numba(r, ctr, key, expected):
    got = philox4x32(np.uint32(ctr[0]), np.uint32(ctr[1]), np.uint32(ctr[2]), np.uint32(ctr[3]),
                     np.uint32(key[0]), np.uint32(key[1]), r)
    assert [int(x) for x in got] == expected


def _kat_args(ctr, key):
    seed = key[0] | key[1] << 32
    stream = ctr[2] | ctr[3] << 32
    return seed, stream, 4 * (ctr[0] | ctr[1] << 32)


@pytest.mark.parametrize("r, ctr, key, expected", kat_vectors(10))
def test_kat_raw_stream(r, ctr, key, expected):
    seed, stream, offset = _kat_args(ctr, key)
    assert fastinit.raw_uint32(4, seed, stream=stream, offset=offset).tolist() == expected
    assert [int(x) for x in philox_block(np.uint64(seed), np.uint64(stream), np.uint64(offset // 4))] == expected
    if offset + 3 < 2**64:
        words = [int(philox_word(np.uint64(seed), np.uint64(stream), np.uint64(offset + k))) for k in range(4)]
        assert words == expected


# One script, run once per forced SIMD level: KATs plus sha256 of every kernel x dtype.
_LEVEL_SCRIPT = r"""
import hashlib, json, sys
import numpy as np, ml_dtypes
import fastinit
from fastinit import _fill
assert fastinit.simd_level() == sys.argv[1] if len(sys.argv) > 1 else True
kat = json.loads('''KAT''')
bad = [v for v in kat if fastinit.raw_uint32(4, v[0], stream=v[1], offset=v[2]).tolist() != v[3]]
h = {}
for dt in (np.float32, np.float64, np.float16, ml_dtypes.bfloat16):
    for name, fn, args in (("uniform", _fill.fill_uniform, (-0.5, 2.0)), ("normal", _fill.fill_normal, (0.3, 1.7)),
                           ("trunc", _fill.fill_trunc_normal, (0.0, 1.0, -2.0, 2.0)),
                           ("trunc_mode2", _fill.fill_trunc_normal, (0.0, 1.0, -3.0, 3.0)),
                           ("trunc_mode3", _fill.fill_trunc_normal, (0.0, 1.0, -6.0, 6.0)),
                           ("trunc_tail", _fill.fill_trunc_normal, (0.0, 1.0, 6.0, 9.0)),
                           ("trunc_far", _fill.fill_trunc_normal, (0.0, 1.0, -40.0, -39.0))):
        a = np.empty(4099, dt)
        fn(a, *args, seed=12345, stream=7, offset=3)
        h[name + "-" + np.dtype(dt).name] = hashlib.sha256(a.tobytes()).hexdigest()
h["raw"] = hashlib.sha256(fastinit.raw_uint32(4099, 99, 3, 5).tobytes()).hexdigest()
print(json.dumps({"level": fastinit.simd_level(), "bad_kat": len(bad), "hashes": h}))
"""


def _supported_levels():
    return [name for i, name in enumerate(SIMD_LEVELS) if lib.fi_simd_supported(i)]


def test_every_simd_level_gives_the_same_bytes():
    kat = json.dumps([[*_kat_args(c, k), e] for _, c, k, e in kat_vectors(10)])
    script = _LEVEL_SCRIPT.replace("KAT", kat)
    results = {}
    for level in _supported_levels():
        proc = run_python(script, env={"FASTINIT_SIMD": level})
        assert proc.returncode == 0, proc.stderr
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        assert res["level"] == level
        assert res["bad_kat"] == 0, f"{level}: {res['bad_kat']} KAT vectors failed"
        results[level] = res["hashes"]
    assert "scalar" in results
    for level, hashes in results.items():
        diff = [k for k in hashes if hashes[k] != results["scalar"][k]]
        assert not diff, f"{level} differs from scalar in {diff}"


def test_unsupported_forced_level_is_a_clear_error():
    unsupported = [name for i, name in enumerate(SIMD_LEVELS) if not lib.fi_simd_supported(i)]
    proc = run_python("import fastinit", env={"FASTINIT_SIMD": unsupported[0] if unsupported else "avx1024"})
    if unsupported:
        assert proc.returncode != 0 and "FASTINIT_SIMD" in proc.stderr
    else:  # an unknown name keeps the best level rather than failing
        assert proc.returncode == 0, proc.stderr


def test_ndtri_accuracy():
    p = np.concatenate([np.random.default_rng(1).random(20000), 10.0 ** -np.arange(1, 300, 7.0),
                        1 - 10.0 ** -np.arange(1, 16, 0.5)])
    got = np.array([lib.fi_ndtri(float(x)) for x in p])
    ref = special.ndtri(p)
    rel = np.abs(got - ref) / np.maximum(np.abs(ref), 1e-300)
    assert rel.max() < 1e-14, (p[rel.argmax()], got[rel.argmax()], ref[rel.argmax()])


def _round_f32(x: Fraction) -> np.float32:
    """x rounded to the nearest float32, ties to even (exact: candidates compared as fractions)."""
    f = np.float32(float(x))  # within one float32 ulp of the answer
    cands = {f, np.nextafter(f, np.float32(np.inf)), np.nextafter(f, np.float32(-np.inf))}
    cands = [c for c in cands if np.isfinite(c)]
    best = min(abs(Fraction(float(c)) - x) for c in cands)
    near = [c for c in cands if abs(Fraction(float(c)) - x) == best]
    if len(near) > 1:  # a tie: the even significand
        near = [c for c in near if not int(np.array(c, np.float32).view(np.uint32)) & 1]
    return near[0]


def _fma_cases():
    """Random products with cancelling addends, and sums within 2^-36 of a float32 midpoint (where
    rounding a * b + c to double and then to float32 gives the wrong neighbour)."""
    rng = np.random.default_rng(2024)
    n = 4000
    a = (rng.standard_normal(n) * 2.0 ** rng.integers(-20, 20, n)).astype(np.float32)
    b = (rng.standard_normal(n) * 2.0 ** rng.integers(-20, 20, n)).astype(np.float32)
    c = (-(a.astype(np.float64) * b) * (1 + rng.standard_normal(n) * 2.0 ** -rng.integers(1, 30, n))).astype(np.float32)
    x = 2.0 ** -12
    mids = []
    for k in range(2000):
        cm = np.float32((1 + int(rng.integers(0, 2**23)) * 2.0**-23) * 2.0 ** int(rng.integers(-30, 30)))
        half_ulp = float(np.spacing(cm)) / 2
        # (1 + x)(1 - x + x^2) = 1 + x^3 and (1 + x^(5/3))(1 - x^(5/3)) = 1 - x^(10/3): a hair above
        # or below half an ulp of c
        fa, fb = ((1 + x, 1 - x + x * x) if k % 2 else (1 + 2.0**-20, 1 - 2.0**-20))
        sa, sc = (1 if k % 3 else -1), (1 if k % 5 else -1)
        mids.append((np.float32(sa * fa * half_ulp), np.float32(fb), np.float32(sc * cm)))
    ma, mb, mc = (np.array(v, np.float32) for v in zip(*mids, strict=True))
    return np.concatenate([a, ma]), np.concatenate([b, mb]), np.concatenate([c, mc])


def test_fma_is_correctly_rounded_on_every_level():
    a, b, c = _fma_cases()
    exact = np.array([_round_f32(Fraction(float(x)) * Fraction(float(y)) + Fraction(float(z)))
                      for x, y, z in zip(a, b, c, strict=True)], np.float32)
    naive = (a.astype(np.float64) * b + c).astype(np.float32)
    assert (naive != exact).sum() > 100  # the cases do trap double rounding
    before = lib.fi_simd_level()
    try:
        for level in _supported_levels():
            assert lib.fi_simd_set(SIMD_LEVELS.index(level)) >= 0
            out = np.empty_like(a)
            lib.fi_fma_f32(a.size, a.ctypes.data, b.ctypes.data, c.ctypes.data, out.ctypes.data)
            bad = np.flatnonzero(out.view(np.uint32) != exact.view(np.uint32))
            assert bad.size == 0, (level, a[bad[0]], b[bad[0]], c[bad[0]], out[bad[0]], exact[bad[0]])
    finally:
        lib.fi_simd_set(before)
