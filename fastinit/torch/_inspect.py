r"""``inspect(model, inputs)``: per-layer statistics of a torch model at init, mean-field theory beside them.

Forward hooks on every leaf module accumulate, in float64 and on the fly (no activation tensor is kept),
the statistics of the module's output; a hook on each output tensor accumulates the second moment of the
gradient that flows back into it, and ``torch.autograd.grad`` gives the weight and bias gradients without
touching ``.grad``. Where the model is a chain ``Linear -> act -> Linear -> act ...`` (one element-wise
activation type, each module fed by the previous one's output), :func:`fastinit.theory.mlp_theory` is
evaluated with the measured per-layer weight and bias moments and the measured input moments, and its
prediction sits beside each measurement.
"""

from __future__ import annotations

import fnmatch
import json
import math
import weakref
from dataclasses import dataclass, field

import numpy as np

from .. import _stats
from .._checks import InitArgumentError
from .._generator import Generator
from .._plain import normal_
from ._cli import load_factory
from ._plots import plot

__all__ = ["inspect", "InspectReport", "STATISTICS", "HIST_BINS", "run_forward", "add_inspect_parser", "run_inspect",
           "plot"]

#: Per-layer statistics of :func:`inspect` (record keys). ``frac_inactive``, ``frac_dead_units`` and
#: ``frac_saturated`` have fastinit.sim's meaning; ``out_*`` of a Linear are sim's ``preact_*``, of an
#: activation sim's ``post_*``; ``grad_out_m2`` of a Linear is sim's ``grad_preact_m2``.
STATISTICS = ("out_mean", "out_var", "out_m2", "frac_zero", "frac_inactive", "frac_dead_units", "frac_saturated",
              "n_nan", "n_inf", "grad_out_m2", "grad_weight_m2", "grad_bias_m2", "in_var", "in_m2")

# |x| thresholds of fastinit.sim's frac_saturated (on the activation's input): |tanh x| > 0.99, sigmoid
# outside (0.01, 0.99).
TANH_SAT = math.atanh(0.99)
SIGMOID_SAT = math.log(0.99 / 0.01)
_SATURATING = {"Tanh": TANH_SAT, "Sigmoid": SIGMOID_SAT}
# torch activation classes -> fastinit.theory activation names (element-wise, no state).
_THEORY_ACT = {"ReLU": "relu", "Tanh": "tanh", "Sigmoid": "sigmoid", "LeakyReLU": "leaky_relu", "SELU": "selu",
               "GELU": "gelu", "SiLU": "silu", "Softplus": "softplus"}
#: Bins of the per-layer output histogram (``hist_counts``).
HIST_BINS = 64
#: Half-width of the histogram range in standard deviations (see :func:`histogram_range`).
HIST_SIGMAS = 8.0
_CHANNELS_FIRST = ("Conv", "BatchNorm", "InstanceNorm", "GroupNorm", "MaxPool", "AvgPool", "AdaptiveAvgPool")


