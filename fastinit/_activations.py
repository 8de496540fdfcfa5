r"""Registry of activation functions shared by the simulator and the theory.

Every activation has two forms, written once each:

* a NumPy-vectorised form ``phi(x, p)``, ``dphi(x, p)``, ``d2phi(x, p)`` used by
  :mod:`fastinit.theory` (quadrature) and by the plain NumPy reference code;
* a Numba ``@njit`` scalar form ``phi_nb(x, p)``, ``dphi_nb(x, p)`` (float64 in, float64
  out) that other ``@njit`` kernels call inside their loops.

``p`` is the activation parameter (the negative slope of ``leaky_relu``, the ``beta`` of
``softplus``); activations without a parameter ignore it.  Each activation also has a small
integer ``kind_id``: the simulator's fused kernels (:mod:`fastinit.sim._kernels`) are compiled
once per kind.

Conventions (match torch):

* ``relu'(0) = 0`` and ``leaky_relu'(0) = slope`` (torch's backward uses ``x > 0``);
* ``selu`` uses the published constants of Klambauer et al. (2017),
  ``alpha = 1.6732632423543772848170429916717``, ``lambda = 1.0507009873554804934193349852946``;
* ``gelu`` is the exact form ``x * Phi(x)`` with ``Phi`` the standard normal CDF
  (torch ``approximate='none'``), not the tanh approximation;
* ``softplus(x) = log(1 + exp(beta x)) / beta`` with ``beta = p`` (default 1).

Second derivatives ``d2phi`` are the classical ones away from kinks; the Dirac parts at a
kink (ReLU, leaky ReLU, SELU at 0) are omitted.  They never contribute to the quantities
:mod:`fastinit.theory` needs, because every such activation has ``phi(0) = 0`` and the
length-map slope uses ``E[phi'' phi]``.

Examples
--------
>>> import numpy as np
>>> from fastinit._activations import get_activation
>>> act = get_activation("leaky_relu", 0.2)
>>> act.phi(np.array([-1.0, 2.0]), act.param)
array([-0.2,  2. ])
>>> float(act.dphi_nb(-3.0, act.param))
0.2
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numba
import numpy as np
from scipy import special

from fastinit._checks import InitArgumentError, real
from fastinit._config import NUMBA_CACHE

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "SELU_ALPHA",
    "SELU_LAMBDA",
    "get_activation",
]

# Klambauer et al. 2017, "Self-Normalizing Neural Networks", eq. (14); the same digits as
# torch.nn.SELU and the authors' getSELUparameters.ipynb.
SELU_ALPHA = 1.6732632423543772848170429916717
SELU_LAMBDA = 1.0507009873554804934193349852946

_INV_SQRT2 = 0.70710678118654752440  # 1/sqrt(2): Phi(x) = erfc(-x/sqrt 2)/2
_INV_SQRT_2PI = 0.39894228040143267794  # 1/sqrt(2 pi): standard normal density at 0

# Saturation thresholds of theory.md §2.1: |z| beyond which the output is within 1% of a bound.
TANH_SAT = math.atanh(0.99)  # 2.6467: |tanh z| > 0.99
SIGMOID_SAT = math.log(0.99 / 0.01)  # 4.5951: sigmoid z > 0.99 or < 0.01

_njit = numba.njit(cache=NUMBA_CACHE, nogil=True, fastmath=False)


# --------------------------------------------------------------------------------------
# NumPy forms (vectorised).  Branch-free where np.where would evaluate an overflowing
# branch: exp is only ever applied to non-positive arguments.
# --------------------------------------------------------------------------------------
def _np_sigmoid(x):
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _np_linear(x, p=0.0):
    return np.asarray(x, dtype=np.float64) * 1.0


def _np_linear_d(x, p=0.0):
    return np.ones_like(np.asarray(x, dtype=np.float64))


def _np_zero(x, p=0.0):
    return np.zeros_like(np.asarray(x, dtype=np.float64))


def _np_relu(x, p=0.0):
    return np.maximum(np.asarray(x, dtype=np.float64), 0.0)


def _np_relu_d(x, p=0.0):
    return (np.asarray(x) > 0).astype(np.float64)


def _np_leaky(x, p=0.01):
    x = np.asarray(x, dtype=np.float64)
    return np.where(x > 0, x, p * x)


def _np_leaky_d(x, p=0.01):
    return np.where(np.asarray(x) > 0, 1.0, p)


def _np_tanh(x, p=0.0):
    return np.tanh(np.asarray(x, dtype=np.float64))


def _np_tanh_d(x, p=0.0):
    t = np.tanh(np.asarray(x, dtype=np.float64))
    return 1.0 - t * t


def _np_tanh_d2(x, p=0.0):
    t = np.tanh(np.asarray(x, dtype=np.float64))
    return -2.0 * t * (1.0 - t * t)


def _np_sig(x, p=0.0):
    return _np_sigmoid(np.asarray(x, dtype=np.float64))


def _np_sig_d(x, p=0.0):
    s = _np_sigmoid(np.asarray(x, dtype=np.float64))
    return s * (1.0 - s)


def _np_sig_d2(x, p=0.0):
    s = _np_sigmoid(np.asarray(x, dtype=np.float64))
    return s * (1.0 - s) * (1.0 - 2.0 * s)


def _np_selu(x, p=0.0):
    x = np.asarray(x, dtype=np.float64)
    return SELU_LAMBDA * np.where(x > 0, x, SELU_ALPHA * np.expm1(np.minimum(x, 0.0)))


def _np_selu_d(x, p=0.0):
    x = np.asarray(x, dtype=np.float64)
    return SELU_LAMBDA * np.where(x > 0, 1.0, SELU_ALPHA * np.exp(np.minimum(x, 0.0)))


def _np_selu_d2(x, p=0.0):
    x = np.asarray(x, dtype=np.float64)
    return SELU_LAMBDA * np.where(x > 0, 0.0, SELU_ALPHA * np.exp(np.minimum(x, 0.0)))


def _np_gelu(x, p=0.0):
    x = np.asarray(x, dtype=np.float64)
    return x * special.ndtr(x)


def _np_gelu_d(x, p=0.0):
    x = np.asarray(x, dtype=np.float64)
    return special.ndtr(x) + x * _INV_SQRT_2PI * np.exp(-0.5 * x * x)


def _np_gelu_d2(x, p=0.0):
    x = np.asarray(x, dtype=np.float64)
    return (2.0 - x * x) * _INV_SQRT_2PI * np.exp(-0.5 * x * x)


def _np_silu(x, p=0.0):
    x = np.asarray(x, dtype=np.float64)
    return x * _np_sigmoid(x)


def _np_silu_d(x, p=0.0):
    x = np.asarray(x, dtype=np.float64)
    s = _np_sigmoid(x)
    return s * (1.0 + x * (1.0 - s))


def _np_silu_d2(x, p=0.0):
    x = np.asarray(x, dtype=np.float64)
    s = _np_sigmoid(x)
    return s * (1.0 - s) * (2.0 + x * (1.0 - 2.0 * s))


def _np_softplus(x, p=1.0):
    bx = p * np.asarray(x, dtype=np.float64)
    return (np.maximum(bx, 0.0) + np.log1p(np.exp(-np.abs(bx)))) / p


def _np_softplus_d(x, p=1.0):
    return _np_sigmoid(p * np.asarray(x, dtype=np.float64))


def _np_softplus_d2(x, p=1.0):
    s = _np_sigmoid(p * np.asarray(x, dtype=np.float64))
    return p * s * (1.0 - s)


# --------------------------------------------------------------------------------------
# Numba scalar forms.  Same formulas, written with `math` for the scalar execution model.
# --------------------------------------------------------------------------------------
@_njit
def _nb_sigmoid(x):
    if x >= 0.0:
        return 1.0 / (1.0 + math.exp(-x))
    e = math.exp(x)
    return e / (1.0 + e)


@_njit
def _nb_linear(x, p):
    return x


@_njit
def _nb_linear_d(x, p):
    return 1.0


@_njit
def _nb_relu(x, p):
    return x if x > 0.0 else 0.0


@_njit
def _nb_relu_d(x, p):
    return 1.0 if x > 0.0 else 0.0


@_njit
def _nb_leaky(x, p):
    return x if x > 0.0 else p * x


@_njit
def _nb_leaky_d(x, p):
    return 1.0 if x > 0.0 else p


@_njit
def _nb_tanh(x, p):
    return math.tanh(x)


@_njit
def _nb_tanh_d(x, p):
    t = math.tanh(x)
    return 1.0 - t * t


@_njit
def _nb_sig(x, p):
    return _nb_sigmoid(x)


@_njit
def _nb_sig_d(x, p):
    s = _nb_sigmoid(x)
    return s * (1.0 - s)


@_njit
def _nb_selu(x, p):
    if x > 0.0:
        return SELU_LAMBDA * x
    return SELU_LAMBDA * SELU_ALPHA * math.expm1(x)


@_njit
def _nb_selu_d(x, p):
    if x > 0.0:
        return SELU_LAMBDA
    return SELU_LAMBDA * SELU_ALPHA * math.exp(x)


@_njit
def _nb_gelu(x, p):
    return x * 0.5 * math.erfc(-x * _INV_SQRT2)


@_njit
def _nb_gelu_d(x, p):
    return 0.5 * math.erfc(-x * _INV_SQRT2) + x * _INV_SQRT_2PI * math.exp(-0.5 * x * x)


@_njit
def _nb_silu(x, p):
    return x * _nb_sigmoid(x)


@_njit
def _nb_silu_d(x, p):
    s = _nb_sigmoid(x)
    return s * (1.0 + x * (1.0 - s))


@_njit
def _nb_softplus(x, p):
    bx = p * x
    return (max(bx, 0.0) + math.log1p(math.exp(-abs(bx)))) / p


@_njit
def _nb_softplus_d(x, p):
    return _nb_sigmoid(p * x)


# --------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Activation:
    """One activation function with its derivatives in both execution models.

    Attributes
    ----------
    name : str
        Canonical name (``"relu"``, ``"leaky_relu"``, ...).
    param : float
        The activation parameter actually used (slope for ``leaky_relu``, ``beta`` for
        ``softplus``, ``0.0`` when the activation has none).  Pass it as ``p``.
    phi, dphi, d2phi : callable
        NumPy-vectorised ``f(x, p) -> ndarray`` (float64).
    phi_nb, dphi_nb : numba dispatcher
        ``@njit`` scalar ``f(x: float64, p: float64) -> float64``.
    kind_id : int
        Small integer naming the activation in the simulator's compiled kernels.
    kinks : tuple of float
        Points where ``phi'`` jumps (quadrature splits the integral there).
    saturation : float or None
        ``|z|`` threshold counted as saturated (tanh ``atanh 0.99``, sigmoid
        ``logit 0.99``), ``None`` for activations without saturation statistics.
    bounded : bool
        True when ``phi`` is bounded (no second-moment-preserving ``g_post`` exists).
    """

    name: str
    param: float
    phi: Callable
    dphi: Callable
    d2phi: Callable
    phi_nb: Callable
    dphi_nb: Callable
    kind_id: int
    kinks: tuple = ()
    saturation: float | None = None
    bounded: bool = False

    def f(self, x):
        """``phi(x)`` with this activation's parameter bound (NumPy form)."""
        return self.phi(x, self.param)

    def df(self, x):
        """``phi'(x)`` with this activation's parameter bound (NumPy form)."""
        return self.dphi(x, self.param)

    def d2f(self, x):
        """``phi''(x)`` away from kinks, parameter bound (NumPy form)."""
        return self.d2phi(x, self.param)


