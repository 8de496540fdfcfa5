"""Fills of NumPy arrays from the Philox stream: the layer every initializer uses.

This layer trusts its arguments: the public functions (:mod:`fastinit.init` and
:func:`raw_uint32` here) validate every argument, including the ones that depend on the target's
dtype and size, before they take a stream. What this layer still checks is what keeps the C
boundary memory-safe: the target is a writable NumPy array of a supported floating dtype
(:func:`check_array`), since the kernels write ``size * itemsize`` bytes through its pointer.

Each fill maps the array's dtype to a kernel and handles any memory layout: a C-contiguous
array is filled directly; any other writable layout is filled through bounded C-contiguous
pieces of its C-order (logical) element sequence, so the values are the same as on a
contiguous array of the same shape.
"""

from __future__ import annotations

import functools
import math
import numbers

import numpy as np

from . import _checks
from . import _numba as nb
from ._checks import InitArgumentError
from ._lib import OUT_BF16, OUT_F16, OUT_F32, lib

__all__ = ["raw_uint32", "fill_uniform", "fill_normal", "fill_trunc_normal", "fill_constant",
           "check_array", "interval", "float_max", "per_block", "normal_reach", "float_dtypes",
           "is_float_dtype", "bfloat16_dtype"]

_PIECE_BYTES = 8 << 20  # bound of the temporary used for non-contiguous layouts


_NATIVE = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))


def bfloat16_dtype():
    """``ml_dtypes.bfloat16`` as a NumPy dtype, or None without ml_dtypes.

    Imported on first use, not with fastinit (ml_dtypes' import costs about half a second): a
    bfloat16 array can only exist once ml_dtypes is loaded, so the checks below find it loaded.
    """
    try:
        import ml_dtypes  # lazy: optional dependency with a slow import
    except ImportError:  # pragma: no cover - optional dependency
        return None
    return np.dtype(ml_dtypes.bfloat16)


def float_dtypes() -> tuple:
    """The float dtypes fastinit fills (bfloat16 when ml_dtypes is installed)."""
    bf16 = bfloat16_dtype()
    return _NATIVE + ((bf16,) if bf16 is not None else ())


def is_float_dtype(dtype: np.dtype) -> bool:
    """True for float16, bfloat16, float32 and float64 (without importing ml_dtypes for the others)."""
    if dtype in _NATIVE:
        return True
    return dtype.name == "bfloat16" and dtype == bfloat16_dtype()


def check_array(out, name: str = "tensor", min_ndim: int = 0) -> np.ndarray:
    """Check that `out` is a writable NumPy array of a supported floating dtype."""
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{name} must be a numpy.ndarray (or a torch tensor via fastinit's API), "
                        f"got {type(out).__name__}")
    if not is_float_dtype(out.dtype):
        names = ", ".join(str(d) for d in float_dtypes())
        raise TypeError(f"{name} has dtype {out.dtype}; fastinit fills floating arrays only ({names})")
    if not out.flags.writeable:
        raise ValueError(f"{name} is read-only")
    if out.ndim < min_ndim:
        raise ValueError(f"{name} must have at least {min_ndim} dimensions, got {out.ndim}")
    return out


def per_block(dtype: np.dtype) -> int:
    """Elements per Philox block: 4 for the 32-bit family (one word each), 2 for float64."""
    return 2 if dtype == np.float64 else 4


# ---- dtype helpers -------------------------------------------------------------------------

def _family(dtype: np.dtype):
    """(32-bit family?, otype) of a float dtype."""
    if dtype == np.float64:
        return False, OUT_F32
    if dtype == np.float16:
        return True, OUT_F16
    if dtype == np.float32:
        return True, OUT_F32
    return True, OUT_BF16


_UINT = {2: np.uint16, 4: np.uint32, 8: np.uint64}


def _step(x, dtype: np.dtype, up: bool) -> float:
    """The neighbour of the dtype value x (exactly representable) toward +inf or -inf."""
    v = np.array(x, dtype=dtype)
    bits = int(v.view(_UINT[dtype.itemsize]))
    sign = 1 << (8 * dtype.itemsize - 1)
    if bits & ~sign == 0:  # +0 or -0
        bits = 1 if up else sign | 1
    elif (bits & sign == 0) == up:
        bits += 1
    else:
        bits -= 1
    return float(np.array(bits, dtype=_UINT[dtype.itemsize]).view(dtype))