class _Acc:
    """Running float64 sums of one module's outputs (over every call) and of the gradients into them."""

    def __init__(self, name, module):
        self.name, self.module, self.kind = name, module, type(module).__name__
        self.calls = 0
        self.shape = None
        self.n = self.n_finite = 0
        self.s1 = self.s2 = 0.0
        self.zeros = self.inactive = self.nan = self.inf = 0
        self.sat = 0
        self.sat_n = 0
        self.alive = None  # per unit: positive for at least one sample
        self.g_n = 0
        self.g_s2 = 0.0
        self.in_n = 0
        self.in_s1 = self.in_s2 = 0.0
        self.input_from = None
        self.branch = False
        self.h_lo = self.h_hi = None  # histogram range, fixed at the first call (see histogram_range)
        self.h_edges = None
        self.h_counts = None
        self.h_under = self.h_over = 0

    def add_hist(self, x, xm, mean, m2, all_finite):
        """Count the finite entries of ``x`` (``xm``: its 2-D view from :func:`_stats.as_matrix`; ``mean`` and
        ``m2``: the finite entries' mean and second moment) into HIST_BINS equal bins (int64); the range is
        fixed at the first call."""
        import torch

        if self.h_lo is None:
            lo, hi = torch.aminmax(x if all_finite else x[torch.isfinite(x)])
            self.h_lo, self.h_hi = histogram_range(float(lo), float(hi), mean, math.sqrt(max(m2 - mean * mean, 0.0)))
            self.h_counts = np.zeros(HIST_BINS, dtype=np.int64)
            self.h_edges = np.linspace(self.h_lo, self.h_hi, HIST_BINS + 1)
        counts, under, over = _stats.histogram(xm, self.h_edges, all_finite)
        self.h_counts += counts
        self.h_under += int(under)
        self.h_over += int(over)

    def add(self, x, inp, seen):
        """Add one call's output ``x`` (and the statistics of its input ``inp``); ``seen`` maps id(tensor) to
        (weakref, finite count, sum, sum of squares) of the outputs already measured, so an input that is
        another leaf's output is not read again."""
        import torch

        out, x = x, x.detach()
        self.calls += 1
        self.shape = tuple(x.shape)
        if x.is_complex() or not x.is_floating_point():
            return
        n = x.numel()
        self.n += n
        xm = _stats.as_matrix(_numpy(x))
        channels_first = x.ndim >= 2 and self.kind.startswith(_CHANNELS_FIRST)
        alive = np.zeros(xm.shape[1], np.bool_)
        s1, s2, counts = _stats.moments(xm, alive)  # one pass, float64 sums of the finite entries
        n_fin = int(counts[_stats.FINITE])
        self.n_finite += n_fin
        self.nan += int(counts[_stats.NAN])
        self.inf += n - n_fin - int(counts[_stats.NAN])
        self.s1 += s1
        self.s2 += s2
        self.zeros += int(counts[_stats.ZEROS])
        self.inactive += int(counts[_stats.INACTIVE])
        seen[id(out)] = (weakref.ref(out), n_fin, s1, s2)
        if n_fin:
            self.add_hist(x, xm, s1 / n_fin, s2 / n_fin, n_fin == n)
        if channels_first:  # units along dim 1: their maxima from torch (rarely the largest outputs)
            y = torch.where(torch.isfinite(x), x, torch.zeros((), dtype=x.dtype))
            pos = y.movedim(1, -1).reshape(-1, x.shape[1]).amax(0) > 0
            alive = pos.numpy()
        if x.ndim >= 2:
            self.alive = alive if self.alive is None or self.alive.shape != alive.shape else self.alive | alive
        if isinstance(inp, torch.Tensor) and inp.is_floating_point():
            ind = inp.detach()
            known = seen.get(id(inp))
            if known is not None and known[0]() is inp:
                _, in_n, in_s1, in_s2 = known
            else:
                im = _stats.as_matrix(_numpy(ind))
                in_s1, in_s2, in_counts = _stats.moments(im, np.zeros(im.shape[1], np.bool_))
                in_n = int(in_counts[_stats.FINITE])
            self.in_n += in_n
            self.in_s1 += in_s1
            self.in_s2 += in_s2
        thr = _SATURATING.get(self.kind)
        if thr is not None and isinstance(inp, torch.Tensor) and inp.is_floating_point():
            self.sat += int(torch.count_nonzero(inp.detach().abs() > thr))
            self.sat_n += inp.numel()

    def add_grad(self, g):
        self.g_n += g.numel()
        self.g_s2 += sumsq(g)

    def record(self):
        nf = self.n_finite
        mean = self.s1 / nf if nf else math.nan
        m2 = self.s2 / nf if nf else math.nan
        rec = {"name": self.name, "kind": self.kind, "shape": list(self.shape) if self.shape else None,
               "calls": self.calls, "out_mean": mean, "out_var": max(m2 - mean * mean, 0.0) if nf else math.nan,
               "out_m2": m2,
               "frac_zero": self.zeros / self.n if self.n else math.nan,
               "frac_inactive": self.inactive / self.n if self.n else math.nan,
               "frac_dead_units": float(np.mean(~self.alive)) if self.alive is not None and self.alive.size
               else math.nan,
               "frac_saturated": self.sat / self.sat_n if self.sat_n else math.nan,
               "n_nan": self.nan, "n_inf": self.inf,
               "grad_out_m2": self.g_s2 / self.g_n if self.g_n else math.nan,
               "in_m2": self.in_s2 / self.in_n if self.in_n else math.nan,
               "in_var": max(self.in_s2 / self.in_n - (self.in_s1 / self.in_n) ** 2, 0.0) if self.in_n else math.nan,
               "input_from": self.input_from, "branch": self.branch,
               "hist_edges": (np.linspace(self.h_lo, self.h_hi, HIST_BINS + 1).tolist()
                              if self.h_counts is not None else None),
               "hist_counts": self.h_counts.tolist() if self.h_counts is not None else None,
               "hist_under": self.h_under, "hist_over": self.h_over}
        return rec


