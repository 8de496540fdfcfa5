r"""Large-batch simulation of deep networks at initialization, with mean-field theory beside it.

The simulator builds ``n_networks`` independently initialised networks, pushes a batch of
i.i.d. Gaussian inputs through them, back-propagates a random per-sample loss, and reports
layer-by-layer statistics of the forward and backward signals. Every result carries
:func:`fastinit.theory.mlp_theory`'s prediction of each statistic under the same name.

Conventions (``theory.md`` section 0). Layer :math:`l = 1, \dots, L`:

.. math::
    z_l = a_{l-1} W_l^T + b_l, \qquad a_l = \phi(z_l), \qquad a_0 = x \sim \mathcal{N}(\mu_x, \sigma_x^2)

Every layer applies :math:`\phi`, the last one included. With ``residual_scale`` :math:`\alpha`
the layers are :math:`h_l = h_{l-1} + \alpha\, \phi(h_{l-1} W_l^T + b_l)` (equal widths) and the
``post_*`` statistics describe :math:`h_l`. Backward, the per-sample loss is
:math:`\ell_b = \sum_k G_{bk}\, a_{L,bk}` with :math:`G` i.i.d. :math:`\mathcal{N}(0, 1)`
(or user-given) and :math:`\delta_l = \partial \ell_b / \partial z_l`.

Statistics (arrays of length L, pooled over all ``batch x width`` entries of a layer unless
said otherwise):

===============================  ================================================================
``preact_mean/var/m2``           mean, variance and second moment of :math:`z_l`
``post_mean/var/m2``             the same for :math:`a_l` (or :math:`h_l`)
``preact_unitvar``               mean over units of each unit's across-batch variance of :math:`z_l`
                                 (**not** the pooled variance: it is :math:`(1-1/B)(v_l - C_l)`,
                                 see :doc:`simulate`)
``preact_unitspread``            mean over samples of the across-unit variance of :math:`z_l`
                                 (0 when every unit computes the same thing: symmetry)
``frac_inactive``                fraction of entries with :math:`z \le 0`
``frac_dead_units``              fraction of units with :math:`z \le 0` for every sample
``frac_saturated``               tanh: :math:`|z| > \operatorname{atanh} 0.99`; sigmoid:
                                 :math:`|z| > \operatorname{logit} 0.99`; NaN otherwise
``grad_preact_m2``               :math:`\overline{\delta_l^2}`
``grad_weight_m2_per_sample``    mean squared entry of the per-sample :math:`\delta_b a_{l-1,b}^T`
``grad_weight_m2_batchmean``     mean squared entry of :math:`\frac1B \sum_b \delta_b a_{l-1,b}^T`
``grad_bias_m2_per_sample``      mean squared per-sample bias gradient (equals ``grad_preact_m2``)
``grad_input_m2``                :math:`\overline{(\partial \ell_b/\partial x)^2}` (a scalar)
===============================  ================================================================

Examples
--------
>>> import numpy as np
>>> from fastinit.sim import simulate_mlp
>>> res = simulate_mlp(depth=4, width=256, batch=512, activation="relu",
...                    init="kaiming_normal", seed=0)
>>> res.theory["preact_m2"]               # He init keeps E[z^2] = 2 (theory.md §2.4)
array([2., 2., 2., 2.])
>>> res.preact_m2.round(2)                 # one network: it wanders by ~10-15% over 4 layers
array([2.01, 1.93, 1.73, 1.82])
>>> bool(np.all(np.abs(res.preact_m2 / 2 - 1) < 0.2))
True
"""

from __future__ import annotations

import functools
import math
import numbers
import warnings
from dataclasses import dataclass, field

import numpy as np

from fastinit import _sim_kernels as _k
from fastinit._activations import Activation, get_activation

__all__ = [
    "simulate_mlp",
    "simulate_rnn",
    "sweep",
    "SimulationResult",
    "MLPResult",
    "RNNResult",
    "SweepResult",
    "MLP_STATISTICS",
    "RNN_STATISTICS",
    "WEIGHT_SCHEMES",
    "verdict",
]

#: Per-layer statistics of :func:`simulate_mlp` (plus the scalar ``grad_input_m2``).
MLP_STATISTICS = (
    "preact_mean", "preact_var", "preact_m2", "post_mean", "post_var", "post_m2",
    "preact_unitvar", "preact_unitspread", "frac_inactive", "frac_dead_units", "frac_saturated",
    "grad_preact_m2", "grad_weight_m2_per_sample", "grad_weight_m2_batchmean",
    "grad_bias_m2_per_sample", "grad_input_m2",
)
_FORWARD = MLP_STATISTICS[:11]
_BACKWARD = MLP_STATISTICS[11:]

#: Per-step statistics of :func:`simulate_rnn` (index t = 0..T).
RNN_STATISTICS = ("h_m2", "h_norm", "preact_m2", "preact_mean", "post_mean", "grad_h_m2")

# ------------------------------------------------------------------------------------------
# Random streams. Every random array of a simulation has its own Philox stream id, derived
# from (network, layer, kind), so one network's numbers do not depend on how many other
# networks, layers or configurations are simulated alongside it.
# ------------------------------------------------------------------------------------------
_KIND_WEIGHT, _KIND_BIAS, _KIND_INPUT, _KIND_SEED_G, _KIND_RNN_U, _KIND_RNN_X = range(6)
_MAX_LAYERS = 1 << 20  # layer (or time step) index field of a stream id


def _stream(network, layer, kind):
    """Stream id of one random array: 8 kinds x 2^20 layers per network."""
    return (int(network) * _MAX_LAYERS + int(layer)) * 8 + int(kind)


def _random_normal(shape, mean, std, seed, stream, dtype):
    """N(mean, std^2) array from fastinit's counter-based stream ``(seed, stream)``."""
    from fastinit._fill import fill_normal
    out = np.empty(shape, dtype=dtype)
    fill_normal(out, float(mean), float(std), int(seed), int(stream))
    return out


# ------------------------------------------------------------------------------------------
# Weight schemes
# ------------------------------------------------------------------------------------------
# name -> (canonical scheme, default params, allowed params). Aliases of the notes' study.
_SCHEMES = {
    "zeros": ("zeros", {}, ()),
    "ones": ("constant", {"val": 1.0}, ()),
    "constant": ("constant", {"val": None}, ("val",)),
    "normal": ("normal", {"mean": 0.0, "std": 1.0}, ("mean", "std")),
    "uniform": ("uniform", {"a": 0.0, "b": 1.0}, ("a", "b")),
    "trunc_normal": ("trunc_normal", {"mean": 0.0, "std": 1.0, "a": -2.0, "b": 2.0},
                     ("mean", "std", "a", "b")),
    "small": ("normal", {"mean": 0.0, "std": 0.01}, ()),   # the notes' N(0, 0.01^2)
    "large": ("normal", {"mean": 0.0, "std": 1.0}, ()),    # the notes' N(0, 1)
    "xavier_uniform": ("xavier_uniform", {"gain": 1.0}, ("gain",)),
    "xavier_normal": ("xavier_normal", {"gain": 1.0}, ("gain",)),
    "kaiming_uniform": ("kaiming_uniform", {"a": 0.0, "mode": "fan_in", "nonlinearity": "leaky_relu"},
                        ("a", "mode", "nonlinearity")),
    "kaiming_normal": ("kaiming_normal", {"a": 0.0, "mode": "fan_in", "nonlinearity": "leaky_relu"},
                       ("a", "mode", "nonlinearity")),
    "lecun_normal": ("lecun_normal", {}, ()),
    "lecun_uniform": ("lecun_uniform", {}, ()),
    "orthogonal": ("orthogonal", {"gain": 1.0}, ("gain",)),
}
_SCHEME_ALIASES = {
    "xavier": "xavier_normal", "glorot": "xavier_normal", "glorot_normal": "xavier_normal",
    "glorot_uniform": "xavier_uniform", "he": "kaiming_normal", "kaiming": "kaiming_normal",
    "he_normal": "kaiming_normal", "he_uniform": "kaiming_uniform", "lecun": "lecun_normal",
    "zero": "zeros",
}
#: Accepted weight-scheme names (aliases: xavier, glorot, he, kaiming, lecun, ...).
WEIGHT_SCHEMES = tuple(_SCHEMES)

