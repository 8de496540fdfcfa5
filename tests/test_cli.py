"""`fastinit bench` and `fastinit info` as a user runs them (python -m fastinit in a subprocess)."""

import json
import math
import os
import re
import subprocess
import sys

import numba
import pytest

import fastinit
from _subproc import NEUTRAL_CWD
from fastinit import _bench
from fastinit.cli import main

SIZE = 8 << 20  # 8 MiB: every row runs, in a few seconds


def fastinit_cmd(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "fastinit", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=NEUTRAL_CWD)


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "bench.json"
    r = fastinit_cmd("bench", "--size", "8MiB", "--repeat", "1", "--no-torch", "--json", str(path))
    assert r.returncode == 0, r.stderr[-3000:]
    assert [p.name for p in path.parent.iterdir()] == ["bench.json"]  # no temporary file left beside it
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
    for line, r in zip(table, data["rows"], strict=True):
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


def assert_one_line_usage_error(r, option):
    """Exit 2 before any work (nothing on stdout: not even the header), one line naming the option."""
    assert r.returncode == 2, (r.returncode, r.stderr[-3000:])
    assert r.stdout == "", r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"fastinit bench: error: argument {option}: "), r.stderr


def test_bench_size_beyond_available_memory_is_refused():
    # twice the physical memory can never be available; without the check NumPy raises MemoryError
    # (or, with overcommit, the fill starts and the OOM killer ends it)
    too_big = 2 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    r = fastinit_cmd("bench", "--size", str(too_big), "--repeat", "1", "--no-torch", timeout=120)
    assert_one_line_usage_error(r, "--size")
    assert "available" in r.stderr


@pytest.mark.parametrize("available, refused", [(1 << 30, True), (1 << 50, False)])
def test_bench_memory_check_in_process(monkeypatch, capsys, available, refused):
    # the check compares the estimate with what is available, before any measurement
    calls = []
    monkeypatch.setattr(_bench, "available_memory", lambda: available)
    monkeypatch.setattr(_bench, "fill_rows", lambda *a, **k: calls.append(a) or [])
    assert main(["bench", "--size", "1GiB", "--repeat", "1", "--no-torch"]) == (2 if refused else 0)
    err = capsys.readouterr().err
    assert (calls == []) == refused
    assert ("argument --size:" in err) == refused, err


def test_available_memory_is_plausible():
    avail = _bench.available_memory()
    if avail is None:
        pytest.skip("no /proc/meminfo: available memory unknown, the check is skipped")
    assert 0 < avail <= os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


@pytest.mark.parametrize("where", ["missing directory", "a directory", "under a file"])
def test_bench_json_unwritable_is_refused_before_work(tmp_path, where):
    (tmp_path / "file").write_text("x")
    path = {"missing directory": tmp_path / "missing" / "out.json", "a directory": tmp_path,
            "under a file": tmp_path / "file" / "out.json"}[where]
    r = fastinit_cmd("bench", "--size", "8MiB", "--repeat", "1", "--no-torch", "--json", str(path), timeout=120)
    assert_one_line_usage_error(r, "--json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # nothing written anywhere


def test_bench_out_of_memory_is_one_line(tmp_path):
    # A limit the estimate cannot see (here an address-space cap set after the imports): the
    # allocation fails, and the user gets one line (exit 1), not a traceback, and no JSON file.
    code = """if True:
        import resource, sys
        from fastinit import _bench, cli
        _bench.available_memory = lambda: None  # as on a system where it is unknown
        vm = int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmSize:"))) << 10
        resource.setrlimit(resource.RLIMIT_AS, (vm + (1 << 30), vm + (1 << 30)))
        sys.exit(cli.main(["bench", "--size", "2GiB", "--repeat", "1", "--no-torch", "--json", sys.argv[1]]))
    """
    if not os.path.exists("/proc/self/status"):
        pytest.skip("needs Linux's /proc/self/status")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "b.json")], capture_output=True, text=True,
                       timeout=120, cwd=NEUTRAL_CWD)
    assert r.returncode == 1, r.stderr[-3000:]
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("fastinit bench: error: out of memory"), lines
    assert "--size" in lines[0], lines
    assert list(tmp_path.iterdir()) == []