def _numpy(t):
    """A NumPy float32/float64 view of the detached CPU tensor ``t`` (float16 and bfloat16: a float32 copy)."""
    import torch

    if t.dtype not in (torch.float32, torch.float64):
        t = t.float()
    return t.resolve_conj().resolve_neg().numpy()


def sumsq(t) -> float:
    """Float64 sum of the squares of the entries of tensor ``t`` (one pass, no float64 copy)."""
    return float(_stats.sumsq(_stats.as_matrix(_numpy(t.detach()))))


def histogram_range(lo, hi, mean, std):
    """The range of a layer's histogram, from its first call's finite output: ``[min, max]`` cut to
    ``mean +- HIST_SIGMAS * std`` (a few huge entries do not squash the rest into one bin), widened to
    ``v +- 0.5`` when it is one point ``v``; rounded to float32 so that the bins agree with a float32 output."""
    lo, hi = max(lo, mean - HIST_SIGMAS * std), min(hi, mean + HIST_SIGMAS * std)
    if not hi > lo:
        lo, hi = mean - 0.5, mean + 0.5
    return float(np.float32(lo)), float(np.float32(hi))


def _leaves(model):
    return [(n or type(model).__name__, m) for n, m in model.named_modules() if next(m.children(), None) is None]


def _call(model, inputs):
    import torch

    if isinstance(inputs, torch.Tensor):
        return model(inputs)
    if isinstance(inputs, dict):
        return model(**inputs)
    if isinstance(inputs, (tuple, list)):
        return model(*inputs)
    raise TypeError(f"inputs must be a tensor, a tuple of positional arguments or a dict of keyword arguments, "
                    f"got {type(inputs).__name__}")


def _shapes(inputs):
    if hasattr(inputs, "shape"):
        return str(tuple(inputs.shape))
    if isinstance(inputs, dict):
        return str({k: tuple(getattr(v, "shape", ())) for k, v in inputs.items()})
    return str([tuple(getattr(v, "shape", ())) for v in inputs])


def run_forward(model, inputs, pre_hook=None, post_hook=None):
    """Call ``model`` on ``inputs`` with hooks on every leaf module; errors name the layer that failed.

    ``pre_hook(name, module, args)`` and ``post_hook(name, module, args, output)`` are called around
    each leaf. A hook may raise to stop the forward pass. Returns the model's output.
    """
    import torch

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    current = []
    handles = []

    def pre(name):
        def f(mod, args):
            current.append(name)
            if pre_hook is not None:
                pre_hook(name, mod, args)
        return f

    def post(name):
        def f(mod, args, out):
            if post_hook is not None:
                post_hook(name, mod, args, out)
            current.pop()
        return f

    for name, mod in _leaves(model):
        handles.append(mod.register_forward_pre_hook(pre(name)))
        handles.append(mod.register_forward_hook(post(name)))
    try:
        return _call(model, inputs)
    except (RuntimeError, IndexError) as e:
        if not current:
            raise
        mod = dict(_leaves(model))[current[-1]]
        raise InitArgumentError(f"the forward pass failed in layer {current[-1]!r} ({type(mod).__name__}) on inputs "
                                f"of shape {_shapes(inputs)}: {e}") from e
    finally:
        for h in handles:
            h.remove()


