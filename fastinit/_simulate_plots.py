"""The PNG figures of ``fastinit simulate``: variance vs depth and post-activation histograms.

Imported only when plots are written: it loads matplotlib (an optional extra) at import time, so
``fastinit info`` and ``simulate --no-plots`` never do.

The figures are cheap to draw because their layout is fixed: margins are set in inches for the
known content (tick labels, titles; the end labels are measured without drawing) instead of by
``tight_layout``, which draws every figure once more to measure its text. Log-axis tick labels
are plain text with Unicode superscripts (10⁻¹²), which look like matplotlib's mathtext ones
without parsing TeX for every label. Each figure is made once and its panels refilled for each
activation: making Axes and ticks costs more than drawing them.
"""

from __future__ import annotations

import os
import re
import textwrap

import matplotlib

matplotlib.use("Agg")  # files only; no display is needed or wanted
import matplotlib.pyplot as plt  # noqa: E402  (after the backend is chosen)
import numpy as np  # noqa: E402
from matplotlib.font_manager import FontProperties  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch, StepPatch  # noqa: E402
from matplotlib.ticker import LogFormatterSciNotation, MaxNLocator, NullLocator  # noqa: E402
from matplotlib.transforms import ScaledTranslation  # noqa: E402

from ._simulate_cli import fmt_value  # noqa: E402
from .sim import verdict  # noqa: E402
from .sim._results import BAND_LEVEL  # noqa: E402

__all__ = ["write_plots", "VarianceFigures", "HistogramGrid", "PlainLogFormatter", "IN_RANGE_DECADES"]

IN_RANGE_DECADES = 12.0  # a scheme whose simulation and theory span at most 12 decades is drawn on the upper axis
VARIANCE_DPI = 90
HISTOGRAM_DPI = 80
_MARKERS = "osD^vPX*<>hp"
_STYLES = ("-", "--", "-.", (0, (6, 2)), (0, (3, 1, 1, 1)), (0, (1, 1)))
_END_FONT = 7  # points, the end labels at the right of the variance panels
_PNG = {"compress_level": 3}  # zlib level: 6 (the default) makes files ~10% smaller and takes twice as long
_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


class PlainLogFormatter(LogFormatterSciNotation):
    """matplotlib's log-axis labels (10^-12, 2x10^-1) as plain text with Unicode superscripts."""

    _math = re.compile(r"^\$\\mathdefault\{(.*)\}\$$")

    def __call__(self, x, pos=None):
        s = super().__call__(x, pos)
        m = self._math.match(s)
        if m is None:
            return s
        body = m.group(1).replace(r"\times", "\u2009×\u2009")  # thin spaces, as mathtext sets it
        body = re.sub(r"\^\{(-?\d+)\}", lambda e: e.group(1).translate(_SUPERSCRIPT), body)
        if any(c in body for c in "\\{}^$"):  # a form this does not know: leave it to mathtext
            return s
        return body.replace("-", "−")  # the minus sign matplotlib's own labels use


def _fix_label(axis, x, y, dx, dy):
    """Put ``axis``'s label at axes fraction (x, y) moved by (dx, dy) points: where matplotlib puts it for
    the known tick labels, without measuring them again at every draw."""
    ax = axis.axes
    axis.set_label_coords(x, y, ax.transAxes + ScaledTranslation(dx / 72, dy / 72, ax.figure.dpi_scale_trans))


def _positive(y):
    y = np.asarray(y, dtype=np.float64)
    return np.where(np.isfinite(y) & (y > 0), y, np.nan)


def _in_range(r, stat):
    """True when the simulation and the mean-field line of ``stat`` span at most IN_RANGE_DECADES decades."""
    sim = _positive(r.stats[stat])
    if not np.all(np.isfinite(sim)):  # a zero, an overflow: the values left the range
        return False
    y = np.concatenate([sim, _positive(r.theory[stat])])
    y = y[np.isfinite(y)]  # a theory of NaN (none for this configuration) does not count
    return float(np.log10(y.max() / y.min())) <= IN_RANGE_DECADES