def _calculate_gain(nonlinearity, param=None):
    """torch's gain via :func:`fastinit.init.calculate_gain`, errors naming ``init_params``."""
    from fastinit.init import calculate_gain
    try:
        return float(calculate_gain(nonlinearity, param))
    except ValueError as exc:
        raise ValueError(f"init_params['nonlinearity'/'a']: {exc}") from None


def _resolve_scheme(init, init_params):
    """Canonical (scheme, params) with defaults filled in; errors name the argument."""
    if not isinstance(init, str):
        raise ValueError(f"init must be a weight-scheme name, got {init!r}")
    key = init.strip().lower().rstrip("_").replace("-", "_")
    key = _SCHEME_ALIASES.get(key, key)
    if key not in _SCHEMES:
        raise ValueError(f"init: unknown weight scheme {init!r}; expected one of "
                         f"{', '.join(WEIGHT_SCHEMES)} (aliases: {', '.join(_SCHEME_ALIASES)})")
    scheme, defaults, allowed = _SCHEMES[key]
    params = dict(defaults)
    for k, v in dict(init_params or {}).items():
        if k not in allowed:
            raise ValueError(f"init_params: {k!r} is not a parameter of init={key!r}"
                             f" (allowed: {', '.join(allowed) or 'none'})")
        params[k] = v
    if scheme == "constant" and params["val"] is None:
        raise ValueError("init_params: init='constant' needs init_params={'val': value}")
    for k in ("std", "gain", "val", "mean", "a", "b"):
        if k in params:
            v = params[k]
            if k == "a" and v is None and scheme.startswith("kaiming"):
                continue  # torch: a=None means the default slope 0.01
            if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
                raise ValueError(f"init_params[{k!r}] must be a finite number, got {v!r}")
    if params.get("std", 0.0) < 0:
        raise ValueError(f"init_params['std'] < 0: {params['std']!r}")
    if "mode" in params:
        mode = str(params["mode"]).lower()
        if mode not in ("fan_in", "fan_out"):
            raise ValueError(f"init_params['mode'] must be 'fan_in' or 'fan_out', got {params['mode']!r}")
        params["mode"] = mode
    if "nonlinearity" in params:
        _calculate_gain(params["nonlinearity"], params.get("a"))  # validates the name
    if scheme in ("uniform", "trunc_normal") and not params["a"] < params["b"]:
        raise ValueError(f"init_params: need a < b for init={key!r}, got a={params['a']}, b={params['b']}")
    return key, scheme, params


def _weight_moments(shape, scheme, params):
    """(entry mean, entry variance) of a scheme for a weight of ``shape`` = (fan_out, fan_in)."""
    fan_out, fan_in = shape
    if scheme == "zeros":
        return 0.0, 0.0
    if scheme == "constant":
        return float(params["val"]), 0.0
    if scheme == "normal":
        return float(params["mean"]), float(params["std"]) ** 2
    if scheme == "uniform":
        a, b = params["a"], params["b"]
        return 0.5 * (a + b), (b - a) ** 2 / 12.0
    if scheme == "trunc_normal":
        from scipy.stats import truncnorm
        m, s = params["mean"], params["std"]
        if s == 0:
            return float(m), 0.0
        d = truncnorm((params["a"] - m) / s, (params["b"] - m) / s, loc=m, scale=s)
        return float(d.mean()), float(d.var())
    if scheme in ("xavier_uniform", "xavier_normal"):
        return 0.0, params["gain"] ** 2 * 2.0 / (fan_in + fan_out)
    if scheme in ("kaiming_uniform", "kaiming_normal"):
        gain = _calculate_gain(params["nonlinearity"], params["a"])
        fan = fan_in if params["mode"] == "fan_in" else fan_out
        return 0.0, gain ** 2 / fan
    if scheme in ("lecun_normal", "lecun_uniform"):
        return 0.0, 1.0 / fan_in
    if scheme == "orthogonal":
        # rows orthonormal (fan_out <= fan_in) or columns orthonormal: each row/column has unit norm
        return 0.0, params["gain"] ** 2 / max(fan_in, fan_out)
    raise AssertionError(scheme)


def _make_weight(shape, scheme, params, seed, stream, dtype):
    """Create one weight matrix of ``shape`` = (fan_out, fan_in) for ``scheme``.

    The single place where the simulator creates weights: every scheme is the matching public
    initializer of :mod:`fastinit.init`, drawn from fastinit's counter-based stream
    ``(seed, stream)`` (a :class:`fastinit.Generator` positioned at that stream), so a
    simulated network is exactly what ``fastinit.<scheme>_(w, ..., generator=g)`` gives.
    ``scheme``/``params`` come from ``_resolve_scheme``.
    """
    from fastinit import init as fi
    from fastinit._generator import Generator

    w = np.empty(tuple(int(s) for s in shape), dtype=dtype)
    g = Generator(int(seed)).set_state((int(seed), int(stream)))
    p = params
    if scheme == "zeros":
        return fi.zeros_(w)
    if scheme == "constant":
        return fi.constant_(w, p["val"])
    if scheme == "normal":
        return fi.normal_(w, p["mean"], p["std"], generator=g)
    if scheme == "uniform":
        return fi.uniform_(w, p["a"], p["b"], generator=g)
    if scheme == "trunc_normal":
        return fi.trunc_normal_(w, p["mean"], p["std"], p["a"], p["b"], generator=g)
    if scheme == "xavier_normal":
        return fi.xavier_normal_(w, p["gain"], generator=g)
    if scheme == "xavier_uniform":
        return fi.xavier_uniform_(w, p["gain"], generator=g)
    if scheme in ("kaiming_normal", "kaiming_uniform"):
        fill = fi.kaiming_normal_ if scheme == "kaiming_normal" else fi.kaiming_uniform_
        return fill(w, p["a"], p["mode"], p["nonlinearity"], generator=g)
    if scheme == "lecun_normal":   # JAX/Keras: normal truncated to +-2 sd, variance 1/fan_in
        return fi.lecun_normal_(w, generator=g)
    if scheme == "lecun_uniform":
        return fi.lecun_uniform_(w, generator=g)
    if scheme == "orthogonal":
        return fi.orthogonal_(w, p["gain"], generator=g)
    raise AssertionError(scheme)


# ------------------------------------------------------------------------------------------
# Activations
# ------------------------------------------------------------------------------------------
_USER_WRAPPERS = {}


def _wrap_user(f, df):
    """Wrap user ``@njit`` scalars ``f(x)``, ``df(x)`` into the kernels' ``(x, p)`` form."""
    key = (f, df)
    if key not in _USER_WRAPPERS:
        from numba import njit

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
        act = Activation(name, 0.0, fv, dfv, d2fv, phi2, dphi2, -1)
        _USER_WRAPPERS[key] = act
    return _USER_WRAPPERS[key]


@dataclass(frozen=True)
class _Act:
    name: str
    phi: object
    dphi: object
    param: float
    sat: float          # inf: no saturation statistic
    spec: object        # what the theory gets (name or Activation)
    theory_param: object