@dataclass
class InspectReport:
    """Per-layer statistics of one forward (and backward) pass; ``str()`` is an aligned table."""

    records: list = field(default_factory=list)
    theory: str | None = None  # why the theory column is (not) there
    loss: str = ""
    batch: int = 0
    grad_input_m2: float = math.nan  # fastinit.sim's name: mean squared gradient w.r.t. a floating input

    def __getitem__(self, name):
        for r in self.records:
            if r["name"] == name:
                return r
        raise KeyError(name)

    def __len__(self):
        return len(self.records)

    def to_records(self):
        """A list of dicts, one per measured module in call order (keys: name, kind, shape, calls, the
        :data:`STATISTICS`, ``branch``, the histogram ``hist_edges``, ``hist_counts``, ``hist_under``,
        ``hist_over``, and ``theory_<statistic>`` where the mean-field prediction applies)."""
        return [dict(r) for r in self.records]

    def to_json(self, **kw):
        """The records with a header (loss, batch, theory note), as JSON (NaN written as null)."""
        def clean(v):
            return None if isinstance(v, float) and not math.isfinite(v) else v
        rows = [{k: clean(v) for k, v in r.items()} for r in self.records]
        return json.dumps({"loss": self.loss, "batch": self.batch, "theory": self.theory,
                           "grad_input_m2": clean(self.grad_input_m2), "layers": rows}, **kw)

    def __str__(self):
        cols = [("layer", "name"), ("kind", "kind"), ("mean", "out_mean"), ("var", "out_var"),
                ("var theory", "theory_out_var"), ("zero", "frac_zero"), ("dead", "frac_dead_units"),
                ("sat", "frac_saturated"), ("nan/inf", None), ("grad_out_m2", "grad_out_m2"),
                ("grad theory", "theory_grad_out_m2"), ("grad_w_m2", "grad_weight_m2")]
        if not any("theory_out_var" in r for r in self.records):
            cols = [c for c in cols if not c[0].endswith("theory")]
        if any(r.get("branch") for r in self.records):
            cols.insert(2, ("branch", "branch"))

        def fmt(r, key, head):
            if head == "nan/inf":
                return f"{r['n_nan']}/{r['n_inf']}"
            if head == "branch":
                return "branch" if r.get("branch") else ""
            v = r.get(key, math.nan)
            if isinstance(v, str):
                return v
            if v is None or (isinstance(v, float) and math.isnan(v)):
                return "-"
            return f"{v:.4g}"

        table = [[h for h, _ in cols]] + [[fmt(r, k, h) for h, k in cols] for r in self.records]
        widths = [max(len(row[i]) for row in table) for i in range(len(cols))]
        left = 3 if cols[2][0] == "branch" else 2
        lines = ["  ".join(c.ljust(w) if i < left else c.rjust(w)
                           for i, (c, w) in enumerate(zip(row, widths, strict=True))) for row in table]
        lines.insert(1, "-" * len(lines[0]))
        lines.append(f"loss: {self.loss}; batch {self.batch}; theory: {self.theory}")
        return "\n".join(lines)


def match_branches(model, branches):
    """``(name, module)`` of the modules of ``model`` whose qualified name matches a glob of ``branches``
    (``fnmatch``; a string or a list of strings); InitArgumentError naming ``branches`` for a glob that
    matches nothing."""
    if isinstance(branches, str):
        branches = [branches]
    if not isinstance(branches, (list, tuple)) or not all(isinstance(b, str) for b in branches):
        raise TypeError(f"branches must be a glob or a list of globs over module names, got {branches!r}")
    named = [(n, m) for n, m in model.named_modules() if n]
    for b in branches:
        if not any(fnmatch.fnmatchcase(n, b) for n, _ in named):
            raise InitArgumentError(f"branches: pattern {b!r} matches no module name (names look like "
                                    f"{', '.join(repr(n) for n, _ in named[:4])})")
    return [(n, m) for n, m in named if any(fnmatch.fnmatchcase(n, b) for b in branches)]


