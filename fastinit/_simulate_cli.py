"""``fastinit simulate``: the notes' classic initialization study, measured and predicted.

With no arguments it simulates zeros, small, large, Xavier, He, LeCun and orthogonal
initialization on tanh, ReLU, SELU and GELU networks (50 layers of width 512, batch 1024, float64;
the first run also compiles the kernels, later runs load them from Numba's on-disk cache), prints
a forward and a backward table per activation (pooled pre-activation variance and gradient second
moment at a few depths, with the mean-field theory and the finite-width band of one network beside
each, and a verdict), and writes into ``--output-dir`` (default ``./fastinit-simulate/``):

* ``results.json``: configuration, every statistic per layer with standard errors and theory;
* ``results.csv``: the same as a tidy table (one row per scheme, activation and layer);
* ``variance_<activation>.png``: variance vs depth per scheme, forward and backward, with the band;
  schemes that vanish or explode on axes of their own;
* ``histograms_<activation>.png``: post-activation histograms at a few layers per scheme.

The notes' full size (width 1024, batch 4096) is ``--width 1024 --batch 4096`` (about 16x the
work). ``--quick`` runs a tiny version for smoke tests.
"""

from __future__ import annotations

import csv
import json
import math
import os
import socket
import sys
import time

import numpy as np

__all__ = ["add_simulate_parser", "run_simulate", "STUDY_SCHEMES", "STUDY_ACTIVATIONS"]

#: The notes' schemes: CLI name -> (fastinit.sim init name, init_params, label).
STUDY_SCHEMES = {
    "zeros": ("zeros", None, "zeros"),
    "small": ("small", None, "N(0, 0.01^2)"),
    "large": ("large", None, "N(0, 1)"),
    "xavier": ("xavier_normal", None, "Xavier normal"),
    "he": ("kaiming_normal", {"nonlinearity": "relu"}, "He normal (relu gain)"),
    "lecun": ("lecun_normal", None, "LeCun normal"),
    "orthogonal": ("orthogonal", None, "orthogonal"),
}
STUDY_ACTIVATIONS = ("tanh", "relu", "selu", "gelu")

_DEFAULTS = dict(depth=50, width=512, batch=1024)
_QUICK = dict(depth=6, width=48, batch=64)


def _csv_list(text):
    return [t.strip() for t in text.split(",") if t.strip()]


def _int_list(text):
    return [int(t) for t in _csv_list(text)]


def add_simulate_parser(subparsers):
    """Add the ``simulate`` sub-command to an ``argparse`` sub-parser set."""
    p = subparsers.add_parser(
        "simulate",
        help="layer-by-layer variance study of initialization schemes, with mean-field theory",
        description=__doc__.split("\n\n")[1],
    )
    p.add_argument("--schemes", type=_csv_list, default=list(STUDY_SCHEMES),
                   help="comma list of " + ",".join(STUDY_SCHEMES) + " or any fastinit.sim init "
                        "name (default: all seven)")
    p.add_argument("--activations", type=_csv_list, default=list(STUDY_ACTIVATIONS),
                   help="comma list (default: tanh,relu,selu,gelu)")
    p.add_argument("--depth", type=int, default=None, help=f"layers (default {_DEFAULTS['depth']})")
    p.add_argument("--width", type=int, default=None, help=f"units per layer (default {_DEFAULTS['width']})")
    p.add_argument("--batch", type=int, default=None, help=f"input samples (default {_DEFAULTS['batch']})")
    p.add_argument("--networks", type=int, default=1, help="independent networks per configuration "
                                                           "(>= 2 gives standard errors; default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random streams (default 0)")
    p.add_argument("--bias", type=float, default=0.0, help="constant bias (default 0)")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float64",
                   help="float64 (default) keeps vanishing/exploding runs finite over 50 layers; "
                        "float32 is faster but under/overflows beyond 1e-38/3e38")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run on a running dask.distributed cluster, e.g. tcp://10.0.0.5:8786 "
                        "(one task per configuration; needs fastinit[dask])")
    p.add_argument("--report-layers", type=_int_list, default=None,
                   help="layers shown in the table (default: 1, L/5, L/2, L)")
    p.add_argument("--hist-layers", type=_int_list, default=None,
                   help="layers with histograms (default: 1, L/4, L/2, 3L/4, L)")
    p.add_argument("--output-dir", default="fastinit-simulate", help="folder for JSON, CSV and PNGs "
                                                                     "(default ./fastinit-simulate/)")
    p.add_argument("--json", default=None, help="JSON path (default OUTPUT_DIR/results.json)")
    p.add_argument("--csv", default=None, help="CSV path (default OUTPUT_DIR/results.csv)")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--jacobian", action="store_true",
                   help="singular values of the input-output Jacobian instead of the variance study: mean, "
                        "spread and condition number with free-probability theory, densities as PNG")
    p.add_argument("--quick", action="store_true",
                   help=f"tiny run for smoke tests (depth {_QUICK['depth']}, width {_QUICK['width']}, "
                        f"batch {_QUICK['batch']}) unless sizes are given")
    return p


