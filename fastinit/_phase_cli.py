r"""``fastinit phase``: the order-to-chaos phase diagram of a deep random network, predicted and simulated.

Over a grid of :math:`(\sigma_w^2, \sigma_b^2)` it computes the mean-field :math:`\chi_1` and depth scale
:math:`\xi_c` of the correlation map (:func:`fastinit.theory.criticality`) and the critical line
:math:`\chi_1 = 1`, simulates pairs of inputs through random networks of every grid point at once
(:func:`fastinit.sim.simulate_correlation`'s batched runner: one GEMM per layer for the whole grid),
and writes ``phase_<activation>.png`` (theory and simulation side by side) and ``phase_<activation>.json``
into ``--output-dir`` (default ``./fastinit-phase/``).

Simulated :math:`\chi_1`: the growth of a tangent vector per layer (geometric mean over the second half of
the layers). Simulated :math:`\xi_c`: :func:`fastinit.sim.fit_depth_scale` of the simulated :math:`c_l`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np

__all__ = ["add_phase_parser", "run_phase", "DEFAULT_RANGES"]

#: Default (sigma_w^2 range, sigma_b^2 range) per activation: each holds the critical line.
DEFAULT_RANGES = {
    "sigmoid": ((20.0, 200.0), (0.0, 0.3)),  # phi'(0) = 1/4 and a mean: critical near 103
    "selu": ((0.1, 2.5), (0.0, 0.3)),
    "linear": ((0.25, 2.0), (0.0, 0.3)),
}
_RANGE = ((0.25, 4.0), (0.0, 0.3))
_DEFAULTS = dict(sw2_points=15, sb2_points=9, depth=30, width=256, pairs=8, networks=4)
_QUICK = dict(sw2_points=5, sb2_points=4, depth=8, width=64, pairs=4, networks=2)
# --c0 auto: where the pairs start. Ordered phase (c* = 1): 0.9, where the map is nearly linear and the
# finite-width noise of 1 - c_l is proportional to it. Chaotic phase: c* - 0.5 (1 + c*), halfway from c*
# to -1: a deviation well above the network-to-network noise of c_l (~0.02 at width 256), at the price
# of some transient (measured in docs/phase.md).
_C0_ORDERED = 0.9
_C0_CHAOTIC = 0.5


def _range(text):
    try:
        lo, hi = (float(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a range looks like LO,HI (e.g. 0.5,4), got {text!r}") from None
    return lo, hi


def add_phase_parser(subparsers):
    """Add the ``phase`` sub-command to an ``argparse`` sub-parser set."""
    p = subparsers.add_parser("phase", help="order-to-chaos phase diagram (chi_1, xi_c, critical line): "
                                            "mean-field theory and simulation", description=__doc__.split("\n\n")[1])
    p.add_argument("--activation", default="tanh", help="any activation of the simulator (default tanh)")
    p.add_argument("--activation-param", type=float, default=None, help="leaky_relu slope, softplus beta")
    p.add_argument("--sw2-range", type=_range, default=None, metavar="LO,HI",
                   help="sigma_w^2 range (default 0.25,4; selu 0.1,2.5; sigmoid 20,200; linear 0.25,2)")
    p.add_argument("--sb2-range", type=_range, default=None, metavar="LO,HI", help="sigma_b^2 range (default 0,0.3)")
    for k, h in (("sw2-points", "sigma_w^2 grid points"), ("sb2-points", "sigma_b^2 grid points"),
                 ("depth", "layers"), ("width", "units per layer"), ("pairs", "input pairs per network"),
                 ("networks", "independent networks per grid point")):
        key = k.replace("-", "_")
        p.add_argument(f"--{k}", type=int, default=None,
                       help=f"{h} (default {_DEFAULTS[key]}; --quick {_QUICK[key]})")
    p.add_argument("--c0", default="auto", help="cosine of each input pair, or 'auto' (default): 0.9 where the "
                                                "theory is ordered, c* - 0.5 (1 + c*) where it is chaotic")
    p.add_argument("--q0", type=float, default=1.0, help="squared input length per coordinate (default 1)")
    p.add_argument("--fit-first", type=int, default=3, help="first layer of the xi_c fit (default 3)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--output-dir", default="fastinit-phase",
                   help="folder for the PNG and JSON (default ./fastinit-phase/)")
    p.add_argument("--no-simulate", action="store_true", help="theory only")
    p.add_argument("--no-plot", action="store_true", help="skip the PNG")
    p.add_argument("--quick", action="store_true", help="a tiny run for smoke tests (sizes given still apply)")
    return p


class _UsageError(Exception):
    """A bad option: one line, exit status 2, before any work."""


def _options(args):
    """Checked sizes, ranges and the activation, before any work or file."""
    from fastinit.sim._activation import resolve_activation  # lazy: `fastinit --help` loads no Numba

    sizes = dict(_QUICK if args.quick else _DEFAULTS)
    for k in sizes:
        if getattr(args, k) is not None:
            sizes[k] = getattr(args, k)
    minimum = {"sw2_points": 2, "sb2_points": 2, "depth": 4, "width": 2, "pairs": 1, "networks": 2}
    for k, m in minimum.items():
        if sizes[k] < m:
            raise _UsageError(f"--{k.replace('_', '-')} must be >= {m}, got {sizes[k]}")
    try:
        sa = resolve_activation(args.activation, args.activation_param, None)
    except (TypeError, ValueError) as exc:
        raise _UsageError(f"--activation: {exc}") from None
    default = DEFAULT_RANGES.get(sa.name, _RANGE)
    sw_r = args.sw2_range or default[0]
    sb_r = args.sb2_range or default[1]
    if not (0.0 < sw_r[0] < sw_r[1] and math.isfinite(sw_r[1])):
        raise _UsageError(f"--sw2-range must be LO,HI with 0 < LO < HI, got {sw_r[0]},{sw_r[1]} "
                          f"(sigma_w^2 = 0 is the degenerate net whose every input gives the bias)")
    if not (0.0 <= sb_r[0] < sb_r[1] and math.isfinite(sb_r[1])):
        raise _UsageError(f"--sb2-range must be LO,HI with 0 <= LO < HI, got {sb_r[0]},{sb_r[1]}")
    if args.c0 != "auto":
        try:
            c0 = float(args.c0)
        except ValueError:
            c0 = math.nan
        if not -1.0 <= c0 < 1.0:
            raise _UsageError(f"--c0 must be 'auto' or a cosine in [-1, 1) (1: identical inputs never "
                              f"separate, there is no depth scale to fit), got {args.c0!r}")
    if not (args.q0 > 0 and math.isfinite(args.q0)):
        raise _UsageError(f"--q0 must be > 0, got {args.q0}")
    if not 1 <= args.fit_first <= sizes["depth"] - 3:
        raise _UsageError(f"--fit-first must lie in 1..depth - 3 = {sizes['depth'] - 3}, got {args.fit_first}")
    if not 0 <= args.seed < 1 << 64:
        raise _UsageError(f"--seed must lie in [0, 2**64), got {args.seed}")
    return sizes, sa, sw_r, sb_r


def run_phase(args) -> int:
    """Run ``fastinit phase`` with parsed ``args``; returns the exit status."""
    try:
        sizes, sa, sw_r, sb_r = _options(args)
        try:
            os.makedirs(args.output_dir, exist_ok=True)
        except OSError as exc:
            raise _UsageError(f"--output-dir: cannot create {args.output_dir!r} ({exc.strerror or exc})") from None
    except _UsageError as exc:
        print(f"fastinit phase: error: {exc}", file=sys.stderr)
        return 2
    from fastinit.theory._common import resolve_activation as theory_activation

    act = theory_activation(sa.spec, sa.theory_param)
    sw2 = np.linspace(*sw_r, sizes["sw2_points"])
    sb2 = np.linspace(*sb_r, sizes["sb2_points"])
    print(f"fastinit phase: {act.name}, {sw2.size} x {sb2.size} grid of (sigma_w^2, sigma_b^2), depth {sizes['depth']}"
          + ("" if args.no_simulate else f", width {sizes['width']}, {sizes['pairs']} pairs x "
                                          f"{sizes['networks']} networks"), flush=True)
    t0 = time.perf_counter()
    th = grid_theory(act, sw2, sb2)
    line = theory_critical_line(act, sw2, sb2, th["chi_1"])
    t_theory = time.perf_counter() - t0
    sim = None
    if not args.no_simulate:
        t1 = time.perf_counter()
        try:
            sim = grid_simulation(act, sw2, sb2, th, sizes, args)
        except MemoryError as exc:
            print(f"fastinit phase: error: {exc}", file=sys.stderr)
            return 2
        t_sim = time.perf_counter() - t1
    out = {"command": "fastinit phase", "activation": act.name, "activation_param": act.param,
           "sizes": sizes, "seed": args.seed, "q0": args.q0, "c0": args.c0, "fit_first": args.fit_first,
           "sigma_w2": sw2.tolist(), "sigma_b2": sb2.tolist(),
           "layout": "2-D arrays are [sigma_b2 index][sigma_w2 index]; NaN is null, infinity 'inf'",
           "theory": {k: _json(v) for k, v in th.items()},
           "critical_line": {"sigma_b2": sb2.tolist(), "sigma_w2_theory": _json(line)},
           "seconds": {"theory": t_theory}}
    if sim is not None:
        out["simulation"] = {k: _json(v) for k, v in sim.items()}
        out["critical_line"]["sigma_w2_simulation"] = _json(critical_line(sw2, sb2, sim["chi_1"]))
        out["agreement"] = agreement(th, sim, sizes["depth"])
        out["seconds"]["simulation"] = t_sim
    base = os.path.join(args.output_dir, f"phase_{act.name}")
    written = [base + ".json"]
    with open(base + ".json", "w") as fh:
        json.dump(out, fh, indent=1)
    if not args.no_plot:
        png = plot(act.name, sw2, sb2, th, sim, line, sizes, base + ".png")
        if png:
            written.append(png)
    _print_summary(out, sb2, line, sim)
    print(f"\ntheory {t_theory:.1f} s" + ("" if sim is None else f", simulation {t_sim:.1f} s") + ". Wrote:")
    for w in written:
        print(f"  {w}")
    return 0


# ------------------------------------------------------------------------------------------
def grid_theory(act, sw2, sb2):
    """:func:`fastinit.theory.criticality` at every grid point: arrays of shape (len(sb2), len(sw2))."""
    from fastinit.theory import criticality

    keys = ("chi_1", "xi_c", "c_star", "q_star", "chi_c", "xi_q")
    out = {k: np.full((sb2.size, sw2.size), np.nan) for k in keys}
    out["chaotic"] = np.zeros((sb2.size, sw2.size))
    for i, b in enumerate(sb2):
        for j, w in enumerate(sw2):
            r = criticality(act, float(w), float(b))
            for k in keys:
                out[k][i, j] = r[k]
            out["chaotic"][i, j] = r["phase"] == "chaotic"
    return out


def grid_simulation(act, sw2, sb2, th, sizes, args):
    """Every grid point in one batched run: chi_1 (tangent growth) and the fitted xi_c, (len(sb2), len(sw2))."""
    from fastinit.sim._args import check_memory
    from fastinit.sim._correlation import fit_depth_scale, run_pairs

    W, B = np.meshgrid(sw2, sb2)
    L, n, P, N = sizes["depth"], sizes["width"], sizes["pairs"], sizes["networks"]
    if args.c0 == "auto":
        cs = np.where(np.isfinite(th["c_star"]), th["c_star"], 1.0)
        c0 = np.where(cs >= 1.0, _C0_ORDERED, cs - _C0_CHAOTIC * (1.0 + cs))
    else:
        c0 = np.full(W.shape, float(args.c0))
    check_memory(2 * W.size * 3 * P * n * 8 + n * n * 8, f"a {W.shape[1]} x {W.shape[0]} grid at width {n}, "
                                                         f"{P} pairs")
    per = run_pairs([n] * (L + 1), act, np.sqrt(W.ravel()), np.sqrt(B.ravel()), pairs=P, n_networks=N,
                    seed=args.seed, q0=args.q0, c0=c0.ravel(), dtype=np.float64)
    c = 1.0 - per["one_minus_c"]  # (N, K, L)
    c_mean = c.mean(axis=0)
    c_se = c.std(axis=0, ddof=1) / math.sqrt(N)
    half = slice(L // 2 - 1, L - 1)  # layers L/2 .. L-1 (chi_1 is NaN at L)
    with np.errstate(divide="ignore", invalid="ignore"):
        lchi = np.log(per["chi_1"][:, :, half]).mean(axis=2)  # (N, K): per network, geometric mean
    chi = np.exp(lchi.mean(axis=0))
    chi_se = chi * lchi.std(axis=0, ddof=1) / math.sqrt(N)
    K = W.size
    xi = np.full(K, np.nan)
    xi_se = np.full(K, np.nan)
    for k in range(K):
        f = fit_depth_scale(c_mean[k], c_se[k], first=args.fit_first)
        xi[k], xi_se[k] = f["xi_c"], f["xi_c_se"]
    shape = W.shape
    return {"chi_1": chi.reshape(shape), "chi_1_se": chi_se.reshape(shape), "xi_c": xi.reshape(shape),
            "xi_c_se": xi_se.reshape(shape), "c0": c0, "c_last": c_mean[:, -1].reshape(shape),
            "q_last": per["q"].mean(axis=0)[:, -1].reshape(shape)}


def theory_critical_line(act, sw2, sb2, chi):
    """Per sigma_b^2 row, :func:`fastinit.theory.critical_sigma_w2` between the grid points where the
    theory's chi_1 crosses 1 (NaN where it does not cross inside the grid)."""
    from fastinit.theory import critical_sigma_w2

    out = critical_line(sw2, sb2, chi)
    for i, b in enumerate(sb2):
        if np.isfinite(out[i]):
            j = int(np.searchsorted(sw2, out[i]))  # the crossing lies in [sw2[j - 1], sw2[j]]: search one more cell
            lo, hi = float(sw2[max(j - 1, 0)]), float(sw2[min(j + 1, sw2.size - 1)])
            out[i] = critical_sigma_w2(act, float(b), bracket=(lo, hi), xtol=1e-4)  # a drawn line
    return out


