"""``fastinit plan package.module:factory --recipe gpt2 [--seed 0]``: print a model's init plan.

The factory (a function or class taking no arguments) is called under ``torch.device("meta")``, so
nothing is allocated: a 7B-parameter model plans in well under a second.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .._checks import InitArgumentError

__all__ = ["add_plan_parser", "run_plan"]


def add_plan_parser(sub) -> None:
    """Add the ``plan`` sub-command to the ``fastinit`` parser's sub-parsers ``sub``."""
    p = sub.add_parser("plan", help="print the init plan of a model (built on meta: nothing allocated)")
    p.add_argument("factory", help="package.module:callable returning a torch.nn.Module")
    p.add_argument("--recipe", default="torch", help="recipe name (default: torch)")
    p.add_argument("--seed", type=int, default=0, help="seed (default 0)")
    p.add_argument("--n-layers", type=int, default=None, help="layer count for depth rules (default: from the model)")
    p.add_argument("--keep-unmatched", action="store_true", help="show tensors no rule matches as kept (else: error)")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")


def load_factory(spec: str):
    """``package.module:callable`` -> the callable (for the plan, inspect and lint commands)."""
    mod_name, sep, attr = spec.partition(":")
    if not sep or not mod_name or not attr:
        raise InitArgumentError(f"factory must look like package.module:callable, got {spec!r}")
    obj = importlib.import_module(mod_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise InitArgumentError(f"factory {spec!r} is not callable")
    return obj


def run_plan(args: argparse.Namespace) -> int:
    """Build the model on meta, plan it, print the table (or JSON) and the plan fingerprint."""
    import torch  # lazy: the rest of the CLI runs without torch

    from ._plan import plan

    try:
        factory = load_factory(args.factory)
        with torch.device("meta"):
            model = factory()
        p = plan(model, args.recipe, args.seed, n_layers=args.n_layers,
                 unmatched="keep" if args.keep_unmatched else "error")
    except (ImportError, AttributeError, TypeError, ValueError) as e:
        print(f"fastinit plan: error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(p.to_json(indent=1))
    else:
        print(p)
        print(f"plan fingerprint: {p.fingerprint()}")
    return 0
