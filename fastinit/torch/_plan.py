"""plan(): the dry run of a recipe on a model, one row per tensor, printable and fingerprinted.

Nothing is allocated or written: only names, shapes, dtypes and module attributes are read, so a
model built under ``torch.device("meta")`` plans like a real one.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from .._checks import InitArgumentError, integer
from .._checks import seed as check_seed
from .._names import STREAM_FORMAT, canonical_name, stream_of
from ._recipes import recipe as get_recipe
from ._rules import Piece, Recipe, TensorInfo, as_rules, describe_rule, expand, matches

__all__ = ["Plan", "PlanRow", "plan", "collect", "check_module", "UNMATCHED"]

UNMATCHED = ("error", "keep")
_NLAYER_ATTRS = ("n_layer", "num_hidden_layers", "n_layers", "num_layers")


def check_module(model, name: str = "model"):
    """``torch`` after checking that ``model`` is a ``torch.nn.Module``."""
    import torch  # lazy: `import fastinit.torch` stays torch-free until a model function runs

    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"{name} must be a torch.nn.Module, got {type(model).__name__}")
    return torch


@dataclass
class PlanRow:
    """One tensor of the plan. ``status``: ``"rule"`` (filled by rule ``rule``), ``"module"``
    (recomputed by its module's ``reset_buffers()``) or ``"kept"`` (left as the module made it)."""

    name: str
    aliases: tuple
    kind: str
    shape: tuple
    dtype: str
    status: str
    rule: int | None
    rule_text: str
    law: dict
    note: str
    pieces: tuple

    @property
    def stream(self) -> int | None:
        """``stream_of(name)`` if anything random is drawn, else None (a tensor filled in blocks draws
        from the blocks' sub-streams of this name: see ``pieces``)."""
        return stream_of(self.name) if any(p.stream is not None for p in self.pieces) else None

    def distribution(self) -> str:
        """The law as text, e.g. ``normal(mean=0, std=0.02)``."""
        if self.status != "rule":
            return {"module": "module.reset_buffers()", "kept": "kept (as the module made it)"}[self.status]
        law = self.law
        if law["dist"] == "blocks":
            return "blocks[" + "; ".join(_law_text(x) for x in law["blocks"]) + "]"
        return _law_text(law)

    def to_record(self) -> dict:
        rec = {"name": self.name, "aliases": list(self.aliases), "kind": self.kind, "shape": list(self.shape),
               "dtype": self.dtype, "status": self.status, "rule": self.rule, "rule_text": self.rule_text,
               "distribution": self.distribution(), "note": self.note,
               "stream": None if self.stream is None else f"{self.stream:#018x}",
               "pieces": [_piece_record(p) for p in self.pieces]}
        for k in ("fan_in", "fan_out", "gain", "mean", "std", "low", "high", "a", "b", "value"):
            if k in self.law:
                rec[k] = self.law[k]
        return rec


_LAW_KEYS = {"uniform": ("low", "high"), "normal": ("mean", "std"), "trunc_normal": ("mean", "std", "a", "b"),
             "constant": ("value",), "orthogonal": ("gain",), "sparse": ("sparsity", "std"), "dirac": ("groups",),
             "eye": ()}


def _law_text(law: dict) -> str:
    args = ", ".join(f"{k}={law[k]:.6g}" for k in _LAW_KEYS[law["dist"]])
    return f"{law['dist']}({args})"


def _piece_record(p: Piece) -> dict:
    return {"fn": p.fn, "kwargs": dict(p.kwargs), "stream": p.stream, "rows": None if p.rows is None else list(p.rows)}


class Plan:
    """The rows of a recipe applied to a model, with the seed. Print it, ``to_records()``,
    ``to_json()``, ``fingerprint()``."""

    def __init__(self, rows, seed: int, recipe: str, n_layers: int | None, notes: dict):
        self.rows, self.seed, self.recipe, self.n_layers, self.notes = list(rows), seed, recipe, n_layers, notes

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def __getitem__(self, name: str) -> PlanRow:
        """The row of a tensor, by its canonical name or any alias."""
        for r in self.rows:
            if name == r.name or name in r.aliases:
                return r
        raise KeyError(name)

    def to_records(self) -> list:
        """One JSON-compatible dict per tensor (stream as a 0x-prefixed 16-digit hex string)."""
        return [r.to_record() for r in self.rows]

    def to_json(self, **kwargs) -> str:
        """The plan as JSON: header (recipe, seed, n_layers, notes, fingerprint) and records."""
        return json.dumps({"recipe": self.recipe, "seed": self.seed, "n_layers": self.n_layers, "notes": self.notes,
                           "stream_format": STREAM_FORMAT, "fingerprint": self.fingerprint(),
                           "tensors": self.to_records()}, **kwargs)

    def fingerprint(self) -> str:
        """SHA-256 (hex) of the canonical plan: rows sorted by name with what is written (pieces,
        shapes, dtypes, statuses, aliases), the seed and the stream-format version. Rule labels are
        not part of it: two recipes that write the same values have the same fingerprint."""
        rows = sorted(self.rows, key=lambda r: r.name)
        doc = {"stream_format": STREAM_FORMAT, "seed": self.seed,
               "rows": [[r.name, list(r.aliases), r.kind, list(r.shape), r.dtype, r.status,
                         [_piece_record(p) for p in r.pieces]] for r in rows]}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()

    def __str__(self) -> str:
        head = ("name", "shape", "dtype", "rule", "distribution", "fan_in", "fan_out", "gain", "stream")
        body = []
        for r in self.rows:
            rule = f"#{r.rule} {r.rule_text.split(' -> ')[0]}" if r.rule is not None else r.status
            dist = r.distribution() + (f" [{r.note}]" if r.note else "")
            body.append((r.name, "x".join(map(str, r.shape)) or "()", r.dtype.removeprefix("torch."), rule, dist,
                         *(f"{r.law[k]:.6g}" if k in r.law else "" for k in ("fan_in", "fan_out", "gain")),
                         "" if r.stream is None else f"{r.stream:016x}"))
        widths = [max(len(str(x)) for x in col) for col in zip(head, *body, strict=True)]
        lines = [f"plan: recipe={self.recipe} seed={self.seed} tensors={len(self.rows)}"
                 + ("" if self.n_layers is None else f" n_layers={self.n_layers}")
                 + "".join(f" {k}={v:.6g}" for k, v in self.notes.items())]
        for row in (head, *body):
            lines.append("  ".join(f"{c:<{w}}" for c, w in zip(row, widths, strict=True)).rstrip())
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"<fastinit.torch.Plan recipe={self.recipe} seed={self.seed} tensors={len(self.rows)}>"


def collect(model) -> list:
    """Every distinct tensor of ``model``: ``(tensor, kind, canonical name, module, local name,
    ancestors, aliases)``, in registration order of its first name; tied tensors appear once."""
    mods = dict(model.named_modules(remove_duplicate=False))
    seen: dict = {}
    for mname, m in model.named_modules(remove_duplicate=False):
        for kind, store in (("parameter", m._parameters), ("buffer", m._buffers)):
            for local, t in store.items():
                if t is not None:
                    full = f"{mname}.{local}" if mname else local
                    seen.setdefault(id(t), (t, kind, {}))[2][full] = (mname, m, local)
    out = []
    for t, kind, names in seen.values():
        name = canonical_name(names)
        mname, m, local = names[name]
        parts = mname.split(".") if mname else []
        ancestors = tuple(mods[".".join(parts[:i])] for i in range(len(parts)))
        out.append((t, kind, name, m, local, ancestors, tuple(sorted(names))))
    return out


def _n_layers_getter(model, n_layers, recipe_name):
    if n_layers is not None:
        n_layers = integer(n_layers, "n_layers", minimum=1)
    memo = {}

    def get() -> int:
        if "n" not in memo:
            memo["n"] = n_layers if n_layers is not None else _infer_n_layers(model)
            if memo["n"] is None:
                raise InitArgumentError(f"n_layers: recipe {recipe_name!r} needs the layer count and the model "
                                        "does not say it (config.n_layer/num_hidden_layers, or one ModuleList "
                                        "of blocks); pass n_layers=")
        return memo["n"]

    return get, memo


def _infer_n_layers(model):
    for src in (getattr(model, "config", None), model):
        for a in _NLAYER_ATTRS:
            v = getattr(src, a, None) if src is not None else None
            if isinstance(v, int) and not isinstance(v, bool) and v > 0:
                return v
    best = None
    for m in model.modules():
        kids = list(m.children())
        if type(m).__name__ in ("ModuleList", "ModuleDict") and kids and len({type(k) for k in kids}) == 1:
            best = max(best or 0, len(kids))
    return best


def as_recipe(recipe) -> Recipe:
    """A Recipe from a name, a Recipe, or a list of rules (validated)."""
    if isinstance(recipe, str):
        return get_recipe(recipe)
    if isinstance(recipe, Recipe):
        return Recipe(recipe.name, as_rules(recipe.rules, f"recipe {recipe.name!r}"), recipe.notes)
    return Recipe("custom", as_rules(recipe))


def plan(model, recipe="torch", seed=0, *, unmatched="error", n_layers=None) -> Plan:
    """The dry run of ``recipe`` on ``model``: which rule fills which tensor, how, from which stream.

    Parameters
    ----------
    model : torch.nn.Module
        Any device, meta included; nothing is allocated or written.
    recipe : str, Recipe or list of Rule/dict
        A built-in name (``fastinit.torch.RECIPES``), ``fastinit.torch.recipe(name, **options)``, or
        one's own rules (first match wins), e.g. ``[Rule(...), *recipe("gpt2").rules]``.
    seed : int
        64-bit seed (the Philox key); the stream of each tensor comes from its name.
    unmatched : {"error", "keep"}
        A parameter no rule matches raises (listing every such name), or with ``"keep"`` is left as
        the module made it and shown as ``kept``. Buffers no rule matches are recomputed by their
        module's ``reset_buffers()`` if it has one, else kept.
    n_layers : int, optional
        Layer count for depth rules; default: ``model.config.n_layer``/``num_hidden_layers``, a
        ``n_layers`` attribute, else the longest ModuleList/ModuleDict of same-type blocks.

    Returns
    -------
    Plan

    Examples
    --------
    >>> import torch, fastinit.torch
    >>> with torch.device("meta"):
    ...     m = torch.nn.Sequential(torch.nn.Embedding(100, 16, padding_idx=0), torch.nn.Linear(16, 8))
    >>> p = fastinit.torch.plan(m, recipe="gpt2", seed=0)
    >>> for line in str(p).splitlines():   # columns after the distribution: fan_in fan_out gain stream
    ...     print(line[:99].rstrip())
    plan: recipe=gpt2 seed=0 tensors=3
    name      shape   dtype    rule                                           distribution
    0.weight  100x16  float32  #5 module=Embedding|EmbeddingBag param=weight  normal(mean=0, std=0.02)
    1.weight  8x16    float32  #2 module=Linear|Conv1D param=weight           normal(mean=0, std=0.02)
    1.bias    8       float32  #4 every bias                                  constant(value=0)
    >>> p["1.weight"].law["std"], len(p.fingerprint())
    (0.02, 64)
    """
    check_module(model)
    seed = check_seed(seed)
    if unmatched not in UNMATCHED:
        raise InitArgumentError(f"unmatched must be one of {UNMATCHED}, got {unmatched!r}")
    rec = as_recipe(recipe)
    get_n, memo = _n_layers_getter(model, n_layers, rec.name)
    rows, missing = [], []
    for t, kind, name, m, local, ancestors, aliases in collect(model):
        info = TensorInfo(name, local, kind, tuple(t.shape), t.dtype, m, ancestors, aliases, get_n)
        i = next((i for i, r in enumerate(rec.rules) if matches(r, info)), None)
        common = dict(name=name, aliases=aliases, kind=kind, shape=tuple(t.shape), dtype=str(t.dtype))
        if i is None:
            if kind == "parameter" and unmatched == "error":
                missing.append(name)
                continue
            status = "module" if kind == "buffer" and callable(getattr(m, "reset_buffers", None)) else "kept"
            rows.append(PlanRow(**common, status=status, rule=None, rule_text="", law={}, note="", pieces=()))
            continue
        rule = rec.rules[i]
        try:
            pieces, law, note = expand(rule, info)
        except (TypeError, ValueError) as e:
            raise type(e)(f"{name}: rule #{i} ({describe_rule(rule)}): {e}") from None
        rows.append(PlanRow(**common, status="rule", rule=i, rule_text=describe_rule(rule), law=law, note=note,
                            pieces=pieces))
    if missing:
        raise InitArgumentError(f"recipe {rec.name!r} has no rule for {len(missing)} parameter(s): "
                                f"{', '.join(missing)} (add rules, or pass unmatched='keep')")
    notes = rec.notes(get_n) if rec.notes else {}
    return Plan(rows, seed, rec.name, memo.get("n"), notes)