def _resolve_activation(activation, activation_param, activation_derivative):
    if callable(activation) and not isinstance(activation, (str, Activation)):
        if activation_derivative is None or not callable(activation_derivative):
            raise ValueError("activation_derivative: a user activation function needs its "
                             "derivative as an @njit function of one float")
        f, df = activation, activation_derivative
        from numba.core.registry import CPUDispatcher
        from numba import njit
        if not isinstance(f, CPUDispatcher):
            f = njit(f)
        if not isinstance(df, CPUDispatcher):
            df = njit(df)
        try:
            float(f(0.5)), float(df(0.5))
        except Exception as exc:  # noqa: BLE001 - report what the user function did
            raise ValueError(f"activation: the user function must map one float to one float "
                             f"under Numba ({type(exc).__name__}: {exc})") from exc
        act = _wrap_user(f, df)
        return _Act(act.name, act.phi_nb, act.dphi_nb, 0.0, math.inf, act, None)
    if activation_derivative is not None:
        raise ValueError("activation_derivative is only used with a user activation function")
    try:
        act = get_activation(activation, activation_param)
    except ValueError as exc:
        raise ValueError(f"activation: {exc}") from None
    sat = act.saturation if act.saturation is not None else math.inf
    # the inlinable (vectorising) kernels' versions where they exist, libm-based ones otherwise
    phi, dphi = _k.FAST_ACTIVATIONS.get(act.name, (act.phi_nb, act.dphi_nb))
    return _Act(act.name, phi, dphi, act.param, sat, act.name, activation_param)


# ------------------------------------------------------------------------------------------
# Results
# ------------------------------------------------------------------------------------------
def _t975(dof):
    """Two-sided 95% Student-t quantile (NaN without degrees of freedom)."""
    if dof < 1:
        return np.nan
    from scipy.special import stdtrit  # inverse Student-t CDF; scipy.stats costs ~1 s to import
    return float(stdtrit(dof, 0.975))


@dataclass
class SimulationResult:
    """Per-layer (or per-step) statistics of a simulation.

    Attributes
    ----------
    index : numpy.ndarray
        Layer numbers 1..L (MLP) or time steps 0..T (RNN).
    stats : dict of str -> numpy.ndarray
        Mean over the ``n_networks`` networks of each statistic. Also reachable as
        attributes: ``res.preact_var is res.stats["preact_var"]``.
    stderr : dict of str -> numpy.ndarray
        Standard error of that mean, ``std(ddof=1) / sqrt(n_networks)`` (NaN for one network).
    per_network : dict of str -> numpy.ndarray
        Shape ``(n_networks, len(index))`` (``(n_networks,)`` for scalars).
    theory : dict of str -> numpy.ndarray
        Mean-field prediction of each statistic, same names and shapes (NaN where the theory has
        no prediction).
    config : dict
        The resolved arguments.
    histograms : list of dict
        Optional per-layer histograms (first network): ``layer``, ``preact_counts``,
        ``preact_edges``, ``post_counts``, ``post_edges``.
    """

    index: np.ndarray
    stats: dict
    stderr: dict
    per_network: dict
    theory: dict
    config: dict
    histograms: list = field(default_factory=list)
    index_name: str = "layer"

    def __getattr__(self, name):
        stats = self.__dict__.get("stats", {})
        if name in stats:
            return stats[name]
        raise AttributeError(name)

    def __dir__(self):
        return sorted(set(super().__dir__()) | set(self.stats))

    @property
    def n_networks(self):
        return int(self.config.get("n_networks", 1))

    def ci95(self, name):
        """95% confidence interval ``(low, high)`` of a statistic's mean across networks."""
        half = _t975(self.n_networks - 1) * self.stderr[name]
        return self.stats[name] - half, self.stats[name] + half

    def to_records(self, stats=None):
        """One dict per layer (step): ``{index_name, stat, stat_se, stat_theory, ...}``.

        Scalars (``grad_input_m2``) are repeated on every row.
        """
        names = list(stats) if stats is not None else list(self.stats)
        rows = []
        for i, idx in enumerate(self.index):
            row = {self.index_name: int(idx)}
            for n in names:
                v, se, th = self.stats[n], self.stderr[n], self.theory.get(n)
                pick = (lambda a: float(a) if np.ndim(a) == 0 else float(a[i]))
                row[n] = pick(v)
                row[n + "_se"] = pick(se)
                row[n + "_theory"] = pick(th) if th is not None else float("nan")
            rows.append(row)
        return rows

    def to_table(self, stats=None, every=1, fmt="{:.4g}"):
        """Readable text table: one row per layer, ``value ± se [theory]`` per statistic.

        Parameters
        ----------
        stats : list of str, optional
            Columns (default: second moments and gradients).
        every : int
            Print every ``every``-th layer (the last one always).
        """
        if stats is None:
            stats = [s for s in ("preact_var", "post_m2", "frac_inactive", "grad_preact_m2")
                     if s in self.stats]
        cells = [[self.index_name] + list(stats)]
        n = len(self.index)
        for i in range(n):
            if i % every and i != n - 1:
                continue
            row = [str(int(self.index[i]))]
            for s in stats:
                pick = (lambda a: float(a) if np.ndim(a) == 0 else float(a[i]))  # noqa: B023
                v, se = pick(self.stats[s]), pick(self.stderr[s])
                th = self.theory.get(s)
                th = pick(th) if th is not None else np.nan
                txt = fmt.format(v)
                if np.isfinite(se):
                    txt += " ±" + fmt.format(se)
                if np.isfinite(th):
                    txt += " [" + fmt.format(th) + "]"
                row.append(txt)
            cells.append(row)
        widths = [max(len(r[j]) for r in cells) for j in range(len(cells[0]))]
        lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines) + "\n(value ±stderr [mean-field theory])"

    def __repr__(self):
        return (f"{type(self).__name__}({self.index_name}s={len(self.index)}, "
                f"n_networks={self.n_networks}, stats={list(self.stats)})")


class MLPResult(SimulationResult):
    """Result of :func:`simulate_mlp` (see :class:`SimulationResult`)."""


class RNNResult(SimulationResult):
    """Result of :func:`simulate_rnn` (see :class:`SimulationResult`); index is t = 0..T."""


def _summarise(per_network, names):
    stats, stderr = {}, {}
    for n in names:
        arr = np.asarray(per_network[n], dtype=np.float64)
        k = arr.shape[0]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            stats[n] = arr.mean(axis=0)
            stderr[n] = (arr.std(axis=0, ddof=1) / math.sqrt(k)) if k > 1 else np.full_like(stats[n], np.nan)
    return stats, stderr


# ------------------------------------------------------------------------------------------
# Validation helpers (errors name the argument)
# ------------------------------------------------------------------------------------------
def _int_arg(name, v, lo=1):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise ValueError(f"{name} must be an integer >= {lo}, got {v!r}")
    if v < lo:
        raise ValueError(f"{name} must be >= {lo}, got {v}")
    return int(v)


def _real_arg(name, v, lo=None):
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
        raise ValueError(f"{name} must be a finite number, got {v!r}")
    if lo is not None and v < lo:
        raise ValueError(f"{name} must be >= {lo}, got {v}")
    return float(v)


def _dtype_arg(dtype):
    dt = np.dtype(dtype)
    if dt not in (np.float32, np.float64):
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    return dt


def _resolve_widths(widths, depth, width, input_dim):
    if widths is not None:
        if depth is not None or width is not None:
            raise ValueError("give either widths=[n_0, ..., n_L] or depth and width, not both")
        try:
            ws = [int(w) for w in widths]
        except TypeError:
            raise ValueError(f"widths must be a sequence of integers [n_0, ..., n_L], got {widths!r}") from None
        if len(ws) < 2:
            raise ValueError(f"widths needs at least two entries (input and one layer), got {list(widths)}")
        for w0, w in zip(widths, ws):
            if isinstance(w0, bool) or w0 != w or w < 1:
                raise ValueError(f"widths must be positive integers, got {list(widths)}")
        return ws
    if depth is None or width is None:
        raise ValueError("give widths=[n_0, ..., n_L], or both depth and width")
    depth = _int_arg("depth", depth)
    width = _int_arg("width", width)
    n0 = width if input_dim is None else _int_arg("input_dim", input_dim)
    return [n0] + [width] * depth


