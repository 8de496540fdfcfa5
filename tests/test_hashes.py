"""Stream stability: fixed outputs must keep the SHA-256 hashes stored in data/stream_hashes.json.

A failure means the bits changed. If that was not the intent, it is a bug (compiler flags, a
SIMD path, a refactor). If it was (the stream definition changed on purpose), regenerate with
``PYTHONPATH=. python tests/make_stream_hashes.py`` and say why in the commit.
"""

import json
import subprocess
import sys

import pytest

import make_stream_hashes as msh
from _subproc import NEUTRAL_CWD

STORED = json.loads(msh.PATH.read_text())["hashes"]
REGEN = "PYTHONPATH=. python tests/make_stream_hashes.py"


def test_stored_file_covers_the_matrix():
    assert sorted(STORED) == sorted(msh.all_keys()), f"stale {msh.PATH.name}: run `{REGEN}`"
    assert set(msh.FAST) <= set(STORED)
    assert len(set(STORED.values())) == len(STORED)  # no two entries produce the same bytes


def _check(keys):
    bad = [k for k in keys if msh.digest(k) != STORED[k]]
    assert not bad, (f"{len(bad)} of {len(keys)} outputs changed their bits, e.g. {bad[:3]}; if the stream "
                     f"changed on purpose, run `{REGEN}` and say why in the commit")


@pytest.mark.parametrize("fn", msh.FUNCTIONS)
def test_fast_subset(fn):
    _check([k for k in msh.FAST if k.startswith(fn + "/")])


@pytest.mark.slow
def test_full_matrix():
    _check(msh.all_keys())


def _supported_levels():
    from fastinit import _lib

    return [s for i, s in enumerate(_lib.SIMD_LEVELS) if _lib.lib.fi_simd_supported(i)]


@pytest.mark.slow
@pytest.mark.parametrize("level", ["scalar", "avx2", "avx512"])
def test_full_matrix_at_each_simd_level(level):
    if level not in _supported_levels():
        pytest.skip(f"{level} not supported on this CPU/build")
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); import make_stream_hashes as m; "
            "import fastinit; assert fastinit.simd_level() == sys.argv[2]; "
            "print(json.dumps({k: m.digest(k) for k in m.all_keys()}))")
    env = {**__import__("os").environ, "FASTINIT_SIMD": level}
    r = subprocess.run([sys.executable, "-c", code, str(msh.PATH.parent.parent), level], env=env,
                       capture_output=True, text=True, timeout=600, cwd=NEUTRAL_CWD)
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout)
    bad = [k for k in got if got[k] != STORED[k]]
    assert not bad, f"FASTINIT_SIMD={level}: {len(bad)} outputs changed, e.g. {bad[:3]}"