# ------------------------------------------------------------------------------------------
def _progress(total, enabled):
    """(update(label), close()) using rich if installed, plain lines otherwise."""
    if not enabled:
        return (lambda label: None), (lambda: None)
    try:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
    except ImportError:
        state = {"i": 0, "t0": time.perf_counter()}

        def update(label):
            state["i"] += 1
            el = time.perf_counter() - state["t0"]
            print(f"[{state['i']}/{total}] {label}  ({el:.1f} s)", file=sys.stderr, flush=True)
        return update, (lambda: None)
    from rich.console import Console
    prog = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), TimeRemainingColumn(), transient=False,
                    console=Console(stderr=True))  # stdout keeps only the tables
    prog.start()
    task = prog.add_task("simulating", total=total)

    def update(label):
        prog.update(task, advance=1, description=f"simulating {label:<24}")
    return update, prog.stop


def fmt_value(v):
    """Three significant digits; scientific notation outside [1e-3, 1e4)."""
    if v is None or not np.isfinite(v):
        return "nan" if v is None or np.isnan(v) else ("inf" if v > 0 else "-inf")
    if v == 0:
        return "0"
    a = abs(v)
    return f"{v:.3g}" if 1e-3 <= a < 1e4 else f"{v:.2e}"


def scheme_spec(name):
    if name in STUDY_SCHEMES:
        return STUDY_SCHEMES[name]
    return name, None, name


def _layers(spec, L, default, option):
    """Sorted distinct layers; given ones must lie in 1..L (refused, never clamped)."""
    if spec is None:
        return sorted(set(default))
    bad = [x for x in spec if not 1 <= x <= L]
    if bad or not spec:
        raise _UsageError(f"{option}: layers are numbered 1..{L} (the depth), got "
                          f"{','.join(map(str, spec)) or 'none'}")
    return sorted(set(spec))


def _memory_check(sizes, itemsize):
    """The simulator's memory check for one run of the study's size (MemoryError if it cannot fit)."""
    # lazy imports here and below: `fastinit info` and `--help` should not load Numba and SciPy
    from fastinit.sim._args import check_memory
    from fastinit.sim._passes import mlp_bytes

    ws = [sizes["width"]] * (sizes["depth"] + 1)
    check_memory(mlp_bytes(ws, sizes["batch"], itemsize),
                 f"depth {sizes['depth']}, width {sizes['width']}, batch {sizes['batch']}")


class _UsageError(Exception):
    """A bad option: reported as one line with exit status 2, before any work."""


SCHEDULER_TIMEOUT = 5.0  # seconds to reach --scheduler before giving up