def _bias_spec(bias, bias_value, bias_std):
    if isinstance(bias, numbers.Real) and not isinstance(bias, bool):
        bias, bias_value = "constant", float(bias)
    if bias not in ("zeros", "constant", "normal"):
        raise ValueError(f"bias must be 'zeros', 'constant' (with bias_value) or 'normal' "
                         f"(with bias_std), got {bias!r}")
    bias_value = _real_arg("bias_value", bias_value)
    bias_std = _real_arg("bias_std", bias_std, lo=0.0)
    if bias == "zeros":
        return bias, 0.0, 0.0
    if bias == "constant":
        return bias, bias_value, 0.0
    return bias, 0.0, bias_std


# ------------------------------------------------------------------------------------------
# Theory adapters
# ------------------------------------------------------------------------------------------
def _nan_theory(names, length):
    return {n: (np.array(np.nan) if n == "grad_input_m2" else np.full(length, np.nan)) for n in names}


def _mlp_theory(widths, act, weight_means, weight_vars, bias_mean, bias_var, input_mean,
                input_std, batch, residual_scale):
    """Mean-field predictions of every statistic, and a note ("" or why there are none).

    Cached per configuration (a sweep asks once per configuration and call; repeated calls,
    such as more seeds later, reuse it). Callers get their own copies of the arrays.
    """
    try:
        th, note = _mlp_theory_cached(tuple(widths), act, tuple(weight_means), tuple(weight_vars),
                                      bias_mean, bias_var, input_mean, input_std, batch,
                                      residual_scale)
    except TypeError:  # an unhashable activation (a user's Activation with unhashable parts)
        th, note = _mlp_theory_uncached(widths, act, weight_means, weight_vars, bias_mean,
                                        bias_var, input_mean, input_std, batch, residual_scale)
    return {k: np.array(v, copy=True) for k, v in th.items()}, note


@functools.lru_cache(maxsize=512)
def _mlp_theory_cached(*args):
    return _mlp_theory_uncached(*args)


def _mlp_theory_uncached(widths, act, weight_means, weight_vars, bias_mean, bias_var, input_mean,
                         input_std, batch, residual_scale):
    L = len(widths) - 1
    out = _nan_theory(MLP_STATISTICS, L)
    if any(m != 0.0 for m in weight_means):
        return out, "mean-field theory needs zero-mean weights"
    try:
        from fastinit.theory import mlp_theory
    except ImportError:
        return out, "fastinit.theory not available"
    th = mlp_theory(list(widths), act.spec, act.theory_param,
                    weight_var=list(weight_vars), bias_mean=bias_mean, bias_var=bias_var,
                    input_mean=input_mean, input_std=input_std, batch=batch,
                    residual_scale=residual_scale)
    for k in MLP_STATISTICS:
        if k in th and th[k] is not None:
            v = np.asarray(th[k], dtype=np.float64)
            out[k] = v if k != "grad_input_m2" else np.array(float(np.ravel(v)[-1]) if v.size else np.nan)
    return out, ""