def inspect(model, inputs, loss=None, *, seed=0, branches=None):
    r"""Per-layer statistics of ``model`` on ``inputs``: forward, backward, and mean-field theory beside them.

    For every leaf module (in call order; a module called several times pools its calls), of its output
    :math:`y` (the first element of a tuple output; all entries pooled, float64, non-finite entries left out
    of the moments):
    ``out_mean``, ``out_var``, ``out_m2`` :math:`=\overline{y^2}`, ``frac_zero`` (:math:`y = 0` exactly),
    ``frac_inactive`` (:math:`y \le 0`), ``frac_dead_units`` (units :math:`\le 0` for every sample; units are
    the last dim, or dim 1 for Conv/BatchNorm/pooling), ``frac_saturated`` (Tanh: input
    :math:`|x| > \operatorname{atanh}0.99`, Sigmoid: :math:`|x| > \operatorname{logit}0.99`, as in fastinit.sim;
    NaN elsewhere), ``n_nan``, ``n_inf``. Backward (the loss given, else fastinit.sim's random projection
    :math:`L = \sum G \odot y_{\rm out}`, :math:`G` i.i.d. :math:`\mathcal N(0, 1)`):
    ``grad_out_m2`` :math:`=\overline{(\partial L/\partial y)^2}` and the mean squared entry of
    :math:`\partial L/\partial W` and :math:`\partial L/\partial b` (``grad_weight_m2``, ``grad_bias_m2``,
    pooled over the module's ``weight*`` and ``bias*`` parameters, e.g. an LSTM's ``weight_ih_l0`` and
    ``weight_hh_l0``); ``report.grad_input_m2`` for a floating tensor input.
    Of the module's first input: ``in_var``, ``in_m2``, and ``input_from``, the leaf that produced it (None
    for a model input or a tensor computed outside leaf modules).

    Branches: a module whose fully qualified name matches a glob of ``branches`` (e.g. ``"layers.*.mlp"``)
    gets the same statistics of its output, the residual branch's contribution before it is added to the
    stream, even when it has children; its record has ``branch`` True (a leaf that matches is marked too).

    Histogram: ``hist_counts`` counts the finite output entries in :data:`HIST_BINS` equal bins between
    ``hist_edges[0]`` and ``hist_edges[-1]``, a range fixed at the module's first call by
    :func:`histogram_range` (``[min, max]`` cut to mean :math:`\pm` 8 std); entries outside it (from later calls,
    or beyond 8 std) are counted in ``hist_under`` and ``hist_over``. The counts are int64, accumulated on the fly.

    Theory: for a chain of Linear layers and one element-wise activation type, ``theory_<stat>`` holds
    :func:`fastinit.theory.mlp_theory` with :math:`s_l^2 = \overline{W_l^2}`, the bias's measured mean and
    variance, and the inputs' measured mean and std. Backward predictions are anchored at the measured
    ``grad_out_m2`` of the last module (the theory fixes ratios between layers, not the loss's scale);
    ``theory_grad_weight_m2`` is :math:`B\,E[\delta_l^2]E[a_{l-1}^2]` for a loss summed over the B rows.

    Parameters
    ----------
    model : torch.nn.Module
    inputs : torch.Tensor, tuple or dict
        Passed as ``model(inputs)``, ``model(*inputs)`` or ``model(**inputs)``.
    loss : callable, optional
        ``loss(output) -> scalar tensor``. Default: :math:`\sum G \odot y` with a fixed Gaussian :math:`G`
        (the output must then be a floating tensor). Unlike a sum of squares, whose gradient is the output
        itself and so depends on the same weights, it keeps the backward signal independent of the forward
        one, which the mean-field backward theory assumes.
    seed : int
        Seed of :math:`G` (drawn by :func:`fastinit.init.normal_` with ``fastinit.Generator(seed)``, in the
        output's dtype).
    branches : str or list of str, optional
        Globs over module names (``fnmatch``) of extra modules to measure, e.g. residual branches.

    Returns
    -------
    InspectReport
        ``str(report)`` is the table, ``report.to_records()``, ``report.to_json()``, ``report["0"]``.

    Examples
    --------
    >>> import torch, fastinit.torch as ft
    >>> lin, relu = torch.nn.Linear, torch.nn.ReLU
    >>> m = torch.nn.Sequential(lin(256, 256), relu(), lin(256, 256), relu())
    >>> _ = ft.init_model(m, "kaiming", seed=0)
    >>> x = torch.randn(512, 256, generator=torch.Generator().manual_seed(0))
    >>> r = ft.inspect(m, x)
    >>> [round(r[n]["out_var"], 2) for n in ("0", "2")], [round(r[n]["theory_out_var"], 2) for n in ("0", "2")]
    ([2.02, 2.17], [2.02, 2.03])
    """
    import torch

    if loss is not None and not callable(loss):
        raise TypeError(f"loss must be a callable output -> scalar tensor, got {type(loss).__name__}")
    accs = {name: _Acc(name, mod) for name, mod in _leaves(model)} if isinstance(model, torch.nn.Module) else {}
    order = []
    chain = {"prev": None, "ok": True}
    made = {}  # id(output) -> (weakref, leaf name): which leaf produced a leaf's input
    seen = {}  # id(output) -> (weakref, finite count, sum, sum of squares): outputs measured already

    def post(name, mod, args, out):
        acc = accs[name]
        if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
            out = out[0]  # an LSTM's (output, (h, c)), an attention's (output, weights): the first one
            chain["ok"] = False
        if not isinstance(out, torch.Tensor):
            chain["ok"] = False
            return
        inp = args[0] if args else None
        if name not in order:
            order.append(name)
        elif chain["ok"]:
            chain["ok"] = False  # a module called twice: not a plain chain
        if inp is not None and acc.input_from is None:
            src = made.get(id(inp))
            acc.input_from = src[1] if src is not None and src[0]() is inp else None
        made[id(out)] = (weakref.ref(out), name)
        prev = chain["prev"]() if chain["prev"] is not None else None
        if chain["ok"] and chain["prev"] is not None and inp is not prev:  # (a dead weakref: not fed by it)
            chain["ok"] = False
        chain["prev"] = weakref.ref(out)
        acc.add(out, inp, seen)
        if out.requires_grad:
            out.register_hook(lambda g, acc=acc: acc.add_grad(g))

    def post_branch(mod, args, out, acc):
        if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
            out = out[0]
        if not isinstance(out, torch.Tensor):
            return
        if acc.name not in order:
            order.append(acc.name)
        acc.add(out, args[0] if args else None, seen)
        if out.requires_grad:
            out.register_hook(lambda g, acc=acc: acc.add_grad(g))

    handles = []
    named = match_branches(model, branches) if branches is not None and isinstance(model, torch.nn.Module) else []
    for name, mod in named:
        if name in accs:
            accs[name].branch = True  # a leaf: hooked already
            continue
        accs[name] = _Acc(name, mod)
        accs[name].branch = True
        handles.append(mod.register_forward_hook(lambda m, a, o, acc=accs[name]: post_branch(m, a, o, acc)))
    try:
        return _inspect(model, inputs, loss, seed, accs, order, post, chain)
    finally:
        for h in handles:
            h.remove()


