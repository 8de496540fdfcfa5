"""The plotting step of ``fastinit simulate``: its 8 PNGs timed alone, on one sweep's results.

Usage (from the repository root)::

    PYTHONPATH=. python benchmarks/scripts/simulate_plots.py [--repeats 5] [--quick] [--runs-cache FILE]
    PYTHONPATH=. python benchmarks/scripts/simulate_plots.py --keep DIR   # also leave one set of PNGs in DIR

It runs the default study's sweep once (7 schemes x 4 activations, depth 50, width 512, batch
1024, float64, one network each, histograms at layers 1, 12, 25, 37, 50: the call
``fastinit._simulate_cli`` makes; ``--quick`` for its tiny sizes), builds the ``runs`` dict as the
command does, then writes the 8 figures (``variance_<activation>.png``, ``histograms_<activation>.png``)
``--repeats`` times into a temporary directory, timing each round:

* ``wall``: ``time.perf_counter``;
* ``cpu``: this process's CPU time (``time.process_time``) plus that of its finished child
  processes (``resource.getrusage(RUSAGE_CHILDREN)``), so that figures rendered in worker
  processes count too.

The first round (imports of matplotlib, font cache) is printed apart and left out of the medians.
``--runs-cache FILE`` pickles the sweep's results into FILE the first time and loads them after,
to skip the ~25 s sweep between edits of the plotting code.
"""

from __future__ import annotations

import argparse
import os
import pickle
import resource
import shutil
import statistics
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


def _plot_function():
    try:
        from fastinit._simulate_plots import write_plots
    except ImportError:  # the code from before the plots had a module of their own (for comparison)
        from fastinit._simulate_cli import _plots as write_plots
    return write_plots


def _cpu():
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + ch.ru_utime + ch.ru_stime


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5, help="timed rounds after the first (default 5)")
    ap.add_argument("--quick", action="store_true", help="the --quick study's sizes (smoke test)")
    ap.add_argument("--runs-cache", default=None, metavar="FILE", help="pickle of the sweep's results")
    ap.add_argument("--keep", default=None, metavar="DIR", help="copy the last round's PNGs into DIR")
    args = ap.parse_args(argv)
    if args.runs_cache and os.path.exists(args.runs_cache):
        with open(args.runs_cache, "rb") as fh:
            data = pickle.load(fh)
    else:
        t = time.perf_counter()
        data = study_runs(args.quick)
        print(f"sweep: {time.perf_counter() - t:.1f} s", file=sys.stderr)
        if args.runs_cache:
            with open(args.runs_cache, "wb") as fh:
                pickle.dump(data, fh)
    runs, schemes, acts, hist, sizes = data
    write_plots = _plot_function()
    walls, cpus = [], []
    for i in range(args.repeats + 1):
        with tempfile.TemporaryDirectory() as out:
            w0, c0 = time.perf_counter(), _cpu()
            written = write_plots(runs, schemes, acts, hist, out, sizes)
            wall, cpu = time.perf_counter() - w0, _cpu() - c0
            if i == args.repeats and args.keep:
                os.makedirs(args.keep, exist_ok=True)
                for p in written:
                    shutil.copy(p, args.keep)
        if i == 0:
            print(f"first round (imports): wall {wall:.3f} s, cpu {cpu:.3f} s, {len(written)} files")
        else:
            walls.append(wall)
            cpus.append(cpu)
    print(f"plots wall median {statistics.median(walls):.3f} s   runs: " + ", ".join(f"{t:.3f}" for t in walls))
    print(f"plots cpu  median {statistics.median(cpus):.3f} s   runs: " + ", ".join(f"{t:.3f}" for t in cpus))


if __name__ == "__main__":
    main()
