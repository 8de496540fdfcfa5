"""Weight schemes and random streams of the simulator.

Every scheme is the public initializer of :mod:`fastinit.init` with the same name
(``"xavier_normal"`` is :func:`fastinit.init.xavier_normal_`), called by name: its parameters and
defaults are read from the initializer's signature and its arguments are checked by the
initializer itself. The only knowledge kept here is what the initializers do not expose: the
study's presets (``small``, ``large``), the aliases, and each scheme's entry mean and variance
for the mean-field theory (:func:`weight_moments`), written with the public
:func:`fastinit.init.calculate_gain` and :func:`fastinit.init.calculate_fan_in_and_fan_out`.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import numbers
import threading
from concurrent.futures import Future

import numpy as np

from fastinit import init as fi
from fastinit._checks import InitArgumentError
from fastinit._fill import fill_normal
from fastinit._generator import Generator

__all__ = ["WEIGHT_SCHEMES", "resolve_scheme", "weight_moments", "make_weight", "SharedWeights", "random_normal",
           "stream", "KIND_WEIGHT", "KIND_BIAS", "KIND_INPUT", "KIND_SEED_G", "KIND_RNN_U", "KIND_RNN_X",
           "KIND_WEIGHT2", "KIND_BIAS2", "KIND_PROBE"]

# ------------------------------------------------------------------------------------------
# Random streams. Every random array of a simulation has its own Philox stream id, derived
# from (network, layer, kind), so one network's numbers do not depend on how many other
# networks, layers or configurations are simulated alongside it.
# ------------------------------------------------------------------------------------------
KIND_WEIGHT, KIND_BIAS, KIND_INPUT, KIND_SEED_G, KIND_RNN_U, KIND_RNN_X = range(6)
# the second Linear of a residual MLP block (_resnet); the Jacobian's probe vectors (_jacobian) share
# kind 7: no simulation draws both
KIND_WEIGHT2, KIND_BIAS2 = 6, 7
KIND_PROBE = 7
_MAX_LAYERS = 1 << 20  # layer (or time step) index field of a stream id


def stream(network, layer, kind):
    """Stream id of one random array: 8 kinds x 2^20 layers per network."""
    return (int(network) * _MAX_LAYERS + int(layer)) * 8 + int(kind)


def random_normal(shape, mean, std, seed, stream_id, dtype):
    """N(mean, std^2) array from fastinit's counter-based stream ``(seed, stream_id)``."""
    out = np.empty(shape, dtype=dtype)
    fill_normal(out, float(mean), float(std), int(seed), int(stream_id))
    return out


# ------------------------------------------------------------------------------------------
# Schemes: name -> (initializer of fastinit.init, preset arguments). Presets are the study's
# N(0, 0.01^2) and N(0, 1); everything else is the initializer with its own defaults.
# ------------------------------------------------------------------------------------------
_SCHEMES = {
    "zeros": ("zeros", {}), "ones": ("ones", {}), "constant": ("constant", {}),
    "normal": ("normal", {}), "uniform": ("uniform", {}), "trunc_normal": ("trunc_normal", {}),
    "small": ("normal", {"std": 0.01}), "large": ("normal", {"std": 1.0}),
    "xavier_uniform": ("xavier_uniform", {}), "xavier_normal": ("xavier_normal", {}),
    "kaiming_uniform": ("kaiming_uniform", {}), "kaiming_normal": ("kaiming_normal", {}),
    "lecun_normal": ("lecun_normal", {}), "lecun_uniform": ("lecun_uniform", {}),
    "orthogonal": ("orthogonal", {}),
}
_SCHEME_ALIASES = {
    "xavier": "xavier_normal", "glorot": "xavier_normal", "glorot_normal": "xavier_normal",
    "glorot_uniform": "xavier_uniform", "he": "kaiming_normal", "kaiming": "kaiming_normal",
    "he_normal": "kaiming_normal", "he_uniform": "kaiming_uniform", "lecun": "lecun_normal",
    "zero": "zeros",
}
#: Accepted weight-scheme names (aliases: xavier, glorot, he, kaiming, lecun, ...).
WEIGHT_SCHEMES = tuple(_SCHEMES)

_NOT_PARAMS = ("tensor", "generator")  # every other positional parameter is a scheme parameter


