r"""``lsuv_(model, inputs)``: layer-sequential unit-variance init (Mishkin and Matas 2015).

Orthonormal pre-init from fastinit's name-keyed streams, then, layer by layer in forward order, the weight
is scaled until the layer's output std reaches the target. Each measurement runs the forward pass only up
to the layer: a forward hook stops it there.
"""

from __future__ import annotations

import math
import re

from .._checks import InitArgumentError, integer, real
from ._inspect import run_forward
from ._model import init_model
from ._rules import Rule

__all__ = ["lsuv_", "LSUVReport"]


class _Stop(Exception):
    """Raised by the hook of the layer being measured: the rest of the forward pass is not needed."""


class LSUVReport(list):
    """One dict per layer (name, kind, iterations, std_before, std, scale, converged); ``str()`` is a table."""

    def __str__(self):
        head = f"{'layer':<24} {'kind':<12} {'iters':>5} {'std before':>11} {'std after':>10} {'scale':>9}  ok"
        rows = [head, "-" * len(head)]
        for r in self:
            rows.append(f"{r['name']:<24} {r['kind']:<12} {r['iterations']:>5} {r['std_before']:>11.4g} "
                        f"{r['std']:>10.4g} {r['scale']:>9.4g}  {'yes' if r['converged'] else 'no'}")
        return "\n".join(rows)


def _has_weight(mod):
    import torch

    w = getattr(mod, "weight", None)
    return isinstance(w, torch.Tensor) and w.ndim >= 2 and w.is_floating_point()


def lsuv_(model, inputs, target_std=1.0, tol=0.1, max_iter=10, *, seed=0, modules=None, orthogonal=True):
    r"""Layer-sequential unit-variance init, in place (Mishkin and Matas 2015, "All you need is a good init").

    1. Pre-init: every selected weight (ndim >= 2) is filled by ``fastinit.orthogonal_`` from its name-keyed
       stream (``seed``, the tensor's name: the same values as ``init_model`` with an orthogonal rule), and
       the layer's bias, if any, is set to 0.
    2. For each selected layer in forward order: run the forward pass up to that layer's output :math:`y`,
       measure :math:`\hat\sigma = \operatorname{std}(y)` (all entries, float64) and scale the weight,
       :math:`W \leftarrow W\,\sigma^*/\hat\sigma`, until :math:`|\hat\sigma - \sigma^*| \le \text{tol}\cdot\sigma^*`
       or ``max_iter`` scalings. Biases are not scaled (the paper scales weights only).

    Parameters
    ----------
    model : torch.nn.Module
        On the CPU, with floating-point weights. Changed in place.
    inputs : torch.Tensor, tuple or dict
        A representative batch (``model(inputs)``, ``model(*inputs)`` or ``model(**inputs)``).
    target_std : float
        :math:`\sigma^* > 0`.
    tol : float
        Relative tolerance on the std, in (0, 1).
    max_iter : int
        Scalings per layer (>= 1).
    seed : int
        Seed of the orthogonal pre-init.
    modules : sequence of str, optional
        Names of the modules to scale (default: every leaf module with a weight of ndim >= 2: Linear, Conv*,
        Embedding, any custom module). Each must have such a weight.
    orthogonal : bool
        Do the pre-init (else scale the weights as they are).

    Returns
    -------
    LSUVReport
        A list of dicts, one per layer in forward order: ``name``, ``kind``, ``iterations`` (scalings done),
        ``std_before`` (after the pre-init), ``std`` (last measured), ``scale`` (product of the scalings),
        ``converged``.

    Raises
    ------
    InitArgumentError
        Bad arguments; a module without a weight; a layer not called by the forward pass; a layer whose
        output std is 0 or not finite (named in the message).

    Examples
    --------
    >>> import torch, fastinit.torch as ft
    >>> m = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.Tanh(), torch.nn.Linear(128, 10))
    >>> x = torch.randn(256, 64, generator=torch.Generator().manual_seed(0))
    >>> rep = ft.lsuv_(m, x, seed=0)
    >>> [(r["name"], r["converged"], round(r["std"], 2)) for r in rep]
    [('0', True, 1.0), ('2', True, 1.0)]
    """
    import torch

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    target_std = real(target_std, "target_std")
    tol = real(tol, "tol")
    max_iter = integer(max_iter, "max_iter", minimum=1)
    if target_std <= 0:
        raise InitArgumentError(f"target_std must be > 0, got {target_std}")
    if not 0 < tol < 1:
        raise InitArgumentError(f"tol must be in (0, 1), got {tol}")
    named = dict(model.named_modules())
    if modules is None:
        chosen = [n for n, m in named.items() if next(m.children(), None) is None and _has_weight(m)]
        if not chosen:
            raise InitArgumentError("the model has no module with a weight of ndim >= 2 for LSUV to scale")
    else:
        if isinstance(modules, str):
            raise TypeError("modules must be a sequence of module names, not a str")
        chosen = list(modules)
        for n in chosen:
            if n not in named:
                raise InitArgumentError(f"modules: {n!r} is not a module of the model")
            if not _has_weight(named[n]):
                raise InitArgumentError(f"modules: {n!r} ({type(named[n]).__name__}) has no floating weight of "
                                        f"ndim >= 2 for LSUV to scale")
    if orthogonal:
        _pre_init(model, chosen, seed)
    order = _forward_order(model, inputs, set(chosen))
    missing = [n for n in chosen if n not in order]
    if missing:
        raise InitArgumentError(f"layer(s) {missing} not called by the forward pass on these inputs")
    report = LSUVReport()
    for name in order:
        mod = named[name]
        row = {"name": name, "kind": type(mod).__name__, "iterations": 0, "scale": 1.0, "converged": False}
        for it in range(max_iter + 1):
            std = _measure(model, inputs, name, mod)
            if it == 0:
                row["std_before"] = std
            row["std"] = std
            if abs(std - target_std) <= tol * target_std:
                row["converged"] = True
                break
            if it == max_iter:
                break
            with torch.no_grad():
                mod.weight.mul_(target_std / std)
            row["scale"] *= target_std / std
            row["iterations"] = it + 1
        report.append(row)
    return report


