"""Rules and initializers of the model layer: what a rule matches and what an initializer writes.

A :class:`Rule` is data: match keys (owning module type, local parameter name, full name, an
ancestor's type, minimum ndim, parameter or buffer) and an initializer name with arguments. An
initializer name is one of fastinit's public in-place functions (:data:`PUBLIC`) or a model-level
one (:data:`MODEL_LEVEL`). :func:`expand` turns (rule, tensor) into *pieces*: public calls, each
with its own name-keyed stream, and the distribution the plan shows.
"""

from __future__ import annotations

import fnmatch
import inspect
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .. import init as fi
from .._checks import InitArgumentError, integer, real
from .._names import stream_of, substream_of

__all__ = ["Rule", "Recipe", "Derived", "Piece", "TensorInfo", "PUBLIC", "MODEL_LEVEL", "as_rules", "matches",
           "expand", "describe_rule"]

# fastinit's public in-place initializers a rule may name; they are called with these arguments.
PUBLIC = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_", "dirac_",
          "xavier_uniform_", "xavier_normal_", "kaiming_uniform_", "kaiming_normal_", "orthogonal_", "sparse_",
          "lecun_uniform_", "lecun_normal_", "variance_scaling_")
# model-level initializers (their values come from the owning module): see expand()
MODEL_LEVEL = ("bias_uniform_", "rnn_uniform_", "lstm_bias_")
_DETERMINISTIC = ("constant_", "ones_", "zeros_", "eye_", "dirac_")
# arguments every random initializer takes on top of its own (model level, see expand())
_EXTRA = ("blocks", "scale")
_RULE_KEYS = ("init", "args", "module", "param", "name", "within", "min_ndim", "kind", "label")
# std of N(0, 1) truncated to (-2, 2): JAX's variance_scaling constant (see docs/api.md)
_TRUNC2_STD = 0.87962566103423978


@dataclass(frozen=True)
class Derived:
    """An argument computed per tensor: ``fn(ctx)`` with the :class:`TensorInfo` ``ctx``; ``text``
    is how the rule prints it (e.g. ``"0.02/sqrt(2*n_layers)"``)."""

    fn: Callable
    text: str

    def __repr__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Rule:
    r"""One row of a recipe: match keys -> initializer with arguments. Unset keys match anything.

    Parameters
    ----------
    init : str
        A name of :data:`PUBLIC` or :data:`MODEL_LEVEL`.
    args : dict
        Keyword arguments of ``init`` (values may be :class:`Derived` or ``ctx -> value`` callables),
        plus ``blocks`` (an int, or ``"gates"`` for the module's gate count: the tensor is split along
        dim 0 into that many blocks, each filled on its own sub-stream; a list-valued argument gives
        one value per block) and ``scale`` (multiplies the std or bound of a normal/uniform law).
    module : str, type or tuple
        Class name glob(s) (matched against every class name in the owning module's MRO, so
        ``"Linear"`` matches subclasses) or classes (``isinstance``).
    param : str or tuple
        Glob(s) on the local name (``"weight"``, ``"weight_hh_l*"``).
    name : str
        Regular expression searched in the full canonical name.
    within : str, type or tuple
        Like ``module``, for any ancestor module of the owner.
    min_ndim : int
    kind : {"parameter", "buffer"}
    label : str
        Text shown in the plan (default: built from the match keys).

    Examples
    --------
    >>> import torch, fastinit.torch as ft
    >>> m = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 2))
    >>> rules = [ft.Rule("zeros_", name=r"^1\.weight$"), *ft.recipe("gpt2").rules]   # first match wins
    >>> p = ft.init_model(m, rules, seed=0)
    >>> p["1.weight"].distribution(), bool((m[1].weight == 0).all())
    ('constant(value=0)', True)
    """

    init: str
    args: dict = field(default_factory=dict)
    module: Any = None
    param: Any = None
    name: str | None = None
    within: Any = None
    min_ndim: int | None = None
    kind: str = "parameter"
    label: str = ""


