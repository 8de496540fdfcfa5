"""The simulator's view of an activation: the registry's (by name) or a user's ``@njit`` function."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit
from numba.core.registry import CPUDispatcher

from fastinit._activations import Activation, get_activation
from fastinit._checks import InitArgumentError

from ._kernels import register_user_activation

__all__ = ["SimActivation", "resolve_activation"]

_USER = {}  # (f, df) -> Activation: one kernel kind per user pair and process


@dataclass(frozen=True)
class SimActivation:
    """What a simulation needs of its activation."""

    name: str
    kind: int           # the kernels' activation kind (Activation.kind_id)
    param: float
    sat: float          # |z| threshold of frac_saturated; inf: not applicable (reported as NaN)
    spec: object        # what the theory gets (name or Activation)
    theory_param: object


def _wrap_user(f, df):
    """The registry form of user ``@njit`` scalars ``f(x)``, ``df(x)``, with a kernel kind."""
    key = (f, df)
    if key not in _USER:
        @njit
        def phi2(x, p):
            return f(x)

        @njit
        def dphi2(x, p):
            return df(x)

        # NumPy forms for the theory's quadrature (vectorised over the scalar Numba function)
        fv = np.vectorize(lambda x, p=0.0: float(f(float(x))), otypes=[np.float64])
        dfv = np.vectorize(lambda x, p=0.0: float(df(float(x))), otypes=[np.float64])

        def d2fv(x, p=0.0, h=1e-5):  # central difference; only the length-map slope uses it
            x = np.asarray(x, dtype=np.float64)
            return (dfv(x + h) - dfv(x - h)) / (2 * h)

        name = getattr(f, "__name__", "user")
        kind = register_user_activation(phi2, dphi2)
        _USER[key] = Activation(name, 0.0, fv, dfv, d2fv, phi2, dphi2, kind)
    return _USER[key]


def resolve_activation(activation, activation_param, activation_derivative):
    """A :class:`SimActivation` from a registry name or a user function and its derivative."""
    if callable(activation) and not isinstance(activation, (str, Activation)):
        if activation_derivative is None or not callable(activation_derivative):
            raise InitArgumentError("activation_derivative: a user activation function needs its "
                                    "derivative as an @njit function of one float")
        f = activation if isinstance(activation, CPUDispatcher) else njit(activation)
        df = (activation_derivative if isinstance(activation_derivative, CPUDispatcher)
              else njit(activation_derivative))
        try:
            float(f(0.5)), float(df(0.5))
        except Exception as exc:  # noqa: BLE001 - report what the user function did
            raise InitArgumentError(f"activation: the user function must map one float to one float "
                                    f"under Numba ({type(exc).__name__}: {exc})") from exc
        act = _wrap_user(f, df)
        return SimActivation(act.name, act.kind_id, 0.0, math.inf, act, None)
    if activation_derivative is not None:
        raise InitArgumentError("activation_derivative is only used with a user activation function")
    try:
        act = get_activation(activation, activation_param)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"activation: {exc}") from None
    sat = act.saturation if act.saturation is not None else math.inf
    return SimActivation(act.name, act.kind_id, act.param, sat, act.name, activation_param)