def _pre_init(model, chosen, seed):
    """Orthogonal weights (name-keyed streams) and zero biases for the chosen modules."""
    weights = "|".join(re.escape(f"{n}.weight") for n in chosen)
    biases = "|".join(re.escape(f"{n}.bias") for n in chosen)
    rules = [Rule("orthogonal_", name=f"^(?:{weights})$", min_ndim=2), Rule("zeros_", name=f"^(?:{biases})$")]
    init_model(model, rules, seed, unmatched="keep")


def _forward_order(model, inputs, chosen):
    import torch

    order = []

    def post(name, mod, args, out):
        if name in chosen and name not in order:
            order.append(name)

    with torch.no_grad():
        run_forward(model, inputs, post_hook=post)
    return order


def _measure(model, inputs, name, mod):
    """Output std of layer ``name``: forward up to it, then stop."""
    import torch

    box = {}

    def hook(m, args, out):
        if not isinstance(out, torch.Tensor) or not out.is_floating_point():
            raise InitArgumentError(f"layer {name!r} ({type(m).__name__}) returned "
                                    f"{type(out).__name__}, not a floating tensor")
        box["std"] = float(out.detach().double().std(unbiased=False))
        raise _Stop

    h = mod.register_forward_hook(hook)
    try:
        with torch.no_grad():
            run_forward(model, inputs)
    except _Stop:
        pass
    finally:
        h.remove()
    std = box.get("std", math.nan)
    if not math.isfinite(std) or std == 0.0:
        raise InitArgumentError(f"layer {name!r} ({type(mod).__name__}): output std is {std}; LSUV cannot scale it "
                                f"to the target (a dead input, a zero or non-finite weight, or a constant input)")
    return std
