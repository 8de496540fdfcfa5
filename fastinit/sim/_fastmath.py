r"""Branch-free, inlinable scalar math for the simulator's fused kernels.

libm's tanh, exp, expm1 and erfc are opaque scalar calls (15-20 ns each), and they were most of
the simulator's elementwise time. The versions here are branch-free polynomials (every branch is
computed and the right value selected), written to be inlined into the activation row functions
of :mod:`fastinit.sim._kernels`, which LLVM then vectorises (AVX-512: 8 doubles per instruction).
Those are compiled without fast-math flags (``_kernels.ROW_FLAGS``), so every expression here is
evaluated as written (the order that keeps ``x - k ln 2`` and ``2^k p + (2^k - 1)`` free of
cancellation is the one you read) and the polynomials' multiply-adds are fused explicitly
(:func:`_fma`). Accuracy: a few ulp, checked against NumPy/SciPy in tests/test_sim_kernels.py and,
at extreme inputs, tests/test_sim_extremes.py.

Subnormal numbers: x86 CPUs take a microcode assist (on the order of 100 cycles) for each vector
instruction that makes one. The branches that are computed and then discarded are therefore fed
arguments that keep them normal (saturated exp/expm1 in :func:`_exp_reduced`, erfc's ``ys``), so huge
and tiny inputs run at the speed of ordinary ones, with the same bits. Still slow: subnormal inputs
themselves (most of their phi are subnormal too, and flushing them cost 10-15% on ordinary inputs) and
exp's arguments in (-708, -707.3), whose subnormal intermediate ``(1 + p) 2^-1022`` makes the result's
last bits.

:data:`KERNEL_ACTIVATIONS` maps each registry activation's ``kind_id``
(:mod:`fastinit._activations`) to the ``(phi, phi')`` pair the kernels inline: the versions below
where they exist, the registry's libm-based ``phi_nb``/``dphi_nb`` otherwise (softplus).
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir as llvm_ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from fastinit._activations import ACTIVATIONS, SELU_ALPHA, SELU_LAMBDA, get_activation

__all__ = ["FAST_ACTIVATIONS", "KERNEL_ACTIVATIONS", "prefer_wide_vectors"]

_INLINE = dict(inline="always", error_model="numpy")


@intrinsic
def _f64_from_bits(typingctx, bits):
    """The float64 whose IEEE-754 bit pattern is the int64 ``bits`` (an LLVM bitcast)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], llvm_ir.DoubleType())
    return types.float64(types.int64), codegen


@intrinsic
def _fma(typingctx, a, b, c):
    """``a * b + c`` rounded once (LLVM's ``llvm.fma``: one instruction where the CPU has FMA, and
    the same bits everywhere). Explicit, so that the row functions can be compiled without
    fast-math flags yet keep the fused multiply-adds of their polynomials (see
    :data:`fastinit.sim._kernels.ROW_FLAGS`)."""
    def codegen(context, builder, signature, args):
        f64 = llvm_ir.DoubleType()
        fn = cgutils.get_or_insert_function(builder.module, llvm_ir.FunctionType(f64, [f64, f64, f64]),
                                            "llvm.fma.f64")
        return builder.call(fn, args)
    return types.float64(types.float64, types.float64, types.float64), codegen


@njit(**_INLINE)
def _horner(x, lead, coeffs):
    """``lead x^n + coeffs[0] x^(n-1) + ... + coeffs[n-1]`` by Horner's rule with fused multiply-adds."""
    q = lead
    for c in coeffs:
        q = _fma(q, x, c)
    return q


@intrinsic
def _bits_of_f64(typingctx, x):
    """The int64 bit pattern of the float64 ``x`` (an LLVM bitcast)."""
    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], llvm_ir.IntType(64))
    return types.int64(types.float64), codegen


_HIGH26 = np.int64(-(1 << 27))  # sign, exponent and the leading 25 stored significand bits


_WIDE_ATTRIBUTE = '"prefer-vector-width"="512"'


def _wide_attribute_works():
    """Whether this llvmlite renders a string member of a function's attribute set into IR that LLVM
    parses (it does today: the set is rendered verbatim). Checked once on a throwaway module, so a
    future llvmlite that renders or validates attributes otherwise costs only the speed, never a failed
    compilation."""
    try:
        from llvmlite import binding as llvm

        mod = llvm_ir.Module(name="fastinit_wide_probe")
        fn = llvm_ir.Function(mod, llvm_ir.FunctionType(llvm_ir.VoidType(), []), name="probe")
        set.add(fn.attributes, _WIDE_ATTRIBUTE)
        llvm_ir.IRBuilder(fn.append_basic_block()).ret_void()
        return _WIDE_ATTRIBUTE in str(llvm.parse_assembly(str(mod)))
    except Exception:  # noqa: BLE001 - any failure means: do not use it
        return False


