"""Ratio tables (Markdown) from a pytest-benchmark JSON file, as docs/benchmarks.md shows them.

    pytest benchmarks/bench_init.py --benchmark-enable --benchmark-json=init.json
    python benchmarks/report.py init.json                    # every implementation against fastinit
    python benchmarks/report.py init.json --impls torch,numpy_reference

One table per benchmark file, one row per ``benchmark.group`` (one comparison, e.g. a function at
one shape), one time column per implementation (the ``impl`` parameter of the benchmark, else the
test's name without ``test_bench_``), then one ratio column per other implementation:
``its time / fastinit's time``, so "3.2x" means fastinit took 3.2 times less. The last row is the
geometric mean of each ratio column over the groups that have both times. Above the tables: the
machine, threads and SIMD level recorded in the JSON (``benchmarks/conftest.py`` adds fastinit's
own facts under ``machine_info["fastinit"]``).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections import defaultdict

STATS = ("median", "min", "mean")


def impl_name(bench: dict) -> str:
    """The implementation a benchmark measures: its ``impl`` parameter, else its test's name."""
    params = bench.get("params") or {}
    if "impl" in params:
        return str(params["impl"])
    return re.sub(r"^test_bench_", "", bench["name"].split("[", 1)[0])


def group_label(group: str) -> str:
    """``"uniform_|4096x4096"`` -> ``"`uniform_` 4096x4096"``: a function name in code style."""
    head, *rest = group.split("|")
    head = f"`{head}`" if head.endswith("_") else head
    return " ".join([head, *rest])


def fmt_time(seconds: float) -> str:
    """Milliseconds with three significant digits, trailing zeros kept (``28.0``); whole from 100 up."""
    ms = seconds * 1e3
    decimals = max(0, 2 - math.floor(math.log10(ms))) if ms > 0 else 0
    return f"{ms:.{decimals}f}"


def fmt_ratio(r: float) -> str:
    """``3.2x``; two decimals below 1, none from 100 up."""
    if r >= 100:
        return f"{r:.0f}x"
    return f"{r:.1f}x" if r >= 1 else f"{r:.2f}x"


def collect(data: dict, stat: str = "median") -> dict[str, dict[str, dict[str, float]]]:
    """{file: {group: {impl: seconds}}} in the order of the JSON."""
    out: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)
    for b in data["benchmarks"]:
        if not b.get("stats"):
            continue  # a benchmark that failed or was skipped has no stats
        source = b.get("fullname", b["name"]).split("::", 1)[0]
        out[source].setdefault(b.get("group") or b["name"], {})[impl_name(b)] = b["stats"][stat]
    return dict(out)


def ratio_table(groups: dict[str, dict[str, float]], base: str = "fastinit",
                impls: list[str] | None = None) -> list[str]:
    """Markdown lines: one row per group with `base`, times in ms, other / base ratios, geometric means."""
    groups = {g: t for g, t in groups.items() if base in t}
    if impls is None:
        impls = list(dict.fromkeys(i for t in groups.values() for i in t if i != base))
    cols = [base, *impls]
    lines = ["| comparison | " + " | ".join(f"{c} ms" for c in cols) + " | "
             + " | ".join(f"{c} / {base}" for c in impls) + " |",
             "|---|" + "---:|" * (len(cols) + len(impls))]
    ratios: dict[str, list[float]] = {i: [] for i in impls}
    for g, t in groups.items():
        cells = [fmt_time(t[c]) if c in t else "—" for c in cols]
        for i in impls:
            if i in t:
                ratios[i].append(t[i] / t[base])
            cells.append(fmt_ratio(t[i] / t[base]) if i in t else "—")
        lines.append(f"| {group_label(g)} | " + " | ".join(cells) + " |")
    means = []
    for i in impls:
        r = ratios[i]
        mean = fmt_ratio(math.exp(sum(map(math.log, r)) / len(r))) if r else "—"
        means.append(mean if len(r) in (0, len(groups)) else f"{mean} ({len(r)} of {len(groups)})")
    lines.append("| **geometric mean** | " + " | ".join([""] * len(cols)) + " | " + " | ".join(means) + " |")
    return lines


def machine_line(data: dict) -> str:
    """One line of conditions: CPU, threads, SIMD level and versions, from the JSON."""
    m = data.get("machine_info", {})
    cpu = m.get("cpu", {})
    fi = m.get("fastinit")
    parts = [cpu.get("brand_raw") or m.get("processor") or m.get("machine", "unknown CPU"),
             f"{cpu.get('count', '?')} CPUs", f"Python {m.get('python_version', '?')}"]
    if fi:
        parts += [f"NumPy {fi['numpy']}", f"Numba {fi['numba']} ({fi['threading_layer']})",
                  f"fastinit {fi['fastinit']} at SIMD level {fi['simd_level']} on {fi['numba_threads']} threads"]
        if fi.get("torch_threads"):
            parts.append(f"torch {fi['torch']} on {fi['torch_threads']} threads")
    else:
        parts.append("(fastinit's SIMD level and threads not recorded: run with benchmarks/conftest.py)")
    return "; ".join(parts) + "."


def report(data: dict, base: str = "fastinit", impls: list[str] | None = None, stat: str = "median") -> str:
    out = [f"Machine: {machine_line(data)}",
           f"Times: the {stat} of each benchmark's rounds; ratios: other time / {base} time.", ""]
    for source, groups in collect(data, stat).items():
        if not any(base in t for t in groups.values()):
            continue
        out += [f"`{source}`:", "", *ratio_table(groups, base, impls), ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("json", help="a file written by pytest --benchmark-json")
    p.add_argument("--base", default="fastinit", help="the implementation the others are divided by")
    p.add_argument("--impls", help="comma-separated implementations to show (default: all)")
    p.add_argument("--stat", choices=STATS, default="median", help="which statistic of the rounds")
    args = p.parse_args(argv)
    try:
        with open(args.json) as f:
            data = json.load(f)
    except (OSError, ValueError) as e:
        p.error(f"cannot read {args.json}: {e}")
    impls = [i for i in args.impls.split(",") if i] if args.impls else None
    print(report(data, args.base, impls, args.stat))
    return 0


if __name__ == "__main__":
    sys.exit(main())
