"""Numba kernels and BLAS drivers behind :mod:`fastinit.sim`.

Private module. The public wrapper (:mod:`fastinit.sim`) validates every argument; the
functions here trust their inputs.

Design
------
* Matrix products go through BLAS: ``numpy.matmul(..., out=buffer)`` outside Numba, so the
  product lands in a preallocated buffer and OpenBLAS runs its own threads.
* Everything elementwise is one fused ``@njit(parallel=True)`` pass per layer and direction:
  bias add, activation, derivative, and every statistic of the layer. Statistics are
  accumulated in float64 per row chunk (one chunk per ``prange`` iteration) and reduced after
  the loop, so results do not depend on the thread count.
* The activation is a Numba function ``phi(x, p) -> float``: for the registry's activations
  the inlinable, vectorisable versions in :data:`FAST_ACTIVATIONS` (polynomial ``exp`` and
  ``expm1``, Cody's ``erfc``; libm's scalar calls were 5-10x slower for tanh, SELU and GELU),
  otherwise ``phi_nb``/``dphi_nb`` of :mod:`fastinit._activations` or a wrapped user ``@njit``
  function. :func:`layer_kernels` compiles the fused passes once per activation, as closures
  over ``phi``/``phi'`` so that they are inlined (about 2-5 s per activation); a single kernel
  dispatching on an integer kind was 5x slower for ReLU.
* Memory: the forward pass keeps one pre-activation array per layer in the simulation dtype
  (float32 by default), plus the post-activation stream for residual nets, which cannot be
  rebuilt from the pre-activations. Backward rebuilds ``phi(z)`` and ``phi'(z)`` from the stored
  ``z`` in the same fused pass that forms ``delta``. Working buffers are a few ``B x n``
  arrays; there is no float64 copy of any layer.
"""

from __future__ import annotations

import contextlib
import math
import os

import numba
import numpy as np
from llvmlite import ir as llvm_ir
from numba import njit, prange, types
from numba.extending import intrinsic

from fastinit import _blas
from fastinit._activations import SELU_ALPHA, SELU_LAMBDA

__all__ = [
    "layer_kernels",
    "FAST_ACTIVATIONS",
    "sumsq",
    "row_chunks",
    "mlp_pass",
    "rnn_pass",
    "N_POOLED",
]

# Numba's on-disk cache is opt-in (STYLE.md section 6). Kernels here take first-class function
# arguments (the activation), which Numba cannot cache, so caching only applies to `sumsq`.
_CACHE = os.environ.get("FASTINIT_NUMBA_CACHE", "0") not in ("", "0", "false", "False")

# Layout of the pooled accumulator row returned by `forward_layer`.


# ------------------------------------------------------------------------------------------
# BLAS threads. OpenBLAS worker threads spin after each call, and Numba's workers spin after
# each parallel region; alternating small GEMMs and small fused kernels on the same cores then
# makes each side wait for the other's spinning threads (measured: 100x slower for 512 x 128
# layers on 2 busy cores). Small GEMMs therefore run single-threaded in BLAS (the fused
# kernels still use every core); large ones keep all BLAS threads.
# ------------------------------------------------------------------------------------------
SMALL_GEMM_FLOPS = 2 ** 28  # ~268 MFLOP: below this a GEMM takes < ~5 ms on one core


def blas_threads_for(gemm_flops):
    """Context: one BLAS thread (:func:`fastinit._blas.single_threaded_blas`) if ``gemm_flops``
    (per GEMM) is small, else the BLAS libraries' own setting."""
    if gemm_flops >= SMALL_GEMM_FLOPS:
        return contextlib.nullcontext()
    return _blas.single_threaded_blas()


def row_chunks(batch):
    """Number of row chunks (prange iterations) for a batch: a few per thread, at least 1.

    Chunks own their float64 accumulators; 64 chunks keep every thread busy on machines with up
    to ~16 cores without making the per-unit accumulators (chunks x width) large.
    """
    return max(1, min(int(batch), 64))


# Layout of the pooled statistics returned by `forward_layer`.
(_P_ZMEAN, _P_ZVAR, _P_ZM2, _P_AMEAN, _P_AVAR, _P_AM2, _P_UNITVAR, _P_SPREAD, _P_INACT,
 _P_DEAD, _P_SAT) = range(11)
N_POOLED = 11


# Reassociation lets LLVM vectorise the float64 partial sums (2.5x on the ReLU forward pass);
# no 'nnan'/'ninf', so exploding runs still propagate inf and NaN faithfully.
_FAST = {"reassoc", "nsz"}