def _inspect(model, inputs, loss, seed, accs, order, post, chain):
    import torch

    x_grad = None
    if isinstance(inputs, torch.Tensor) and inputs.is_floating_point():
        inputs = x_grad = inputs.detach().requires_grad_(True)  # gradients reach layers without parameters
    with torch.enable_grad():
        out = run_forward(model, inputs, post_hook=post)
        if loss is None:
            if not isinstance(out, torch.Tensor):
                raise TypeError(f"the model returned {type(out).__name__}, not a tensor: pass loss=callable(output) "
                                f"that reduces it to a scalar")
            if not out.is_floating_point():
                raise TypeError(f"the model returned a {out.dtype} tensor: pass a loss")
            # dL/d(output) = G: backward from G directly, L itself is never formed (G is drawn by fastinit's
            # parallel fill: for GPT-2's logits torch.randn alone took longer than the forward pass)
            probe = normal_(torch.empty(out.shape, dtype=out.dtype), generator=Generator(seed))
            value = out
            loss_text = f"sum(G * output), G ~ N(0, 1) i.i.d. (fastinit seed {seed})"
        else:
            probe = None
            value = loss(out)
            loss_text = getattr(loss, "__name__", type(loss).__name__)
            if not isinstance(value, torch.Tensor) or value.numel() != 1:
                shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                raise InitArgumentError(f"loss must return a scalar tensor, got {shape}")
        params, owners = [], []
        for name in order:
            for pname, p in accs[name].module.named_parameters(recurse=False):
                if p.requires_grad and all(p is not q for q in params):
                    params.append(p)
                    owners.append((name, "weight" if pname.startswith("weight") else
                                   "bias" if pname.startswith("bias") else None))
        if x_grad is not None:
            params.append(x_grad)
            owners.append((None, "input"))
        grads = (torch.autograd.grad(value, params, grad_outputs=probe, allow_unused=True) if value.requires_grad
                 else [None] * len(params))
    records = {name: accs[name].record() for name in order}
    for r in records.values():
        r["grad_weight_m2"] = r["grad_bias_m2"] = math.nan
    sums = {}
    grad_input_m2 = math.nan
    for (name, pname), g in zip(owners, grads, strict=True):
        if g is None or pname is None:
            continue
        if pname == "input":
            grad_input_m2 = sumsq(g) / g.numel()
            continue
        s2, n = sums.get((name, pname), (0.0, 0))
        sums[(name, pname)] = (s2 + sumsq(g), n + g.numel())
    for (name, pname), (s2, n) in sums.items():
        records[name][f"grad_{pname}_m2"] = s2 / n  # pooled over weight_ih/weight_hh, bias_ih/bias_hh, ...
    batch = _batch(inputs)
    rep = InspectReport([records[n] for n in order], loss=loss_text, batch=batch, grad_input_m2=grad_input_m2)
    leaves = [r for r in rep.records if next(accs[r["name"]].module.children(), None) is None]  # no branches
    rep.theory = _add_theory(leaves, accs, inputs, batch) if chain["ok"] else "not a plain Linear/activation chain"
    return rep


