"""The benchmarks' tooling: the report that writes docs/benchmarks.md's ratio tables, and
``pytest benchmarks`` collecting without torch."""

import importlib.util
import json
import math
import pathlib
import subprocess
import sys

import pytest

from _subproc import NEUTRAL_CWD

ROOT = pathlib.Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("bench_report", ROOT / "benchmarks" / "report.py")
report = importlib.util.module_from_spec(spec)
spec.loader.exec_module(report)

# median seconds per (group, implementation); kaiming_normal_ has no numpy_reference entry
TIMES = {
    "uniform_|4096x4096": {"fastinit": 0.004, "torch": 0.048, "numpy_reference": 0.071},
    "normal_|4096x4096": {"fastinit": 0.005, "torch": 0.0575, "numpy_reference": 0.2},
    "kaiming_normal_|4096x4096": {"fastinit": 0.008, "torch": 0.004},
}


def synthetic_json():
    benchmarks = []
    for group, impls in TIMES.items():
        for impl, t in impls.items():
            name = f"test_bench_init[{group.split('|')[0]}-{impl}-4096x4096]"
            benchmarks.append({"group": group, "name": name, "fullname": f"benchmarks/bench_init.py::{name}",
                               "params": {"impl": impl}, "stats": {"median": t, "min": t / 2, "mean": 2 * t}})
    benchmarks.append({"group": "sgemm|64", "name": "test_bench_sgemm", "fullname": "benchmarks/bench_sim.py::"
                       "test_bench_sgemm", "params": None, "stats": {"median": 1.0, "min": 1.0, "mean": 1.0}})
    machine = {"cpu": {"brand_raw": "Test CPU 9000", "count": 2}, "python_version": "3.11.7",
               "fastinit": {"fastinit": "0.1.0", "numpy": "2.4.6", "numba": "0.68.1", "threading_layer": "tbb",
                            "simd_level": "avx512", "numba_threads": 2, "torch": "2.13.0", "torch_threads": 2}}
    return {"machine_info": machine, "benchmarks": benchmarks}


def rows(text):
    """{first cell: [cells]} of every Markdown table row."""
    out = {}
    for line in text.splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            out[cells[0]] = cells[1:]
    return out


def test_report_ratios_and_geometric_mean():
    text = report.report(synthetic_json())
    table = rows(text)
    assert table["comparison"] == ["fastinit ms", "torch ms", "numpy_reference ms",
                                   "torch / fastinit", "numpy_reference / fastinit"]
    for group, t in TIMES.items():
        cells = table[report.group_label(group)]
        assert [float(c) for c in cells[:2]] == pytest.approx([1e3 * t["fastinit"], 1e3 * t["torch"]], rel=5e-3)
        assert float(cells[3].rstrip("x")) == pytest.approx(t["torch"] / t["fastinit"], rel=0.05)
        if "numpy_reference" in t:
            assert float(cells[4].rstrip("x")) == pytest.approx(t["numpy_reference"] / t["fastinit"], rel=0.05)
        else:
            assert cells[2] == cells[4] == "—"
    torch_ratios = [t["torch"] / t["fastinit"] for t in TIMES.values()]  # 12, 11.5, 0.5
    ref_ratios = [t["numpy_reference"] / t["fastinit"] for t in TIMES.values() if "numpy_reference" in t]
    mean = table["**geometric mean**"]
    assert float(mean[3].rstrip("x")) == pytest.approx(math.prod(torch_ratios) ** (1 / 3), rel=0.05)
    value, count = mean[4].split(" ", 1)  # two of the three groups have a NumPy time
    assert float(value.rstrip("x")) == pytest.approx(math.prod(ref_ratios) ** (1 / 2), rel=0.05)
    assert count == "(2 of 3)"
    assert "bench_sim.py" not in text  # no fastinit entry there: nothing to divide by


def test_report_formats():
    assert [report.fmt_ratio(r) for r in (123.4, 12.34, 3.21, 0.4812)] == ["123x", "12.3x", "3.2x", "0.48x"]
    assert [report.fmt_time(s) for s in (2.6886, 0.7075, 0.02799, 0.00372, 0.0000372)] == [
        "2689", "708", "28.0", "3.72", "0.0372"]
    assert report.group_label("orthogonal_|1024x1024|float32") == "`orthogonal_` 1024x1024 float32"
    assert report.group_label("sgemm|4096x1024x1024") == "sgemm 4096x1024x1024"


def test_report_machine_line():
    line = report.machine_line(synthetic_json())
    for fact in ("Test CPU 9000", "2 CPUs", "SIMD level avx512", "on 2 threads", "torch 2.13.0 on 2 threads"):
        assert fact in line, line


def test_report_command_line(tmp_path):
    path = tmp_path / "b.json"
    path.write_text(json.dumps(synthetic_json()))
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "report.py"), str(path), "--impls", "torch"],
                       capture_output=True, text=True, timeout=60, cwd=NEUTRAL_CWD)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == report.report(synthetic_json(), impls=["torch"]).strip()
    assert "numpy_reference" not in r.stdout
    bad = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "report.py"), str(tmp_path / "missing.json")],
                         capture_output=True, text=True, timeout=60, cwd=NEUTRAL_CWD)
    assert bad.returncode == 2 and "cannot read" in bad.stderr and "Traceback" not in bad.stderr


def test_benchmarks_collect_without_torch():
    # `import torch` fails in the child as if torch were not installed (None in sys.modules)
    code = ("import sys; sys.modules['torch'] = None; import pytest; "
            "sys.exit(pytest.main(sys.argv[1:]))")
    r = subprocess.run([sys.executable, "-c", code, "--collect-only", "-q", "-p", "no:cacheprovider",
                        f"--rootdir={ROOT}", "-c", str(ROOT / "pyproject.toml"), str(ROOT / "benchmarks")],
                       capture_output=True, text=True, timeout=300, cwd=NEUTRAL_CWD)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    collected = {line.split("::", 1)[0].rsplit("/", 1)[-1] for line in r.stdout.splitlines() if "::" in line}
    assert collected == {p.name for p in (ROOT / "benchmarks").glob("bench_*.py")}, collected