@functools.cache
def _signature(scheme):
    return inspect.signature(getattr(fi, scheme + "_"))


def _parameters(scheme):
    """Positional parameters of ``fastinit.init.<scheme>_`` and their defaults (None: required)."""
    sig = _signature(scheme)
    out = {}
    for name, prm in sig.parameters.items():
        if name in _NOT_PARAMS or prm.kind is not inspect.Parameter.POSITIONAL_OR_KEYWORD:
            continue
        d = prm.default
        if d is inspect.Parameter.empty:
            d = None
        elif isinstance(d, numbers.Real) and not isinstance(d, bool):
            d = float(d)  # torch's integer defaults (a=0, gain=1) as the numbers they mean
        out[name] = d
    return out


def resolve_scheme(init, init_params, dtype=np.float64):
    """``(name, scheme, params)``: the canonical name, the initializer and its full arguments.

    The arguments are checked by calling the initializer once on a 2 x 2 array of ``dtype``, so
    every error is the initializer's own (its type and message), prefixed with the scheme.
    """
    if not isinstance(init, str):
        raise TypeError(f"init must be a weight-scheme name, got {type(init).__name__}")
    key = init.strip().lower().rstrip("_").replace("-", "_")
    key = _SCHEME_ALIASES.get(key, key)
    if key not in _SCHEMES:
        raise InitArgumentError(f"init: unknown weight scheme {init!r}; expected one of "
                                   f"{', '.join(WEIGHT_SCHEMES)} (aliases: {', '.join(_SCHEME_ALIASES)})")
    scheme, preset = _SCHEMES[key]
    allowed = _parameters(scheme)
    params = {**allowed, **preset}
    if init_params is not None and not isinstance(init_params, dict):
        raise TypeError(f"init_params must be a dict, got {type(init_params).__name__}")
    for k, v in (init_params or {}).items():
        if k not in allowed or k in preset:
            free = [a for a in allowed if a not in preset]
            raise InitArgumentError(f"init_params: {k!r} is not a parameter of init={key!r}"
                                       f" (allowed: {', '.join(free) or 'none'})")
        params[k] = v
    missing = [k for k, v in params.items() if v is None and k not in ("a",)]
    if missing:
        raise InitArgumentError(f"init_params: init={key!r} needs init_params="
                                   f"{{{', '.join(repr(k) + ': value' for k in missing)}}}")
    items = tuple(params.items())
    try:
        hash(items)
        check = _validate
    except TypeError:  # an unhashable parameter value: checked without the cache
        check = _validate.__wrapped__
    try:
        check(scheme, items, np.dtype(dtype).str)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"init={key!r}, init_params={params}: {exc}") from None
    return key, scheme, params


@functools.lru_cache(maxsize=256)
def _validate(scheme, items, dtype):
    """Call the initializer once on a 2 x 2 array: its own checks, run once per argument set."""
    _call(np.empty((2, 2), dtype=dtype), scheme, dict(items), Generator(0))


def _call(w, scheme, params, generator):
    fill = getattr(fi, scheme + "_")
    if "generator" in _signature(scheme).parameters:
        return fill(w, **params, generator=generator)
    return fill(w, **params)


def make_weight(shape, scheme, params, seed, stream, dtype):  # noqa: F811 - the stream id
    """One weight matrix of ``shape`` = (fan_out, fan_in): ``fastinit.init.<scheme>_`` drawn from
    fastinit's counter-based stream ``(seed, stream)`` (a :class:`fastinit.Generator` positioned
    there), so a simulated network is exactly what ``fastinit.<scheme>_(w, ..., generator=g)``
    gives. Inside :meth:`SharedWeights.run` the array comes from (or goes into) that store: the
    caller must not write to it."""
    shape = tuple(int(s) for s in shape)
    current = getattr(_SHARING, "current", None)
    if current is not None:
        try:
            key = (shape, scheme, tuple(params.items()), int(seed), int(stream), np.dtype(dtype).str)
            hash(key)
        except TypeError:  # an unhashable parameter value: drawn for this run alone
            pass
        else:
            store, group = current
            return store.get(group, key, lambda: _draw_weight(shape, scheme, params, seed, stream, dtype))
    return _draw_weight(shape, scheme, params, seed, stream, dtype)


