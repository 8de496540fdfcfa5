r"""``lint(model, inputs)``: the common init mistakes, detected on the model itself.

Each check reads the weights and one :func:`inspect` pass (forward and backward) and returns
:class:`Finding` objects: the tensor or module, the measured statistic beside the predicted one, and the
recipe that fixes it. The checks and their thresholds are listed in :data:`CHECKS`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from .._checks import InitArgumentError, real
from ._inspect import TANH_SAT, add_model_arguments, build, inspect
from ._recipes import RESIDUAL

__all__ = ["lint", "Finding", "CHECKS", "add_lint_parser", "run_lint"]

#: code -> what it detects.
CHECKS = {
    "relu-variance": "Xavier/LeCun variance (fan_in Var W in [0.7, 1.4]) in front of ReLU: E[z^2] halves per layer",
    "tanh-variance": "He variance (fan_in Var W in [1.6, 2.5]) in front of tanh/sigmoid: saturation",
    "symmetry": "a weight matrix with all entries equal (zero outside a residual output projection or the last "
                "layer): its units compute the same thing",
    "residual-scale": "residual output projections with the std of the other Linears in a stack of >= min_depth "
                      "blocks: the residual stream grows with depth",
    "forget-bias": "LSTM forget-gate bias (b_ih + b_hh rows [h:2h]) with mean below 0.5",
    "embedding-scale": "an embedding with std >= 0.5 feeding Linears with median std <= 0.05",
    "variance-jump": "a Linear/Conv (not a residual output projection) whose output second moment is more than "
                     "`factor` times its input's, or less than 1/factor",
    "nonfinite": "NaN or inf in a tensor at init, or produced by a layer in the forward pass",
}


@dataclass(frozen=True)
class Finding:
    """One init problem: ``str(finding)`` is one line ``where: code: evidence; fix: ...``."""

    code: str
    where: str
    evidence: str
    fix: str

    def __str__(self):
        return f"{self.where}: {self.code}: {self.evidence}; fix: {self.fix}"


def _gain2(w):
    """fan_in * mean(W^2): 1 for LeCun/Xavier (square), 2 for He, 1/3 for torch's default."""
    fan_in = w.shape[1] * math.prod(w.shape[2:])
    return fan_in * float(w.detach().double().pow(2).mean())


def _weighted(mod):
    w = getattr(mod, "weight", None)
    import torch

    return isinstance(w, torch.Tensor) and w.ndim >= 2 and "Embedding" not in type(mod).__name__