# ------------------------------------------------------------------------------------------
# Vectorisable activations. libm's tanh, exp, expm1 and erfc are opaque scalar calls (15-20 ns
# each), and they were most of the simulator's elementwise time. The versions below are
# branch-free polynomials (every branch is computed and the right value selected), written to
# be inlined into the fused loops, which LLVM then vectorises (AVX-512: 8 doubles per
# instruction). Accuracy: a few ulp, checked against NumPy/SciPy in tests/test_sim.py.
# ------------------------------------------------------------------------------------------
_INLINE = dict(inline="always", error_model="numpy")


@intrinsic
def _f64_from_bits(typingctx, bits):
    """The float64 whose IEEE-754 bit pattern is the int64 ``bits`` (an LLVM bitcast)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], llvm_ir.DoubleType())
    return types.float64(types.int64), codegen


_LOG2E = 1.4426950408889634
# ln 2 split in two (Cody & Waite, fdlibm's constants): the low 32 bits of _LN2_HI are zero, so
# k * _LN2_HI is exact for every |k| <= 1024 used here and x - k ln 2 loses nothing to cancellation
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_EXP_HI = 709.78  # exp overflows to inf above log(DBL_MAX) = 709.7827
_EXP_LO = -708.0  # below this exp(x) < 3.3e-308 is subnormal; returned as 0 (absolute error < 3e-308)


@intrinsic
def _sub_ln2_multiple(typingctx, x, k):
    """``(x - k ln2_hi) - k ln2_lo`` in exactly this order.

    Emitted with an explicit (harmless) ``nsz`` flag: Numba's fastmath pass only adds its flags
    to floating-point instructions that have none, so the callers' ``reassoc`` cannot merge the
    two halves of ln 2 (that cost 8e-14 relative accuracy at x ~ 700).
    """
    def codegen(context, builder, signature, args):
        xv, kv = args
        hi = llvm_ir.Constant(llvm_ir.DoubleType(), _LN2_HI)
        lo = llvm_ir.Constant(llvm_ir.DoubleType(), _LN2_LO)
        t = builder.fsub(xv, builder.fmul(kv, hi, flags=("nsz",)), flags=("nsz",))
        return builder.fsub(t, builder.fmul(kv, lo, flags=("nsz",)), flags=("nsz",))
    return types.float64(types.float64, types.float64), codegen


@njit(**_INLINE)
def _taylor_exp_tail(r):
    """(e^r - 1 - r) / r^2 by Horner's rule on the Taylor coefficients 1/13! .. 1/2."""
    q = 1.0 / 6227020800.0
    q = q * r + 1.0 / 479001600.0
    q = q * r + 1.0 / 39916800.0
    q = q * r + 1.0 / 3628800.0
    q = q * r + 1.0 / 362880.0
    q = q * r + 1.0 / 40320.0
    q = q * r + 1.0 / 5040.0
    q = q * r + 1.0 / 720.0
    q = q * r + 1.0 / 120.0
    q = q * r + 1.0 / 24.0
    q = q * r + 1.0 / 6.0
    q = q * r + 0.5
    return q


@njit(**_INLINE)
def _exp(x):
    """exp(x): x = k ln2 + r, |r| <= ln2/2, e^r by its degree-13 Taylor polynomial (truncation
    error r^14/14! < 3e-18), times 2^k built from the exponent bits."""
    xc = x if x > _EXP_LO else _EXP_LO      # NaN -> _EXP_LO here; restored at the end
    xc = xc if xc < _EXP_HI else _EXP_HI
    kf = np.floor(xc * _LOG2E + 0.5)
    r = _sub_ln2_multiple(xc, kf)
    q = _taylor_exp_tail(r)
    q = q * r + 1.0
    q = q * r + 1.0
    # 2^k = 2 * 2^(k-1): k - 1 + 1023 stays in the normal exponent range for k in [-1021, 1024]
    y = q * _f64_from_bits((np.int64(kf) + 1022) << 52) * 2.0
    y = y if x > _EXP_LO else 0.0
    y = y if x <= _EXP_HI else np.inf
    return y if x == x else x


@njit(**_INLINE)
def _expm1(x):
    """exp(x) - 1 without cancellation: Taylor series for |x| <= ln2/2 (truncation error
    x^15/15! < 2e-19 relative), exp(x) - 1 beyond (where it is at least 0.29 in size)."""
    q = _taylor_exp_tail(x)
    small = (q * x) * x + x
    big = _exp(x) - 1.0
    return small if abs(x) <= 0.34657359027997264 else big