_WIDE_OK = _wide_attribute_works()


@intrinsic
def prefer_wide_vectors(typingctx):
    """Ask LLVM to vectorise the calling function's loops with the widest vectors the CPU has.

    LLVM's default for AVX-512 CPUs is 256-bit vectors (``prefer-vector-width=256``, chosen for
    older parts whose clock dropped on 512-bit code). The simulator's forward activation loop is an
    arithmetic-bound polynomial: 512-bit vectors ran the forward kernel 1.2-1.3x faster on the
    development machine (tanh 3.5-3.7 -> 2.7 ns per element; ``benchmarks/scripts/sim_kernels.py``
    with and without ``--no-wide-vectors``). The function attribute only lifts the preference; on a
    CPU without AVX-512 LLVM keeps what it has. Call it first in an ``@njit`` function; it emits no code.
    """
    def codegen(context, builder, signature, args):
        if _WIDE_OK:
            # llvmlite knows no string attributes; its set renders any member verbatim into the IR
            set.add(builder.function.attributes, _WIDE_ATTRIBUTE)
        return context.get_dummy_value()
    return types.none(), codegen


_LOG2E = 1.4426950408889634
# ln 2 split in two (Cody & Waite, fdlibm's constants): the low 32 bits of _LN2_HI are zero, so
# k * _LN2_HI is exact for every |k| <= 1024 used here and x - k ln 2 loses nothing to cancellation
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
_EXP_HI = 709.78  # exp overflows to inf above log(DBL_MAX) = 709.7827
_EXP_LO = -708.0  # below this exp(x) < 3.3e-308 is subnormal; returned as 0 (absolute error < 3e-308)


# 1/12!, 1/11!, ..., 1/2: the coefficients after the leading 1/13! of (e^r - 1 - r) / r^2, highest first
_TAYLOR_TAIL = tuple(1.0 / math.factorial(k) for k in range(12, 1, -1))


@njit(**_INLINE)
def _taylor_exp_tail(r):
    """(e^r - 1 - r) / r^2 by Horner's rule on the Taylor coefficients 1/13! .. 1/2."""
    return _horner(r, 1.0 / 6227020800.0, _TAYLOR_TAIL)


@njit(**_INLINE)
def _exp_core(xc):
    """``(k, p)`` with ``xc = k ln2 + r``, ``|r| <= ln2/2`` and ``p = e^r - 1`` (degree-13 Taylor
    polynomial, truncation error r^14/14! < 3e-18 relative), for ``xc`` in [_EXP_LO, _EXP_HI]."""
    kf = np.floor(xc * _LOG2E + 0.5)
    r = (xc - kf * _LN2_HI) - kf * _LN2_LO
    p = _fma(_taylor_exp_tail(r) * r, r, r)
    return kf, p


@njit(**_INLINE)
def _exp_reduced(x):
    """:func:`_exp_core` of ``x`` clamped to the range where ``exp`` is a normal number.
    :func:`_exp` and :func:`_expm1` share it, so a kernel that needs both of the same argument
    (tanh and its derivative) computes it once."""
    # below _EXP_LO (and for NaN) the callers return their limit, so any argument would do: 0, not
    # _EXP_LO, whose 2^k = 2^-1021 made subnormal intermediates (2^k p), each a slow microcode
    # assist on x86, in every saturated element (tanh, SELU, sigmoid, GELU's tails: 5x slower)
    xc = x if x > _EXP_LO else 0.0
    xc = xc if xc < _EXP_HI else _EXP_HI
    return _exp_core(xc)


@njit(**_INLINE)
def _exp(x):
    """exp(x) = 2^k (1 + p) (:func:`_exp_reduced`), 2^k built from the exponent bits."""
    kf, p = _exp_reduced(x)
    # 2^k = 2 * 2^(k-1): k - 1 + 1023 stays in the normal exponent range for k in [-1021, 1024]
    y = ((p + 1.0) * _f64_from_bits((np.int64(kf) + 1022) << 52)) * 2.0
    y = y if x > _EXP_LO else 0.0
    y = y if x <= _EXP_HI else np.inf
    return y if x == x else x