def _draw_weight(shape, scheme, params, seed, stream, dtype):  # noqa: F811 - the stream id
    w = np.empty(shape, dtype=dtype)
    g = Generator(int(seed)).set_state((int(seed), int(stream)))
    return _call(w, scheme, params, g)


_SHARING = threading.local()


class SharedWeights:
    """Weights drawn once and read by several runs of a sweep.

    A weight depends on its scheme, shape, dtype, seed and stream only, not on the activation, so
    the runs of a sweep that differ only in the activation have the same weights, bit for bit.
    :func:`fastinit.sim.sweep` announces each such group of runs (:meth:`expect`) and wraps every
    run in :meth:`run`: the group's first run draws each weight, the others read it (a run that
    asks while another thread draws it waits for that draw), and the group's weights are dropped
    when its last run ends. The default ``fastinit simulate`` study draws each scheme's 50
    weights once instead of four times (for the orthogonal scheme, ~6 ms of QR per 512 x 512
    weight on one core).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._groups = {}  # group -> [runs not yet ended, {key: Future of the array}]

    def expect(self, group, runs):
        """``runs`` runs of ``group`` will come (each in a :meth:`run` block)."""
        with self._lock:
            self._groups.setdefault(group, [0, {}])[0] += int(runs)

    @contextlib.contextmanager
    def run(self, group):
        """In this block, :func:`make_weight` in this thread shares ``group``'s weights."""
        previous = getattr(_SHARING, "current", None)
        _SHARING.current = (self, group)
        try:
            yield
        finally:
            _SHARING.current = previous
            with self._lock:
                entry = self._groups.get(group)
                if entry is not None:
                    entry[0] -= 1
                    if entry[0] <= 0:
                        del self._groups[group]

    def get(self, group, key, draw):
        """The array of ``key`` in ``group``: drawn here by ``draw()``, or the one another run drew."""
        with self._lock:
            entry = self._groups.get(group)
            if entry is None:  # a run of a group nobody announced: nothing to share it with
                fut, mine = None, True
            else:
                fut = entry[1].get(key)
                mine = fut is None
                if mine:
                    fut = entry[1][key] = Future()
        if not mine:
            return fut.result()
        try:
            w = draw()
        except BaseException as exc:
            if fut is not None:
                with self._lock:
                    entry[1].pop(key, None)  # a later run tries again (and raises the same error itself)
                fut.set_exception(exc)
            raise
        if fut is not None:
            fut.set_result(w)
        return w


def weight_moments(shape, scheme, params):
    """(entry mean, entry variance) of ``scheme`` for a weight of ``shape`` = (fan_out, fan_in)."""
    fan_in, fan_out = fi.calculate_fan_in_and_fan_out(np.empty(shape, dtype=np.uint8))
    p = params
    if scheme == "zeros":
        return 0.0, 0.0
    if scheme in ("ones", "constant"):
        return float(p.get("val", 1.0)), 0.0
    if scheme == "normal":
        return float(p["mean"]), float(p["std"]) ** 2
    if scheme == "uniform":
        return 0.5 * (p["a"] + p["b"]), (p["b"] - p["a"]) ** 2 / 12.0
    if scheme == "trunc_normal":
        from scipy.stats import truncnorm  # scipy.stats costs ~1 s to import: only when asked
        m, s = p["mean"], p["std"]
        if s == 0:
            return float(m), 0.0
        d = truncnorm((p["a"] - m) / s, (p["b"] - m) / s, loc=m, scale=s)
        return float(d.mean()), float(d.var())
    # the variance-scaling family: gain^2 / fan
    if scheme.startswith("xavier"):
        return 0.0, p["gain"] ** 2 * 2.0 / (fan_in + fan_out)
    if scheme.startswith("kaiming"):
        gain = fi.calculate_gain(p["nonlinearity"], p["a"])
        return 0.0, gain ** 2 / (fan_in if p["mode"].lower() == "fan_in" else fan_out)
    if scheme.startswith("lecun"):
        return 0.0, 1.0 / fan_in
    if scheme == "orthogonal":
        # rows orthonormal (fan_out <= fan_in) or columns orthonormal: each row/column has unit norm
        return 0.0, p["gain"] ** 2 / max(fan_in, fan_out)
    raise AssertionError(scheme)