def _ceil_to(x: float, dtype: np.dtype) -> float:
    """Smallest value of dtype >= x."""
    if math.isinf(x):
        return x
    t = float(np.array(x, dtype=np.float64).astype(dtype))
    return _step(t, dtype, True) if t < x else t


def _floor_to(x: float, dtype: np.dtype) -> float:
    """Largest value of dtype <= x."""
    if math.isinf(x):
        return x
    t = float(np.array(x, dtype=np.float64).astype(dtype))
    return _step(t, dtype, False) if t > x else t


@functools.lru_cache(maxsize=16)
def float_max(dtype: np.dtype) -> float:
    """The largest finite value of a float dtype (65504 for float16)."""
    return _step(math.inf, np.dtype(dtype), False)


def interval(dtype: np.dtype, a: float, b: float, closed: bool) -> tuple[float, float]:
    """(lo, hi): the extreme values of dtype inside [a, b] (closed) or [a, b) (open); lo > hi when
    there is none."""
    # the signs are part of the key: -0.0 == 0.0 for the cache, but not for the kernels' clamps
    return _interval_of(np.dtype(dtype), float(a), float(b), closed, math.copysign(1.0, a), math.copysign(1.0, b))


@functools.lru_cache(maxsize=1024)  # pure; a model's layers repeat the same bounds (kaiming, xavier)
def _interval_of(dtype: np.dtype, a: float, b: float, closed: bool, sign_a: float, sign_b: float):
    lo, hi = _ceil_to(a, dtype), _floor_to(b, dtype)
    if not closed and hi >= b:
        hi = _step(hi, dtype, False)
    return lo, hi


def _as_f32(x: float, name: str) -> float:
    with np.errstate(over="ignore"):
        y = float(np.float32(x))
    if math.isinf(y) and not math.isinf(x):
        raise InitArgumentError(f"{name}={x} overflows float32, the working precision of this dtype")
    return y


# ---- layouts -------------------------------------------------------------------------------