def critical_line(sw2, sb2, chi):
    """Per sigma_b^2 row, the sigma_w^2 where ``chi`` first crosses 1 (linear in ln chi between grid points)."""
    out = np.full(sb2.size, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.log(chi)
    for i in range(sb2.size):
        for j in range(sw2.size - 1):
            a, b = g[i, j], g[i, j + 1]
            if np.isfinite(a) and np.isfinite(b) and a <= 0.0 < b:
                out[i] = sw2[j] + (sw2[j + 1] - sw2[j]) * (-a) / (b - a)
                break
    return out


def agreement(th, sim, depth):
    """Summary numbers: chi_1 relative error; xi_c ratio where the theory's xi_c is measurable (< depth / 3)."""
    rel = np.abs(sim["chi_1"] / th["chi_1"] - 1.0)
    phase_ok = (sim["chi_1"] > 1.0) == (th["chi_1"] > 1.0)
    m = np.isfinite(th["xi_c"]) & (th["xi_c"] < depth / 3.0) & np.isfinite(th["c_star"])
    m &= np.isfinite(sim["xi_c"])
    ratio = sim["xi_c"][m] / th["xi_c"][m]
    return {"chi_1_rel_error_median": float(np.nanmedian(rel)), "chi_1_rel_error_max": float(np.nanmax(rel)),
            "phase_agrees_fraction": float(phase_ok.mean()),
            "xi_c_cells_compared": int(m.sum()), "xi_c_ratio_median": float(np.median(ratio)) if m.any() else None,
            "xi_c_ratio_q10_q90": [float(np.quantile(ratio, 0.1)), float(np.quantile(ratio, 0.9))] if m.any()
            else None}


def _json(a):
    def fix(v):
        if isinstance(v, list):
            return [fix(u) for u in v]
        v = float(v)
        return v if math.isfinite(v) else (None if math.isnan(v) else ("inf" if v > 0 else "-inf"))
    return fix(np.asarray(a, dtype=np.float64).tolist())


def _print_summary(out, sb2, line, sim):
    print("\ncritical line chi_1 = 1, the sigma_w^2 at each sigma_b^2 (theory: solved to 1e-4; simulation: "
          "interpolated on the grid):")
    sim_line = out["critical_line"].get("sigma_w2_simulation")
    print(f"  {'sigma_b^2':>9}  {'theory':>8}" + ("" if sim is None else f"  {'simulation':>10}"))
    for i, b in enumerate(sb2):
        t = "-" if not np.isfinite(line[i]) else f"{line[i]:.3f}"
        s = "" if sim is None else "  " + ("-" if sim_line[i] is None else f"{sim_line[i]:.3f}").rjust(10)
        print(f"  {b:>9.3f}  {t:>8}{s}")
    if sim is not None:
        a = out["agreement"]
        print(f"chi_1: simulation / theory - 1: median {a['chi_1_rel_error_median']:.3f}, max "
              f"{a['chi_1_rel_error_max']:.3f}; same phase in {100 * a['phase_agrees_fraction']:.0f}% of cells")
        if a["xi_c_cells_compared"]:
            print(f"xi_c: simulated / theory, median {a['xi_c_ratio_median']:.2f} (10-90%: "
                  f"{a['xi_c_ratio_q10_q90'][0]:.2f}-{a['xi_c_ratio_q10_q90'][1]:.2f}) over the "
                  f"{a['xi_c_cells_compared']} cells with theory xi_c < depth/3")


# ------------------------------------------------------------------------------------------
def plot(name, sw2, sb2, th, sim, line, sizes, path):
    """The PNG: chi_1 and xi_c, theory (left) and simulation (right), with the critical line."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib import colors
    except ImportError:
        print("matplotlib not installed: skipping the plot (pip install fastinit[plot])", file=sys.stderr)
        return None
    L = sizes["depth"]
    cols = 1 if sim is None else 2
    fig, axes = plt.subplots(2, cols, figsize=(5.2 * cols + 0.6, 8.2), squeeze=False, constrained_layout=True)
    dw, db = np.diff(sw2).mean() / 2, np.diff(sb2).mean() / 2
    ext = (sw2[0] - dw, sw2[-1] + dw, sb2[0] - db, sb2[-1] + db)
    chis = [th["chi_1"]] + ([] if sim is None else [sim["chi_1"]])
    lo = np.nanmin([np.nanmin(c) for c in chis])
    hi = np.nanmax([np.nanmax(c) for c in chis])
    lo, hi = min(lo, 0.99), max(hi, 1.01)
    cap = 3.0 * L  # depth scales beyond this are drawn at the cap (a net of depth L cannot tell them apart)
    cmap_xi = plt.get_cmap("viridis").with_extremes(over="#fde725", bad="#bbbbbb")
    sim_line = None if sim is None else critical_line(sw2, sb2, sim["chi_1"])
    for col in range(cols):
        src = th if col == 0 else sim
        who = "theory (mean field)" if col == 0 else "simulation"
        ax = axes[0, col]
        im = ax.imshow(src["chi_1"], origin="lower", extent=ext, aspect="auto", cmap="RdBu_r",
                       norm=colors.TwoSlopeNorm(vmin=lo, vcenter=1.0, vmax=hi))
        fig.colorbar(im, ax=ax, label=r"$\chi_1$")
        ax.set_title(rf"$\chi_1$, {who}")
        xi = np.where(np.isinf(src["xi_c"]), cap * 10, src["xi_c"])
        xi = np.where(np.isnan(th["c_star"]), np.nan, xi)  # q* = 0: the net turns linear, c_l freezes
        ax2 = axes[1, col]
        im2 = ax2.imshow(np.clip(xi, 0.3, None), origin="lower", extent=ext, aspect="auto", cmap=cmap_xi,
                         norm=colors.LogNorm(vmin=0.3, vmax=cap))
        fig.colorbar(im2, ax=ax2, extend="max", label=rf"$\xi_c$ (layers; yellow: $\geq$ {cap:g})")
        ax2.set_title(rf"$\xi_c$, {who}" + ("" if col == 0 else " (fit of $c_l$)"))
        for a in (ax, ax2):
            a.plot(line, sb2, "k-", lw=2, label=r"$\chi_1 = 1$ (theory)")
            if col == 1:
                a.plot(sim_line, sb2, "--", color="#ff7f0e", lw=2, label=r"$\chi_1 = 1$ (simulation)")
            a.set_xlabel(r"$\sigma_w^2$")
            a.set_ylabel(r"$\sigma_b^2$")
            a.set_xlim(ext[0], ext[1])
            a.set_ylim(ext[2], ext[3])
        ax.legend(loc="upper left", fontsize=8, framealpha=0.8)
    sub = f"depth {L}" + ("" if sim is None else f", width {sizes['width']}, {sizes['pairs']} pairs x "
                                                 f"{sizes['networks']} networks per cell")
    fig.suptitle(f"{name}: order (blue, $\\chi_1 < 1$) and chaos (red); {sub}\n"
                 f"grey: $c_l$ freezes ($q^* = 0$, no fixed point $c^*$) or the fit failed; "
                 f"yellow: $\\xi_c \\geq$ {cap:g}", fontsize=10)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