@dataclass(frozen=True)
class Recipe:
    """A named, ordered table of rules (first match wins) and notes the plan reports."""

    name: str
    rules: tuple
    notes: Callable | None = None  # n_layers getter -> {note: value}


@dataclass
class TensorInfo:
    """What a rule sees: the tensor's canonical name, aliases, owner module and ancestors."""

    name: str
    local: str
    kind: str
    shape: tuple
    dtype: Any
    module: Any
    ancestors: tuple
    aliases: tuple
    n_layers_fn: Callable = None

    @property
    def n_layers(self) -> int:
        return self.n_layers_fn()

    @property
    def layer(self) -> int:
        """The first integer component of the name (``layers.7.attn.wo.weight`` -> 7)."""
        for part in self.name.split("."):
            if part.isdigit():
                return int(part)
        raise InitArgumentError(f"{self.name}: a depth rule needs a layer index (an integer name component)")

    @property
    def fans(self) -> tuple:
        return fi.calculate_fan_in_and_fan_out(self.shape)


@dataclass(frozen=True)
class Piece:
    """One public call: ``fn(view, **kwargs, generator=(seed, stream))`` on rows ``rows`` (or all)."""

    fn: str
    kwargs: tuple  # sorted (key, value) pairs
    stream: int | None
    rows: tuple | None = None


def _check_kind(rule_desc, kind):
    if kind not in ("parameter", "buffer"):
        raise InitArgumentError(f"{rule_desc}: kind must be 'parameter' or 'buffer', got {kind!r}")


def as_rules(rules, argname: str = "recipe") -> tuple:
    """Validate a list of :class:`Rule` or dicts (keys of :class:`Rule`); return a tuple of Rules."""
    if isinstance(rules, (Rule, dict)):
        rules = [rules]
    try:
        rules = list(rules)
    except TypeError:
        raise TypeError(f"{argname} must be a recipe name, a Recipe or a list of rules, "
                        f"got {type(rules).__name__}") from None
    out = []
    for i, r in enumerate(rules):
        where = f"{argname}[{i}]"
        if isinstance(r, dict):
            bad = sorted(set(r) - set(_RULE_KEYS))
            if bad:
                raise InitArgumentError(f"{where}: unknown rule key(s) {bad}; a rule has {list(_RULE_KEYS)}")
            if "init" not in r:
                raise InitArgumentError(f"{where}: a rule needs an 'init' (an initializer name)")
            r = Rule(**r)
        elif not isinstance(r, Rule):
            raise TypeError(f"{where} must be a fastinit.torch.Rule or a dict, got {type(r).__name__}")
        if r.init not in PUBLIC and r.init not in MODEL_LEVEL:
            raise InitArgumentError(f"{where}: init={r.init!r} names no initializer; "
                                    f"use one of {list(PUBLIC + MODEL_LEVEL)}")
        if not isinstance(r.args, dict):
            raise TypeError(f"{where}: args must be a dict, got {type(r.args).__name__}")
        allowed = _allowed_args(r.init)
        bad = sorted(set(r.args) - set(allowed))
        if bad:
            raise InitArgumentError(f"{where}: {r.init} takes no argument(s) {bad}; it takes {sorted(allowed)}")
        _check_kind(where, r.kind)
        if r.name is not None:
            try:
                re.compile(r.name)
            except re.error as e:
                raise InitArgumentError(f"{where}: name={r.name!r} is not a regular expression: {e}") from None
        if r.min_ndim is not None:
            integer(r.min_ndim, f"{where}.min_ndim", minimum=0)
        out.append(r)
    return tuple(out)


def _allowed_args(init: str) -> tuple:
    if init in MODEL_LEVEL:
        return {"bias_uniform_": ("of",), "rnn_uniform_": (), "lstm_bias_": ("forget",)}[init]
    skip = {"tensor", "generator", "offset", "in_axis", "out_axis"}
    own = tuple(p for p in inspect.signature(getattr(fi, init)).parameters if p not in skip)
    return own + (() if init in _DETERMINISTIC else _EXTRA)


