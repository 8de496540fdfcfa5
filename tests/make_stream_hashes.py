"""Write ``tests/data/stream_hashes.json``: SHA-256 hashes of fixed fastinit outputs.

Run it only when the stream definition changes on purpose (a transform or a kernel whose bits
are meant to change), and say why in the commit that updates the JSON. One command, from the
checkout root (drop ``PYTHONPATH=.`` when fastinit is installed)::

    PYTHONPATH=. python tests/make_stream_hashes.py            # rewrite the JSON
    PYTHONPATH=. python tests/make_stream_hashes.py --check    # only list the entries that changed

``tests/test_hashes.py`` recomputes the entries (the ``FAST`` subset in every run, the whole
matrix under ``-m slow``), so any accidental change of the bits (compiler, SIMD level, refactor)
fails loudly. The matrix: raw words, and ``uniform``, ``normal``, ``trunc_normal`` (the benchmark
interval, double-precision path for float64), ``trunc_wide`` (+-100 sigma) and ``trunc_tail``
(a far-tail interval, log-space sampling) in float32, float64, float16 and bfloat16, for three
(seed, stream) pairs, sizes 1000 and 100003 (more than one Numba chunk), from offset 0 and from
an odd offset past 2**32 words.
Each hash is over the output's little-endian bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import pathlib
import sys

import numpy as np

PATH = pathlib.Path(__file__).resolve().parent / "data" / "stream_hashes.json"

# Parameters of each transform (fixed forever: changing one changes every hash of that transform).
PARAMS = {
    "uniform": dict(a=-0.5, b=2.0),
    "normal": dict(mean=0.25, std=1.5),
    "trunc_normal": dict(mean=0.0, std=0.02, a=-0.04, b=0.04),  # the benchmark case: float32 quantile table
    "trunc_wide": dict(mean=0.0, std=0.02, a=-2.0, b=2.0),  # timm's default, +-100 sigma: float32 polynomials
    "trunc_tail": dict(mean=1.0, std=2.0, a=13.0, b=40.0),  # alpha = 6: lower tail in log space
}
FUNCTIONS = ("raw",) + tuple(PARAMS)
DTYPES = ("float32", "float64", "float16", "bfloat16")
SEED_STREAMS = ((0, 0), (2024, 1), (2**64 - 1, 2**40 + 3))
SIZES = (1000, 100_003)  # 100_003 > fastinit._numba.CHUNK, and odd
OFFSETS = (0, 2**32 + 5)  # the offset's high word, and an element that is not first in its block


def key(fn: str, dtype: str, seed: int, stream: int, n: int, offset: int) -> str:
    return f"{fn}/{dtype}/seed={seed}/stream={stream}/n={n}/offset={offset}"


def parse(k: str) -> tuple:
    fn, dtype, *rest = k.split("/")
    seed, stream, n, offset = (int(p.split("=")[1]) for p in rest)
    return fn, dtype, seed, stream, n, offset


def all_keys() -> list[str]:
    keys = [key("raw", "uint32", s, t, n, o) for (s, t), n, o in itertools.product(SEED_STREAMS, SIZES, OFFSETS)]
    keys += [key(f, d, s, t, n, o) for f, d, (s, t), n, o in
             itertools.product(PARAMS, DTYPES, SEED_STREAMS, SIZES, OFFSETS)]
    return keys


# The subset every test run checks: each transform and dtype once, plus the multi-chunk size, a
# large seed/stream and an offset for float32 and float64.
FAST = sorted(
    [key("raw", "uint32", 0, 0, 1000, 0), key("raw", "uint32", 2**64 - 1, 2**40 + 3, 100_003, 2**32 + 5)]
    + [key(f, d, 2024, 1, 1000, 0) for f in PARAMS for d in DTYPES]
    + [key(f, d, 2**64 - 1, 2**40 + 3, 100_003, 2**32 + 5) for f in PARAMS for d in ("float32", "float64")]
)


def output(k: str) -> np.ndarray:
    """The array that entry `k` hashes."""
    from fastinit import _fill

    fn, dtype, seed, stream, n, offset = parse(k)
    if fn == "raw":
        return _fill.raw_uint32(n, seed, stream=stream, offset=offset)
    if dtype == "bfloat16":
        import ml_dtypes

        out = np.empty(n, ml_dtypes.bfloat16)
    else:
        out = np.empty(n, dtype)
    fill = {"uniform": _fill.fill_uniform, "normal": _fill.fill_normal}.get(fn, _fill.fill_trunc_normal)
    return fill(out, **PARAMS[fn], seed=seed, stream=stream, offset=offset)


def digest(k: str) -> str:
    a = output(k)
    if sys.byteorder != "little":  # pragma: no cover
        a = a.byteswap()
    return hashlib.sha256(a.tobytes()).hexdigest()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="compare with the stored file, write nothing")
    args = p.parse_args(argv)
    hashes = {k: digest(k) for k in all_keys()}
    old = json.loads(PATH.read_text())["hashes"] if PATH.exists() else {}
    changed = sorted(k for k in hashes.keys() | old.keys() if hashes.get(k) != old.get(k))
    for k in changed:
        print(f"changed: {k}")
    if args.check:
        print(f"{len(changed)} of {len(hashes)} entries differ from {PATH}")
        return 1 if changed else 0
    import fastinit

    doc = {
        "about": "SHA-256 of fixed fastinit outputs (little-endian bytes); regenerate with "
                 "`PYTHONPATH=. python tests/make_stream_hashes.py` only when the stream changes on purpose",
        "params": PARAMS,
        "generated_with": {"fastinit": fastinit.__version__, "simd_level": fastinit.simd_level()},
        "hashes": hashes,
    }
    PATH.write_text(json.dumps(doc, indent=1, sort_keys=False) + "\n")
    print(f"wrote {len(hashes)} hashes to {PATH} ({len(changed)} changed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