# W. J. Cody, "Rational Chebyshev approximations for the error function", Math. Comp. 23
# (1969) 631-638, as in his SPECFUN routine CALERF: erf on |y| <= 0.46875 (A/B), erfc * e^(y^2)
# on 0.46875..4 (C/D) and beyond 4 (P/Q, asymptotic). Relative error about 1e-16.
_CA = (3.16112374387056560e00, 1.13864154151050156e02, 3.77485237685302021e02,
       3.20937758913846947e03, 1.85777706184603153e-1)
_CB = (2.36012909523441209e01, 2.44024637934444173e02, 1.28261652607737228e03,
       2.84423683343917062e03)
_CC = (5.64188496988670089e-1, 8.88314979438837594e00, 6.61191906371416295e01,
       2.98635138197400131e02, 8.81952221241769090e02, 1.71204761263407058e03,
       2.05107837782607147e03, 1.23033935479799725e03, 2.15311535474403846e-8)
_CD = (1.57449261107098347e01, 1.17693950891312499e02, 5.37181101862009858e02,
       1.62138957456669019e03, 3.29079923573345963e03, 4.36261909014324716e03,
       3.43936767414372164e03, 1.23033935480374942e03)
_CP = (3.05326634961232344e-1, 3.60344899949804439e-1, 1.25781726111229246e-1,
       1.60837851487422766e-2, 6.58749161529837803e-4, 1.63153871373020978e-2)
_CQ = (2.56852019228982242e00, 1.87295284992346047e00, 5.27905102951428412e-1,
       6.05183413124413191e-2, 2.33520497626869185e-3)
_SQRPI = 5.6418958354775628695e-1  # 1/sqrt(pi)
_ERFC_ZERO = 26.543  # erfc(y) underflows to 0 beyond this


@njit(**_INLINE)
def _erfc_gauss(x):
    """``(erfc(x), exp(-x^2))`` by Cody's three rational approximations.

    All three are evaluated and one numerator/denominator pair selected, so there is a single
    division. ``exp(-x^2)`` (which the tails need anyway) is returned for GELU's derivative.
    """
    y = abs(x)
    t = y * y
    # |y| <= 0.46875: erfc = 1 - x R1(x^2) = (den - x num) / den
    num = _CA[4] * t
    den = t
    num = (num + _CA[0]) * t
    den = (den + _CB[0]) * t
    num = (num + _CA[1]) * t
    den = (den + _CB[1]) * t
    num = (num + _CA[2]) * t
    den = (den + _CB[2]) * t
    d1 = den + _CB[3]
    n1 = d1 - x * (num + _CA[3])
    # e^(-y^2) = e^(-s^2) e^(-(y-s)(y+s)) with s = y rounded down to 1/16: s^2 is exact
    s = np.floor(16.0 * y) / 16.0
    gauss = _exp(-s * s) * _exp(-(y - s) * (y + s))
    # 0.46875 < |y| <= 4: erfc(y) = e^(-y^2) R2(y)
    num = _CC[8] * y
    den = y
    num = (num + _CC[0]) * y
    den = (den + _CD[0]) * y
    num = (num + _CC[1]) * y
    den = (den + _CD[1]) * y
    num = (num + _CC[2]) * y
    den = (den + _CD[2]) * y
    num = (num + _CC[3]) * y
    den = (den + _CD[3]) * y
    num = (num + _CC[4]) * y
    den = (den + _CD[4]) * y
    num = (num + _CC[5]) * y
    den = (den + _CD[5]) * y
    num = (num + _CC[6]) * y
    den = (den + _CD[6]) * y
    n2 = gauss * (num + _CC[7])
    d2 = den + _CD[7]
    # |y| > 4: erfc(y) = e^(-y^2) (1/sqrt(pi) - u R3(u)) / y with u = 1/y^2
    u = 1.0 / t
    num = _CP[5] * u
    den = u
    num = (num + _CP[0]) * u
    den = (den + _CQ[0]) * u
    num = (num + _CP[1]) * u
    den = (den + _CQ[1]) * u
    num = (num + _CP[2]) * u
    den = (den + _CQ[2]) * u
    num = (num + _CP[3]) * u
    den = (den + _CQ[3]) * u
    d3 = den + _CQ[4]
    n3 = gauss * (_SQRPI * d3 - u * (num + _CP[4]))
    d3 = d3 * y
    central = y <= 0.46875
    n = n1 if central else (n2 if y <= 4.0 else n3)
    d = d1 if central else (d2 if y <= 4.0 else d3)
    q = n / d
    q = q if (central or y < _ERFC_ZERO) else 0.0
    q = q if (central or x >= 0.0) else 2.0 - q
    return (q if x == x else x), gauss