def _names_match(obj, spec) -> bool:
    specs = spec if isinstance(spec, tuple) else (spec,)
    for s in specs:
        if isinstance(s, type):
            if isinstance(obj, s):
                return True
        elif any(fnmatch.fnmatchcase(c.__name__, s) for c in type(obj).__mro__):
            return True
    return False


def matches(rule: Rule, t: TensorInfo) -> bool:
    """True if every set match key of ``rule`` holds for ``t``."""
    if rule.kind != t.kind:
        return False
    if rule.module is not None and not _names_match(t.module, rule.module):
        return False
    if rule.param is not None:
        pats = rule.param if isinstance(rule.param, tuple) else (rule.param,)
        if not any(fnmatch.fnmatchcase(t.local, p) for p in pats):
            return False
    if rule.name is not None and not re.search(rule.name, t.name):
        return False
    if rule.within is not None and not any(_names_match(a, rule.within) for a in t.ancestors):
        return False
    return rule.min_ndim is None or len(t.shape) >= rule.min_ndim


def describe_rule(rule: Rule) -> str:
    """Short text of a rule: its label, or its match keys, then ``-> init(args)``."""
    if rule.label:
        head = rule.label
    else:
        keys = []
        for k in ("module", "within", "param", "name", "min_ndim"):
            v = getattr(rule, k)
            if v is not None:
                vs = v if isinstance(v, tuple) else (v,)
                keys.append(f"{k}=" + "|".join(x.__name__ if isinstance(x, type) else str(x) for x in vs))
        head = " ".join(keys) or "*"
        if rule.kind == "buffer":
            head = "buffer " + head
    args = ", ".join(f"{k}={v!r}" for k, v in rule.args.items())
    return f"{head} -> {rule.init}({args})"


# ---- expansion -----------------------------------------------------------------------------

def _gates(module) -> int:
    mode = getattr(module, "mode", None)
    return {"LSTM": 4, "GRU": 3}.get(mode, 1) if mode else {"LSTMCell": 4, "GRUCell": 3}.get(
        type(module).__name__, 1)


def _fan(fan_in, fan_out, mode):
    return {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2,
            "fan_geo_avg": math.sqrt(fan_in * fan_out)}[mode]


