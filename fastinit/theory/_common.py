"""What the modules of :mod:`fastinit.theory` share: the activation look-up and the names of the
statistics that :func:`fastinit.theory.mlp_theory` predicts and :func:`fastinit.sim.simulate_mlp`
measures (one list for both)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from fastinit._activations import Activation, get_activation
from fastinit._checks import InitArgumentError, integer

__all__ = ["MLP_FORWARD_STATISTICS", "MLP_BACKWARD_STATISTICS", "MLP_STATISTICS", "RNN_STATISTICS",
           "resolve_activation", "check_widths", "per_layer"]

#: Per-layer forward statistics, in the order the simulator's fused kernel returns them.
MLP_FORWARD_STATISTICS = (
    "preact_mean", "preact_var", "preact_m2", "post_mean", "post_var", "post_m2",
    "preact_unitvar", "preact_unitspread", "frac_inactive", "frac_dead_units", "frac_saturated",
)
#: Per-layer backward statistics.
MLP_BACKWARD_STATISTICS = (
    "grad_preact_m2", "grad_weight_m2_per_sample", "grad_weight_m2_batchmean", "grad_bias_m2_per_sample",
)
#: Every statistic of an MLP: the per-layer ones and the scalar ``grad_input_m2``.
MLP_STATISTICS = MLP_FORWARD_STATISTICS + MLP_BACKWARD_STATISTICS + ("grad_input_m2",)
#: Per-step statistics of a recurrent net (index t = 0..T).
RNN_STATISTICS = ("h_m2", "h_norm", "preact_m2", "preact_mean", "post_mean", "grad_h_m2")


def resolve_activation(activation, param=None):
    """An :class:`~fastinit._activations.Activation` from a name or an Activation (kept as given
    when ``param`` is None)."""
    if isinstance(activation, Activation) and param is None:
        return activation
    return get_activation(activation, param)


def check_widths(widths, length=None):
    """``[n_0, ..., n_L]`` as a float64 array: a sequence of at least 2 integers >= 1 (exactly
    ``length`` of them when given). A wrong type raises TypeError, a bad value
    :class:`~fastinit.InitArgumentError` (a ValueError), each naming ``widths``."""
    if isinstance(widths, (str, bytes)) or not isinstance(widths, Iterable):
        raise TypeError(f"widths must be a sequence of integers [n_0, ..., n_L], got {widths!r}")
    ws = [integer(w, f"widths[{i}]", minimum=1) for i, w in enumerate(widths)]
    if length is not None and len(ws) != length:
        raise InitArgumentError(f"widths must have depth + 1 = {length} entries [n_0, ..., n_L], got {len(ws)}")
    if len(ws) < 2:
        raise InitArgumentError(f"widths must be a sequence [n_0, ..., n_L] of >= 2 positive ints, got {widths!r}")
    return np.array(ws, dtype=np.float64)


def per_layer(x, L, name, nonneg=True):
    a = np.asarray(x, dtype=np.float64)
    if a.ndim == 0:
        a = np.full(L, float(a))
    if a.shape != (L,):
        raise ValueError(f"{name} must be a scalar or have length L = {L}, got shape {a.shape}")
    if not np.all(np.isfinite(a)) or (nonneg and np.any(a < 0)):
        raise ValueError(f"{name} must be finite{' and >= 0' if nonneg else ''}, got {x!r}")
    return a