# ------------------------------------------------------------------------------------------
# MLP
# ------------------------------------------------------------------------------------------
def simulate_mlp(widths=None, *, depth=None, width=None, input_dim=None, batch=1024,
                 activation="relu", activation_param=None, activation_derivative=None,
                 init="kaiming_normal", init_params=None,
                 bias="zeros", bias_value=0.0, bias_std=0.0,
                 input_mean=0.0, input_std=1.0, residual_scale=None,
                 n_networks=1, seed=0, backward=True, G=None,
                 histograms=False, hist_layers=None, hist_bins=50, hist_range=None,
                 dtype="float32", weights=None, biases=None, x=None, theory=True):
    r"""Simulate deep fully-connected networks at initialization, layer by layer.

    For each of ``n_networks`` independently initialised networks,

    .. math::
        z_l = a_{l-1} W_l^T + b_l,\quad a_l = \phi(z_l),\quad a_0 = x,\quad
        x_{bj} \overset{iid}{\sim} \mathcal{N}(\mu_x, \sigma_x^2),

    (or :math:`h_l = h_{l-1} + \alpha\,\phi(h_{l-1}W_l^T + b_l)` with ``residual_scale`` =
    :math:`\alpha`), then back-propagates the per-sample loss
    :math:`\ell_b = \sum_k G_{bk} a_{L,bk}`. Every statistic is pooled over the
    ``batch x width`` entries of a layer, averaged over networks, and reported with its standard
    error and the mean-field prediction (:func:`fastinit.theory.mlp_theory`).

    Parameters
    ----------
    widths : sequence of int, optional
        ``[n_0, n_1, ..., n_L]``. Alternatively give ``depth`` and ``width`` (and optionally
        ``input_dim``, default ``width``).
    batch : int
        Number of input samples B.
    activation : str or numba function
        ``"linear"``, ``"relu"``, ``"leaky_relu"``, ``"tanh"``, ``"sigmoid"``, ``"selu"``,
        ``"gelu"`` (exact erf form), ``"silu"``, ``"softplus"``; or a user ``@njit`` scalar
        function ``f(x) -> float`` with ``activation_derivative`` its derivative.
    activation_param : float, optional
        Negative slope of ``leaky_relu`` (default 0.01), ``beta`` of ``softplus`` (default 1).
    init : str
        Weight scheme: ``"zeros"``, ``"constant"`` (``init_params={"val": c}``), ``"normal"``
        (``mean``, ``std``), ``"uniform"`` (``a``, ``b``), ``"trunc_normal"``, ``"small"``
        (N(0, 0.01^2)), ``"large"`` (N(0, 1)), ``"xavier_uniform"``, ``"xavier_normal"``
        (``gain``), ``"kaiming_uniform"``, ``"kaiming_normal"`` (``a``, ``mode``,
        ``nonlinearity`` as torch), ``"lecun_normal"``, ``"lecun_uniform"``, ``"orthogonal"``
        (``gain``). Aliases: ``xavier``/``glorot``, ``he``/``kaiming``, ``lecun``.
    init_params : dict, optional
        Keyword arguments of the scheme, with torch's names.
    bias : {"zeros", "constant", "normal"} or float
        ``"constant"`` uses ``bias_value`` (e.g. 0.01 for ReLU); ``"normal"`` draws
        N(0, ``bias_std``^2) per unit. A number means that constant.
    input_mean, input_std : float
        Inputs are i.i.d. N(input_mean, input_std^2).
    residual_scale : float, optional
        Branch scale :math:`\alpha` of residual layers (equal widths required), e.g.
        ``1/sqrt(2 L)`` as in GPT-2.
    n_networks : int
        Independently initialised networks; statistics are their mean, with standard errors.
    seed : int
        Seed of the counter-based stream. Network k, layer l uses its own stream, so results do
        not depend on ``n_networks`` for the networks they share.
    backward : bool
        Also compute the gradient statistics.
    G : (batch, n_L) array_like, optional
        Backward seed (default: i.i.d. N(0, 1), fresh per network; a given ``G`` is used for
        every network).
    histograms : bool
        Record pre- and post-activation histograms of the first network at ``hist_layers``
        (default: all layers) with ``hist_bins`` bins over ``hist_range`` (default: data range).
    dtype : {"float32", "float64"}
        Storage and GEMM precision. Statistics are always accumulated in float64. Deliberately
        vanishing or exploding nets leave float32's range (1e-38 .. 3e38) after a few dozen
        layers (values become subnormal, 0 or inf, and subnormal GEMMs are slow); use float64
        for those.
    weights, biases, x : optional
        Explicit arrays (one network only): ``weights[l]`` has shape ``(n_{l+1}, n_l)``,
        ``biases[l]`` shape ``(n_{l+1},)``, ``x`` shape ``(batch, n_0)``. They override
        ``init``/``bias``/``input_*``; the theory then uses the requested scheme's moments.
    theory : bool
        Attach mean-field predictions (``res.theory``).

    Returns
    -------
    MLPResult
        ``res.<statistic>`` arrays of length L (``grad_input_m2``: 0-d), ``res.stderr``,
        ``res.theory``, ``res.per_network``, ``res.to_table()``, ``res.to_records()``.

    Raises
    ------
    ValueError
        For an invalid argument; the message names it.

    Notes
    -----
    * Pooled vs per-unit variance: ``preact_var`` is the variance over all
      ``batch x width`` entries (what the mean-field length map predicts);
      ``preact_unitvar`` is the mean over units of each unit's variance across the batch,
      :math:`(1 - 1/B)(v_l - C_l)`, much smaller in deep ReLU/GELU/sigmoid nets where
      the inputs become correlated (theory.md section 0, 2.2).
    * The per-sample weight-gradient second moment uses
      :math:`\|\delta_b a_b^T\|_F^2 = \|\delta_b\|^2 \|a_b\|^2`; the batch-mean one forms
      :math:`\frac1B \delta^T a_{l-1}` with one GEMM per layer.
    * Memory: one ``batch x n_l`` array per layer in ``dtype`` (the pre-activations backward
      needs; residual nets also keep ``h_l``), the weights, and a few working buffers.

    Examples
    --------
    The notes' Example 2 (10-layer He/ReLU net of width 100): the second moment, not the
    variance, is what He init preserves.

    >>> from fastinit.sim import simulate_mlp
    >>> res = simulate_mlp(depth=10, width=100, batch=2000, activation="relu", init="he",
    ...                    n_networks=8, seed=1)
    >>> res.theory["preact_var"][:3].round(3)
    array([2., 2., 2.])
    >>> res.preact_var[:3].round(2)                   # the notes' Var(z): 2, 1.36, 0.93
    array([2.  , 2.  , 2.05])
    >>> bool(abs(res.preact_m2[2] / 2 - 1) < 0.1)    # the notes predicted 0.93
    True
    >>> print(res.to_table(every=5))
    layer          preact_var               post_m2            frac_inactive         grad_preact_m2
    -----  ------------------  --------------------  -----------------------  ---------------------
        1  2.001 ±0.01036 [2]  0.9987 ±0.004964 [1]  0.5003 ±0.0005941 [0.5]  0.4685 ±0.02824 [0.5]
        6    2.268 ±0.196 [2]   0.9952 ±0.08289 [1]    0.5297 ±0.01062 [0.5]    0.47 ±0.03574 [0.5]
       10   1.747 ±0.1938 [2]     0.9371 ±0.122 [1]     0.496 ±0.01181 [0.5]   0.5041 ±0.0117 [0.5]
    (value ±stderr [mean-field theory])
    """
    ws = _resolve_widths(widths, depth, width, input_dim)
    L = len(ws) - 1
    B = _int_arg("batch", batch)
    dt = _dtype_arg(dtype)
    act = _resolve_activation(activation, activation_param, activation_derivative)
    key, scheme, params = _resolve_scheme(init, init_params)
    bias, bias_value, bias_std = _bias_spec(bias, bias_value, bias_std)
    input_mean = _real_arg("input_mean", input_mean)
    input_std = _real_arg("input_std", input_std, lo=0.0)
    n_networks = _int_arg("n_networks", n_networks)
    seed = _int_arg("seed", seed, lo=0)
    if residual_scale is not None:
        residual_scale = _real_arg("residual_scale", residual_scale)
        if len(set(ws)) != 1:
            raise ValueError(f"residual_scale needs equal widths (h_l = h_(l-1) + alpha phi(...)), got widths {ws}")
    if G is not None:
        G = np.asarray(G)
        if G.shape != (B, ws[-1]):
            raise ValueError(f"G must have shape (batch, n_L) = {(B, ws[-1])}, got {G.shape}")
        if not np.all(np.isfinite(G)):
            raise ValueError("G must be finite")
    hl = _hist_layers(histograms, hist_layers, L)
    hist_bins = _int_arg("hist_bins", hist_bins)
    if hist_range is not None:
        hist_range = (float(hist_range[0]), float(hist_range[1]))
        if not hist_range[0] < hist_range[1]:
            raise ValueError(f"hist_range must be (low, high) with low < high, got {hist_range}")
    explicit = _check_explicit(weights, biases, x, ws, B, n_networks)

    per = {n: [] for n in MLP_STATISTICS}
    hists = []
    for k in range(n_networks):
        with _threads(B, ws):
            Ws, bs, x0 = _build_network(k, ws, B, dt, scheme, params, bias, bias_value,
                                        bias_std, input_mean, input_std, seed, explicit)
        Gk = G if G is not None else (
            _random_normal((B, ws[-1]), 0.0, 1.0, seed, _stream(k, 0, _KIND_SEED_G), dt)
            if backward else None)
        out = _k.mlp_pass(x0, Ws, bs, act.phi, act.dphi, act.param, act.sat,
                          residual=residual_scale is not None,
                          alpha=1.0 if residual_scale is None else residual_scale,
                          G=Gk, backward=backward,
                          hist_layers=hl if k == 0 else (), hist_bins=hist_bins, hist_range=hist_range)
        for n in MLP_STATISTICS:
            per[n].append(out[n])
        if k == 0:
            hists = out["histograms"]
    per = {n: np.array(v, dtype=np.float64) for n, v in per.items()}
    stats, stderr = _summarise(per, MLP_STATISTICS)

    config = dict(widths=ws, batch=B, activation=act.name, activation_param=act.param,
                  init=key, init_params=params, bias=bias, bias_value=bias_value,
                  bias_std=bias_std, input_mean=input_mean, input_std=input_std,
                  residual_scale=residual_scale, n_networks=n_networks, seed=seed,
                  backward=bool(backward), dtype=dt.name, explicit_arrays=explicit is not None)
    if theory:
        wmom = [_weight_moments((ws[l + 1], ws[l]), scheme, params) for l in range(L)]
        th, note = _mlp_theory(ws, act, [m for m, _ in wmom], [v for _, v in wmom],
                               bias_value if bias == "constant" else 0.0, bias_std ** 2,
                               input_mean, input_std, B, residual_scale)
        config["theory_note"] = note
    else:
        th = _nan_theory(MLP_STATISTICS, L)
    return MLPResult(np.arange(1, L + 1), stats, stderr, per, th, config, hists, "layer")


def _threads(B, ws):
    """BLAS/Numba thread policy of :mod:`fastinit._sim_kernels` for weight creation too (a small
    QR with every BLAS thread spinning on a busy machine took 0.75 s instead of 1 ms)."""
    flops = max(2.0 * B * ws[i] * ws[i + 1] for i in range(len(ws) - 1))
    return _k.blas_threads_for(flops)


def _hist_layers(histograms, hist_layers, L):
    if not histograms:
        if hist_layers is not None:
            raise ValueError("hist_layers needs histograms=True")
        return ()
    if hist_layers is None:
        return tuple(range(L))
    out = []
    for h in hist_layers:
        h = _int_arg("hist_layers entry", h)
        if h > L:
            raise ValueError(f"hist_layers: layer {h} > depth {L} (layers are numbered 1..L)")
        out.append(h - 1)
    return tuple(out)