@njit(**_INLINE)
def _erfc(x):
    return _erfc_gauss(x)[0]


_INV_SQRT2 = 0.70710678118654752440  # Phi(x) = erfc(-x / sqrt 2) / 2
_INV_SQRT_2PI = 0.39894228040143267794  # standard normal density at 0


@njit(**_INLINE)
def _sigmoid2(x):
    """(sigmoid(x), 1 - sigmoid(x)), both without cancellation."""
    e = _exp(-abs(x))
    big = 1.0 / (1.0 + e)
    small = e / (1.0 + e)
    return (big, small) if x >= 0.0 else (small, big)


@njit(**_INLINE)
def _tanh(x, p):
    e = _expm1(-2.0 * abs(x))   # tanh|x| = -expm1(-2|x|) / (2 + expm1(-2|x|))
    return math.copysign(-e / (2.0 + e), x)


@njit(**_INLINE)
def _tanh_d(x, p):
    e = _exp(-2.0 * abs(x))   # 1 - tanh^2 = 4 E / (1 + E)^2, E = e^(-2|x|): no cancellation
    return 4.0 * e / ((1.0 + e) * (1.0 + e))


@njit(**_INLINE)
def _sig(x, p):
    return _sigmoid2(x)[0]


@njit(**_INLINE)
def _sig_d(x, p):
    s, c = _sigmoid2(x)
    return s * c


@njit(**_INLINE)
def _selu(x, p):
    neg = SELU_LAMBDA * SELU_ALPHA * _expm1(min(x, 0.0))
    return SELU_LAMBDA * x if x > 0.0 else neg


@njit(**_INLINE)
def _selu_d(x, p):
    neg = SELU_LAMBDA * SELU_ALPHA * _exp(min(x, 0.0))
    return SELU_LAMBDA if x > 0.0 else neg


@njit(**_INLINE)
def _gelu(x, p):
    return x * 0.5 * _erfc(-x * _INV_SQRT2)


@njit(**_INLINE)
def _gelu_d(x, p):
    # Phi(x) + x phi(x); phi(x) from the e^(-y^2), y = x / sqrt 2, that erfc computes anyway
    c, gauss = _erfc_gauss(-x * _INV_SQRT2)
    return 0.5 * c + x * _INV_SQRT_2PI * gauss


@njit(**_INLINE)
def _silu(x, p):
    return x * _sigmoid2(x)[0]


@njit(**_INLINE)
def _silu_d(x, p):
    s, c = _sigmoid2(x)
    return s * (1.0 + x * c)


@njit(**_INLINE)
def _linear(x, p):
    return x


@njit(**_INLINE)
def _linear_d(x, p):
    return 1.0


@njit(**_INLINE)
def _relu(x, p):
    return x if x > 0.0 else 0.0


@njit(**_INLINE)
def _relu_d(x, p):
    return 1.0 if x > 0.0 else 0.0


@njit(**_INLINE)
def _leaky(x, p):
    return x if x > 0.0 else p * x


@njit(**_INLINE)
def _leaky_d(x, p):
    return 1.0 if x > 0.0 else p


#: Registry name -> (phi, phi') of the inlinable versions (softplus keeps the libm version of
#: :mod:`fastinit._activations`). Same conventions: relu'(0) = 0, leaky_relu'(0) = slope.
FAST_ACTIVATIONS = {
    "linear": (_linear, _linear_d), "relu": (_relu, _relu_d), "leaky_relu": (_leaky, _leaky_d),
    "tanh": (_tanh, _tanh_d), "sigmoid": (_sig, _sig_d), "selu": (_selu, _selu_d),
    "gelu": (_gelu, _gelu_d), "silu": (_silu, _silu_d),
}


_KERNELS = {}


def layer_kernels(phi, dphi):
    """``(forward_layer, backward_layer)`` compiled for one activation (cached).

    ``phi``/``dphi`` are Numba functions ``f(x, p) -> float``. The kernels are built as closures
    over them, so Numba calls them directly and inlines the ``inline="always"`` ones
    (:data:`FAST_ACTIVATIONS`): the loops then vectorise. Passed as arguments instead, they are
    called through a pointer, one scalar call per entry (5-10x slower for tanh, SELU, GELU).
    """
    key = (phi, dphi)
    if key not in _KERNELS:
        _KERNELS[key] = _build_layer_kernels(phi, dphi)
    return _KERNELS[key]