def lint(model, inputs, *, factor=4.0, min_depth=6, loss=None):
    r"""Find the common init mistakes in ``model``, measured on ``inputs``.

    The checks (:data:`CHECKS`): with :math:`g^2 = \text{fan\_in}\cdot\overline{W^2}` of a weight,

    * ``relu-variance``: :math:`g^2 \in [0.7, 1.4]` in front of ReLU/LeakyReLU. Mean field:
      :math:`E[\mathrm{relu}(z)^2] = \tfrac{g^2}{2} E[x^2]`, so the signal halves per layer (He: :math:`g^2 = 2`).
    * ``tanh-variance``: :math:`g^2 \in [1.6, 2.5]` in front of Tanh/Sigmoid; the evidence is the measured
      fraction of inputs with :math:`|z| > \operatorname{atanh}0.99` beside :math:`2\Phi(-2.647/\sigma_z)`.
    * ``symmetry``: a weight of ndim >= 2 with every entry equal; zeros are allowed in a residual output
      projection (names in :data:`RESIDUAL`) and in the last weighted layer (Fixup, ReZero).
    * ``residual-scale``: at least ``min_depth`` blocks with residual output projections whose std is at least
      0.9 of the median std of the other Linear weights (GPT-2 scales them by :math:`1/\sqrt{2L}`).
    * ``forget-bias``: an LSTM whose forget-gate bias (``bias_ih + bias_hh`` rows :math:`[h, 2h)`) averages
      below 0.5 (Jozefowicz et al. 2015 use 1).
    * ``embedding-scale``: an embedding with std >= 0.5 while the median Linear weight std is <= 0.05.
    * ``variance-jump``: a Linear/Conv with :math:`E[y^2]/E[x^2] >` ``factor`` or :math:`< 1/` ``factor``
      (measured; residual output projections, named as in :data:`RESIDUAL`, are left to ``residual-scale``;
      second moments, because a layer's output variance follows its input's second moment,
      :math:`\mathrm{Var}\,y = \text{fan\_in}\,\overline{W^2}\,E[x^2]`, and a sigmoid's output has mean 1/2).
    * ``nonfinite``: NaN/inf in a parameter or buffer, and the first layer whose output has any.

    Parameters
    ----------
    model : torch.nn.Module
    inputs : torch.Tensor, tuple or dict
        As for :func:`inspect`.
    factor : float
        Threshold of ``variance-jump`` (> 1).
    min_depth : int
        Blocks needed for ``residual-scale``.
    loss : callable, optional
        As for :func:`inspect`.

    Returns
    -------
    list of Finding

    Examples
    --------
    >>> import torch, fastinit.torch as ft
    >>> m = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256), torch.nn.ReLU())
    >>> _ = ft.init_model(m, "xavier", seed=0)
    >>> x = torch.randn(256, 256, generator=torch.Generator().manual_seed(0))
    >>> print(ft.lint(m, x)[0])   # doctest: +NORMALIZE_WHITESPACE
    0.weight: relu-variance: fan_in*Var(W) = 1.00 (He: 2), E[relu(z)^2]/E[x^2] = 0.50 measured, 0.50
    mean-field (He: 1); fix: recipe="kaiming" (kaiming_normal_, nonlinearity="relu")
    >>> _ = ft.init_model(m, "kaiming", seed=0)
    >>> ft.lint(m, x)
    []
    """
    import torch

    factor = real(factor, "factor", minimum=1.0)
    if factor <= 1.0:
        raise InitArgumentError(f"factor must be > 1, got {factor}")
    rep = inspect(model, inputs, loss=loss)
    recs = {r["name"]: r for r in rep.records}
    mods = dict(model.named_modules())
    out = []
    out += _nonfinite(model, rep.records)
    # which leaf feeds which (first consumer in call order)
    consumer = {}
    for r in rep.records:
        if r["input_from"] is not None and r["input_from"] not in consumer:
            consumer[r["input_from"]] = r["name"]
    weighted = [r["name"] for r in rep.records if _weighted(mods[_mod_name(model, r["name"])])]
    for name in weighted:
        mod = mods[_mod_name(model, name)]
        w = mod.weight
        act = recs.get(consumer.get(name, ""), None)
        if act is not None and w.ndim >= 2 and torch.isfinite(w).all():
            g2 = _gain2(w)
            if act["kind"] in ("ReLU", "LeakyReLU") and 0.7 <= g2 <= 1.4:
                meas = act["out_m2"] / recs[name]["in_m2"]
                out.append(Finding("relu-variance", f"{name}.weight",
                                   f"fan_in*Var(W) = {g2:.2f} (He: 2), E[relu(z)^2]/E[x^2] = {meas:.2f} measured, "
                                   f"{g2 / 2:.2f} mean-field (He: 1)",
                                   'recipe="kaiming" (kaiming_normal_, nonlinearity="relu")'))
            if act["kind"] in ("Tanh", "Sigmoid") and 1.6 <= g2 <= 2.5:
                sd = math.sqrt(recs[name]["out_var"] + recs[name]["out_mean"] ** 2)
                thr = TANH_SAT if act["kind"] == "Tanh" else math.log(99.0)
                pred = math.erfc(thr / sd / math.sqrt(2)) if sd > 0 else 0.0
                out.append(Finding("tanh-variance", f"{name}.weight",
                                   f"fan_in*Var(W) = {g2:.2f} (Xavier: 1), {act['kind'].lower()} saturated on "
                                   f"{act['frac_saturated']:.1%} of entries measured, {pred:.1%} mean-field "
                                   f"(std(z) = {sd:.2f})",
                                   'recipe="xavier" (xavier_normal_/xavier_uniform_, gain 1)'))
        r = recs[name]
        ratio = r["out_m2"] / r["in_m2"] if r["in_m2"] > 0 else math.inf
        deliberate = name.rsplit(".", 1)[-1] in RESIDUAL  # scaled down on purpose: see residual-scale
        if math.isfinite(r["out_m2"]) and r["in_m2"] > 0 and (ratio > factor or ratio < 1 / factor) and not deliberate:
            out.append(Finding("variance-jump", name,
                               f"E[y^2]/E[x^2] = {r['out_m2']:.3g}/{r['in_m2']:.3g} = {ratio:.3g} measured "
                               f"(outside [1/{factor:g}, {factor:g}]; fan_in*Var(W) = {_gain2(w):.3g})",
                               "a variance-preserving recipe for its activation (kaiming for ReLU, xavier for "
                               "tanh) or lsuv_"))
    out += _symmetry(model, weighted)
    out += _residual(model, min_depth)
    out += _lstm(model)
    out += _embedding(model, consumer, recs)
    return out


def _mod_name(model, leaf):
    return "" if leaf == type(model).__name__ and leaf not in dict(model.named_modules()) else leaf


def _nonfinite(model, records):
    import torch

    out = []
    for name, t in list(model.named_parameters()) + list(model.named_buffers()):
        if t.is_floating_point():
            bad = int((~torch.isfinite(t.detach())).sum())
            if bad:
                out.append(Finding("nonfinite", name, f"{bad} of {t.numel()} entries are NaN or inf",
                                   "re-initialise it (any recipe) and check the custom init code"))
    for r in records:
        if r["n_nan"] or r["n_inf"]:
            out.append(Finding("nonfinite", r["name"], f"output has {r['n_nan']} NaN and {r['n_inf']} inf "
                                                       f"(first layer in call order)",
                               "fix the tensors above, or the inputs, or the layer's arithmetic"))
            break
    return out