def _check_explicit(weights, biases, x, ws, B, n_networks):
    if weights is None and biases is None and x is None:
        return None
    if n_networks != 1:
        raise ValueError("weights/biases/x describe one network: use n_networks=1")
    L = len(ws) - 1
    if weights is not None:
        if len(weights) != L:
            raise ValueError(f"weights must be a list of {L} matrices, got {len(weights)}")
        for l, W in enumerate(weights):
            if np.shape(W) != (ws[l + 1], ws[l]):
                raise ValueError(f"weights[{l}] must have shape {(ws[l + 1], ws[l])}, got {np.shape(W)}")
    if biases is not None:
        if len(biases) != L:
            raise ValueError(f"biases must be a list of {L} vectors, got {len(biases)}")
        for l, b in enumerate(biases):
            if np.shape(b) != (ws[l + 1],):
                raise ValueError(f"biases[{l}] must have shape {(ws[l + 1],)}, got {np.shape(b)}")
    if x is not None and np.shape(x) != (B, ws[0]):
        raise ValueError(f"x must have shape (batch, n_0) = {(B, ws[0])}, got {np.shape(x)}")
    return (weights, biases, x)


def _build_network(k, ws, B, dt, scheme, params, bias, bias_value, bias_std, input_mean,
                   input_std, seed, explicit):
    L = len(ws) - 1
    eW, eb, ex = explicit if explicit is not None else (None, None, None)
    Ws, bs = [], []
    for l in range(L):
        shape = (ws[l + 1], ws[l])
        if eW is not None:
            Ws.append(np.ascontiguousarray(eW[l], dtype=dt))
        else:
            Ws.append(_make_weight(shape, scheme, params, seed, _stream(k, l + 1, _KIND_WEIGHT), dt))
        if eb is not None:
            bs.append(np.ascontiguousarray(eb[l], dtype=np.float64))
        elif bias == "normal":
            bs.append(_random_normal((ws[l + 1],), 0.0, bias_std, seed,
                                     _stream(k, l + 1, _KIND_BIAS), np.float64))
        else:
            bs.append(np.full(ws[l + 1], bias_value, dtype=np.float64))
    if ex is not None:
        x0 = np.ascontiguousarray(ex, dtype=dt)
    else:
        x0 = _random_normal((B, ws[0]), input_mean, input_std, seed, _stream(k, 0, _KIND_INPUT), dt)
    return Ws, bs, x0


# ------------------------------------------------------------------------------------------
# RNN
# ------------------------------------------------------------------------------------------
def simulate_rnn(hidden, steps, *, batch=256, activation="tanh", activation_param=None,
                 activation_derivative=None, init="orthogonal", init_params=None,
                 h0_std=1.0, input_dim=0, input_std=1.0, input_init="xavier_uniform",
                 input_init_params=None, bias="zeros", bias_value=0.0, bias_std=0.0,
                 n_networks=1, seed=0, backward=True, G=None, dtype="float32",
                 W=None, h0=None, theory=True):
    r"""Simulate a vanilla recurrent net with one shared weight matrix over ``steps`` steps.

    .. math::
        h_t = \phi(h_{t-1} W^T + x_t U^T + b), \quad t = 1..T, \qquad
        h_0 \sim \mathcal{N}(0, \sigma_{h_0}^2)

    (the input term only when ``input_dim > 0``; :math:`x_t` i.i.d. N(0, ``input_std``^2),
    fresh every step). Backward, :math:`\ell = \sum_{b,k} G_{bk} h_{T,bk}` and
    ``grad_h_m2[t]`` is the mean of :math:`(\partial \ell / \partial h_t)^2` (BPTT through the
    tied W).

    Parameters
    ----------
    hidden : int
        Width n of the hidden state.
    steps : int
        Number of steps T.
    init, init_params :
        Scheme of W (as :func:`simulate_mlp`), e.g. ``"orthogonal"`` or ``"xavier_normal"``.
    h0_std : float
        Standard deviation of the initial state.
    input_dim, input_std, input_init, input_init_params :
        Optional input path ``x_t U^T`` (``U`` has shape ``(hidden, input_dim)``).
    W, h0 : array_like, optional
        Explicit recurrent matrix and initial state (one network).

    Returns
    -------
    RNNResult
        Arrays indexed by t = 0..T: ``h_m2`` (mean :math:`h_t^2`), ``h_norm`` (mean over the
        batch of :math:`\|h_t\|`), ``preact_m2``, ``preact_mean``, ``post_mean`` and
        ``grad_h_m2``. ``theory`` from :func:`fastinit.theory.rnn_theory` (untied mean field).
        For an orthogonal W both the forward and the BPTT prediction hold to ~2% (n = 128,
        T = 50, tanh: ``grad_h_m2[0]`` 0.0145 simulated vs 0.01433 predicted; the "factor 2"
        of shared/reference/theory.md §7.7 compares with 0.0303, an off-by-one, see
        docs/theory.md §5.9). A tied *Gaussian* W breaks gradient independence: its
        ``grad_h_m2[0]`` is several times the prediction and varies widely between networks.

    Examples
    --------
    The notes' Example 3 (n = 128, T = 50, tanh). An orthogonal W follows the untied mean-field
    length map; a Gaussian W with the same entry variance 1/n ends up with a *larger* state norm,
    because powers of one Gaussian matrix grow (``E||W^t h||^2 ~ (t + 1)||h||^2``) while an
    orthogonal W preserves norms exactly. The notes' claim that the Gaussian state "decays
    significantly" faster does not hold for the norm.

    >>> from fastinit.sim import simulate_rnn
    >>> o = simulate_rnn(128, 50, batch=256, init="orthogonal", seed=0)
    >>> g = simulate_rnn(128, 50, batch=256, init="normal",
    ...                  init_params={"std": 128 ** -0.5}, seed=0)
    >>> round(float(o.h_norm[-1]), 2), round(float(o.theory["h_norm"][-1]), 2)
    (1.15, 1.14)
    >>> round(float(g.h_norm[-1]), 2)             # the Gaussian W keeps MORE of the norm
    1.92
    >>> round(float(o.grad_h_m2[0]), 4), round(float(o.theory["grad_h_m2"][0]), 4)   # BPTT
    (0.0145, 0.0143)
    """
    n = _int_arg("hidden", hidden)
    T = _int_arg("steps", steps)
    B = _int_arg("batch", batch)
    dt = _dtype_arg(dtype)
    act = _resolve_activation(activation, activation_param, activation_derivative)
    key, scheme, params = _resolve_scheme(init, init_params)
    input_dim = _int_arg("input_dim", input_dim, lo=0)
    if input_dim:
        ukey, uscheme, uparams = _resolve_scheme(input_init, input_init_params)
    bias, bias_value, bias_std = _bias_spec(bias, bias_value, bias_std)
    h0_std = _real_arg("h0_std", h0_std, lo=0.0)
    input_std = _real_arg("input_std", input_std, lo=0.0)
    n_networks = _int_arg("n_networks", n_networks)
    seed = _int_arg("seed", seed, lo=0)
    if G is not None:
        G = np.asarray(G)
        if G.shape != (B, n):
            raise ValueError(f"G must have shape (batch, hidden) = {(B, n)}, got {G.shape}")
    if (W is not None or h0 is not None) and n_networks != 1:
        raise ValueError("W/h0 describe one network: use n_networks=1")
    if W is not None and np.shape(W) != (n, n):
        raise ValueError(f"W must have shape (hidden, hidden) = {(n, n)}, got {np.shape(W)}")
    if h0 is not None and np.shape(h0) != (B, n):
        raise ValueError(f"h0 must have shape (batch, hidden) = {(B, n)}, got {np.shape(h0)}")

    per = {s: [] for s in RNN_STATISTICS}
    for k in range(n_networks):
        with _threads(B, [n, n]):
            Wk = (np.ascontiguousarray(W, dtype=dt) if W is not None else
                  _make_weight((n, n), scheme, params, seed, _stream(k, 1, _KIND_WEIGHT), dt))
        hk = (np.ascontiguousarray(h0, dtype=dt) if h0 is not None else
              _random_normal((B, n), 0.0, h0_std, seed, _stream(k, 0, _KIND_INPUT), dt))
        if bias == "normal":
            bk = _random_normal((n,), 0.0, bias_std, seed, _stream(k, 1, _KIND_BIAS), np.float64)
        else:
            bk = np.full(n, bias_value, dtype=np.float64)
        if input_dim:
            Uk = _make_weight((n, input_dim), uscheme, uparams, seed, _stream(k, 1, _KIND_RNN_U), dt)

            def xs_fn(t, k=k):
                return _random_normal((B, input_dim), 0.0, input_std, seed,
                                      _stream(k, t, _KIND_RNN_X), dt)
        else:
            Uk = None

            def xs_fn(t):
                return None
        Gk = G if G is not None else (
            _random_normal((B, n), 0.0, 1.0, seed, _stream(k, 0, _KIND_SEED_G), dt) if backward else None)
        out = _k.rnn_pass(hk, Wk, xs_fn, Uk, bk, act.phi, act.dphi, act.param, T,
                          G=Gk, backward=backward)
        for s in RNN_STATISTICS:
            per[s].append(out[s])
    per = {s: np.array(v, dtype=np.float64) for s, v in per.items()}
    stats, stderr = _summarise(per, RNN_STATISTICS)
    config = dict(hidden=n, steps=T, batch=B, activation=act.name, activation_param=act.param,
                  init=key, init_params=params, h0_std=h0_std, input_dim=input_dim,
                  input_std=input_std, bias=bias, bias_value=bias_value, bias_std=bias_std,
                  n_networks=n_networks, seed=seed, dtype=dt.name)
    th = {s: np.full(T + 1, np.nan) for s in RNN_STATISTICS}
    if theory:
        th, note = _rnn_theory(n, T, act, scheme, params, h0_std, input_dim,
                               (uscheme, uparams) if input_dim else None, input_std,
                               bias_value if bias == "constant" else 0.0, bias_std ** 2, B, th)
        config["theory_note"] = note
    return RNNResult(np.arange(T + 1), stats, stderr, per, th, config, [], "step")


