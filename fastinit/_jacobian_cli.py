"""``fastinit simulate --jacobian``: singular values of the input-output Jacobian, measured and predicted.

For every scheme and activation of ``fastinit simulate`` (at the scheme's own scale, the study's
constant ``--bias``) it measures the singular values of :math:`J = D_L W_L \\cdots D_1 W_1` of
``--networks`` networks at one Gaussian input each (:func:`fastinit.sim.jacobian_spectrum`) and
prints, at a few depths, the mean squared singular value, the spread ``Var(s^2)/mean(s^2)^2`` and the
condition number, with the free-probability prediction (:func:`fastinit.theory.jacobian_theory`)
beside them. A second table and ``jacobian_isometry.png`` compare orthogonal and Gaussian weights for
tanh at criticality (:math:`\\chi_1 = 1`, :math:`q^* = 0.25`): the orthogonal spectrum stays
concentrated, the Gaussian one spreads linearly in depth. ``jacobian_spectra.png`` draws the
singular-value densities of every scheme and activation; ``jacobian.json`` holds the numbers.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

import numpy as np

__all__ = ["run_jacobian", "JACOBIAN_DEFAULTS", "JACOBIAN_QUICK", "ISOMETRY_Q_STAR"]

#: Sizes of the Jacobian study unless ``--depth``/``--width`` are given (exact SVDs at width 256).
JACOBIAN_DEFAULTS = dict(depth=50, width=256)
JACOBIAN_QUICK = dict(depth=6, width=24)
#: Fixed point of the tanh-at-criticality comparison (sigma_w^2 = 1.394, sigma_b^2 = 0.0081).
ISOMETRY_Q_STAR = 0.25
_ISOMETRY_INPUTS = 4  # inputs per network in the isometry comparison: 4 x more singular values per density
_ISOMETRY_GAUSSIAN = "xavier_normal"  # i.i.d. Gaussian, rescaled to the critical sigma_w^2


class _UsageError(Exception):
    """A bad option: one line on stderr, exit status 2, before any work."""


def _fmt(v):
    from fastinit.sim._jacobian import fmt
    return fmt(v)


def _report_layers(L):
    return sorted({max(1, L // 4), max(1, L // 2), L})


def _check(args, sizes):
    from fastinit._activations import get_activation
    from fastinit.sim._schemes import resolve_scheme

    from ._simulate_cli import check_run_options, scheme_spec

    check_run_options(args, {k: sizes[k] for k in ("depth", "width")}, _UsageError)
    schemes = list(dict.fromkeys(args.schemes))
    acts = list(dict.fromkeys(args.activations))
    if not schemes or not acts:
        raise _UsageError("--schemes and --activations need at least one name each")
    for s in schemes:
        nm, prm, _ = scheme_spec(s)
        try:
            resolve_scheme(nm, prm)
        except (TypeError, ValueError) as exc:
            raise _UsageError(f"--schemes: {exc}") from None
    for a in acts:
        try:
            get_activation(a)
        except (TypeError, ValueError) as exc:
            raise _UsageError(f"--activations: {exc}") from None
    try:
        os.makedirs(args.output_dir, exist_ok=True)
    except OSError as exc:
        raise _UsageError(f"--output-dir: cannot create {args.output_dir!r} ({exc.strerror or exc})") from None
    return schemes, acts


def run_jacobian(args) -> int:
    """Run the Jacobian study described by the parsed ``fastinit simulate`` options; the exit status."""
    sizes = dict(JACOBIAN_QUICK if args.quick else JACOBIAN_DEFAULTS)
    for k in ("depth", "width"):
        if getattr(args, k) is not None:
            sizes[k] = getattr(args, k)
    try:
        schemes, acts = _check(args, sizes)
    except _UsageError as exc:
        print(f"fastinit simulate --jacobian: error: {exc}", file=sys.stderr)
        return 2
    try:
        return _study(args, sizes, schemes, acts)
    except MemoryError as exc:
        print(f"fastinit simulate --jacobian: error: {exc}", file=sys.stderr)
        return 2


def _study(args, sizes, schemes, acts):
    from fastinit.sim import jacobian_spectrum
    from fastinit.sim._results import format_table
    from fastinit.theory import critical_sigmas

    from ._simulate_cli import scheme_spec

    L, n = sizes["depth"], sizes["width"]
    rep = _report_layers(L)
    common = dict(depth=L, width=n, n_networks=args.networks, seed=args.seed, dtype="float64")
    print(f"fastinit simulate --jacobian: {len(schemes)} schemes x {len(acts)} activations, depth {L}, "
          f"width {n}, {args.networks} network(s) x 1 input each, bias {args.bias}, seed {args.seed}", flush=True)
    t0 = time.perf_counter()
    runs = {}
    for a in acts:
        for s in schemes:
            nm, prm, _ = scheme_spec(s)
            runs[(s, a)] = jacobian_spectrum(activation=a, init=nm, init_params=prm, bias=args.bias,
                                             layers=rep, **common)
    print("\nSquared singular values s^2 of J = D_L W_L ... D_1 W_1 (one Gaussian input per network).\n"
          "Each cell: simulation [free-probability theory]; chi_1 of the last layer; spread = Var(s^2)/mean(s^2)^2; "
          "cond = s_max/s_min (median over networks; >x: beyond float64's resolution, a lower bound).")
    for a in acts:
        head = (["scheme", f"chi_1({L})", f"mean s^2 ({L})"] + [f"spread ({lay})" for lay in rep]
                + [f"cond ({L})"])
        rows = []
        for s in schemes:
            r = runs[(s, a)]
            rows.append([s, _fmt(r.theory["chi1"][-1]),
                         f"{_fmt(r.stats['mean_sv2'][-1])} [{_fmt(r.theory['mean_sv2'][-1])}]"]
                        + [f"{_fmt(r.stats['norm_var'][j])} [{_fmt(r.theory['norm_var'][j])}]"
                           for j in range(len(rep))]
                        + [r.cells(len(rep) - 1)[2]])
        print(f"\n== {a} ==")
        print(format_table(head, rows, align="left"))

    sw2, sb2 = critical_sigmas("tanh", ISOMETRY_Q_STAR)
    iso_kw = dict(activation="tanh", sigma_w2=sw2, bias="normal", bias_std=math.sqrt(sb2),
                  input_std=math.sqrt((ISOMETRY_Q_STAR - sb2) / sw2), layers=range(1, L + 1),
                  n_inputs=_ISOMETRY_INPUTS, **common)
    iso = {"orthogonal": jacobian_spectrum(init="orthogonal", **iso_kw),
           "gaussian": jacobian_spectrum(init=_ISOMETRY_GAUSSIAN, **iso_kw)}
    print(f"\n== tanh at criticality: q* = {ISOMETRY_Q_STAR}, sigma_w^2 = {sw2:.4g}, sigma_b^2 = {sb2:.3g} "
          f"(chi_1 = 1), {args.networks} network(s) x {_ISOMETRY_INPUTS} inputs ==")
    head = ["weights", "layer", "mean s^2", "Var s^2", "spread", "s_max", "s_min", "cond"]
    rows = []
    for kind, r in iso.items():
        for lay in rep:
            j = lay - 1
            rows.append([kind, str(lay), f"{_fmt(r.stats['mean_sv2'][j])} [{_fmt(r.theory['mean_sv2'][j])}]",
                         f"{_fmt(r.stats['var_sv2'][j])} [{_fmt(r.theory['var_sv2'][j])}]",
                         f"{_fmt(r.stats['norm_var'][j])} [{_fmt(r.theory['norm_var'][j])}]",
                         *r.cells(j)])
    print(format_table(head, rows, align="left"))
    elapsed = time.perf_counter() - t0

    written = [_write_json(os.path.join(args.output_dir, "jacobian.json"), runs, iso, sizes, args, elapsed,
                           (sw2, sb2))]
    if not args.no_plots:
        written += plots(runs, iso, schemes, acts, rep, args.output_dir, sizes, (sw2, sb2))
    print(f"\n{len(runs) + 2} configurations in {elapsed:.1f} s. Wrote:")
    for w in written:
        print(f"  {w}")
    return 0


def _clean(a):
    return [None if not math.isfinite(v) else v for v in np.asarray(a, dtype=np.float64).tolist()]


def _write_json(path, runs, iso, sizes, args, elapsed, crit):
    def rec(r):
        return {"layers": r.layers.tolist(), "stats": {k: _clean(v) for k, v in r.stats.items()},
                "stderr": {k: _clean(v) for k, v in r.stderr.items()},
                "theory": {k: _clean(v) for k, v in r.theory.items()}, "theory_note": r.config["theory_note"]}

    out = {"command": "fastinit simulate --jacobian", "sizes": sizes, "networks": args.networks,
           "seed": args.seed, "bias": args.bias, "seconds": elapsed,
           "notes": "s = singular values of the input-output Jacobian; spread = norm_var = Var(s^2)/mean(s^2)^2; "
                    "cond is the median over networks; null = NaN or inf",
           "runs": [{"scheme": s, "activation": a, **rec(r)} for (s, a), r in runs.items()],
           "isometry": {"activation": "tanh", "q_star": ISOMETRY_Q_STAR, "sigma_w2": crit[0], "sigma_b2": crit[1],
                        **{k: rec(r) for k, r in iso.items()}}}
    with open(path, "w") as fh:
        json.dump(out, fh, indent=1)
    return path


def plots(runs, iso, schemes, acts, rep, outdir, sizes, crit):
    """Write ``jacobian_isometry.png`` and ``jacobian_spectra.png``; the paths written."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: skipping plots (pip install fastinit[plot])", file=sys.stderr)
        return []
    from fastinit.theory import jacobian_density

    L = sizes["depth"]
    cmap = plt.get_cmap("viridis")
    written = []

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3))
    for ax, (kind, r) in zip(axes[:2], iso.items(), strict=True):
        for i, lay in enumerate(rep):
            edges, dens = r.density(lay, bins=50)
            u = r.unresolved(lay)
            c = cmap(i / max(1, len(rep) - 1))
            ax.stairs(dens * (1.0 - u), edges, color=c, lw=1.5,  # of all singular values, the resolved part
                      label=f"depth {lay}" + (f" ({100 * u:.0f}% below float64 resolution)" if u > 0 else ""))
            logs = np.linspace(edges[0] - 0.5, edges[-1] + 0.5, 400)  # log10 s
            lam = 10.0 ** (2.0 * logs)
            rho = jacobian_density(lay, "tanh", crit[0], ISOMETRY_Q_STAR, lam, weights=kind)
            ax.plot(logs, rho * lam * 2.0 * math.log(10.0), color="k", lw=0.8, ls="--", zorder=3)  # of log10 s
        ax.axvline(0.0, color="k", lw=0.6, ls=":")
        ax.set_xlabel("log10 singular value")
        ax.set_ylabel("density")
        ax.set_title(f"{kind} weights (black dashed: free probability)")
        ax.legend(fontsize=8)
    lo = min(a.get_xlim()[0] for a in axes[:2])
    hi = max(a.get_xlim()[1] for a in axes[:2])
    for a in axes[:2]:  # one x range: the two spectra side by side
        a.set_xlim(lo, hi)
    ax = axes[2]
    for kind, r, c in (("orthogonal", iso["orthogonal"], "C0"), ("gaussian", iso["gaussian"], "C3")):
        ax.errorbar(r.layers, r.stats["norm_var"], yerr=r.stderr["norm_var"], fmt="o", ms=2.5, color=c,
                    label=f"{kind}: simulation", elinewidth=0.6)
        ax.plot(r.layers, r.theory["norm_var"], color=c, lw=1.2, label=f"{kind}: free probability")
    ax.set_xlabel("depth")
    ax.set_ylabel("Var(s^2) / mean(s^2)^2")
    ax.set_title("spread of the spectrum of J J^T")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.suptitle(f"tanh at criticality (chi_1 = 1): q* = {ISOMETRY_Q_STAR}, sigma_w^2 = {crit[0]:.3f}, "
                 f"sigma_b^2 = {crit[1]:.4f}, width {sizes['width']}")
    fig.tight_layout()
    p = os.path.join(outdir, "jacobian_isometry.png")
    fig.savefig(p, dpi=90)
    plt.close(fig)
    written.append(p)

    fig, axes = plt.subplots(len(acts), len(schemes), figsize=(2.3 * len(schemes), 1.9 * len(acts)),
                             squeeze=False)
    for i, a in enumerate(acts):
        for j, s in enumerate(schemes):
            ax = axes[i, j]
            r = runs[(s, a)]
            for k, lay in enumerate(rep):
                edges, dens = r.density(lay, bins=30)
                if dens.any():
                    ax.stairs(dens, edges, color=cmap(k / max(1, len(rep) - 1)), lw=1.0)
            ax.tick_params(labelsize=6)
            ax.set_yticks([])
            if i == 0:
                ax.set_title(s, fontsize=8)
            if j == 0:
                ax.set_ylabel(a, fontsize=8)
            if i == len(acts) - 1:
                ax.set_xlabel("log10 s", fontsize=7)
    handles = [plt.Line2D([], [], color=cmap(k / max(1, len(rep) - 1)), label=f"depth {lay}")
               for k, lay in enumerate(rep)]
    fig.legend(handles=handles, loc="upper right", fontsize=7, ncol=len(rep))
    fig.suptitle(f"singular-value densities of the input-output Jacobian (depth {L}, width {sizes['width']}; "
                 f"note the x-axis ranges; empty: J = 0)", fontsize=9)
    fig.tight_layout()
    p = os.path.join(outdir, "jacobian_spectra.png")
    fig.savefig(p, dpi=80)
    plt.close(fig)
    written.append(p)
    return written
