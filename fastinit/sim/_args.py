"""Argument checks of the simulator (on top of :mod:`fastinit._checks`: TypeError for a wrong type,
:class:`~fastinit.InitArgumentError` for a bad value; every message names the argument)."""

from __future__ import annotations

import numbers
from collections.abc import Iterable

import numpy as np

from fastinit._checks import U64, InitArgumentError, integer, real
from fastinit._memory import available_memory

__all__ = ["check_dtype", "resolve_widths", "bias_spec", "check_hist_layers", "check_array", "check_explicit",
           "check_seed", "check_memory", "available_memory", "check_stats"]


def check_dtype(dtype):
    """float32 or float64 (``None`` is refused rather than read as NumPy's float64 default)."""
    if dtype is None:
        raise TypeError("dtype must be 'float32' or 'float64', got None")
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be 'float32' or 'float64', got {dtype!r}") from None
    if dt not in (np.float32, np.float64):
        raise InitArgumentError(f"dtype must be float32 or float64, got {dtype!r}")
    return dt


def check_seed(seed):
    """A seed in ``[0, 2**64)``."""
    return integer(seed, "seed", minimum=0, maximum=U64 - 1)


def resolve_widths(widths, depth, width, input_dim):
    """``[n_0, ..., n_L]`` from ``widths`` or from ``depth``/``width``/``input_dim``."""
    if widths is not None:
        if depth is not None or width is not None:
            raise InitArgumentError("give either widths=[n_0, ..., n_L] or depth and width, not both")
        if isinstance(widths, (str, bytes)) or not isinstance(widths, Iterable):
            raise TypeError(f"widths must be a sequence of integers [n_0, ..., n_L], got {widths!r}")
        ws = [integer(w, f"widths[{i}]", minimum=1) for i, w in enumerate(widths)]
        if len(ws) < 2:
            raise InitArgumentError(f"widths needs at least two entries (input and one layer), got {ws}")
        return ws
    if depth is None or width is None:
        raise InitArgumentError("give widths=[n_0, ..., n_L], or both depth and width")
    depth = integer(depth, "depth", minimum=1)
    width = integer(width, "width", minimum=1)
    n0 = width if input_dim is None else integer(input_dim, "input_dim", minimum=1)
    return [n0] + [width] * depth


def network_args(bias, bias_value, bias_std, input_mean, input_std, n_networks, seed):
    """The arguments every feed-forward simulator checks alike: ``(bias, bias_value, bias_std, input_mean,
    input_std, n_networks, seed)``, the bias by :func:`bias_spec`, inputs N(mean, std^2) with std >= 0, at
    least one network, a valid seed."""
    bias, bias_value, bias_std = bias_spec(bias, bias_value, bias_std)
    return (bias, bias_value, bias_std, real(input_mean, "input_mean"), real(input_std, "input_std", minimum=0.0),
            integer(n_networks, "n_networks", minimum=1), check_seed(seed))


def bias_spec(bias, bias_value, bias_std):
    """``(kind, value, std)`` of the bias: zeros, a constant, or N(0, std^2) per unit."""
    if isinstance(bias, numbers.Real) and not isinstance(bias, bool):
        bias, bias_value = "constant", bias
    if bias not in ("zeros", "constant", "normal"):
        raise InitArgumentError(f"bias must be 'zeros', 'constant' (with bias_value) or 'normal' "
                                f"(with bias_std), got {bias!r}")
    bias_value = real(bias_value, "bias_value")
    bias_std = real(bias_std, "bias_std", minimum=0.0)
    if bias == "zeros":
        return bias, 0.0, 0.0
    if bias == "constant":
        return bias, bias_value, 0.0
    return bias, 0.0, bias_std


def check_hist_layers(histograms, layers, L):
    """0-based layers with histograms (``layers`` are numbered 1..L)."""
    if not histograms:
        if layers is not None:
            raise InitArgumentError("hist_layers needs histograms=True")
        return ()
    if layers is None:
        return tuple(range(L))
    out = []
    for h in layers:
        h = integer(h, "hist_layers entry", minimum=1)
        if h > L:
            raise InitArgumentError(f"hist_layers: layer {h} > depth {L} (layers are numbered 1..L)")
        out.append(h - 1)
    return tuple(out)


def check_array(a, name, shape):
    """``a`` as an array of ``shape`` with real, finite entries (complex and NaN/inf refused)."""
    arr = np.asarray(a)
    if arr.shape != shape:
        raise InitArgumentError(f"{name} must have shape {shape}, got {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
            or arr.dtype == np.bool_):
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        raise InitArgumentError(f"{name} must be finite (it holds NaN or inf)")
    return arr


def check_explicit(weights, biases, x, ws, B, n_networks):
    """The explicit ``weights``/``biases``/``x`` of one network, checked (or None)."""
    if weights is None and biases is None and x is None:
        return None
    if n_networks != 1:
        raise InitArgumentError("weights/biases/x describe one network: use n_networks=1")
    L = len(ws) - 1
    if weights is not None:
        if len(weights) != L:
            raise InitArgumentError(f"weights must be a list of {L} matrices, got {len(weights)}")
        weights = [check_array(W, f"weights[{i}]", (ws[i + 1], ws[i])) for i, W in enumerate(weights)]
    if biases is not None:
        if len(biases) != L:
            raise InitArgumentError(f"biases must be a list of {L} vectors, got {len(biases)}")
        biases = [check_array(b, f"biases[{i}]", (ws[i + 1],)) for i, b in enumerate(biases)]
    if x is not None:
        x = check_array(x, "x", (B, ws[0]))
    return (weights, biases, x)


def check_memory(nbytes, what):
    """Refuse a simulation whose estimated peak memory ``nbytes`` exceeds the available memory.

    ``what`` describes the sizes for the message. Runs before any array is allocated.
    """
    avail = available_memory()
    if avail is not None and nbytes > avail:
        raise MemoryError(f"{what} needs about {nbytes / 2**30:.3g} GiB but {avail / 2**30:.3g} GiB is "
                          f"available: reduce batch, width or depth (memory grows with "
                          f"batch x width x depth), use dtype='float32', or run fewer at once")


def check_stats(stats, valid, backward_names=(), backward=True):
    """The selected statistic names of ``stats`` (a name or a sequence of names), as a tuple in the
    order of ``valid``; ``None`` selects every one (the backward ones only with ``backward``).

    An unknown name, an empty selection, or a backward statistic with ``backward=False`` raises
    :class:`~fastinit.InitArgumentError` listing the valid names.
    """
    if stats is None:
        return tuple(n for n in valid if backward or n not in backward_names)
    if isinstance(stats, str):
        stats = [stats]
    elif not isinstance(stats, Iterable):
        raise TypeError(f"stats must be a statistic name or a sequence of names, got {type(stats).__name__}")
    chosen = set()
    for s in stats:
        if not isinstance(s, str):
            raise TypeError(f"stats entries must be statistic names (str), got {s!r}")
        if s not in valid:
            raise InitArgumentError(f"stats: unknown statistic {s!r}; valid names: {', '.join(valid)}")
        if not backward and s in backward_names:
            raise InitArgumentError(f"stats: {s!r} is a gradient statistic, but backward=False")
        chosen.add(s)
    if not chosen:
        raise InitArgumentError(f"stats must select at least one statistic; valid names: {', '.join(valid)}")
    return tuple(n for n in valid if n in chosen)