def _symmetry(model, weighted):
    out = []
    last = weighted[-1] if weighted else None
    for name, mod in model.named_modules():
        w = getattr(mod, "weight", None)
        if w is None or not hasattr(w, "ndim") or w.ndim < 2 or w.numel() < 2:
            continue
        for pname in ("weight",):
            wd = w.detach()
            v = float(wd.flatten()[0])
            if not bool((wd == v).all()):
                continue
            local = name.rsplit(".", 1)[-1]
            if v == 0.0 and (local in RESIDUAL or name == last):
                continue
            out.append(Finding("symmetry", f"{name}.{pname}",
                               f"all {w.numel()} entries equal {v:g}: its {w.shape[0]} units compute the same "
                               f"thing and get the same gradient (across-unit spread 0)",
                               'a random recipe (recipe="torch", "kaiming", "xavier", ...)'))
    return out


def _residual(model, min_depth):
    import torch

    res, other = [], []
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Linear) or type(mod).__name__ == "Conv1D":
            local = name.rsplit(".", 1)[-1]
            std = float(mod.weight.detach().double().std())
            (res if local in RESIDUAL else other).append((name, std))
    blocks = {m.group(0) for name, _ in res if (m := re.search(r"\d+", name))}
    if len(blocks) < min_depth or not other or not res:
        return []
    med = sorted(s for _, s in other)[len(other) // 2]
    out = []
    for name, std in res:
        if std >= 0.9 * med:
            L = len(blocks)
            out.append(Finding("residual-scale", f"{name}.weight",
                               f"std {std:.3g} vs the other Linears' median {med:.3g} in a stack of {L} residual "
                               f"blocks (GPT-2: {med:.3g}/sqrt(2*{L}) = {med / math.sqrt(2 * L):.3g})",
                               'recipe="gpt2" (residual projections 0.02/sqrt(2*n_layers)) or "deepnet"'))
    return out


def _lstm(model):
    import torch

    out = []
    for name, mod in model.named_modules():
        if not isinstance(mod, (torch.nn.LSTM, torch.nn.LSTMCell)) or not getattr(mod, "bias", True):
            continue
        h = mod.hidden_size
        for pname, p in mod.named_parameters():
            if pname.startswith("bias_ih"):
                other = getattr(mod, pname.replace("bias_ih", "bias_hh"), None)
                f = p.detach().double()[h:2 * h]
                if other is not None:
                    f = f + other.detach().double()[h:2 * h]
                mean = float(f.mean())
                if mean < 0.5:
                    where = f"{name}.{pname}" if name else pname
                    out.append(Finding("forget-bias", where,
                                       f"forget-gate bias (b_ih + b_hh rows [{h}:{2 * h}]) mean {mean:.3f}: the gate "
                                       f"starts near sigmoid({mean:.2f}) = {1 / (1 + math.exp(-mean)):.2f} (1 gives "
                                       f"0.73)", 'recipe="recurrent" (forget_bias=1)'))
    return out


def _embedding(model, consumer, recs):
    import torch

    lin = [float(m.weight.detach().double().std()) for m in model.modules() if isinstance(m, torch.nn.Linear)]
    if not lin:
        return []
    med = sorted(lin)[len(lin) // 2]
    out = []
    for name, mod in model.named_modules():
        if isinstance(mod, torch.nn.Embedding):
            std = float(mod.weight.detach().double().std())
            if std >= 0.5 and med <= 0.05:
                m2 = recs[name]["out_m2"] if name in recs else float("nan")
                out.append(Finding("embedding-scale", f"{name}.weight",
                                   f"std {std:.3g} (output E[y^2] = {m2:.3g} measured) vs the Linears' median std "
                                   f"{med:.3g}: the embedding dominates the residual stream",
                                   'recipe="gpt2" or "bert" (embeddings N(0, 0.02^2))'))
    return out


def add_lint_parser(sub) -> None:
    """Add the ``lint`` sub-command to the ``fastinit`` parser's sub-parsers ``sub``."""
    p = sub.add_parser("lint", help="find common init mistakes in a model (exit status 1 when any is found)")
    add_model_arguments(p)
    p.add_argument("--factor", type=float, default=4.0, help="variance-jump threshold (default 4)")
    p.add_argument("--min-depth", type=int, default=6, help="residual blocks for residual-scale (default 6)")


def run_lint(args) -> int:
    """Print the findings, one a line; exit status 1 when there are any, 0 when none, 2 on bad input."""
    import sys

    try:
        model, x = build(args)
        findings = lint(model, x, factor=args.factor, min_depth=args.min_depth)
    except (ImportError, AttributeError, TypeError, ValueError) as e:
        print(f"fastinit lint: error: {e}", file=sys.stderr)
        return 2
    for f in findings:
        print(f)
    print(f"{len(findings)} finding{'s' if len(findings) != 1 else ''}")
    return 1 if findings else 0
