"""fastinit for PyTorch models.

* :func:`accelerate`: route ``torch.nn.init`` to fastinit while building a model (streams in call
  order, torch's own rules).
* The model API, name-keyed (a tensor's values depend on the seed and its name only):
  :func:`plan` (dry run), :func:`init_model` (in place), :func:`materialize` (from meta),
  :func:`fingerprint`, :func:`save_initialized` (a seed checkpoint written block by block from a
  meta model), with recipes as tables of :class:`Rule` (:data:`RECIPES`, :func:`recipe`).
* Diagnosis at init: :func:`inspect` (per-layer statistics, theory beside them), :func:`lint`,
  :func:`lsuv_`, :func:`coord_check` (docs/diagnose.md).

``import fastinit.torch`` does not import torch; the functions do, when called.

Examples
--------
>>> import torch, fastinit.torch
>>> m = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.LayerNorm(16))
>>> p = fastinit.torch.init_model(m, recipe="gpt2", seed=0)
>>> p["0.weight"].distribution(), m[1].weight.tolist()[:2]
('normal(mean=0, std=0.02)', [1.0, 1.0])
"""

from ._accelerate import ROUTED, accelerate
from ._checkpoint import save_initialized
from ._coord import CoordReport, coord_check
from ._inspect import InspectReport, inspect
from ._lint import CHECKS, Finding, lint
from ._lsuv import LSUVReport, lsuv_
from ._model import fingerprint, init_model, materialize
from ._plan import Plan, PlanRow, plan
from ._recipes import RECIPES, RESIDUAL, recipe
from ._rules import MODEL_LEVEL, PUBLIC, Derived, Recipe, Rule

__all__ = ["accelerate", "ROUTED", "plan", "Plan", "PlanRow", "init_model", "materialize", "fingerprint",
           "save_initialized",
           "Rule", "Recipe", "Derived", "recipe", "RECIPES", "RESIDUAL", "PUBLIC", "MODEL_LEVEL",
           "inspect", "InspectReport", "lint", "Finding", "CHECKS",
           "lsuv_", "LSUVReport", "coord_check", "CoordReport"]