def _end_labels(ax, items, log=True):
    """Labels at the right end of the lines, pushed apart so that coinciding lines stay readable."""
    items = sorted((v, t, c) for v, t, c in items if np.isfinite(v) and v > 0)
    if not items:
        return
    lo, hi = ax.get_ylim()
    span = (np.log10(hi) - np.log10(lo)) if log else hi - lo
    gap = 0.055 * span
    ys = [np.log10(v) if log else v for v, _, _ in items]
    for k in range(1, len(ys)):
        ys[k] = max(ys[k], ys[k - 1] + gap)
    shift = max(0.0, ys[-1] - ((np.log10(hi) if log else hi) - 0.02 * span))
    for y, (_, text, c) in zip(ys, items, strict=True):
        y = y - shift
        ax.annotate(text, xy=(1.01, 0), xycoords=("axes fraction", "data"),
                    xytext=(1.01, 10 ** y if log else y), textcoords=("axes fraction", "data"),
                    color=c, fontsize=_END_FONT, va="center", annotation_clip=False)


def _text_width(fig, texts, points):
    """The widest of ``texts`` at ``points`` in inches, measured by the figure's renderer (no drawing)."""
    renderer, prop = fig.canvas.get_renderer(), FontProperties(size=points)
    return max((renderer.get_text_width_height_descent(t, prop, ismath=False)[0] for t in texts),
               default=0.0) / fig.dpi


def _variance_layout(fig, end_labels, title_lines):
    """Fixed margins for the variance figure, in inches turned into figure fractions.

    Horizontally: the y tick labels (up to 10⁻¹⁰⁴ at 10 pt) left of each panel, the end labels
    (the widest of ``end_labels``, measured) right of each; vertically: the suptitle, a panel title of up
    to two lines, the x tick labels and x label under each panel, and the legend row at the bottom.
    ``title_lines``: the lines of the longest panel title of each row.
    """
    W, H = fig.get_size_inches()
    ticks = 0.75  # "10⁻¹⁰⁴" or "6 × 10⁻¹" at 10 pt, the tick marks and padding
    labels = 0.12 + _text_width(fig, end_labels, _END_FONT)  # 1% of the panel and a little air before them
    panel = (W - 2 * ticks - 2 * labels) / 2
    line = 0.17  # inches per line of a 9 or 10 pt panel title
    top = 0.6 + line * title_lines[0]  # the suptitle, then the titles of the first row
    bottom = 0.85  # tick labels, x label and the legend
    between = 0.71 + line * max(title_lines[1:], default=0)  # tick labels and x label, the titles below them
    nrows = len(title_lines)
    fig.subplots_adjust(left=ticks / W, right=(W - labels) / W, wspace=(labels + ticks) / panel,
                        top=1 - top / H, bottom=bottom / H,
                        hspace=between / ((H - top - bottom - between * (nrows - 1)) / nrows))