def _law(init: str, a: dict, shape: tuple) -> dict:
    """The distribution that the public ``init`` with arguments ``a`` gives a tensor of ``shape``
    (the same formulas as fastinit.init; the fill itself calls the public function)."""
    if init == "uniform_":
        return {"dist": "uniform", "low": real(a.get("a", 0.0), "a"), "high": real(a.get("b", 1.0), "b")}
    if init == "normal_":
        return {"dist": "normal", "mean": real(a.get("mean", 0.0), "mean"),
                "std": real(a.get("std", 1.0), "std", minimum=0)}
    if init == "trunc_normal_":
        return {"dist": "trunc_normal", "mean": real(a.get("mean", 0.0), "mean"),
                "std": real(a.get("std", 1.0), "std", minimum=0), "a": real(a.get("a", -2.0), "a", finite=False),
                "b": real(a.get("b", 2.0), "b", finite=False)}
    if init in ("constant_", "ones_", "zeros_"):
        val = {"ones_": 1.0, "zeros_": 0.0}.get(init)
        val = real(_required(a, "val", init), "val", finite=False) if val is None else val
        return {"dist": "constant", "value": val}
    if init == "eye_":
        return {"dist": "eye"}
    if init == "dirac_":
        return {"dist": "dirac", "groups": integer(a.get("groups", 1), "groups", minimum=1)}
    if init == "orthogonal_":
        return {"dist": "orthogonal", "gain": real(a.get("gain", 1), "gain")}
    if init == "sparse_":
        return {"dist": "sparse", "sparsity": real(_required(a, "sparsity", init), "sparsity"),
                "std": real(a.get("std", 0.01), "std")}
    fan_in, fan_out = fi.calculate_fan_in_and_fan_out(shape)
    if init in ("xavier_uniform_", "xavier_normal_"):
        gain = real(a.get("gain", 1.0), "gain")
        std = gain * math.sqrt(2.0 / (fan_in + fan_out)) if fan_in + fan_out else 0.0
        law = ({"dist": "uniform", "low": -math.sqrt(3.0) * std, "high": math.sqrt(3.0) * std}
               if init == "xavier_uniform_" else {"dist": "normal", "mean": 0.0, "std": std})
        return {**law, "fan_in": fan_in, "fan_out": fan_out, "gain": gain}
    if init in ("kaiming_uniform_", "kaiming_normal_"):
        mode = str(a.get("mode", "fan_in")).lower()
        if mode not in ("fan_in", "fan_out"):
            raise InitArgumentError(f"mode must be 'fan_in' or 'fan_out', got {a.get('mode')!r}")
        gain = float(fi.calculate_gain(a.get("nonlinearity", "leaky_relu"), a.get("a", 0)))
        fan = _fan(fan_in, fan_out, mode)
        std = gain / math.sqrt(fan) if fan else 0.0
        law = ({"dist": "uniform", "low": -math.sqrt(3.0) * std, "high": math.sqrt(3.0) * std}
               if init == "kaiming_uniform_" else {"dist": "normal", "mean": 0.0, "std": std})
        return {**law, "fan_in": fan_in, "fan_out": fan_out, "gain": gain, "mode": mode}
    # lecun_*, variance_scaling_ (torch fan convention)
    scale = real(a.get("scale", 1.0), "scale", minimum=0) if init == "variance_scaling_" else 1.0
    mode = str(a.get("mode", "fan_in")).lower() if init == "variance_scaling_" else "fan_in"
    dist = {"lecun_uniform_": "uniform", "lecun_normal_": "truncated_normal"}.get(
        init, str(a.get("distribution", "truncated_normal")).lower())
    if mode not in ("fan_in", "fan_out", "fan_avg", "fan_geo_avg"):
        raise InitArgumentError(f"mode must be fan_in, fan_out, fan_avg or fan_geo_avg, got {mode!r}")
    fan = _fan(fan_in, fan_out, mode)
    v = scale / fan if fan else 0.0
    if dist == "uniform":
        law = {"dist": "uniform", "low": -math.sqrt(3 * v), "high": math.sqrt(3 * v)}
    elif dist in ("normal", "untruncated_normal"):
        law = {"dist": "normal", "mean": 0.0, "std": math.sqrt(v)}
    elif dist == "truncated_normal":
        s = math.sqrt(v) / _TRUNC2_STD
        law = {"dist": "trunc_normal", "mean": 0.0, "std": s, "a": -2 * s, "b": 2 * s}
    else:
        raise InitArgumentError(f"distribution must be uniform, normal or truncated_normal, got {dist!r}")
    return {**law, "fan_in": fan_in, "fan_out": fan_out, "mode": mode}


def _required(a: dict, key: str, init: str):
    if key not in a:
        raise InitArgumentError(f"{init} needs the argument {key!r}")
    return a[key]


def _scaled_call(init: str, law: dict, scale: float) -> tuple:
    """A random law times ``scale`` as a plain uniform_/normal_/trunc_normal_ call."""
    if law["dist"] == "uniform":
        return "uniform_", {"a": law["low"] * scale, "b": law["high"] * scale}
    if law["dist"] == "normal":
        return "normal_", {"mean": law["mean"] * scale, "std": law["std"] * scale}
    if law["dist"] == "trunc_normal":
        return "trunc_normal_", {"mean": law["mean"] * scale, "std": law["std"] * scale,
                                 "a": law["a"] * scale, "b": law["b"] * scale}
    raise InitArgumentError(f"scale applies to uniform and normal laws, not to {init}")


def _resolve(args: dict, t: TensorInfo) -> dict:
    return {k: (v.fn(t) if isinstance(v, Derived) else v(t) if callable(v) else v) for k, v in args.items()}


