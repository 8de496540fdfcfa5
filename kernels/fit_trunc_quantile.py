"""Fit the float32 quantile polynomials of the truncated-normal kernel (kernels/fi_math.h).

With y = 2p - 1 and w = -ln(1 - y^2) the standard normal quantile is
Phi^{-1}(p) = sqrt(2) erfinv(y) = y Q(w). Q is smooth in w near w = 0 and in s = sqrt(w) in the
tails, so two polynomials cover |x| <~ 6.9:

* central: Q(w) for w in [0, 6.25], degree 10 in d = w - 3.125;
* tail:    Q(s^2) for s in [2.5, 5], degree 8 in d = s - 3.75.

Each is a least-squares Chebyshev fit on 4000 Chebyshev nodes (close to minimax), converted to
monomials in d and rounded to float32. The script then evaluates them exactly as the kernel does
(float32, no FMA: a Horner chain for the high coefficients and one for the low five, joined by
d^5) and prints the coefficients and the maximum relative error in units of 2^-24.

Run: ``python kernels/fit_trunc_quantile.py`` (needs numpy and scipy).
"""
import numpy as np
from scipy import special

F32 = np.float32


def q_exact(w):
    """Q(w) = x / y in double, with (1 - y)/2 formed without cancellation."""
    w = np.asarray(w, np.float64)
    y = np.sqrt(-np.expm1(-w))
    with np.errstate(divide="ignore", invalid="ignore"):
        return _q_from(w, y)


def _q_from(w, y):
    tail = np.exp(-w) / (2 * (1 + y))            # (1 - y) / 2 = 1 - p
    x = -special.ndtri(tail)
    small = w < 1e-6                             # Q(w) = sqrt(pi/2) (1 + pi w / 12 + O(w^2))
    return np.where(small, np.sqrt(np.pi / 2) * (1 + w * np.pi / 12), x / np.where(small, 1, y))


def fit(lo, hi, degree, in_sqrt):
    """Monomial coefficients (low order first) in d = v - mid, v = w or sqrt(w) on [lo, hi]."""
    t = np.cos(np.pi * (np.arange(4000) + 0.5) / 4000)
    mid, half = 0.5 * (lo + hi), 0.5 * (hi - lo)
    v = mid + half * t
    cheb = np.polynomial.chebyshev.chebfit(t, q_exact(v * v if in_sqrt else v), degree)
    mono = np.polynomial.chebyshev.cheb2poly(cheb)
    return mid, (mono / half ** np.arange(len(mono))).astype(F32)


def eval_kernel(coef, d):
    """The kernel's float32 evaluation: h (high coefficients) and l (low five) by Horner, l + d^5 h."""
    d = d.astype(F32)

    def horner(c):
        acc = np.full_like(d, c[-1])
        for ci in c[-2::-1]:
            acc = acc * d + ci
        return acc

    d2 = d * d
    return horner(coef[:5]) + (d2 * d2 * d) * horner(coef[5:])


def main():
    for name, lo, hi, degree, in_sqrt in [("central", 0.0, 6.25, 10, False), ("tail", 2.5, 5.0, 8, True)]:
        mid, coef = fit(lo, hi, degree, in_sqrt)
        v = np.linspace(lo, hi, 400001)
        exact = q_exact(v * v if in_sqrt else v)
        got = eval_kernel(coef, (v - mid).astype(F32)).astype(np.float64)
        err = np.max(np.abs(got / exact - 1)) / 2.0**-24
        print(f"{name}: d = {'s' if in_sqrt else 'w'} - {mid}, max relative error {err:.2f} x 2^-24")
        print("  coefficients, highest order first:")
        for c in coef[::-1]:
            print(f"    {np.format_float_scientific(c, unique=True)}f")


if __name__ == "__main__":
    main()