def _build_layer_kernels(phi, dphi):
    @njit(parallel=True, fastmath=_FAST, error_model="numpy", nogil=True)
    def forward_layer(z, bias, out, prev, alpha, residual, p, sat_thr, nchunk):
        """Fused forward pass of one layer on the BLAS output ``z = a_{l-1} W^T``.

        In place: ``z += bias`` (rounded to ``z.dtype``: what backward will see), then
        ``out = phi(z)`` or, with ``residual``, ``out = prev + alpha * phi(z)``. All statistics in
        the same pass, in float64 partial sums per row chunk, reduced after the loop.

        Every sum is taken of a shifted value (``z - z[0, j]`` per unit, ``z - z[i, 0]`` per row,
        ``out - out[0, 0]`` pooled), so that a large common offset cannot cancel a small spread and a
        constant layer gives exactly zero variance.

        Returns
        -------
        pooled : (N_POOLED,) float64
            z mean, variance, second moment; out mean, variance, second moment (all pooled over
            the B x n entries); mean over units of the across-batch variance (ddof 0); mean over
            rows of the across-unit variance; fraction of entries with z <= 0; fraction of units
            with z <= 0 on every row; fraction with |z| > sat_thr (pass ``inf`` for none).
        rowsq : (B,) float64
            sum_j out[b, j]^2 per row (for the per-sample weight gradient).
        """
        B, n = z.shape
        N = float(B) * n
        s1 = np.zeros((nchunk, n))
        s2 = np.zeros((nchunk, n))
        zmax = np.full((nchunk, n), -np.inf)
        part = np.zeros((nchunk, 6))
        rowsq = np.zeros(B)
        shift = np.empty(n, dtype=z.dtype)
        for j in range(n):
            shift[j] = np.float64(z[0, j]) + bias[j]  # rounded like the stored value
        first = np.empty(1, dtype=out.dtype)
        a00 = phi(np.float64(shift[0]), p)
        if residual:
            a00 = np.float64(prev[0, 0]) + alpha * a00
        first[0] = a00
        ash = np.float64(first[0])
        for c in prange(nchunk):
            r0 = (c * B) // nchunk
            r1 = ((c + 1) * B) // nchunk
            ninact = 0.0
            nsat = 0.0
            spread = 0.0
            pa1 = 0.0
            pa2 = 0.0
            tmp = np.empty(1, dtype=z.dtype)
            for i in range(r0, r1):
                tmp[0] = np.float64(z[i, 0]) + bias[0]  # the row's first stored value
                z0 = np.float64(tmp[0])
                rz1 = 0.0
                rz2 = 0.0
                ra1 = 0.0
                ra2 = 0.0
                for j in range(n):
                    z[i, j] = np.float64(z[i, j]) + bias[j]
                    zz = np.float64(z[i, j])
                    a = phi(zz, p)
                    if residual:
                        a = np.float64(prev[i, j]) + alpha * a
                    out[i, j] = a
                    a = np.float64(out[i, j]) - ash
                    ra1 += a
                    ra2 += a * a
                    d = zz - np.float64(shift[j])
                    s1[c, j] += d
                    s2[c, j] += d * d
                    zmax[c, j] = max(zmax[c, j], zz)
                    e = zz - z0
                    rz1 += e
                    rz2 += e * e
                    ninact += 1.0 if zz <= 0.0 else 0.0
                    nsat += 1.0 if abs(zz) > sat_thr else 0.0
                rv = rz2 / n - (rz1 / n) ** 2
                spread += max(rv, 0.0)
                rowsq[i] = max(ra2 + 2.0 * ash * ra1 + n * ash * ash, 0.0)
                pa1 += ra1
                pa2 += ra2
            part[c, 0] = ninact
            part[c, 1] = nsat
            part[c, 2] = spread
            part[c, 3] = pa1
            part[c, 4] = pa2
        tot = np.zeros(6)
        for c in range(nchunk):
            for k in range(6):
                tot[k] += part[c, k]
        # per-unit means and variances, then the pooled moments from them (law of total variance)
        umean = np.empty(n)
        uvar = np.empty(n)
        dead = 0.0
        for j in range(n):
            t1 = 0.0
            t2 = 0.0
            mx = -np.inf
            for c in range(nchunk):
                t1 += s1[c, j]
                t2 += s2[c, j]
                mx = max(mx, zmax[c, j])
            m = t1 / B
            uvar[j] = max(t2 / B - m * m, 0.0)
            umean[j] = np.float64(shift[j]) + m
            if mx <= 0.0:
                dead += 1.0
        zmean = umean.mean()
        between = 0.0
        for j in range(n):
            between += (umean[j] - zmean) ** 2
        res = np.empty(N_POOLED)
        res[_P_ZMEAN] = zmean
        res[_P_UNITVAR] = uvar.mean()
        res[_P_ZVAR] = res[_P_UNITVAR] + between / n
        res[_P_ZM2] = res[_P_ZVAR] + zmean * zmean
        da = tot[3] / N
        res[_P_AMEAN] = ash + da
        res[_P_AVAR] = max(tot[4] / N - da * da, 0.0)
        res[_P_AM2] = res[_P_AVAR] + res[_P_AMEAN] ** 2
        res[_P_SPREAD] = tot[2] / B
        res[_P_INACT] = tot[0] / N
        res[_P_DEAD] = dead / n
        res[_P_SAT] = tot[1] / N
        return res, rowsq


    @njit(parallel=True, fastmath=_FAST, error_model="numpy", nogil=True)
    def backward_layer(g, gres, residual, z, delta, a_out, p, scale, nchunk):
        """Fused backward pass through one layer's nonlinearity.

        In place: with ``residual`` first ``g += gres`` (the skip path), then
        ``delta = scale * phi'(z) * g`` and ``a_out = phi(z)`` (the previous layer's
        post-activation rebuilt from the stored pre-activation, for the weight gradient; pass a
        scratch array where it is not needed). One loop for both: their common work (exp, erfc)
        is computed once, and the activation is compiled into one loop body, not two.

        Returns
        -------
        sum_delta2 : float
            sum of delta^2 over the B x n entries (float64).
        rowsq : (B,) float64
            sum_j delta[b, j]^2 per row.
        """
        B, n = z.shape
        rowsq = np.zeros(B)
        for c in prange(nchunk):
            r0 = (c * B) // nchunk
            r1 = ((c + 1) * B) // nchunk
            for i in range(r0, r1):
                rd = 0.0
                if residual:
                    for j in range(n):
                        g[i, j] = np.float64(g[i, j]) + np.float64(gres[i, j])
                for j in range(n):
                    zz = np.float64(z[i, j])
                    a_out[i, j] = phi(zz, p)
                    delta[i, j] = scale * dphi(zz, p) * np.float64(g[i, j])
                    d = np.float64(delta[i, j])
                    rd += d * d
                rowsq[i] = rd
        return rowsq.sum(), rowsq

    return forward_layer, backward_layer


