"""PNG plots of an :class:`~fastinit.torch._inspect.InspectReport` (``fastinit inspect --plots DIR``)."""

from __future__ import annotations

import math
import os

import numpy as np

__all__ = ["plot"]


def plot(report, directory) -> list:
    """Write ``variance.png`` (output variance, and theory, against depth), ``gradient.png`` (gradient
    second moment against depth) and ``histograms.png`` (a grid of per-layer output histograms, log-count
    scale) into ``directory``; return the paths. Needs matplotlib."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(directory, exist_ok=True)
    paths = []
    recs = report.records
    for key, fname, label in (("out_var", "variance.png", "output variance"),
                              ("grad_out_m2", "gradient.png", "gradient second moment (w.r.t. output)")):
        fig, ax = plt.subplots(figsize=(max(6, 0.25 * len(recs)), 4))
        xs = range(len(recs))
        ax.semilogy(xs, [r[key] for r in recs], "o-", label="measured")
        if any(f"theory_{key}" in r for r in recs):
            ax.semilogy(xs, [r.get(f"theory_{key}", math.nan) for r in recs], "x--", label="mean-field theory")
        ax.set_xticks(list(xs))
        ax.set_xticklabels([f"{r['name']} {r['kind']}" for r in recs], rotation=90, fontsize=7)
        ax.set_ylabel(label)
        ax.legend()
        fig.tight_layout()
        path = os.path.join(directory, fname)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        paths.append(path)
    paths.append(plot_histograms(recs, os.path.join(directory, "histograms.png"), plt))
    return paths


def plot_histograms(recs, path, plt) -> str:
    """One small histogram per layer with a histogram (``hist_counts``), in call order, 4 to a row."""
    recs = [r for r in recs if r.get("hist_counts") is not None]
    ncol = min(4, max(1, len(recs)))
    nrow = max(1, math.ceil(len(recs) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3 * ncol, 2.2 * nrow), squeeze=False)
    for ax in axes.flat[len(recs):]:
        ax.axis("off")
    for ax, r in zip(axes.flat, recs, strict=False):
        edges = np.asarray(r["hist_edges"])
        ax.stairs(np.asarray(r["hist_counts"]), edges, fill=True, color="C0" if not r.get("branch") else "C1")
        ax.set_yscale("log")
        ax.set_title(f"{r['name']} {r['kind']}" + (" (branch)" if r.get("branch") else ""), fontsize=8)
        ax.tick_params(labelsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
