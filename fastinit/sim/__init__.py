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

The package's modules (each re-exported here; import from :mod:`fastinit.sim`):

``_mlp``, ``_rnn``, ``_sweep``   the simulators and the grid runner
``_resnet``, ``_conv``           LayerNorm residual stacks and convolutional stacks (delta-orthogonal kernels)
``_jacobian``                    input-output Jacobian spectra (:func:`jacobian_spectrum`)
``_correlation``                 pairs of inputs through the same networks: c_l, chi_1, the depth scale xi_c
``_results``                     result classes, verdicts, the text-table formatter
``_schemes``                     weight schemes (:mod:`fastinit.init` by name) and random streams
``_activation``                  registry or user activations, as the kernels see them
``_args``                        argument checks and the memory estimate check
``_kernels``                     the fused Numba kernels (compiled once per activation, cached on disk)
``_passes``                      one network forward and backward: BLAS around the kernels, memory estimates
``_fastmath``                    branch-free, inlinable exp/expm1/erfc and activations

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

from fastinit.theory._common import MLP_STATISTICS, RNN_STATISTICS

from ._conv import CNNResult, delta_orthogonal_, simulate_cnn
from ._correlation import CorrelationResult, fit_depth_scale, simulate_correlation
from ._jacobian import JACOBIAN_STATISTICS, JacobianResult, jacobian_spectrum
from ._mlp import simulate_mlp
from ._resnet import ResNetResult, simulate_resnet
from ._results import MLPResult, RNNResult, SimulationResult, SweepResult, format_table, verdict
from ._rnn import simulate_rnn
from ._schemes import WEIGHT_SCHEMES
from ._sweep import sweep

__all__ = [
    "simulate_mlp",
    "simulate_rnn",
    "simulate_resnet",
    "simulate_cnn",
    "delta_orthogonal_",
    "ResNetResult",
    "CNNResult",
    "sweep",
    "simulate_correlation",
    "fit_depth_scale",
    "CorrelationResult",
    "SimulationResult",
    "MLPResult",
    "RNNResult",
    "SweepResult",
    "MLP_STATISTICS",
    "RNN_STATISTICS",
    "WEIGHT_SCHEMES",
    "verdict",
    "format_table",
    "jacobian_spectrum",
    "JacobianResult",
    "JACOBIAN_STATISTICS",
]