@njit(parallel=True, cache=_CACHE, nogil=True)
def sumsq(x):
    """sum(x**2) of a 2-D array with float64 accumulation, one partial per row."""
    m = x.shape[0]
    part = np.zeros(m)
    for i in prange(m):
        s = 0.0
        for j in range(x.shape[1]):
            v = np.float64(x[i, j])
            s += v * v
        part[i] = s
    return part.sum()


# Forward statistics produced per layer by `mlp_pass` (pooled unless the name says otherwise).
FORWARD_STATS = (
    "preact_mean", "preact_var", "preact_m2", "post_mean", "post_var", "post_m2",
    "preact_unitvar", "preact_unitspread", "frac_inactive", "frac_dead_units", "frac_saturated",
)
BACKWARD_STATS = (
    "grad_preact_m2", "grad_weight_m2_per_sample", "grad_weight_m2_batchmean",
    "grad_bias_m2_per_sample",
)


_RECORD = (("preact_mean", _P_ZMEAN), ("preact_var", _P_ZVAR), ("preact_m2", _P_ZM2),
           ("post_mean", _P_AMEAN), ("post_var", _P_AVAR), ("post_m2", _P_AM2),
           ("preact_unitvar", _P_UNITVAR), ("preact_unitspread", _P_SPREAD),
           ("frac_inactive", _P_INACT), ("frac_dead_units", _P_DEAD),
           ("frac_saturated", _P_SAT))