# name: (kind_id, np phi, np dphi, np d2phi, nb phi, nb dphi, default param, kinks, sat, bounded)
_TABLE = {
    "linear": (0, _np_linear, _np_linear_d, _np_zero, _nb_linear, _nb_linear_d, 0.0, (), None, False),
    "relu": (1, _np_relu, _np_relu_d, _np_zero, _nb_relu, _nb_relu_d, 0.0, (0.0,), None, False),
    "leaky_relu": (2, _np_leaky, _np_leaky_d, _np_zero, _nb_leaky, _nb_leaky_d, 0.01, (0.0,), None, False),
    "tanh": (3, _np_tanh, _np_tanh_d, _np_tanh_d2, _nb_tanh, _nb_tanh_d, 0.0, (), TANH_SAT, True),
    "sigmoid": (4, _np_sig, _np_sig_d, _np_sig_d2, _nb_sig, _nb_sig_d, 0.0, (), SIGMOID_SAT, True),
    "selu": (5, _np_selu, _np_selu_d, _np_selu_d2, _nb_selu, _nb_selu_d, 0.0, (0.0,), None, False),
    "gelu": (6, _np_gelu, _np_gelu_d, _np_gelu_d2, _nb_gelu, _nb_gelu_d, 0.0, (), None, False),
    "silu": (7, _np_silu, _np_silu_d, _np_silu_d2, _nb_silu, _nb_silu_d, 0.0, (), None, False),
    "softplus": (8, _np_softplus, _np_softplus_d, _np_softplus_d2, _nb_softplus, _nb_softplus_d, 1.0, (), None, False),
}
_PARAMETRISED = {"leaky_relu", "softplus"}
_ALIASES = {"identity": "linear", "swish": "silu", "leaky": "leaky_relu", "leakyrelu": "leaky_relu"}