def _connect(address):
    """A dask.distributed Client of the cluster at ``address`` (None for none); _UsageError if unreachable."""
    if address is None:
        return None
    try:
        # lazy: only --scheduler needs dask (an optional extra)
        import distributed
        import distributed.comm
    except ImportError:
        raise _UsageError("--scheduler needs dask.distributed: pip install fastinit[dask]") from None
    try:
        scheme, location = distributed.comm.parse_address(address)
        if scheme == "tcp":  # a refused port fails now; Client would retry it until the timeout
            socket.create_connection(distributed.comm.parse_host_port(location), timeout=SCHEDULER_TIMEOUT).close()
        return distributed.Client(address, timeout=SCHEDULER_TIMEOUT)
    except (OSError, TimeoutError, ValueError, TypeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _UsageError(f"--scheduler: cannot reach {address!r} ({first})") from None


def _writable(path, option):
    """Fail now, not after the simulation, if ``path`` cannot be written (a new file is removed again)."""
    existed = os.path.exists(path)
    try:
        with open(path, "a"):
            pass
    except OSError as exc:
        raise _UsageError(f"{option}: cannot write {path!r} ({exc.strerror or exc})") from None
    if not existed:
        os.remove(path)


def check_run_options(args, sizes, error):
    """The checks ``simulate`` and ``simulate --jacobian`` share: each of ``sizes`` (option -> value) >= 1,
    ``--networks``, ``--seed`` and ``--bias``; ``error``: the exception class raised with the message."""
    for k, v in sizes.items():
        if v < 1:
            raise error(f"--{k} must be >= 1, got {v}")
    if args.networks < 1:
        raise error(f"--networks must be >= 1, got {args.networks}")
    if not 0 <= args.seed < 1 << 64:
        raise error(f"--seed must lie in [0, 2**64), got {args.seed}")
    if not math.isfinite(args.bias):
        raise error(f"--bias must be finite, got {args.bias}")


def _check_options(args, sizes):
    """Every check of the options, before any directory or file is created."""
    check_run_options(args, {k: sizes[k] for k in ("depth", "width", "batch")}, _UsageError)
    args.schemes = list(dict.fromkeys(args.schemes))  # a repeated name is one configuration
    args.activations = list(dict.fromkeys(args.activations))
    if not args.schemes:
        raise _UsageError("--schemes: give at least one scheme, e.g. --schemes he,xavier")
    if not args.activations:
        raise _UsageError("--activations: give at least one activation, e.g. --activations tanh,relu")
    # the simulator's own resolvers: the same checks and messages as sim.sweep, without compiling
    from fastinit.sim._activation import resolve_activation
    from fastinit.sim._schemes import resolve_scheme

    for s in args.schemes:
        nm, prm, _ = scheme_spec(s)
        try:
            resolve_scheme(nm, prm)
        except (TypeError, ValueError) as exc:
            raise _UsageError(f"--schemes: {exc}") from None
    for a in args.activations:
        try:
            resolve_activation(a, None, None)
        except (TypeError, ValueError) as exc:
            raise _UsageError(f"--activations: {exc}") from None
    itemsize = 4 if args.dtype == "float32" else 8
    if args.scheduler is None:  # on a cluster, each worker checks its own run
        try:
            _memory_check(sizes, itemsize)
        except MemoryError as exc:
            raise _UsageError(str(exc)) from None
    L = sizes["depth"]
    report = _layers(args.report_layers, L, [1, max(1, L // 5), max(1, L // 2), L], "--report-layers")
    hist = _layers(args.hist_layers, L, [1, max(1, L // 4), max(1, L // 2), max(1, 3 * L // 4), L],
                   "--hist-layers")
    return report, hist


def run_simulate(args) -> int:
    """Run the study described by parsed ``args``; returns the exit status."""
    from fastinit import (
        sim,  # here, not at the top: `fastinit info` should not load Numba and SciPy
    )

    if args.jacobian:  # its own study, tables and plots (fastinit/_jacobian_cli.py)
        from ._jacobian_cli import run_jacobian
        return run_jacobian(args)
    sizes = dict(_QUICK if args.quick else _DEFAULTS)
    for k in ("depth", "width", "batch"):
        if getattr(args, k) is not None:
            sizes[k] = getattr(args, k)
    client = None
    try:
        report, hist = _check_options(args, sizes)
        client = _connect(args.scheduler)
        json_path = args.json or os.path.join(args.output_dir, "results.json")
        csv_path = args.csv or os.path.join(args.output_dir, "results.csv")
        try:
            os.makedirs(args.output_dir, exist_ok=True)
        except OSError as exc:
            raise _UsageError(f"--output-dir: cannot create {args.output_dir!r} ({exc.strerror or exc})") from None
        _writable(json_path, "--json")
        _writable(csv_path, "--csv")
    except _UsageError as exc:
        if client is not None:
            client.close()
        print(f"fastinit simulate: error: {exc}", file=sys.stderr)
        return 2
    try:
        return _study(args, sim, sizes, report, hist, json_path, csv_path, client)
    finally:
        if client is not None:
            client.close()


def _study(args, sim, sizes, report, hist, json_path, csv_path, client):
    """The simulation, tables and files of :func:`run_simulate` once its options are checked."""
    L, n, B = sizes["depth"], sizes["width"], sizes["batch"]
    total = len(args.schemes) * len(args.activations)
    print(f"fastinit simulate: {len(args.schemes)} schemes x {len(args.activations)} activations, "
          f"depth {L}, width {n}, batch {B}, {args.networks} network(s) each, {args.dtype}, "
          f"seed {args.seed}" + ("" if client is None else f", on {args.scheduler}"), flush=True)
    update, close = _progress(total, not args.no_progress)
    t0 = time.perf_counter()
    specs = [scheme_spec(s)[:2] for s in args.schemes]
    try:
        sw = sim.sweep(inits=specs, activations=args.activations, depths=[L], widths=[n], seeds=[args.seed],
                       batch=B, n_networks=args.networks, bias=args.bias, dtype=args.dtype,
                       histograms=True, hist_layers=hist, hist_bins=60,
                       progress=lambda done, total, label: update(label), client=client)
    except MemoryError as exc:
        print(f"fastinit simulate: error: {exc}", file=sys.stderr)
        return 2
    finally:
        close()
    elapsed = time.perf_counter() - t0
    # sweep's results are in grid order (schemes outer); the study prints activations outer
    by_grid = dict(zip([(s, a) for s in args.schemes for a in args.activations], sw.results.values(),
                       strict=True))
    runs = {(s, a): by_grid[(s, a)] for a in args.activations for s in args.schemes}

    verdicts = {key: sim.verdict(r) for key, r in runs.items()}
    _print_tables(runs, verdicts, args.schemes, args.activations, report)
    _write_json(json_path, runs, verdicts, sizes, args, elapsed)
    _write_csv(csv_path, runs, verdicts)
    written = [json_path, csv_path]
    if not args.no_plots:
        written += _plots(runs, args.schemes, args.activations, hist, args.output_dir, sizes)
    print(f"\n{total} configurations in {elapsed:.1f} s. Wrote:")
    for w in written:
        print(f"  {w}")
    return 0


# ------------------------------------------------------------------------------------------
def fmt_band_end(v):
    """Two significant digits, for the ends of a band."""
    if v is None or not np.isfinite(v):
        return "nan"
    if v == 0:
        return "0"
    if 1e-3 <= abs(v) < 1e4:
        return f"{float(f'{v:.2g}'):g}"  # 120, not 1.2e+02
    return f"{v:.1e}".replace("e-0", "e-").replace("e+0", "e").replace("e+", "e")


_GRADES = {"mean field": "mean field", "finite width": "finite width", "mismatch": "MISMATCH", "n/a": "no theory"}


def _print_tables(runs, verdicts, schemes, activations, report):
    from fastinit.sim import format_table
    from fastinit.sim._results import BAND_LEVEL, VERDICT_Z

    level = round(100 * BAND_LEVEL)
    print("\nVar(z_l): pooled pre-activation variance over batch x units; "
          "E[d^2]_l: gradient second moment dl/dz_l.\n"
          f"Each cell: simulation [mean-field theory; the {level}% finite-width band of one network].\n"
          "Verdict: the growth over the depth (a factor 10), then which theory the run supports "
          "(last layer forward, first layer backward):\n"
          "  mean field = on the mean-field line; finite width = off the line but inside the finite-width "
          f"law ({VERDICT_Z:g} sd); MISMATCH = outside both.")
    for act in activations:
        for stat, title, direction in (("preact_var", "forward, Var(z_l)", "forward"),
                                       ("grad_preact_m2", "backward, E[d^2]_l", "backward")):
            head = ["scheme"] + [f"l={l}" for l in report] + ["verdict"]
            rows = []
            for s in schemes:
                r = runs[(s, act)]
                lo, hi = r.theory_band(stat)
                cells = [s]
                for l in report:
                    v, t = r.stats[stat][l - 1], r.theory[stat][l - 1]
                    band = (f"; {fmt_band_end(lo[l - 1])}..{fmt_band_end(hi[l - 1])}"
                            if np.isfinite(lo[l - 1]) and np.isfinite(hi[l - 1]) else "")
                    cells.append(f"{fmt_value(v)} [{fmt_value(t)}{band}]")
                v = verdicts[(s, act)]
                if v["overall"] == "symmetric":
                    cells.append("symmetric")
                else:
                    cells.append(f"{v[direction]}, {_GRADES[v['theory_' + direction]]}")
                rows.append(cells)
            print(f"\n== {act}: {title} ==")
            print(format_table(head, rows, align="left"))


def _jsonable(a):
    a = np.asarray(a, dtype=np.float64)
    lst = a.tolist()

    def fix(v):
        if isinstance(v, list):
            return [fix(u) for u in v]
        return v if math.isfinite(v) else (None if math.isnan(v) else ("inf" if v > 0 else "-inf"))
    return fix(lst)


def _write_json(path, runs, verdicts, sizes, args, elapsed):
    out = {"command": "fastinit simulate", "sizes": sizes, "networks": args.networks,
           "seed": args.seed, "dtype": args.dtype, "bias": args.bias, "seconds": elapsed,
           "notes": "pooled statistics over batch x units; preact_unitvar is the mean per-unit "
                    "across-batch variance (a different quantity). NaN/inf are null/'inf'.",
           "runs": []}
    for (s, act), r in runs.items():
        out["runs"].append({
            # one seed: "seeds" (which sweep adds) would repeat the top-level "seed"
            "scheme": s, "activation": act, "config": {k: v for k, v in r.config.items() if k != "seeds"},
            "verdict": verdicts[(s, act)],
            "stats": {k: _jsonable(v) for k, v in r.stats.items()},
            "stderr": {k: _jsonable(v) for k, v in r.stderr.items()},
            "theory": {k: _jsonable(v) for k, v in r.theory.items()},
        })
    with open(path, "w") as fh:
        json.dump(out, fh, indent=1, default=str)


def _write_csv(path, runs, verdicts):
    rows = []
    for (s, act), r in runs.items():
        v = verdicts[(s, act)]
        for rec in r.to_records():
            rows.append({"scheme": s, "activation": act, "verdict_forward": v["forward"],
                         "verdict_backward": v["backward"], "verdict_theory": v["theory"], **rec})
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _plots(runs, schemes, activations, hist, outdir, sizes):
    try:
        import matplotlib  # noqa: F401  (lazy: an optional extra, and `fastinit info` should not load it)
    except ImportError:
        print("matplotlib not installed: skipping plots (pip install fastinit[plot])", file=sys.stderr)
        return []
    from ._simulate_plots import write_plots

    return write_plots(runs, schemes, activations, hist, outdir, sizes)


# ------------------------------------------------------------------------------------------
def main(argv=None):  # pragma: no cover - convenience for `python -m fastinit._simulate_cli`
    import argparse
    parser = argparse.ArgumentParser(prog="fastinit")
    sub = parser.add_subparsers(dest="command", required=True)
    add_simulate_parser(sub)
    return run_simulate(parser.parse_args(["simulate", *(argv if argv is not None else sys.argv[1:])]))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