def _mlp_pass(x, weights, biases, phi, dphi, p, sat_thr, residual=False, alpha=1.0,
             G=None, backward=True, hist_layers=(), hist_bins=50, hist_range=None):
    """Run one network forward (and backward) and return its per-layer statistics.

    Parameters
    ----------
    x : (B, n_0) array, simulation dtype, C-contiguous.
    weights : list of (n_l, n_{l-1}) arrays, same dtype.
    biases : list of (n_l,) float64 arrays.
    phi, dphi : Numba functions ``f(x, p)``.
    p : float
        Activation parameter.
    sat_thr : float
        Saturation threshold on |z| (``inf``: not applicable, reported as NaN).
    residual, alpha : bool, float
        ``h_l = h_{l-1} + alpha * phi(h_{l-1} W_l^T + b_l)``; ``post_*`` describe ``h_l``.
    G : (B, n_L) array
        Backward seed (per-sample loss ``sum_k G[b,k] a_L[b,k]``).
    hist_layers : iterable of int
        0-based layers whose pre- and post-activation histograms are returned.

    Returns
    -------
    dict
        Statistic name -> float64 array of length L (``grad_input_m2``: 0-d), and
        ``"histograms"``: list of dicts.
    """
    forward_layer, backward_layer = layer_kernels(phi, dphi)
    dtype = x.dtype
    B = x.shape[0]
    L = len(weights)
    widths = [x.shape[1]] + [w.shape[0] for w in weights]
    nchunk = row_chunks(B)
    out = {k: np.full(L, np.nan) for k in FORWARD_STATS + BACKWARD_STATS}
    use_sat = np.isfinite(sat_thr)
    hist_layers = set(int(h) for h in hist_layers)
    hists = []

    zs = []          # stored pre-activations (simulation dtype), one per layer
    posts = [x]      # residual nets keep h_l (cannot be rebuilt from z); plain nets only x
    rowsq_post = [np.einsum("ij,ij->i", x, x, dtype=np.float64)]
    a = x
    for l in range(L):
        W = weights[l]
        z = np.empty((B, widths[l + 1]), dtype=dtype)
        np.matmul(a, W.T, out=z)
        a_new = np.empty_like(z)
        pooled, rsq = forward_layer(z, biases[l], a_new, a, alpha, residual, p, sat_thr,
                                    nchunk)
        for name, k in _RECORD:
            out[name][l] = pooled[k]
        if not use_sat:
            out["frac_saturated"][l] = np.nan
        if l in hist_layers:
            hists.append(_histograms(l, z, a_new, hist_bins, hist_range))
        zs.append(z)
        rowsq_post.append(rsq)
        if residual:
            posts.append(a_new)
        a = a_new
    result = dict(out)
    result["histograms"] = hists
    result["grad_input_m2"] = np.array(np.nan)
    if not backward:
        return result

    # ---- backward: g_l = dl/da_l (or dl/dh_l), delta_l = dl/dz_l ----
    g = np.ascontiguousarray(G, dtype=dtype)
    delta = np.empty((B, widths[L]), dtype=dtype)
    aprev = None
    sd2, rd = backward_layer(g, g, False, zs[L - 1], delta, np.empty_like(delta), p,
                              alpha if residual else 1.0, nchunk)
    for l in range(L - 1, -1, -1):
        n_out, n_in = widths[l + 1], widths[l]
        out["grad_preact_m2"][l] = sd2 / (B * n_out)
        out["grad_bias_m2_per_sample"][l] = sd2 / (B * n_out)
        out["grad_weight_m2_per_sample"][l] = float(np.dot(rd, rowsq_post[l])) / (B * n_out * n_in)
        # g_{l-1} = delta_l W_l  (+ g_l through the skip path, added inside backward_layer)
        g_new = np.empty((B, n_in), dtype=dtype)
        np.matmul(delta, weights[l], out=g_new)
        if l > 0:
            delta_new = np.empty((B, n_in), dtype=dtype)
            if residual:
                aprev = posts[l]
                sd2_new, rd_new = backward_layer(g_new, g, True, zs[l - 1], delta_new,
                                                 np.empty_like(delta_new), p, alpha, nchunk)
            else:
                aprev = np.empty((B, n_in), dtype=dtype)
                sd2_new, rd_new = backward_layer(g_new, g, False, zs[l - 1], delta_new, aprev,
                                                 p, 1.0, nchunk)
        else:
            aprev = x
            if residual:
                g_new += g
        dW = np.matmul(delta.T, aprev)
        out["grad_weight_m2_batchmean"][l] = sumsq(dW) / (B * B * n_out * n_in)
        del dW
        if l > 0:
            g, delta, sd2, rd = g_new, delta_new, sd2_new, rd_new
            zs[l] = None  # free as we go: peak memory stays ~ the forward's
        else:
            g = g_new
    result.update(out)
    result["grad_input_m2"] = np.array(sumsq(g) / (B * widths[0]))
    return result


def _histograms(l, z, a, bins, rng):
    zr = rng if rng is not None else _auto_range(z)
    ar = rng if rng is not None else _auto_range(a)
    hz, ez = np.histogram(z, bins=bins, range=zr)
    ha, ea = np.histogram(a, bins=bins, range=ar)
    return {"layer": l + 1, "preact_counts": hz, "preact_edges": ez,
            "post_counts": ha, "post_edges": ea}