#: Canonical activation names, in ``kind_id`` order.
ACTIVATIONS = tuple(sorted(_TABLE, key=lambda k: _TABLE[k][0]))


def get_activation(name, param=None):
    """Look up an activation by name.

    Parameters
    ----------
    name : str or Activation
        One of :data:`ACTIVATIONS` (case-insensitive; aliases ``identity``, ``swish``,
        ``leaky``).  An :class:`Activation` is returned unchanged when ``param`` is None.
    param : float, optional
        ``leaky_relu``: negative slope (default 0.01, as torch).  ``softplus``: ``beta > 0``
        (default 1).  Ignored by the other activations.

    Returns
    -------
    Activation

    Raises
    ------
    TypeError
        ``name`` is not a string or an Activation, ``param`` is not a real number.
    InitArgumentError
        Unknown ``name``, or a non-finite ``param`` (``softplus`` also needs ``param > 0``).

    Examples
    --------
    >>> get_activation("relu").kind_id
    1
    >>> get_activation("leaky_relu").param
    0.01
    """
    if isinstance(name, Activation):
        if param is None:
            return name
        name = name.name
    if not isinstance(name, str):
        raise TypeError(f"name must be a string naming an activation, got {type(name).__name__}")
    key = name.strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in _TABLE:
        raise InitArgumentError(f"name: unknown activation {name!r}; expected one of {', '.join(ACTIVATIONS)}")
    kind, f, df, d2f, fnb, dfnb, default, kinks, sat, bounded = _TABLE[key]
    if key in _PARAMETRISED and param is not None:
        p = real(param, f"param ({key})")
        if key == "softplus" and p <= 0:
            raise InitArgumentError(f"param (softplus beta) must be > 0, got {param!r}")
    else:
        p = default
    return Activation(key, p, f, df, d2f, fnb, dfnb, kind, kinks, sat, bounded)