class VarianceFigures:
    """The variance figures of one study. Forward and backward panels: schemes that stay in range on their
    own axis with the finite-width band; schemes that vanish or explode below on a full log axis; symmetric
    (zero) runs listed, not drawn. A figure per row layout is made once and refilled for each activation:
    its Axes keep their ticks, whose making costs more than drawing them."""

    _STATS = (("preact_var", "forward: pooled Var(z_l)"), ("grad_preact_m2", "backward: E[(dl/dz_l)^2]"))

    def __init__(self, schemes, sizes, colors):
        self.schemes, self.sizes = schemes, sizes
        self.style = {s: (colors[i % len(colors)], _MARKERS[i % len(_MARKERS)], _STYLES[i % len(_STYLES)])
                      for i, s in enumerate(schemes)}
        self.figures = {}  # row kinds (0: in range, 1: vanish or explode) -> (figure, axes)

    def close(self):
        for fig, _ in self.figures.values():
            plt.close(fig)
        self.figures.clear()

    def _figure(self, kinds):
        if kinds in self.figures:  # empty the panels of the last activation; the axes stay as they are
            fig, axes = self.figures[kinds]
            for ax in axes.flat:
                for artist in [*ax.lines, *ax.collections, *ax.texts]:
                    artist.remove()
                ax.relim()  # the data limits of nothing: the next lines set them
            for leg in list(fig.legends):
                leg.remove()
            return fig, axes
        L = self.sizes["depth"]
        fig, axes = plt.subplots(len(kinds), 2, figsize=(13, 4.1 * len(kinds) + 0.5), squeeze=False, dpi=VARIANCE_DPI)
        for (row, kind), col in ((rk, c) for rk in enumerate(kinds) for c in (0, 1)):
            ax = axes[row, col]
            ax.set_yscale("log")
            ax.yaxis.set_major_formatter(PlainLogFormatter())
            ax.yaxis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False))
            if kind == 1:  # tens of decades: a minor tick per decade would be a crowd of grid lines
                ax.yaxis.set_minor_locator(NullLocator())
            ax.grid(alpha=0.3, which="both", lw=0.4)
            # under one row of 10 pt tick labels: tick 3.5 + pad 3.5 + text 10 + label pad 4 points
            _fix_label(ax.xaxis, 0.5, 0, 0, -21)
            _fix_label(ax.yaxis, 0, 0.5, -40, 0)  # no y label; its place is not looked for at each draw
            if col == 0:
                ax.set_xlim(0.5, L + 0.5)
                ax.set_xlabel("layer l (forward pass: 1 -> L)")
            else:  # the backward pass runs from L down to 1: drawn left to right, it ends at the labels
                ax.set_xlim(L + 0.5, 0.5)
                ax.set_xlabel(f"layer l (backward pass: {L} -> 1)")
        self.figures[kinds] = fig, axes
        return fig, axes

    def draw(self, runs, act, path):
        """Fill the panels with activation ``act`` and write them to ``path``; the figure."""
        schemes, L = self.schemes, self.sizes["depth"]
        layers = np.arange(1, L + 1)
        sym = [s for s in schemes if verdict(runs[(s, act)])["overall"] == "symmetric"]
        groups = {}
        for stat, _ in self._STATS:
            rest = [s for s in schemes if s not in sym and np.any(_positive(runs[(s, act)].stats[stat]) > 0)]
            inr = [s for s in rest if _in_range(runs[(s, act)], stat)]
            groups[stat] = (inr, [s for s in rest if s not in inr])
        kinds = tuple(k for k in (0, 1) if any(groups[st][k] for st, _ in self._STATS)) or (0,)
        fig, axes = self._figure(kinds)
        every = max(1, L // 8)
        end_labels = []
        for col, (stat, title) in enumerate(self._STATS):
            inr, out = groups[stat]
            end_layer = L if stat == "preact_var" else 1  # where each pass ends
            for row, kind in enumerate(kinds):
                members = (inr, out)[kind]
                ax = axes[row, col]
                labels = []
                for k, s in enumerate(members):
                    r = runs[(s, act)]
                    c, m, ls = self.style[s]
                    lo, hi = r.theory_band(stat)
                    if np.any(np.isfinite(lo)):
                        ax.fill_between(layers, _positive(lo), _positive(hi), color=c, alpha=0.13, lw=0)
                    ax.plot(layers, _positive(r.theory[stat]), color=c, ls=":", lw=1.0)
                    y = _positive(r.stats[stat])
                    ax.plot(layers, y, color=c, ls=ls, lw=1.4, marker=m, ms=4.5,
                            markevery=(k % every, every), label=s)
                    yend = float(y[end_layer - 1])
                    if np.isfinite(yend):
                        end = "" if kind == 0 else f" ({fmt_value(yend)} at l={end_layer})"
                        labels.append((yend, s + end, c))
                if kind == 0:  # y given: no search for top tick labels (there are none) at every draw
                    ax.set_title(f"{act}, {title}", fontsize=10, y=1.0)
                else:
                    ax.set_title(textwrap.fill(f"{title.split(':')[0]}, vanish or explode (span beyond "
                                               f"{IN_RANGE_DECADES:g} decades): {', '.join(out) or 'none'}", 70),
                                 fontsize=9, y=1.0)
                if not members:
                    ax.text(0.5, 0.5, "none", transform=ax.transAxes, ha="center", va="center", color="0.5")
                else:
                    _end_labels(ax, labels)
                    end_labels += [t for _, t, _ in labels]
        level = round(100 * BAND_LEVEL)
        handles = [Line2D([], [], color="0.2", lw=1.4, marker="o", ms=4, label="simulation (markers: scheme)"),
                   Line2D([], [], color="0.2", ls=":", lw=1.0, label="mean-field theory"),
                   Patch(color="0.2", alpha=0.15, label=f"{level}% finite-width band, one network")]
        if sym:
            handles.append(Line2D([], [], color="none", label="not drawn (symmetric, all zero): " + ", ".join(sym)))
        fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=8, frameon=False)
        fig.suptitle(f"{act}: width {self.sizes['width']}, batch {self.sizes['batch']}, depth {L}", fontsize=11)
        _variance_layout(fig, end_labels, [max(ax.title.get_text().count("\n") + 1 for ax in row) for row in axes])
        fig.savefig(path, dpi=VARIANCE_DPI, pil_kwargs=_PNG)
        return fig