def expand(rule: Rule, t: TensorInfo) -> tuple:
    """(pieces, law, note) of ``rule`` applied to tensor ``t``; raises before anything is written."""
    a = _resolve(rule.args, t)
    init = rule.init
    note = ""
    if init == "bias_uniform_":
        owner = a.get("of", "weight")
        w = getattr(t.module, owner, None)
        if w is None or w.dim() < 2:
            raise InitArgumentError(f"{t.name}: bias_uniform_ needs the module's {owner!r} weight (ndim >= 2)")
        fan_in = fi.calculate_fan_in_and_fan_out(tuple(w.shape))[0]
        bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        init, a, note = "uniform_", {"a": -bound, "b": bound}, f"bound 1/sqrt(fan_in of {owner})"
        law = {**_law(init, a, t.shape), "fan_in": fan_in}
    elif init == "rnn_uniform_":
        h = getattr(t.module, "hidden_size", None)
        if not h:
            raise InitArgumentError(f"{t.name}: rnn_uniform_ needs a module with hidden_size")
        bound = 1.0 / math.sqrt(h)
        init, a, note = "uniform_", {"a": -bound, "b": bound}, "bound 1/sqrt(hidden_size)"
        law = _law(init, a, t.shape)
    elif init == "lstm_bias_":
        forget = real(a.get("forget", 1.0), "forget")
        law = _law("zeros_", {}, t.shape)
        pieces = [Piece("zeros_", (), None)]
        if _gates(t.module) == 4 and t.local.startswith("bias_ih"):
            h = t.shape[0] // 4
            pieces.append(Piece("constant_", (("val", forget),), None, (h, 2 * h)))
            note = f"forget gate rows [{h}:{2 * h}] = {forget:g}"
        return tuple(pieces), law, note
    else:
        law = None
    blocks = a.pop("blocks", None)
    scale = a.pop("scale", None)
    if init not in _DETERMINISTIC and not _is_float(t.dtype):
        raise InitArgumentError(f"{t.name} has dtype {t.dtype}: {rule.init} needs a floating tensor")
    if blocks is None:
        law = law or _law(init, a, t.shape)
        fn, kw = (init, a) if scale is None else _scaled_call(init, law, real(scale, "scale"))
        if scale is not None:
            law = {**law, **{k: v for k, v in _law(fn, kw, t.shape).items() if k not in ("fan_in", "fan_out")},
                   "scale": scale}
        stream = None if fn in _DETERMINISTIC else stream_of(t.name)
        pieces = [Piece(fn, tuple(sorted(kw.items())), stream)]
    else:
        k = _gates(t.module) if blocks == "gates" else integer(blocks, "blocks", minimum=1)
        if not t.shape or t.shape[0] % k:
            raise InitArgumentError(f"{t.name}: shape {t.shape} does not split into {k} blocks along dim 0")
        h = t.shape[0] // k
        pieces, laws = [], []
        for j in range(k):
            aj = {n: (v[j] if isinstance(v, (list, tuple)) else v) for n, v in a.items()}
            lj = _law(init, aj, (h,) + tuple(t.shape[1:]))
            fn, kw = (init, aj) if scale is None else _scaled_call(init, lj, real(scale, "scale"))
            laws.append(lj)
            pieces.append(Piece(fn, tuple(sorted(kw.items())), substream_of(t.name, j), (j * h, (j + 1) * h)))
        law = laws[0] if all(x == laws[0] for x in laws) else {"dist": "blocks", "blocks": laws}
        note = f"{k} blocks of {h} rows, one sub-stream each"
    pieces, note = _padding(pieces, t, note)
    return pieces, law, note


def _padding(pieces: list, t: TensorInfo, note: str) -> tuple:
    """An Embedding's padding row is zeroed after its rule (torch and Hugging Face do the same)."""
    p = getattr(t.module, "padding_idx", None)
    if t.local == "weight" and isinstance(p, int) and t.shape and 0 <= p < t.shape[0]:
        pieces = list(pieces) + [Piece("zeros_", (), None, (p, p + 1))]
        note = (note + "; " if note else "") + f"padding row {p} zero"
    return tuple(pieces), note


def _is_float(dtype) -> bool:
    return getattr(dtype, "is_floating_point", False)
