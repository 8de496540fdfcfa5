"""Start-up cost: ``import fastinit`` and the first fill in a fresh process, cold and warm Numba cache.

    python benchmarks/scripts/startup.py               # 5 fresh processes per condition, medians
    python benchmarks/scripts/startup.py --runs 9 --json startup.json

Each run is a new interpreter (``python -c``) that times, with ``time.perf_counter``:
``import numpy`` and ``import numba`` (what any Numba user pays), ``import fastinit`` on top of
them, the first fill (``normal_`` of a 1024 x 1024 float32 array: this compiles or loads the
parallel drivers), and the same fill again (the steady state, for comparison). "process" is
the wall time of the whole subprocess as the parent sees it, interpreter start-up included.

Conditions:

* ``cold cache``: an empty ``NUMBA_CACHE_DIR`` for every run, so the drivers are compiled and
  written to the cache (the first run after an install or an upgrade).
* ``warm cache``: one ``NUMBA_CACHE_DIR`` filled by an untimed run first (every later run).
* ``cache off``: ``FASTINIT_NUMBA_CACHE=0``, compiled in every process and nothing written.

Python's own bytecode caches are warm in every condition. This is a script, not a test: no file in
``benchmarks/scripts/`` matches pytest's ``python_files``, so ``pytest benchmarks`` leaves it alone.
The numbers are noisy when other work runs on the machine; the median of several runs is printed,
with the spread (min-max) of the first fill.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import json, time
t0 = time.perf_counter()
import numpy as np
t1 = time.perf_counter()
import numba
t2 = time.perf_counter()
import fastinit
t3 = time.perf_counter()
w = np.empty((1024, 1024), np.float32)
fastinit.normal_(w, generator=0)
t4 = time.perf_counter()
fastinit.normal_(w, generator=0)
t5 = time.perf_counter()
print(json.dumps({"numpy": t1 - t0, "numba": t2 - t1, "fastinit": t3 - t2, "first_fill": t4 - t3,
                  "second_fill": t5 - t4, "threads": numba.get_num_threads(), "simd": fastinit.simd_level()}))
"""

COLUMNS = [  # (key, header)
    ("numpy", "numpy"),
    ("numba", "+numba"),
    ("fastinit", "+fastinit"),
    ("first_fill", "1st fill"),
    ("second_fill", "2nd fill"),
    ("process", "process"),
]


def _child_env(extra: dict) -> dict:
    env = dict(os.environ)
    # the child runs outside the checkout (python -c puts the cwd on sys.path, and a source tree
    # without the compiled library would shadow the package), so point it at this fastinit
    spec = importlib.util.find_spec("fastinit")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("fastinit is not importable: install it, or run with PYTHONPATH=<checkout>")
    root = str(pathlib.Path(next(iter(spec.submodule_search_locations))).resolve().parent)
    env["PYTHONPATH"] = os.pathsep.join([root] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.pop("NUMBA_DISABLE_JIT", None)
    env.update(extra)
    return env


def run_once(extra_env: dict) -> dict:
    env = _child_env(extra_env)
    t = time.perf_counter()
    r = subprocess.run([sys.executable, "-c", CHILD], env=env, capture_output=True, text=True,
                       cwd=tempfile.gettempdir(), timeout=900)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        sys.exit(f"child failed:\n{r.stderr}")
    out = json.loads(r.stdout.splitlines()[-1])
    out["process"] = wall
    return out


def measure(runs: int, conditions=("cold cache", "warm cache", "cache off")) -> dict:
    results = {}
    with tempfile.TemporaryDirectory(prefix="fastinit-startup-") as tmp:
        warm_dir = os.path.join(tmp, "warm")
        for cond in conditions:
            samples = []
            if cond == "warm cache":
                run_once({"NUMBA_CACHE_DIR": warm_dir, "FASTINIT_NUMBA_CACHE": "1"})  # fill the cache, untimed
            for i in range(runs):
                if cond == "cold cache":
                    env = {"NUMBA_CACHE_DIR": os.path.join(tmp, f"cold{i}"), "FASTINIT_NUMBA_CACHE": "1"}
                elif cond == "warm cache":
                    env = {"NUMBA_CACHE_DIR": warm_dir, "FASTINIT_NUMBA_CACHE": "1"}
                else:
                    env = {"NUMBA_CACHE_DIR": os.path.join(tmp, "off"), "FASTINIT_NUMBA_CACHE": "0"}
                samples.append(run_once(env))
                print(f"  {cond}: run {i + 1}/{runs}", file=sys.stderr, end="\r", flush=True)
            results[cond] = samples
    print(" " * 40, file=sys.stderr, end="\r")
    return results


def table(results: dict) -> str:
    runs = next(iter(results.values()))
    first = runs[0]
    lines = [f"median of {len(runs)} fresh processes per row, seconds; "
             f"threads={first['threads']} simd={first['simd']} python={sys.version.split()[0]}",
             f"{'condition':<11} " + " ".join(f"{h:>9}" for _, h in COLUMNS) + "  1st fill min-max"]
    lines.append("-" * len(lines[-1]))
    for cond, samples in results.items():
        med = {k: statistics.median(s[k] for s in samples) for k, _ in COLUMNS}
        lo, hi = min(s["first_fill"] for s in samples), max(s["first_fill"] for s in samples)
        lines.append(f"{cond:<11} " + " ".join(f"{med[k]:>9.3f}" for k, _ in COLUMNS) + f"  {lo:.3f}-{hi:.3f}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=5, help="fresh processes per condition (default 5)")
    p.add_argument("--conditions", default="cold cache,warm cache,cache off",
                   help="comma-separated subset of: cold cache, warm cache, cache off")
    p.add_argument("--json", metavar="PATH", help="also write every sample as JSON")
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error("argument --runs: must be >= 1")
    conds = [c.strip() for c in args.conditions.split(",") if c.strip()]
    unknown = set(conds) - {"cold cache", "warm cache", "cache off"}
    if unknown:
        p.error(f"argument --conditions: unknown {sorted(unknown)}")
    results = measure(args.runs, conds)
    print(table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