def _batch(inputs):
    x = inputs if hasattr(inputs, "shape") else next(iter(inputs.values() if isinstance(inputs, dict) else inputs),
                                                     None)
    return int(np.prod(x.shape[:-1])) if getattr(x, "ndim", 0) >= 1 else 1


def _add_theory(records, accs, inputs, batch):
    """Put ``theory_*`` keys on the records of a Linear/activation chain; return a one-line note."""
    import torch

    from .. import theory

    kinds = [r["kind"] for r in records]
    lin = [i for i, k in enumerate(kinds) if k == "Linear"]
    acts = {k for k in kinds if k != "Linear"}
    if not lin or lin[0] != 0 or len(acts) != 1 or not acts <= set(_THEORY_ACT):
        return "not a plain Linear/activation chain"
    act_kind = acts.pop()
    # Linear, act, Linear, act, ... (a final act optional)
    expect = ["Linear" if i % 2 == 0 else act_kind for i in range(len(kinds))]
    if kinds != expect or not isinstance(inputs, torch.Tensor) or not inputs.is_floating_point():
        return "not a plain Linear/activation chain"
    mods = [accs[records[i]["name"]].module for i in lin]
    act_mod = accs[records[1]["name"]].module if len(records) > 1 else None
    param = None
    if act_kind == "LeakyReLU":
        param = float(act_mod.negative_slope)
    widths = [mods[0].in_features] + [m.out_features for m in mods]
    wv = [float(m.weight.detach().double().pow(2).mean()) for m in mods]
    bm = [float(m.bias.detach().double().mean()) if m.bias is not None else 0.0 for m in mods]
    bv = [float(m.bias.detach().double().var(unbiased=False)) if m.bias is not None else 0.0 for m in mods]
    if not all(math.isfinite(v) for v in wv + bm + bv):
        return "not computed: non-finite weights or biases"
    x = inputs.detach().double()
    th = theory.mlp_theory(widths, _THEORY_ACT[act_kind], param, weight_var=wv, bias_mean=bm, bias_var=bv,
                           input_mean=float(x.mean()), input_std=float(x.std(unbiased=False)), batch=batch)
    L = len(mods)
    last = records[-1]
    anchor = last["grad_out_m2"]
    # predicted E[delta_l^2] (gradient into Linear l's output), anchored at the measured last gradient
    d = th["grad_preact_m2"]
    pred_d = anchor * d / d[L - 1] if last["kind"] == "Linear" else anchor * d
    for k, i in enumerate(lin):
        r = records[i]
        a_prev_m2 = float((x * x).mean()) if k == 0 else th["post_m2"][k - 1]
        for ours, sims in (("out_mean", "preact_mean"), ("out_var", "preact_var"), ("out_m2", "preact_m2"),
                           ("frac_inactive", "frac_inactive"), ("frac_dead_units", "frac_dead_units")):
            r[f"theory_{ours}"] = float(th[sims][k])
        r["theory_grad_out_m2"] = float(pred_d[k])
        r["theory_grad_weight_m2"] = float(batch * pred_d[k] * a_prev_m2)
        if i + 1 < len(records):
            a = records[i + 1]
            for ours, sims in (("out_mean", "post_mean"), ("out_var", "post_var"), ("out_m2", "post_m2"),
                               ("frac_saturated", "frac_saturated")):
                a[f"theory_{ours}"] = float(th[sims][k])
            # gradient into a_l: n_{k+1} s_{k+1}^2 E[delta_{k+1}^2]; the last activation is the anchor itself
            a["theory_grad_out_m2"] = float(widths[k + 2] * wv[k + 1] * pred_d[k + 1]) if k + 1 < L else anchor
    return f"fastinit.theory.mlp_theory({act_kind}, widths {widths}), backward anchored at the last layer"