def _rnn_theory(n, T, act, scheme, params, h0_std, input_dim, uspec, input_std, bias_mean,
                bias_var, B, out):
    wm, wv = _weight_moments((n, n), scheme, params)
    if wm != 0.0:
        return out, "mean-field theory needs zero-mean weights"
    try:
        from fastinit.theory import rnn_theory
    except ImportError:
        return out, "fastinit.theory not available"
    uv = 0.0
    if uspec is not None:
        um, uv = _weight_moments((n, input_dim), *uspec)
        if um != 0.0:
            return out, "mean-field theory needs zero-mean input weights"
    th = rnn_theory(n, T, act.spec, wv, h0_std, act.theory_param,
                    input_var=input_dim * uv * input_std ** 2, bias_mean=bias_mean,
                    bias_var=bias_var)
    for s in ("h_m2", "grad_h_m2"):
        out[s] = np.asarray(th[s], dtype=np.float64)
    # theory's h_norm is sqrt(n E[h_t^2]), the root-mean-square norm; the simulation reports the
    # mean norm over the batch, which is below it by O(1/n) (Jensen)
    out["h_norm"] = np.asarray(th["h_norm"], dtype=np.float64)
    pv = np.asarray(th["preact_var"], dtype=np.float64)
    out["preact_m2"] = np.concatenate([[np.nan], pv + bias_mean ** 2])
    out["preact_mean"] = np.concatenate([[np.nan], np.full(T, float(bias_mean))])
    return out, ""


# ------------------------------------------------------------------------------------------
# Verdicts
# ------------------------------------------------------------------------------------------
def verdict(result, factor=10.0):
    r"""Classify a simulated MLP as ``symmetric``, ``exploding``, ``vanishing`` or ``stable``.

    * ``symmetric``: every unit of the last layer computes the same value for every sample
      (``preact_unitspread`` is 0 up to rounding), as with constant or zero weights.
    * ``exploding`` / ``vanishing``: the forward second moment ``post_m2`` or the backward
      ``grad_preact_m2`` changes by more than ``factor`` between the first and the last layer
      (non-finite values count as exploding).
    * ``stable`` otherwise.

    With :math:`m_l` = ``post_m2`` and :math:`g_l` = ``grad_preact_m2``, the forward grade
    compares :math:`m_L / m_1` and the backward grade :math:`g_1 / g_L` with
    :math:`[1/\text{factor}, \text{factor}]`.

    Returns
    -------
    dict
        ``{"forward": ..., "backward": ..., "overall": ...}``; ``overall`` is the worst of the
        two in the order symmetric > exploding > vanishing > stable.

    Examples
    --------
    >>> from fastinit.sim import simulate_mlp, verdict
    >>> verdict(simulate_mlp(depth=8, width=64, batch=64, init="zeros"))["overall"]
    'symmetric'
    >>> verdict(simulate_mlp(depth=8, width=64, batch=64, activation="tanh", init="small"))
    {'forward': 'vanishing', 'backward': 'vanishing', 'overall': 'vanishing'}
    """
    s = result.stats
    m2_last = float(s["preact_m2"][-1])
    spread = float(s["preact_unitspread"][-1])
    if np.isfinite(spread) and spread <= 1e-12 * max(m2_last, 1e-300):
        return {"forward": "symmetric", "backward": "symmetric", "overall": "symmetric"}

    def grade(first, last):
        if not (np.isfinite(first) and np.isfinite(last)):
            return "exploding"
        if first <= 0:
            return "vanishing" if last <= 0 else "exploding"
        r = last / first
        if r > factor:
            return "exploding"
        if r < 1.0 / factor:
            return "vanishing"
        return "stable"

    fwd = grade(float(s["post_m2"][0]), float(s["post_m2"][-1]))
    g = s.get("grad_preact_m2")
    bwd = grade(float(g[-1]), float(g[0])) if g is not None and np.isfinite(g).any() else "n/a"
    order = ["symmetric", "exploding", "vanishing", "stable", "n/a"]
    overall = min((fwd, bwd), key=order.index)
    return {"forward": fwd, "backward": bwd, "overall": overall}


# ------------------------------------------------------------------------------------------
# Sweeps
# ------------------------------------------------------------------------------------------
@dataclass
class SweepResult:
    """Tidy result of :func:`sweep`.

    Attributes
    ----------
    records : list of dict
        One row per configuration and layer: ``init``, ``activation``, ``depth``, ``width``,
        ``layer``, and for each statistic its mean across all networks of all seeds, ``_se``,
        ``_ci_low``, ``_ci_high`` (95%, Student t) and ``_theory``.
    results : dict
        ``(init, activation, depth, width) -> MLPResult`` (networks of every seed pooled).
    """

    records: list
    results: dict

    def to_records(self):
        """The rows (list of dict)."""
        return list(self.records)

    def to_table(self, stats=("preact_var", "grad_preact_m2"), layers="last", fmt="{:.4g}"):
        """Text table: one row per configuration (``layers="last"``) or per configuration and layer."""
        rows = [r for r in self.records
                if layers != "last" or r["layer"] == r["depth"]]
        head = ["init", "activation", "depth", "width", "layer"]
        cells = [head + [f"{s} [ci95] (theory)" for s in stats]]
        for r in rows:
            c = [str(r[h]) for h in head]
            for s in stats:
                c.append(f"{fmt.format(r[s])} [{fmt.format(r[s + '_ci_low'])}, "
                         f"{fmt.format(r[s + '_ci_high'])}] ({fmt.format(r[s + '_theory'])})")
            cells.append(c)
        widths = [max(len(x[j]) for x in cells) for j in range(len(cells[0]))]
        lines = ["  ".join(v.rjust(w) for v, w in zip(x, widths)) for x in cells]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def to_csv(self, path):
        """Write the rows to ``path`` as CSV."""
        import csv
        with open(path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(self.records[0]))
            w.writeheader()
            w.writerows(self.records)


def _spec(x):
    """('name', params) from 'name' or ('name', params)."""
    if isinstance(x, (tuple, list)) and len(x) == 2:
        return x[0], x[1]
    return x, None