@njit(**_INLINE)
def _exp_nonpositive(x):
    """:func:`_exp` of an ``x <= 0`` that is not NaN (erfc's e^(-s^2)), the same bits without the
    overflow and NaN cases (fewer instructions in GELU's long loop)."""
    xc = x if x > _EXP_LO else 0.0
    kf, p = _exp_core(xc)
    y = ((p + 1.0) * _f64_from_bits((np.int64(kf) + 1022) << 52)) * 2.0
    return y if x > _EXP_LO else 0.0


@njit(**_INLINE)
def _expm1(x):
    """exp(x) - 1 without cancellation and with one polynomial: ``2^k p + (2^k - 1)``
    (:func:`_exp_reduced`); ``2^k - 1`` is exact for ``|k| <= 52`` and the sum cancels at most
    two bits (k = -1), so the error stays within a few ulp; beyond, ``2^k (1 + p) - 1``."""
    kf, p = _exp_reduced(x)
    half = _f64_from_bits((np.int64(kf) + 1022) << 52)   # 2^(k-1)
    two_k = half * 2.0
    small = two_k * p + (two_k - 1.0)
    big = ((p + 1.0) * half) * 2.0 - 1.0
    y = small if kf <= 52.0 else big
    y = y if x > _EXP_LO else -1.0
    y = y if x <= _EXP_HI else np.inf
    return y if x == x else x


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
_ERFC_TINY = 2.0 ** -400  # below, erfc(y) = 1 - 2y/sqrt(pi) to the last bit (the central polynomial at t = 0)


@njit(**_INLINE)
def _erfc_gauss(x):
    """``(erfc(x), exp(-x^2))`` by Cody's three rational approximations.

    All three are evaluated and one numerator/denominator pair selected, so there is a single
    division. ``exp(-x^2)`` (which the tails need anyway) is returned for GELU's derivative: 0 beyond
    |x| = 27, and not NaN for a NaN ``x`` (whose erfc is NaN).
    """
    y = abs(x)
    # The branches below are all evaluated, and at |y| < 1.5e-154 (t = y^2 subnormal) or |y| > 27
    # (e^(-y^2) underflows, and (y - s)(y + s) and u can overflow or be subnormal) the discarded
    # ones made subnormal numbers (slow on x86) and the Gaussian factor 0 * inf = NaN. They are fed
    # ys, y clamped to [2^-400, 27]: below 2^-400 the polynomials in t = y^2 round to their constant
    # terms and e^(-y^2) to 1 either way; above 27 erfc is 0 or 2 and e^(-y^2) = 0 either way.
    ys = min(max(y, _ERFC_TINY), 27.0)
    t = ys * ys
    # |y| <= 0.46875: erfc = 1 - x R1(x^2) = (den - x num) / den
    d1 = _horner(t, 1.0, _CB)
    n1 = _fma(-x, _horner(t, _CA[4], _CA[:4]), d1)
    # e^(-y^2) = e^(-s^2) e^(-d), d = (y - s)(y + s), with s = y cut to its leading 26 bits (low 27
    # bits of the significand cleared): s^2 is exact and 0 <= d < 2^-24 y^2 < 4.2e-5 wherever
    # erfc is not 0 (y < 26.543), so e^(-d) = 1 - d + d^2/2 - d^3/6 to 2e-19 relative (one exp
    # instead of two)
    s = _f64_from_bits(_bits_of_f64(ys) & _HIGH26)
    d = (ys - s) * (ys + s)
    gauss = _exp_nonpositive(-s * s) * _fma(-d, _fma(-d, _fma(-d, 1.0 / 6.0, 0.5), 1.0), 1.0)
    # 0.46875 < |y| <= 4: erfc(y) = e^(-y^2) R2(y)
    n2 = gauss * _horner(ys, _CC[8], _CC[:8])
    d2 = _horner(ys, 1.0, _CD)
    # |y| > 4: erfc(y) = e^(-y^2) (1/sqrt(pi) - u R3(u)) / y with u = 1/y^2
    u = 1.0 / t
    d3 = _horner(u, 1.0, _CQ)
    n3 = gauss * _fma(-u, _horner(u, _CP[5], _CP[:5]), _SQRPI * d3)
    d3 = d3 * ys
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


#: ``kind_id`` of every registry activation -> the ``(phi, phi')`` the fused kernels inline.
KERNEL_ACTIVATIONS = {
    get_activation(name).kind_id: FAST_ACTIVATIONS.get(name, (get_activation(name).phi_nb,
                                                            get_activation(name).dphi_nb))
    for name in ACTIVATIONS
}