# ---------------------------------------------------------------------------------------------------
# Command line: ``fastinit inspect package.module:factory --input-shape 8,512 [--recipe R --seed S]``
# (``fastinit lint`` shares the model and input construction).
# ---------------------------------------------------------------------------------------------------

def input_shape(text: str) -> tuple:
    """Parse ``"8,512"`` into ``(8, 512)`` (argparse type)."""
    import argparse

    try:
        shape = tuple(int(t) for t in text.split(","))
    except ValueError:
        shape = ()
    if not shape or min(shape) < 1:
        raise argparse.ArgumentTypeError(f"input shape must look like 8,512 (positive integers), got {text!r}")
    return shape


def add_model_arguments(p) -> None:
    """The arguments that say how to build the model and its inputs (``inspect`` and ``lint``)."""
    p.add_argument("factory", help="package.module:callable returning a torch.nn.Module")
    p.add_argument("--input-shape", type=input_shape, required=True, help="input shape, e.g. 8,512")
    p.add_argument("--recipe", default=None, help="initialise with this recipe (default: the model's own init)")
    p.add_argument("--seed", type=int, default=0, help="seed of the recipe and of the inputs (default 0)")


def add_inspect_parser(sub) -> None:
    """Add the ``inspect`` sub-command to the ``fastinit`` parser's sub-parsers ``sub``."""
    p = sub.add_parser("inspect", help="per-layer activation and gradient statistics of a model at init")
    add_model_arguments(p)
    p.add_argument("--json", metavar="PATH", help="also write the report as JSON")
    p.add_argument("--plots", metavar="DIR", help="also write PNG plots (needs matplotlib)")
    p.add_argument("--branches", metavar="PATTERN[,PATTERN]", type=lambda t: [b for b in t.split(",") if b],
                   default=None, help="also measure the modules matching these globs, e.g. 'h.*.mlp'")


def build(args):
    """The model (built on the CPU, initialised by ``--recipe`` if given) and its inputs: integer tokens
    below the vocabulary size when the first leaf module is an ``Embedding``, else N(0, 1) floats."""
    import torch

    from ._model import init_model

    torch.manual_seed(args.seed)  # the factory's own init, when no recipe is given
    model = load_factory(args.factory)()
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"factory {args.factory!r} returned {type(model).__name__}, not a torch.nn.Module")
    if args.recipe is not None:
        init_model(model, args.recipe, args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    first = next((m for _, m in _leaves(model)), None)
    if isinstance(first, torch.nn.Embedding):
        x = torch.randint(0, first.num_embeddings, args.input_shape, generator=gen)
    else:
        x = torch.randn(args.input_shape, generator=gen)
    return model, x


def run_inspect(args) -> int:
    """Build, inspect, print the table; write the JSON and plots if asked. Exit status 2 on bad input."""
    import sys

    try:
        model, x = build(args)
        rep = inspect(model, x, branches=args.branches)
    except (ImportError, AttributeError, TypeError, ValueError) as e:
        print(f"fastinit inspect: error: {e}", file=sys.stderr)
        return 2
    print(rep)
    if args.json:
        with open(args.json, "w") as f:
            f.write(rep.to_json(indent=1))
    if args.plots:
        for path in plot(rep, args.plots):
            print(f"wrote {path}")
    return 0