def _pieces(out: np.ndarray, start: int = 0):
    """Yield (view, logical_start) covering `out` with views whose C-order copies are small."""
    if out.flags.c_contiguous or out.ndim == 0:
        yield out, start
        return
    row = out[0].size if out.shape[0] else 0
    rows_per_piece = max(1, _PIECE_BYTES // max(1, row * out.itemsize))
    if row * out.itemsize > _PIECE_BYTES and out.ndim > 1:
        for i in range(out.shape[0]):
            yield from _pieces(out[i], start + i * row)
        return
    for i in range(0, out.shape[0], rows_per_piece):
        yield out[i : i + rows_per_piece], start + i * row


def _run(out: np.ndarray, offset: int, kind: int, otype: int, params) -> np.ndarray:
    """Fill `out` (validated) with kernel `kind`: element i uses logical index offset + i, or, when
    `offset` is a block's placement (fastinit._block.Placement), the position that places it."""
    if not isinstance(offset, numbers.Integral):
        return offset.fill(out, kind, otype, params)
    seed, stream = params[0], params[1]
    epb = nb.ELEMENTS_PER_BLOCK[kind]
    for view, start in _pieces(out):
        target = view if view.flags.c_contiguous else np.empty(view.shape, view.dtype)
        if target.size:
            e = offset + start
            nb.fill_kernel(kind, seed, stream, e // epb, e % epb, target.size, target.ctypes.data,
                           target.itemsize, otype, params[2:])
        if target is not view:
            view[...] = target
    return out


# ---- fills -----------------------------------------------------------------------------------

def _interval(out, a, b, seed, stream, offset, what: str, closed: bool):
    """The shared set-up of the bounded fills: None when a == b (a constant fill), else
    (seed, stream, is32, otype, offset, lo, hi) with lo/hi from :func:`interval`. Trusts its
    arguments (``what`` is kept for the callers' signature)."""
    if a == b:
        return None
    is32, otype = _family(out.dtype)
    lo, hi = interval(out.dtype, a, b, closed)
    return seed, stream, is32, otype, offset, lo, hi


def raw_uint32(count: int, seed: int, stream: int = 0, offset: int = 0) -> np.ndarray:
    r"""The raw Philox4x32-10 words of one stream, as a ``uint32`` array.

    Word :math:`j` (counting from ``offset``) is word :math:`j \bmod 4` of

    .. math::
        \mathrm{Philox4x32\text{-}10}(\text{key}=(s_{lo}, s_{hi}),\
        \text{ctr}=(b_{lo}, b_{hi}, t_{lo}, t_{hi})), \qquad b = \lfloor j / 4 \rfloor,

    with :math:`s` the seed and :math:`t` the stream, split into 32-bit halves. Stream 0 from
    offset 0 is the plain Random123 sequence, so every Random123 known-answer vector is reachable:
    ``ctr = (c0, c1, c2, c3)`` and ``key = (k0, k1)`` is
    ``raw_uint32(4, k0 | k1 << 32, stream=c2 | c3 << 32, offset=4 * (c0 | c1 << 32))``.

    Parameters
    ----------
    count : int
        Number of words.
    seed : int
        64-bit key (negative values are taken modulo :math:`2^{64}`).
    stream : int, optional
        64-bit stream number (the upper half of the counter).
    offset : int, optional
        Index of the first word; any slice of a stream can be produced on its own.

    Returns
    -------
    numpy.ndarray
        ``uint32`` array of length ``count``.

    Examples
    --------
    >>> import fastinit
    >>> [hex(w) for w in fastinit.raw_uint32(4, seed=0)]   # Random123 KAT: all-zero key and counter
    ['0x6627e8d5', '0xe169c58d', '0xbc57ac4c', '0x9b00dbd8']
    >>> bool((fastinit.raw_uint32(8, 7)[5:] == fastinit.raw_uint32(3, 7, offset=5)).all())
    True
    """
    count = _checks.integer(count, "count", minimum=0)
    seed, stream = _checks.seed(seed), _checks.seed(stream, "stream")
    offset = _checks.offset(offset, count, 4)
    out = np.empty(count, np.uint32)
    if count:
        nb.fill_kernel(nb.RAW, seed, stream, offset // 4, offset % 4, out.size, out.ctypes.data, 4, 0, ())
    return out


def fill_uniform(out: np.ndarray, a: float, b: float, seed: int, stream: int, offset: int = 0,
                 name: str = "tensor") -> np.ndarray:
    r"""Fill `out` in place with :math:`U[a, b)` values of stream (seed, stream).

    float32, float16 and bfloat16 share one set of values: :math:`u = \lfloor w / 2^8 \rfloor
    2^{-24}` from word :math:`w` of the element, :math:`v = a + (b - a) u` in float32, rounded to
    nearest even for the 16-bit types. float64 uses 53 bits from two words. ``b`` is excluded in
    every dtype: a value that would round to ``b`` becomes the largest representable value below
    ``b`` (and likewise nothing falls below ``a``). ``a == b`` fills ``a``, as torch does.

    Trusts its arguments (validated by :func:`fastinit.uniform_`): finite ``a <= b`` inside the
    dtype's range with ``b - a`` finite in the working precision, a dtype value in ``[a, b)``,
    seed and stream in :math:`[0, 2^{64})`, the elements within one stream.
    """
    check_array(out, name)
    prepared = _interval(out, a, b, seed, stream, offset, "uniform", closed=False)
    if prepared is None:
        return fill_constant(out, a, name)
    seed, stream, is32, otype, offset, lo, hi = prepared
    if is32:
        return _run(out, offset, nb.UNI32, otype, (seed, stream, float(np.float32(a)), float(np.float32(b)), lo, hi))
    return _run(out, offset, nb.UNI64, otype, (seed, stream, a, b, lo, hi))


# The largest |z| of the normal kernels: Phi^-1(1 - 2^-33) = 6.338 for the 32-bit family (q >= 2^-32)
# and sqrt(-2 ln 2^-54) = sqrt(108 ln 2) = 8.652 for float64 (u1 >= 2^-54), each raised by 2^-20
# relative to cover the polynomial's error (2.2 x 2^-24) and the final rounding.
NORMAL_REACH32 = 6.3379577545537895 * (1 + 2.0**-20)
NORMAL_REACH64 = math.sqrt(108 * math.log(2)) * (1 + 2.0**-20)


def normal_reach(dtype: np.dtype) -> float:
    """The largest |z| the normal kernel of `dtype` produces: values lie in mean +- reach * std."""
    return NORMAL_REACH64 if dtype == np.float64 else NORMAL_REACH32


def fill_normal(out: np.ndarray, mean: float, std: float, seed: int, stream: int, offset: int = 0,
                name: str = "tensor") -> np.ndarray:
    r"""Fill `out` in place with :math:`\mathcal{N}(\text{mean}, \text{std}^2)` values.

    32-bit family: the inverse CDF, one word per element (element e uses word e % 4 of block
    e // 4). For the word :math:`w`, the sign is bit 0 and
    :math:`q = (w \,|\, 1)\, 2^{-32} = P(|Z| > |z|)`; with :math:`\ell` the octave of
    :math:`q` (:math:`2^{-\ell-1} \le q < 2^{-\ell}`), :math:`|z| = \Phi^{-1}(1 - q/2)` is a
    degree-7 polynomial in the position :math:`t \in [-\tfrac12, \tfrac12)` of :math:`q` in its
    octave (23 bits), with the octave's coefficients from a 32-entry table
    (``kernels/fit_normal_octaves.py`` fits them and prints the error: at most
    :math:`2.2 \cdot 2^{-24} \max(|z|, 1)` in float32 with fused multiply-adds, no log or
    trigonometric function); the value is ``fma(std, z, mean)`` in float32 (16-bit types are
    those values rounded). The largest
    :math:`|z|` is :math:`\Phi^{-1}(1 - 2^{-33}) = 6.34`. float64: Box-Muller, one block per pair, 53-bit
    :math:`u_1` and :math:`\theta`, :math:`r = \sqrt{-2 \ln u_1}`, elements
    :math:`r\cos\theta, r\sin\theta`; the largest :math:`|z|` is :math:`\sqrt{108 \ln 2} = 8.65`.
    ``std == 0`` fills ``mean``.

    Trusts its arguments (validated by :func:`fastinit.normal_`): finite ``std >= 0`` and
    ``|mean| + reach * std`` inside the dtype's range, seed and stream in :math:`[0, 2^{64})`,
    the elements within one stream.
    """
    check_array(out, name)
    if std == 0:
        return fill_constant(out, mean, name)
    is32, otype = _family(out.dtype)
    if is32:
        return _run(out, offset, nb.NRM32, otype, (seed, stream, float(np.float32(mean)), float(np.float32(std))))
    return _run(out, offset, nb.NRM64, otype, (seed, stream, mean, std))


# Below this standardised upper bound the lower tail is sampled in log space (mode 1).
_LOG_SPACE_BELOW = -5.0
# Intervals whose nearer bound lies at least this many std from the mean take mode 5 (the offset
# from the bound, kernels/fi_math.h): the asymptotic series of Mills's ratio is accurate there
# to 9e-20, and mode 1 keeps AS241 within its range (|x| < ~37: x stays below 30 + 37.4/30).
_FAR_FROM = 30.0
# Intervals narrower than this many std times max(1, |alpha|) take mode 6 (the position in the
# interval). Wider ones keep the quantile modes, whose rounding of p then moves a value by at
# most ~2^-34 of the width (mode 0: 2^-53 Phi/phi <= 1.3 x 2^-53; mode 1: 2^-54 |alpha|).
_NARROW_BELOW = 2.0**-20
# The float32 kernel's quantile polynomials cover w = -ln((1 + y)(1 - y)) up to these bounds
# (kernels/fi_math.h): the central one alone, and central + tail.
_W_CENTRAL, _W_TAIL = 6.25, 25.0
_U_MIN = 0.5 * 2.0**-32  # the smallest uniform of the kernels, u = (k + 1/2) 2^-32
# The per-call quantile table (mode 4, kernels/trunc_table.c): FI_TT_SIZE floats of fastinit.h,
# used when the builder's check finds its float32 evaluation within _TABLE_MAX_ERR x 2^-24
# max(|x|, 1) and the interval lies within |x| <= _TABLE_MAX_X (Phi's tails are accurate there).
_TABLE_SIZE = (8 + 1) * 32
_TABLE_MAX_ERR = 2.5
_TABLE_MAX_X = 8.0
# (-1)^n (2n - 1)!!, n = 0 .. 8: the asymptotic series of x R(x) (R = Mills's ratio) that mode 5 uses.
_MILLS_SERIES = (1.0, -1.0, 3.0, -15.0, 105.0, -945.0, 10395.0, -135135.0, 2027025.0)


def _special():
    """scipy.special, imported on the first truncated normal (it is ~0.15 s of `import fastinit`)."""
    from scipy import special

    return special


@functools.lru_cache(maxsize=256)
def quantile_table(c0: float, c1: float, c2: float, mean: float = 0.0, std: float = 1.0):
    """The read-only float32 table of mode 4 (values mean + std x) for c0 = Phi(alpha), c1 = the
    mass, c2 = 1 - Phi(beta), or None when its measured error exceeds _TABLE_MAX_ERR x 2^-24."""
    buf = np.empty(_TABLE_SIZE + 16, np.float32)
    start = (-buf.ctypes.data % 64) // 4  # 64-byte aligned: each lookup loads whole cache lines
    table = buf[start : start + _TABLE_SIZE]
    err = lib.fi_trunc_table(c0, c1, c2, mean, std, table.ctypes.data)
    if not err <= _TABLE_MAX_ERR:
        return None
    table.flags.writeable = False
    return table


def _float32_mode(alpha: float, beta: float, mean: float, std: float):
    """(mode, Phi(alpha), Phi(beta) - Phi(alpha), 1 - Phi(beta)) for the float32 kernel, or None.

    Mode 4 (the quantile table) when :func:`quantile_table` accepts the interval; the table is
    built for the float32 `mean` and `std` the fill uses, so the fill finds it in the cache. Otherwise
    w = -ln((1 + y)(1 - y)) is largest at the ends of the uniform's range (the product is a
    concave quadratic in u), so its bound over a call is exact; mode 2 needs w <= 6.25 (the
    central polynomial), mode 3 w <= 25 (both), otherwise the double-precision modes run.
    """
    special = _special()
    p_lo, q_hi = float(special.ndtr(alpha)), float(special.ndtr(-beta))
    if beta <= 0:
        mass = float(special.ndtr(beta)) - p_lo
    elif alpha >= 0:
        mass = float(special.ndtr(-alpha)) - q_hi
    else:
        mass = 1.0 - p_lo - q_hi
    if not mass > 0:
        return None
    if max(abs(alpha), abs(beta)) <= _TABLE_MAX_X:
        with np.errstate(over="ignore"):  # an overflowing mean is refused by the fill itself
            mean32, std32 = float(np.float32(mean)), float(np.float32(std))
        if quantile_table(p_lo, mass, q_hi, mean32, std32) is not None:
            return 4, p_lo, mass, q_hi
    t_ends = [(2 * p_lo + 2 * u * mass) * (2 * q_hi + 2 * (1 - u) * mass) for u in (_U_MIN, 1 - _U_MIN)]
    t_min = min(t_ends)
    if not t_min > 0:
        return None
    w_max = -math.log(t_min)
    if w_max <= _W_CENTRAL * (1 - 1e-6):
        return 2, p_lo, mass, q_hi
    if w_max <= _W_TAIL * (1 - 1e-6):
        return 3, p_lo, mass, q_hi
    return None


def _far_tail_h(alpha: float, t: float) -> float:
    r"""h(t) = -ln(S(alpha + t) / S(alpha)), S the normal survival function, for alpha >= 30.

    The formula of the mode-5 kernel (``fi_trunc_far`` in kernels/fi_math.h), here for the
    per-call constant rho = exp(-h(d)): :math:`t(\alpha + t/2) + \ln(1 + t/\alpha) +
    \ln(g(\alpha)/g(x))`, :math:`g(x) = x R(x)` by its asymptotic series, the last term from the
    divided difference of g so that h keeps its relative accuracy for any t >= 0 (inf included).
    """
    if math.isinf(t):
        return math.inf
    ia = 1.0 / alpha
    ia2 = ia * ia
    x = alpha + t
    ix = 1.0 / x
    zx = ix * ix
    p, dd = _MILLS_SERIES[-1], 0.0
    for c in _MILLS_SERIES[-2::-1]:
        dd = ia2 * dd + p
        p = c + zx * p
    dz = ((t * ix) * ia) * (ia + ix)
    return t * (alpha + 0.5 * t) + math.log1p(t * ia) + math.log1p((dz * dd) / p)


def _extreme_params(mean: float, std: float, a: float, b: float):
    """(mode, c0, c1, c2, loc, scale) of modes 5 and 6 when [a, b] is far in a tail or tiny against
    std, else None. The interval is mirrored so that its bound nearer the mean is the lower one
    (loc, alpha = c0); the value is loc + scale x with x the kernel's offset or position."""
    # a - mean overflows only for opposite signs, and then a / std - mean / std cannot be inf - inf
    alpha = (a - mean) / std if math.isfinite(a - mean) else a / std - mean / std
    beta = (b - mean) / std if math.isfinite(b - mean) else b / std - mean / std
    if alpha + beta >= 0:
        near, loc, sign = alpha, a, 1.0
    elif alpha + beta < 0:
        near, loc, sign = -beta, b, -1.0
    else:  # alpha = -inf, beta = inf
        return None
    width = b - a
    if math.isinf(a) or math.isinf(b):
        d = math.inf
    else:
        d = width / std if math.isfinite(width) else b / std - a / std
    if near >= _FAR_FROM:
        near = min(near, 1e300)  # (a - mean) / std beyond the doubles: the values are a within rounding
        h_d = _far_tail_h(near, d)
        return 5, near, math.exp(-h_d), -math.expm1(-h_d), loc, sign * std
    if d <= _NARROW_BELOW * max(1.0, abs(near)):
        return 6, near, d, 0.0, loc, sign * width
    return None


def trunc_params(mean: float, std: float, a: float, b: float, single: bool = False):
    r"""Per-call constants of the inverse-CDF truncated-normal kernel: (mode, c0, c1, c2, loc, scale).

    With :math:`\alpha = (a - \text{mean})/\text{std}`, :math:`\beta = (b - \text{mean})/\text{std}`:

    * Far tails and tiny intervals first (any output type), where :math:`\Phi^{-1}` of a
      probability cannot give the law: the interval is mirrored so that the bound nearer the mean,
      ``loc``, is its lower end, :math:`\alpha \ge 0` its standardised distance, and
      :math:`d = (b - a)/\text{std}` its width. Mode 5 when :math:`\alpha \ge 30`: the offset
      :math:`t = x - \alpha` solves :math:`h(t) = -\ln(1 - u(1 - \rho))` with
      :math:`h(t) = -\ln(S(\alpha + t)/S(\alpha))` (:func:`_far_tail_h`; close to an exponential
      law of rate :math:`\alpha`), :math:`c_0 = \alpha`, :math:`c_1 = \rho = e^{-h(d)}`,
      :math:`c_2 = 1 - \rho`, value ``loc + scale * t`` with ``scale = +-std``. Mode 6 when
      :math:`d \le 2^{-20}\max(1, |\alpha|)`: the position :math:`s \in [0, 1]` in the interval
      solves :math:`K(ds) = u K(d)`, :math:`K(t) = \int_0^t e^{-\alpha v - v^2/2} dv` (a power
      series; close to uniform), :math:`c_0 = \alpha`, :math:`c_1 = d`, value
      ``loc + scale * s`` with ``scale = +-(b - a)``. Both are double precision
      (kernels/fi_math.h), a few ulps of t or s.
    * float32 outputs (``single``), mode 4 when the interval's quantile function is smooth enough
      for a per-call table (:func:`quantile_table`: 32 equal segments of the uniform, a degree-8
      polynomial in each, accepted when its float32 evaluation is within 2.5 x 2^-24 max(|x|, 1)
      at 65 points per segment; for example every [-2, 2]-sigma interval and narrower, and narrow
      intervals anywhere within |x| <= 8). The kernel then needs no logarithm: one Horner chain
      of in-register table lookups per element. Same constants c0, c1, c2 as below.
    * Otherwise for float32 outputs, modes 2 and 3 when every quantile of the call stays within
      :math:`|x| \lesssim 6.9` and the interval is not a far-tail sliver: :math:`c_0 = \Phi(\alpha)`,
      :math:`c_1 = \Phi(\beta) - \Phi(\alpha)`, :math:`c_2 = 1 - \Phi(\beta)`, each computed
      without cancellation; the kernel works in float32 (see ``kernels/fill_impl.h``).
    * Otherwise, in double precision, the interval is mirrored (:math:`c_2` = sign = -1) when its
      mass lies mostly above the mean, so the quantile is evaluated on the accurate lower side.
      Mode 0: :math:`p = c_0 + u c_1` with :math:`c_0 = \Phi(\alpha)`,
      :math:`c_1 = \Phi(\beta) - \Phi(\alpha)`. Mode 1 (upper bound below -5):
      :math:`\ln p = c_0 + \ln(c_1 + u(1 - c_1))` with :math:`c_0 = \ln\Phi(\beta)`,
      :math:`c_1 = \Phi(\alpha)/\Phi(\beta)`.

    In modes 0 to 4 ``loc, scale = mean, std`` and the value is ``loc + scale * x``.
    """
    extreme = _extreme_params(mean, std, a, b)
    if extreme is not None:
        return extreme
    alpha, beta = (a - mean) / std, (b - mean) / std
    if single:
        fast = _float32_mode(alpha, beta, mean, std)
        if fast is not None:
            return (*fast, mean, std)
    special = _special()
    sign = 1.0
    if alpha + beta > 0:
        alpha, beta, sign = -beta, -alpha, -1.0
    if beta < _LOG_SPACE_BELOW:
        lp_hi, lp_lo = float(special.log_ndtr(beta)), float(special.log_ndtr(alpha))
        return 1, lp_hi, math.exp(lp_lo - lp_hi), sign, mean, std
    p_lo, p_hi = float(special.ndtr(alpha)), float(special.ndtr(beta))
    return 0, p_lo, p_hi - p_lo, sign, mean, std


def fill_trunc_normal(out: np.ndarray, mean: float, std: float, a: float, b: float, seed: int, stream: int,
                      offset: int = 0, name: str = "tensor") -> np.ndarray:
    r"""Fill `out` in place with :math:`\mathcal{N}(\text{mean}, \text{std}^2)` truncated to :math:`[a, b]`.

    ``a`` and ``b`` are absolute values (torch's meaning). Sampling is by the inverse CDF with one
    uniform per element, so it costs the same however little mass :math:`[a, b]` holds, keeps
    the element-to-counter map fixed, and every value lies in :math:`[a, b]` (the result is
    clamped to the nearest representable values inside, which moves values by rounding error
    only). For ordinary intervals :math:`x = \text{mean} + \text{std}\,\Phi^{-1}(\Phi(\alpha) +
    u(\Phi(\beta) - \Phi(\alpha)))` (float32 arithmetic for float32-family outputs when the
    interval allows it; double otherwise), exact in distribution up to a few float32 ulps of the
    quantile. An interval whose nearer bound lies 30 std or more from the mean, or that is
    narrower than :math:`2^{-20}` std (times the bound's distance in std when above 1), is
    inverted in the offset from that bound instead, in double precision, so the law stays right
    at any depth of the tail and for any ratio of std to width. See :func:`trunc_params`.
    ``a == b`` fills ``a``.
    """
    check_array(out, name)
    prepared = _interval(out, a, b, seed, stream, offset, "trunc_normal", closed=True)
    if prepared is None:
        return fill_constant(out, a, name)
    seed, stream, is32, otype, offset, lo, hi = prepared
    mode, c0, c1, c2, loc, scale = trunc_params(mean, std, a, b, single=is32)
    if mode == 4:
        table = quantile_table(c0, c1, c2, _as_f32(mean, "mean"), _as_f32(std, "std"))
        assert table.ctypes.data < 2**53  # passed to the driver in a float64
        return _run(out, offset, nb.TRT32, otype, (seed, stream, table.ctypes.data, lo, hi))
    kind = nb.TRN32 if is32 else nb.TRN64
    return _run(out, offset, kind, otype, (seed, stream, mode, c0, c1, c2, loc, scale, lo, hi))


def fill_constant(out: np.ndarray, value: float, name: str = "tensor") -> np.ndarray:
    """Fill `out` in place with `value` (rounded to its dtype), from all threads.

    Trusts `value` (validated by :func:`fastinit.constant_`): not NaN, and finite values inside
    the dtype's range.
    """
    check_array(out, name)
    bits = int(np.array(value, dtype=np.float64).astype(out.dtype).view(_UINT[out.itemsize]))
    for view, _ in _pieces(out):
        if view.flags.c_contiguous:
            if view.size:
                nb.fill_const(view.size, view.ctypes.data, view.itemsize, bits)
        else:
            view[...] = np.array(bits, _UINT[out.itemsize]).view(out.dtype)
    return out
