r"""Mean-field predictions for randomly initialised networks.

This module computes, for a fully-connected network at initialisation, the infinite-width
("mean-field") values of every statistic :mod:`fastinit.sim` measures, plus the classical
closed forms (He, Glorot, SELU, deep linear/orthogonal nets) and the second-moment-preserving
gains.  The conventions are those of ``shared/reference/theory.md`` §0:

.. math::
    z_l = a_{l-1} W_l^\top + b_l, \qquad a_l = \phi(z_l), \qquad l = 1..L, \qquad a_0 = x,

``W_l`` has ``n_l x n_{l-1}`` i.i.d. zero-mean entries of variance :math:`s_l^2` and
:math:`\sigma_w^2 := n_{l-1} s_l^2`.  The per-sample loss is :math:`\ell_b = \sum_k G_{bk} a_{L,bk}`
with :math:`G` i.i.d. :math:`\mathcal N(0, 1)`.

Gaussian expectations :math:`E[f(\mu + \sqrt v\,\xi)]`, :math:`\xi \sim \mathcal N(0,1)`, are
computed by one of three rules (``method=``):

``"hermite"``
    probabilists' Gauss-Hermite (``numpy.polynomial.hermite_e.hermegauss``).  Spectrally
    accurate for smooth ``f`` at moderate ``v``; only algebraically convergent at kinks.
``"split"``
    composite Gauss-Legendre on :math:`\xi \in [-12, 12]` (the tail beyond carries
    :math:`< 10^{-31}` of the mass), split at the kinks of ``phi`` and at the points where
    ``phi`` changes shape, so each panel sees an analytic integrand.  Accurate to about
    ``1e-13`` for every registered activation at any ``v``.
``"trapezoid"``
    the dense trapezoid of theory.md §3 (``h = 1e-3`` on ``[-12, 12]``), kept as an
    independent cross-check.

``"auto"`` (the default) uses Gauss-Hermite with 160 nodes for smooth activations when
``v <= 1`` and ``|mu| <= 2`` (error below ``1e-12`` there, measured 3.9e-13 for tanh; tanh's poles at
:math:`\pm i\pi/2` make Gauss-Hermite lose digits quickly beyond, e.g. ``6.5e-9`` at
``v = 2``) and ``"split"`` otherwise.
Two-dimensional expectations (correlation map, per-unit variance, dead units) condition on
one variable and integrate the other with the split rule, so steps of ``phi'`` and kinks are
integrated exactly.

The package's modules (each re-exported here; import from :mod:`fastinit.theory`):

``_quadrature``   Gaussian expectations (the three rules above)
``_closed_forms`` ReLU and SELU moments, He's analysis, deep linear nets
``_maps``         length and correlation maps, slopes, fixed points, depth scales, dead units
``_correlations`` two inputs layer by layer, the phase of (sigma_w^2, sigma_b^2), the critical line
``_gains``        torch's gains beside the second-moment-preserving ones
``_jacobian``     input-output Jacobian spectra (free probability)
``_networks``     whole-network predictions (:func:`mlp_theory`, :func:`rnn_theory`)
``_architectures`` LayerNorm residual stacks and convolutions (:func:`resnet_theory`, :func:`conv_theory`)
``_fluctuations`` finite-width spread across networks (:func:`fluctuation_theory`)
``_common``       what they share: activation look-up and the statistic names

Examples
--------
>>> from fastinit import theory
>>> r = theory.mlp_theory([100] * 11, "relu", weight_var=2 / 100, batch=1000)
>>> [round(float(x), 4) for x in r["preact_var"][:3]]       # He preserves E[z^2] = Var z
[2.0, 2.0, 2.0]
>>> round(float(r["post_var"][0]), 4)                       # 2 (pi - 1) / (2 pi)
0.6817
"""

from ._architectures import conv_theory, corr_pattern, cross_moment, resnet_theory
from ._closed_forms import (
    fuss_catalan_moment,
    he_analysis,
    linear_net_sv2_moments,
    relu_cross_moment,
    relu_moments,
    selu_constants,
    selu_fixed_point,
    selu_moments,
)
from ._correlations import correlation_trajectory, critical_sigma_w2, criticality
from ._fluctuations import FLUCTUATION_STATISTICS, fluctuation_theory, log_normal_band
from ._gains import GainReport, gain_preserving, torch_gain
from ._jacobian import critical_sigmas, jacobian_density, jacobian_theory, linear_sv2_finite_width
from ._maps import (
    activation_moments,
    chi1,
    correlation_map,
    depth_scales,
    fixed_point,
    length_map,
    length_map_slope,
    p_dead,
)
from ._networks import backward_m2, mlp_theory, rnn_theory
from ._quadrature import gaussian_expectation

__all__ = [
    "FLUCTUATION_STATISTICS",
    "GainReport",
    "activation_moments",
    "backward_m2",
    "chi1",
    "conv_theory",
    "corr_pattern",
    "cross_moment",
    "critical_sigmas",
    "correlation_map",
    "correlation_trajectory",
    "critical_sigma_w2",
    "criticality",
    "depth_scales",
    "fixed_point",
    "fluctuation_theory",
    "fuss_catalan_moment",
    "gain_preserving",
    "gaussian_expectation",
    "he_analysis",
    "jacobian_density",
    "jacobian_theory",
    "length_map",
    "length_map_slope",
    "linear_net_sv2_moments",
    "linear_sv2_finite_width",
    "log_normal_band",
    "mlp_theory",
    "p_dead",
    "relu_cross_moment",
    "relu_moments",
    "resnet_theory",
    "rnn_theory",
    "selu_constants",
    "selu_fixed_point",
    "selu_moments",
    "torch_gain",
]