def _label(name, params):
    if not params:
        return str(name)
    if isinstance(params, dict):
        return f"{name}(" + ",".join(f"{k}={v}" for k, v in params.items()) + ")"
    return f"{name}({params})"


def sweep(inits=("xavier_normal", "kaiming_normal"), activations=("tanh", "relu"),
          depths=(20,), widths=(128,), seeds=(0,), *, batch=512, n_networks=1, progress=None,
          theory=True, workers=None, **kwargs):
    r"""Simulate a grid of configurations in one call and return a tidy table.

    The grid is ``inits x activations x depths x widths``; each configuration runs once per
    seed with ``n_networks`` networks, and all networks of all seeds are pooled into the mean,
    standard error and 95% confidence interval of every statistic.

    Parameters
    ----------
    inits : sequence
        Scheme names, or ``(name, init_params)`` pairs.
    activations : sequence
        Activation names, or ``(name, activation_param)`` pairs.
    depths, widths : sequence of int
        Networks are ``[width] * (depth + 1)``.
    seeds : sequence of int
    batch, n_networks :
        As :func:`simulate_mlp`.
    progress : callable, optional
        Called as ``progress(done, total, label)`` after each run.
    theory : bool
        Attach mean-field predictions (computed once per configuration).
    workers : int, optional
        Runs simulated at once, each on one thread (one Numba thread, single-threaded BLAS).
        Default: Numba's thread count when every configuration is small (layers below
        ``_sim_kernels.SMALL_LAYER_ENTRIES`` entries and GEMMs below ``SMALL_GEMM_FLOPS``), where
        one run cannot use several cores well, and 1 otherwise (each run then uses every core).
        Results do not depend on it: every run's numbers are fixed by its seed.
    **kwargs
        Any other :func:`simulate_mlp` argument (``bias``, ``input_std``, ``residual_scale``,
        ``dtype``, ...).

    Returns
    -------
    SweepResult

    Examples
    --------
    >>> from fastinit.sim import sweep
    >>> sw = sweep(inits=["xavier_normal", "kaiming_normal"], activations=["relu"],
    ...            depths=[10], widths=[64], seeds=[0, 1], batch=128)
    >>> len(sw.records)          # 2 configurations x 10 layers
    20
    >>> print(sw.to_table())
              init  activation  depth  width  layer                preact_var [ci95] (theory)  grad_preact_m2 [ci95] (theory)
    --------------  ----------  -----  -----  -----  ----------------------------------------  ------------------------------
     xavier_normal        relu     10     64     10  0.002457 [0.002292, 0.002623] (0.001953)     0.5051 [0.48, 0.5301] (0.5)
    kaiming_normal        relu     10     64     10                  2.516 [2.347, 2.686] (2)     0.5051 [0.48, 0.5301] (0.5)
    """
    for name in ("widths", "depth", "width", "init", "activation", "seed", "init_params",
                 "activation_param", "histograms"):
        if name in kwargs:
            raise ValueError(f"sweep: pass {name!r} through the grid arguments, not as a keyword")
    seeds = [_int_arg("seeds entry", s, lo=0) for s in seeds]
    if not seeds:
        raise ValueError("seeds must not be empty")
    grid = [(i, a, int(d), int(w)) for i in inits for a in activations for d in depths for w in widths]
    if not grid:
        raise ValueError("sweep: empty grid (inits, activations, depths and widths must be non-empty)")
    total = len(grid) * len(seeds)
    jobs = [(gi, si) for gi in range(len(grid)) for si in range(len(seeds))]
    workers = _sweep_workers(workers, grid, batch, kwargs.get("input_dim"))

    def run(job):
        gi, si = job
        init_spec, act_spec, depth, width = grid[gi]
        iname, iparams = _spec(init_spec)
        aname, aparam = _spec(act_spec)
        return simulate_mlp(depth=depth, width=width, batch=batch, activation=aname,
                            activation_param=aparam, init=iname, init_params=iparams,
                            n_networks=n_networks, seed=seeds[si], theory=theory and si == 0,
                            **kwargs)

    def label(job):
        gi, si = job
        init_spec, act_spec, depth, width = grid[gi]
        return (f"{_label(*_spec(init_spec))}/{_label(*_spec(act_spec))} "
                f"L={depth} n={width} seed={seeds[si]}")

    runs = {}
    if workers > 1:
        # compile each activation's kernels once, here, rather than in several threads at once
        for a in dict.fromkeys(_spec(g[1]) for g in grid):
            _warm_up(a, kwargs)
        from concurrent.futures import ThreadPoolExecutor, as_completed

        def run_one_thread(job):
            import numba
            numba.set_num_threads(1)  # per thread: the workers supply the parallelism
            return run(job)

        with ThreadPoolExecutor(max_workers=workers) as ex:
            futures = {ex.submit(run_one_thread, job): job for job in jobs}
            try:
                for done, fut in enumerate(as_completed(futures), 1):
                    runs[futures[fut]] = fut.result()
                    if progress is not None:
                        progress(done, total, label(futures[fut]))
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise
    else:
        for done, job in enumerate(jobs, 1):
            runs[job] = run(job)
            if progress is not None:
                progress(done, total, label(job))

    records, results = [], {}
    for gi, (init_spec, act_spec, depth, width) in enumerate(grid):
        iname, iparams = _spec(init_spec)
        aname, aparam = _spec(act_spec)
        runs_g = [runs.pop((gi, si)) for si in range(len(seeds))]
        per = {n: np.concatenate([r.per_network[n] for r in runs_g]) for n in MLP_STATISTICS}
        stats, stderr = _summarise(per, MLP_STATISTICS)
        config = dict(runs_g[0].config, seeds=seeds, n_networks=len(seeds) * n_networks)
        res = MLPResult(runs_g[0].index, stats, stderr, per, runs_g[0].theory, config, [], "layer")
        key = (_label(iname, iparams), _label(aname, aparam), depth, width)
        results[key] = res
        tq = _t975(res.n_networks - 1)
        for i, layer in enumerate(res.index):
            row = {"init": key[0], "activation": key[1], "depth": depth, "width": width,
                   "layer": int(layer), "n_networks": res.n_networks}
            for n in MLP_STATISTICS:
                pick = (lambda a: float(a) if np.ndim(a) == 0 else float(a[i]))
                v, se = pick(stats[n]), pick(stderr[n])
                row[n] = v
                row[n + "_se"] = se
                row[n + "_ci_low"] = v - tq * se
                row[n + "_ci_high"] = v + tq * se
                row[n + "_theory"] = pick(res.theory[n])
            records.append(row)
    return SweepResult(records, results)


def _sweep_workers(workers, grid, batch, input_dim):
    """Concurrent runs for :func:`sweep` (see its ``workers`` argument)."""
    if workers is not None:
        return _int_arg("workers", workers)
    import numba

    from fastinit._numba import _SAFE_LAYERS, threading_layer
    if numba.get_num_threads() < 2 or threading_layer() not in _SAFE_LAYERS:
        return 1  # Numba's workqueue layer cannot take parallel kernels from two threads
    for _, _, depth, width in grid:
        n0 = width if input_dim is None else int(input_dim)
        if (2.0 * batch * width * max(width, n0) >= _k.SMALL_GEMM_FLOPS
                or batch * max(width, n0) >= _k.SMALL_LAYER_ENTRIES):
            return 1
    return min(numba.get_num_threads(), len(grid) or 1)


def _warm_up(act_spec, kwargs):
    """Compile one activation's kernels with a tiny run (cheap once compiled)."""
    name, param = act_spec
    simulate_mlp(depth=1, width=2, batch=2, activation=name, activation_param=param,
                 activation_derivative=kwargs.get("activation_derivative"), init="normal",
                 theory=False, dtype=kwargs.get("dtype", "float32"),
                 residual_scale=kwargs.get("residual_scale"))
