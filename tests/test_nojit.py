"""NUMBA_DISABLE_JIT=1 (pure-Python drivers, as in coverage runs) gives the same bytes as the JIT."""

import hashlib
import json

import numpy as np

import fastinit
import make_stream_hashes as msh
from _subproc import run_python

# Fills in the child: the stream-hash subset (every transform and dtype, sizes past one chunk,
# offsets), a constant fill and public initialisers; prints the threading layer and the hashes.
CHILD = f"""
import hashlib, json, sys
sys.path.insert(0, {str(msh.PATH.parent.parent)!r})
import numba
assert numba.config.DISABLE_JIT
import numpy as np
import fastinit, make_stream_hashes as msh
from fastinit import _numba

def extra():
    g = fastinit.Generator(5)
    w = [fastinit.kaiming_normal_(np.empty((300, 700), np.float32), generator=g),
         fastinit.xavier_uniform_(np.empty((300, 700), np.float64), generator=g),
         fastinit.constant_(np.empty(70_001, np.float16), 0.3)]
    return [hashlib.sha256(a.tobytes()).hexdigest() for a in w]

print(json.dumps({{"layer": _numba.threading_layer(), "hashes": {{k: msh.digest(k) for k in msh.FAST}},
                  "extra": extra()}}))
"""


def _extra():
    g = fastinit.Generator(5)
    w = [fastinit.kaiming_normal_(np.empty((300, 700), np.float32), generator=g),
         fastinit.xavier_uniform_(np.empty((300, 700), np.float64), generator=g),
         fastinit.constant_(np.empty(70_001, np.float16), 0.3)]
    return [hashlib.sha256(a.tobytes()).hexdigest() for a in w]


def test_disable_jit_gives_the_jit_bytes():
    r = run_python(CHILD, env={"NUMBA_DISABLE_JIT": "1"})
    assert r.returncode == 0, r.stderr[-3000:]
    child = json.loads(r.stdout.splitlines()[-1])
    assert child["layer"] == "none (JIT disabled)"
    jit = {k: msh.digest(k) for k in msh.FAST}
    bad = [k for k in jit if child["hashes"][k] != jit[k]]
    assert not bad, f"NUMBA_DISABLE_JIT=1 differs from the JIT for {bad}"
    assert child["extra"] == _extra()