def _auto_range(v):
    lo = float(np.min(v))
    hi = float(np.max(v))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return (-1.0, 1.0)
    if hi <= lo:
        return (lo - 0.5, hi + 0.5)
    return (lo, hi)


def _rnn_pass(h0, W, xs_fn, U, b, phi, dphi, p, steps, G=None, backward=True):
    """Run one recurrent net ``h_t = phi(h_{t-1} W^T [+ x_t U^T] + b)`` for ``steps`` steps.

    ``xs_fn(t)`` returns the input batch of step t (1-based) or None (no input). Returns a dict of
    float64 arrays indexed by t = 0..T: ``h_m2`` (pooled mean h_t^2), ``h_norm`` (mean over the
    batch of ||h_t||), ``preact_m2`` (t >= 1), ``grad_h_m2`` (mean (dl/dh_t)^2 for
    ``l = sum G * h_T``).
    """
    forward_layer, backward_layer = layer_kernels(phi, dphi)
    dtype = h0.dtype
    B, n = h0.shape
    nchunk = row_chunks(B)
    T = int(steps)
    h_m2 = np.full(T + 1, np.nan)
    h_norm = np.full(T + 1, np.nan)
    pre_m2 = np.full(T + 1, np.nan)
    pre_mean = np.full(T + 1, np.nan)
    post_mean = np.full(T + 1, np.nan)
    grad = np.full(T + 1, np.nan)
    r0 = np.einsum("ij,ij->i", h0, h0, dtype=np.float64)
    h_m2[0] = r0.sum() / (B * n)
    h_norm[0] = np.sqrt(r0).mean()
    post_mean[0] = float(h0.mean(dtype=np.float64))
    zs = []
    h = h0
    for t in range(1, T + 1):
        z = np.empty((B, n), dtype=dtype)
        np.matmul(h, W.T, out=z)
        xt = xs_fn(t)
        if xt is not None:
            z += xt @ U.T
        h_new = np.empty_like(z)
        pooled, rsq = forward_layer(z, b, h_new, h, 1.0, False, p, np.inf, nchunk)
        pre_mean[t] = pooled[_P_ZMEAN]
        pre_m2[t] = pooled[_P_ZM2]
        post_mean[t] = pooled[_P_AMEAN]
        h_m2[t] = pooled[_P_AM2]
        h_norm[t] = np.sqrt(rsq).mean()
        zs.append(z)
        h = h_new
    res = {"h_m2": h_m2, "h_norm": h_norm, "preact_m2": pre_m2, "preact_mean": pre_mean,
           "post_mean": post_mean, "grad_h_m2": grad}
    if not backward:
        return res
    g = np.ascontiguousarray(G, dtype=dtype)
    grad[T] = sumsq(g) / (B * n)
    delta = np.empty((B, n), dtype=dtype)
    scratch = np.empty((B, n), dtype=dtype)
    for t in range(T, 0, -1):
        backward_layer(g, g, False, zs[t - 1], delta, scratch, p, 1.0, nchunk)
        zs[t - 1] = None
        g = np.matmul(delta, W)
        grad[t - 1] = sumsq(g) / (B * n)
    return res


# Below this many entries per layer a fused pass takes well under a millisecond on one core,
# less than waking the other Numba workers costs on a busy machine (a parallel region has to
# wait until every worker is scheduled), so small layers run on the calling thread only.
SMALL_LAYER_ENTRIES = 1 << 17


@contextlib.contextmanager
def numba_threads_for(entries):
    """Run the block with one Numba thread if a layer has fewer than SMALL_LAYER_ENTRIES entries."""
    if entries >= SMALL_LAYER_ENTRIES:
        yield
        return
    old = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        yield
    finally:
        numba.set_num_threads(old)


def mlp_pass(x, weights, *args, **kwargs):
    """See :func:`_mlp_pass`; picks BLAS and Numba thread counts from the problem size."""
    flops = max(2.0 * x.shape[0] * w.shape[0] * w.shape[1] for w in weights)
    entries = x.shape[0] * max([x.shape[1]] + [w.shape[0] for w in weights])
    with blas_threads_for(flops), numba_threads_for(entries):
        return _mlp_pass(x, weights, *args, **kwargs)


def rnn_pass(h0, W, *args, **kwargs):
    """See :func:`_rnn_pass`; picks BLAS and Numba thread counts from the problem size."""
    with blas_threads_for(2.0 * h0.shape[0] * W.shape[0] * W.shape[1]), numba_threads_for(h0.size):
        return _rnn_pass(h0, W, *args, **kwargs)