class HistogramGrid:
    """One figure of schemes x layers panels, refilled for each activation (making 35 Axes costs more
    than drawing them)."""

    def __init__(self, schemes, hist, colors, activations):
        ns, nh = len(schemes), len(hist)
        W, H = 2.4 * nh, 1.7 * ns
        self.fig, self.axes = plt.subplots(ns, nh, figsize=(W, H), squeeze=False, dpi=HISTOGRAM_DPI)
        W = max(W, 0.3 + _text_width(self.fig, [self.title_of(a) for a in activations], 10))
        self.fig.set_size_inches(W, H)  # a grid of one or two layers is narrower than its title
        # fixed margins (inches): scheme names left; suptitle and layer titles on top; under each row
        # its x tick labels (7 pt) and the offset text (1e-11) of a panel with tiny or huge values
        left, right, top, bottom, between, across = 0.32, 0.12, 0.62, 0.42, 0.48, 0.22
        ph = (H - top - bottom - between * (ns - 1)) / ns
        pw = (W - left - right - across * (nh - 1)) / nh
        self.fig.subplots_adjust(left=left / W, right=1 - right / W, top=1 - top / H, bottom=bottom / H,
                                 hspace=between / ph, wspace=across / pw)
        # one step patch per panel, refilled with set_data; the limits are set, never autoscaled
        self.steps = np.empty((ns, nh), dtype=object)
        for i, s in enumerate(schemes):
            for j, lay in enumerate(hist):
                ax = self.axes[i, j]
                ax.tick_params(axis="x", labelsize=7)  # the y axis has no ticks
                ax.xaxis.get_offset_text().set_fontsize(7)
                ax.xaxis.set_major_locator(MaxNLocator(nbins=3))  # 3 or 4 labels: the range and its middle
                ax.set_yticks([])
                self.steps[i, j] = ax.add_artist(StepPatch([0.0], [0.0, 1.0], fill=True, color=colors[i % len(colors)]))
                if i == 0:  # y given: no search for top tick labels (there are none) at every draw
                    ax.set_title(f"layer {lay}", fontsize=8, y=1.0)
                _fix_label(ax.xaxis, 0.5, 0, 0, -18)  # no x label; its place is not looked for at each draw
                if j == 0:
                    ax.set_ylabel(s, fontsize=8)
                    _fix_label(ax.yaxis, 0, 0.5, -4, 0)  # label pad 4 points left of the frame (no y ticks)
        self.title = self.fig.suptitle("", fontsize=10)

    @staticmethod
    def title_of(act):
        return f"{act}: post-activation histograms (note the x-axis ranges)"

    def draw(self, runs, schemes, act, hist, path):
        """Refill the panels with activation ``act`` and write them to ``path``; the figure."""
        for i, s in enumerate(schemes):
            hs = {h["layer"]: h for h in runs[(s, act)].histograms}
            for j, lay in enumerate(hist):
                ax = self.axes[i, j]
                h = hs.get(lay)
                if h is not None and h["post_counts"].sum() > 0:
                    e, n = h["post_edges"], h["post_counts"]
                    self.steps[i, j].set_data(n, e)
                    self.steps[i, j].set_visible(True)
                    pad = 0.05 * (e[-1] - e[0])  # matplotlib's default margins, set rather than autoscaled
                    ax.set_xlim(e[0] - pad, e[-1] + pad)
                    ax.set_ylim(0, 1.05 * n.max())
                else:
                    self.steps[i, j].set_visible(False)
                    ax.set_xlim(0, 1)
                    ax.set_ylim(0, 1)
        self.title.set_text(self.title_of(act))
        self.fig.savefig(path, dpi=HISTOGRAM_DPI, pil_kwargs=_PNG)
        return self.fig


def write_plots(runs, schemes, activations, hist, outdir, sizes):
    """``variance_<act>.png`` and ``histograms_<act>.png`` for each activation in ``outdir``; the paths."""
    written = []
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    variance = VarianceFigures(schemes, sizes, colors)
    grid = None
    try:
        grid = HistogramGrid(schemes, hist, colors, activations)
        for act in activations:
            p = os.path.join(outdir, f"variance_{act}.png")
            variance.draw(runs, act, p)
            written.append(p)
            p = os.path.join(outdir, f"histograms_{act}.png")
            grid.draw(runs, schemes, act, hist, p)
            written.append(p)
    finally:
        variance.close()
        if grid is not None:
            plt.close(grid.fig)
    return written
