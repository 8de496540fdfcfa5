"""`fastinit bench` and `fastinit info` as a user runs them (python -m fastinit in a subprocess)."""

import json
import math
import re
import subprocess
import sys

import numba
import pytest

import fastinit
from fastinit.cli import main
from _subproc import NEUTRAL_CWD

SIZE = 8 << 20  # 8 MiB: every row runs, in a few seconds


def fastinit_cmd(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "fastinit", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=NEUTRAL_CWD)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    r = fastinit_cmd("bench", "--size", "8MiB", "--repeat", "1", "--no-torch", "--json", str(path))
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout, json.loads(path.read_text())


def test_bench_rows(bench):
    _, data = bench
    threads = data["machine"]["numba_threads"]
    expected = [
        ("fill bandwidth", "constant, all threads"), ("fill bandwidth", "numpy ndarray.fill"),
        ("uniform_", "fastinit"), ("uniform_", "numpy 1 thread"), ("uniform_", f"numpy {threads} threads"),
        ("normal_", "fastinit"), ("normal_", "numpy 1 thread"), ("normal_", f"numpy {threads} threads"),
        ("trunc_normal_", "fastinit"), ("trunc_normal_", "numpy 1 thread (rejection)"),
    ]  # --no-torch: no torch rows
    assert [(r["op"], r["impl"]) for r in data["rows"]] == expected


def test_bench_json_numbers_are_consistent(bench):
    _, data = bench
    assert data["size_bytes"] == SIZE
    rows = data["rows"]
    bandwidth = rows[0]["gib_per_s"]  # the constant fill from all threads is the reference bandwidth
    for r in rows:
        assert math.isfinite(r["seconds"]) and r["seconds"] > 0, r
        assert r["gib_per_s"] == pytest.approx(SIZE / r["seconds"] / 2**30, rel=1e-12), r
        assert r["vs_bandwidth"] == pytest.approx(r["gib_per_s"] / bandwidth, rel=1e-12), r
        base = next(x for x in rows if x["op"] == r["op"] and x["impl"].startswith(("numpy 1", "constant")))
        assert r["speedup_vs_numpy_1thread"] == pytest.approx(base["seconds"] / r["seconds"], rel=1e-12), r
    assert rows[0]["vs_bandwidth"] == 1.0
    assert all(r["speedup_vs_numpy_1thread"] == 1.0 for r in rows if r["impl"].startswith("numpy 1 thread"))


def test_bench_machine_fields(bench):
    _, data = bench
    m = data["machine"]
    assert m["fastinit"] == fastinit.__version__
    assert m["simd_level"] in ("scalar", "avx2", "avx512")
    assert m["numba_threads"] >= 1 and m["cpu_count"] >= 1
    assert m["threading_layer"] in ("tbb", "omp", "workqueue")
    assert m["numba"] == numba.__version__


def test_bench_table_matches_json(bench):
    out, data = bench
    lines = out.splitlines()
    m = data["machine"]
    assert lines[0].startswith(f"fastinit {m['fastinit']}  simd={m['simd_level']}  threads={m['numba_threads']}")
    assert "median of 1 runs" in lines[1]
    head = next(i for i, s in enumerate(lines) if s.startswith("operation"))
    for col in ("implementation", "time s", "GiB/s", "of fill bw", "vs numpy 1t"):
        assert col in lines[head]
    assert set(lines[head + 1]) == {"-"}
    table = lines[head + 2:]
    assert len(table) == len(data["rows"])
    for line, r in zip(table, data["rows"]):
        assert line.startswith(f"{r['op']:<15} {r['impl']:<28} "), line
        gib, pct, ratio = re.fullmatch(r".* (\S+) +(\d+)% +(\S+)x", line).groups()
        assert gib == f"{r['gib_per_s']:.2f}"
        assert int(pct) == round(100 * r["vs_bandwidth"])
        assert ratio == f"{r['speedup_vs_numpy_1thread']:.1f}"


def test_info():
    r = fastinit_cmd("info")
    assert r.returncode == 0, r.stderr[-3000:]
    fields = dict(line.split(None, 1) for line in r.stdout.splitlines())
    assert fields["fastinit"] == fastinit.__version__
    assert fields["simd_level"] in ("scalar", "avx2", "avx512")
    assert int(fields["numba_threads"]) >= 1
    for k in ("python", "numpy", "numba", "threading_layer", "library", "numba_cache", "torch"):
        assert fields.get(k), f"fastinit info has no {k} line:\n{r.stdout}"
    js = fastinit_cmd("info", "--json")
    assert js.returncode == 0, js.stderr[-3000:]
    data = json.loads(js.stdout)
    assert {k: str(v) for k, v in data.items()} == fields


@pytest.mark.parametrize("args, option", [
    (["--size", "banana"], "--size"),
    (["--size", "100"], "--size"),  # below the 4096-byte minimum
    (["--size", "infGiB"], "--size"),
    (["--repeat", "0"], "--repeat"),
    (["--repeat", "-3"], "--repeat"),
    (["--repeat", "two"], "--repeat"),
])
def test_bench_bad_arguments(args, option, capsys):
    # in-process (argparse exits before anything runs); the subprocess test below checks the real exit
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--no-torch", *args])
    assert exc.value.code == 2
    err = capsys.readouterr()
    assert f"argument {option}:" in err.err and err.out == "", err


def test_bench_bad_argument_exit_status():
    r = fastinit_cmd("bench", "--size", "banana", "--repeat", "1", timeout=60)
    assert r.returncode == 2 and r.stdout == ""
    assert "argument --size: size must look like 1GiB" in r.stderr and "Traceback" not in r.stderr, r.stderr
