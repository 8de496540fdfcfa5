"""The plotting step of ``fastinit simulate``: its 8 PNGs timed alone, on one sweep's results.

Usage (from the repository root)::

    PYTHONPATH=. python benchmarks/scripts/simulate_plots.py [--repeats 5] [--quick] [--runs-cache FILE]
    PYTHONPATH=. python benchmarks/scripts/simulate_plots.py --keep DIR   # also leave one set of PNGs in DIR

It runs the default study's sweep once (7 schemes x 4 activations, depth 50, width 512, batch
1024, float64, one network each, histograms at layers 1, 12, 25, 37, 50: the call
``fastinit._simulate_cli`` makes; ``--quick`` for its tiny sizes), builds the ``runs`` dict as the
command does and pickles it, then times the command's plotting step (``_simulate_cli._plots``: the
8 files ``variance_<activation>.png`` and ``histograms_<activation>.png`` written into a temporary
directory) in two ways, ``--repeats`` times each:

* ``fresh``: one round in a new process per repeat, with ``fastinit.sim`` imported first as in the
  command; the round includes matplotlib's import and first use (font loading), so it is the cost
  that ``fastinit simulate`` pays;
* ``warm``: rounds after a first one in this process (matplotlib loaded): the drawing alone.

Each prints the median and every round of

* ``wall``: ``time.perf_counter``;
* ``cpu``: the process's CPU time (``time.process_time``) plus that of its finished child
  processes (``resource.getrusage(RUSAGE_CHILDREN)``), so that work in worker processes would count.

On a shared machine compare CPU times; the wall times wait for the cores. ``--runs-cache FILE``
keeps the pickled sweep in FILE (made the first time, loaded after) to skip the sweep between edits.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def study_runs(quick):
    """The default study's sweep, as ``fastinit simulate`` runs it; (runs, schemes, activations, hist, sizes)."""
    from fastinit import sim
    from fastinit._simulate_cli import _DEFAULTS, _QUICK, STUDY_ACTIVATIONS, STUDY_SCHEMES, scheme_spec

    sizes = dict(_QUICK if quick else _DEFAULTS)
    L = sizes["depth"]
    schemes, acts = list(STUDY_SCHEMES), list(STUDY_ACTIVATIONS)
    hist = sorted({1, max(1, L // 4), max(1, L // 2), max(1, 3 * L // 4), L})
    sw = sim.sweep(inits=[scheme_spec(s)[:2] for s in schemes], activations=acts, depths=[L],
                   widths=[sizes["width"]], seeds=[0], batch=sizes["batch"], n_networks=1, bias=0.0,
                   dtype="float64", histograms=True, hist_layers=hist, hist_bins=60)
    by_grid = dict(zip([(s, a) for s in schemes for a in acts], sw.results.values(), strict=True))
    runs = {(s, a): by_grid[(s, a)] for a in acts for s in schemes}
    return runs, schemes, acts, hist, sizes


def _cpu():
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + ch.ru_utime + ch.ru_stime


def one_round(data, keep=None):
    """Time ``_simulate_cli._plots`` once on ``data``; (wall, cpu, number of files)."""
    from fastinit._simulate_cli import _plots

    runs, schemes, acts, hist, sizes = data
    with tempfile.TemporaryDirectory() as out:
        w0, c0 = time.perf_counter(), _cpu()
        written = _plots(runs, schemes, acts, hist, out, sizes)
        wall, cpu = time.perf_counter() - w0, _cpu() - c0
        if keep:
            os.makedirs(keep, exist_ok=True)
            for p in written:
                shutil.copy(p, keep)
    return wall, cpu, len(written)


def _fresh_main(path):
    """The child of ``fresh``: the command's imports, then one round."""
    import fastinit.sim  # noqa: F401  (loaded before the plots in the command too)

    with open(path, "rb") as fh:
        data = pickle.load(fh)
    wall, cpu, n = one_round(data)
    print(json.dumps({"wall": wall, "cpu": cpu, "files": n}))


def _report(name, walls, cpus):
    for what, v in (("wall", walls), ("cpu", cpus)):
        print(f"{name:5s} {what:4s} median {statistics.median(v):6.3f} s   rounds: " + ", ".join(f"{t:.3f}" for t in v))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="rounds of each kind (default 5)")
    ap.add_argument("--quick", action="store_true", help="the --quick study's sizes (smoke test)")
    ap.add_argument("--runs-cache", default=None, metavar="FILE", help="pickle of the sweep's results")
    ap.add_argument("--keep", default=None, metavar="DIR", help="copy one round's PNGs into DIR")
    ap.add_argument("--fresh-child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.fresh_child:
        return _fresh_main(args.fresh_child)
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.runs_cache or os.path.join(tmp, "runs.pkl")
        if not os.path.exists(cache):
            t = time.perf_counter()
            data = study_runs(args.quick)
            print(f"sweep: {time.perf_counter() - t:.1f} s (not timed below)")
            with open(cache, "wb") as fh:
                pickle.dump(data, fh)
        walls, cpus = [], []
        for _ in range(args.repeats):
            out = subprocess.run([sys.executable, __file__, "--fresh-child", cache], check=True,
                                 capture_output=True, text=True, env=dict(os.environ)).stdout
            r = json.loads(out.strip().splitlines()[-1])
            walls.append(r["wall"])
            cpus.append(r["cpu"])
        _report("fresh", walls, cpus)
        with open(cache, "rb") as fh:
            data = pickle.load(fh)
    one_round(data)  # matplotlib's import and first use
    walls, cpus = [], []
    for i in range(args.repeats):
        wall, cpu, _ = one_round(data, args.keep if i == args.repeats - 1 else None)
        walls.append(wall)
        cpus.append(cpu)
    _report("warm", walls, cpus)


if __name__ == "__main__":
    main()
