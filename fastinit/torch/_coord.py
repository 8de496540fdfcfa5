r"""``coord_check(factory, widths, inputs)``: per-layer statistics against width, as muP's coord check.

For each width the model is built, inspected (and optionally trained a few SGD steps, inspected after each);
for each layer and step the log-log slope of the output's root mean square against width is fitted. A
statistic that is width-independent has slope 0; ``flagged`` rows grow or shrink with width.
"""

from __future__ import annotations

import math

import numpy as np

from .._checks import InitArgumentError, integer, real
from ._inspect import inspect

__all__ = ["coord_check", "CoordReport"]


class CoordReport(list):
    """One dict per (layer, step): ``name``, ``kind``, ``step``, ``rms`` (one per width), ``slope``,
    ``flagged``; ``widths``; ``str()`` is a table."""

    widths: tuple = ()

    def __str__(self):
        head = f"{'layer':<20} {'kind':<10} {'step':>4} " + " ".join(f"{'w=' + str(w):>10}" for w in self.widths)
        head += f" {'slope':>7}  flag"
        rows = [head, "-" * len(head)]
        for r in self:
            rows.append(f"{r['name']:<20} {r['kind']:<10} {r['step']:>4} "
                        + " ".join(f"{v:>10.4g}" for v in r["rms"])
                        + f" {r['slope']:>7.3f}  {'yes' if r['flagged'] else ''}")
        return "\n".join(rows)


def coord_check(factory, widths, inputs, *, steps=0, lr=0.01, seed=0, max_slope=0.25):
    r"""Inspect a model over several widths; flag layers whose output scale changes with width.

    For each width :math:`n` in ``widths``: ``model = factory(n)``; ``x = inputs(n)`` if ``inputs`` is
    callable, else ``inputs``; the output's root mean square :math:`\sqrt{\overline{y^2}}` of every leaf is
    measured by :func:`inspect` at step 0 and after each of ``steps`` plain SGD steps (learning rate ``lr``,
    the loss :math:`\sum G\odot y_{\rm out}` of :func:`inspect` with a fixed :math:`G`). For each layer and
    step the least-squares slope :math:`s` of :math:`\log \text{rms}` against :math:`\log n` is reported, and the
    row is flagged when :math:`|s| >` ``max_slope`` (a width-independent statistic has :math:`s = 0`; standard
    parametrisation with a fixed std has :math:`s = 1/2` for a Linear's output).

    Parameters
    ----------
    factory : callable
        ``factory(width) -> torch.nn.Module``, initialised.
    widths : sequence of int
        At least two distinct positive widths.
    inputs : torch.Tensor or callable
        The batch, or ``inputs(width) -> batch``.
    steps : int
        SGD steps (>= 0).
    lr : float
        Learning rate of the steps.
    seed : int
        Seed of :math:`G`.
    max_slope : float
        Flag threshold on :math:`|s|`.

    Returns
    -------
    CoordReport

    Examples
    --------
    >>> import torch, fastinit.torch as ft
    >>> def make(n):
    ...     m = torch.nn.Sequential(torch.nn.Linear(64, n), torch.nn.ReLU(), torch.nn.Linear(n, n))
    ...     _ = ft.init_model(m, "bert", seed=0)   # std 0.02 whatever the width: output grows as sqrt(n)
    ...     return m
    >>> x = torch.randn(128, 64, generator=torch.Generator().manual_seed(0))
    >>> rep = ft.coord_check(make, [128, 512, 2048], x)
    >>> [(r["name"], round(r["slope"], 1) + 0.0, r["flagged"]) for r in rep]
    [('0', 0.0, False), ('1', 0.0, False), ('2', 0.5, True)]
    """
    import torch

    if not callable(factory):
        raise TypeError(f"factory must be callable width -> torch.nn.Module, got {type(factory).__name__}")
    widths = tuple(integer(w, "widths", minimum=1) for w in widths)
    if len(set(widths)) < 2:
        raise InitArgumentError(f"widths must hold at least two distinct widths, got {widths}")
    steps = integer(steps, "steps", minimum=0)
    lr = real(lr, "lr")
    max_slope = real(max_slope, "max_slope", minimum=0.0)
    per_width = []  # per width: {(name, step): (kind, rms)}
    order = []
    for n in widths:
        model = factory(n)
        x = inputs(n) if callable(inputs) and not isinstance(inputs, torch.Tensor) else inputs
        got = {}
        for step in range(steps + 1):
            rep = inspect(model, x, seed=seed)
            for r in rep.records:
                key = (r["name"], step)
                got[key] = (r["kind"], math.sqrt(r["out_m2"]) if r["out_m2"] >= 0 else math.nan)
                if key not in order:
                    order.append(key)
            if step < steps:
                _sgd_step(model, x, lr, seed)
        per_width.append(got)
    logw = np.log(np.array(widths, dtype=float))
    report = CoordReport()
    report.widths = widths
    for key in order:
        if not all(key in g for g in per_width):
            continue  # a layer that exists at some widths only
        rms = [g[key][1] for g in per_width]
        if all(v > 0 and math.isfinite(v) for v in rms):
            slope = float(np.polyfit(logw, np.log(rms), 1)[0])
        else:
            slope = math.nan
        report.append({"name": key[0], "kind": per_width[0][key][0], "step": key[1], "rms": rms, "slope": slope,
                       "flagged": bool(abs(slope) > max_slope) if math.isfinite(slope) else True})
    return report


def _sgd_step(model, x, lr, seed):
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    out = model(x)
    g = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed), dtype=out.dtype)
    grads = torch.autograd.grad((g * out).sum(), params, allow_unused=True)
    with torch.no_grad():
        for p, d in zip(params, grads, strict=True):
            if d is not None:
                p.sub_(lr * d)
