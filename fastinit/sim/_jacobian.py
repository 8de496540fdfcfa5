r"""Singular values of the input-output Jacobian of deep fully-connected networks at initialization.

For one input :math:`x` the network of :func:`fastinit.sim.simulate_mlp` has the Jacobian

.. math::
    J = \frac{\partial a_L}{\partial x} = D_L W_L \cdots D_1 W_1, \qquad D_l = \mathrm{diag}\,\phi'(z_l),

an ``n_L x n_0`` matrix. :func:`jacobian_spectrum` measures its singular values exactly (successive
GEMMs, then an SVD) or by stochastic Lanczos quadrature (products with :math:`J` and :math:`J^\top`
only), and puts the free-probability prediction of :func:`fastinit.theory.jacobian_theory` beside them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import linalg

from fastinit._activations import get_activation
from fastinit._checks import InitArgumentError, integer, real
from fastinit.theory import jacobian_theory

from ._args import check_dtype, check_memory, network_args, resolve_widths
from ._passes import blas_threads_for
from ._results import format_table
from ._schemes import (
    KIND_BIAS,
    KIND_INPUT,
    KIND_PROBE,
    KIND_WEIGHT,
    make_weight,
    random_normal,
    resolve_scheme,
    stream,
    weight_moments,
)

__all__ = ["jacobian_spectrum", "JacobianResult", "JACOBIAN_STATISTICS", "EXACT_MAX_WIDTH"]

#: ``method="auto"`` forms J exactly up to this width (cost ``depth x width^3`` per input), beyond it
#: it runs stochastic Lanczos quadrature.
EXACT_MAX_WIDTH = 1024
#: Per (network, input) and recorded layer: mean and variance of the squared singular values, the
#: normalised variance ``var_sv2 / mean_sv2^2`` (what free probability predicts most directly: it does
#: not depend on the network's overall gain, which fluctuates at finite width), the extreme singular
#: values and the condition number ``max_sv / min_sv``.
JACOBIAN_STATISTICS = ("mean_sv2", "var_sv2", "norm_var", "max_sv", "min_sv", "cond")
_BREAKDOWN = 1e-10  # Lanczos stops a probe when beta_j <= this x the largest |alpha| (invariant subspace)


@dataclass
class JacobianResult:
    """Singular-value statistics of input-output Jacobians, with their mean-field prediction.

    Attributes
    ----------
    layers : numpy.ndarray
        The recorded depths l (the Jacobian of the first l layers).
    method : str
        ``"exact"`` or ``"randomized"``.
    per_sample : dict of numpy.ndarray
        Each of :data:`JACOBIAN_STATISTICS`, shape ``(n_networks * n_inputs, len(layers))``.
    stats, stderr : dict of numpy.ndarray
        Mean over samples and its standard error; ``cond`` is the median (it has heavy tails).
    theory : dict of numpy.ndarray
        ``mean_sv2``, ``var_sv2``, ``norm_var``, ``chi1``, ``q`` at the recorded layers (NaN where
        there is no prediction, see ``config["theory_note"]``).
    singular_values : list of numpy.ndarray or None
        Exact method: per recorded layer, the singular values (descending), shape ``(samples, k)``
        with ``k = min(n_0, n_l)``.
    ritz : list of tuple or None
        Randomized method: per recorded layer, ``(nodes, weights)`` of the Lanczos quadrature of
        every probe, pooled: the squared-singular-value density is ``sum w delta(lambda - node)``.
    probe_stderr : dict of numpy.ndarray or None
        Randomized method: jackknife standard error over probes of ``mean_sv2`` and ``var_sv2``,
        shape ``(samples, len(layers))``.
    resolution : numpy.ndarray
        Per recorded layer, the smallest singular value relative to ``s_max`` that the method
        resolves: ``k x eps(dtype)`` for the exact method (rounding in forming J and in the SVD),
        ``sqrt(k x eps(dtype))`` for the randomized one (it sees :math:`s^2`). Smaller ones are
        rounding noise: condition numbers beyond ``1 / resolution`` are lower bounds.
    config : dict
    """

    layers: np.ndarray
    method: str
    per_sample: dict
    stats: dict
    stderr: dict
    theory: dict
    config: dict
    singular_values: list | None = None
    ritz: list | None = None
    probe_stderr: dict | None = field(default=None)
    resolution: np.ndarray | None = None

    def __getattr__(self, name):
        if name in JACOBIAN_STATISTICS:
            return self.stats[name]
        raise AttributeError(name)

    def _index(self, layer):
        hit = np.flatnonzero(self.layers == layer)
        if hit.size == 0:
            raise InitArgumentError(f"layer {layer} was not recorded (layers: {list(self.layers)})")
        return int(hit[0])

    def _values(self, layer):
        """(singular values, weights, resolved mask) at ``layer``, pooled over samples."""
        i = self._index(layer)
        if self.singular_values is not None:
            sv = self.singular_values[i]
            ok = sv >= sv[:, :1] * self.resolution[i]
            return sv.ravel(), np.ones(sv.size), ok.ravel()
        nodes, w = self.ritz[i]
        sv = np.sqrt(np.maximum(nodes, 0.0))
        return sv, w, sv >= sv.max() * self.resolution[i]

    def unresolved(self, layer):
        """Fraction of the singular values at ``layer`` below the resolution (``resolution x s_max``)."""
        sv, w, ok = self._values(layer)
        return float(w[~ok].sum() / w.sum()) if w.sum() > 0 else 0.0

    def density(self, layer, bins=60, log=True):
        """``(edges, density)`` of the resolved singular values at ``layer``, pooled over samples.

        ``log=True`` bins :math:`\\log_{10} s` (edges are in ``log10 s``): a spectrum spread over
        decades stays readable. Values below ``resolution x s_max`` (rounding noise, see
        :meth:`unresolved`) are left out. The randomized method's density is the Lanczos
        quadrature's discrete measure, binned.
        """
        sv, w, ok = self._values(layer)
        keep = ok & (sv > 0) & np.isfinite(sv) if log else ok & np.isfinite(sv)
        x = np.log10(sv[keep]) if log else sv[keep]
        if x.size == 0 or w[keep].sum() <= 0:
            return np.array([0.0, 1.0]), np.zeros(1)
        lo, hi = float(x.min()), float(x.max())
        if hi - lo < 1e-9:
            lo, hi = lo - 0.05, hi + 0.05
        dens, edges = np.histogram(x, bins=bins, range=(lo, hi), weights=w[keep], density=True)
        return edges, dens

    def cells(self, j):
        """Table cells ``s_max``, ``s_min``, ``cond`` of recorded layer ``j``, with the resolution limit:
        an ``s_min`` below ``resolution x s_max`` prints as ``<bound`` and its condition number as
        ``>1/resolution`` (a lower bound; ``inf`` included: rounding cannot tell 0 from tiny)."""
        smax, smin, cond = (float(self.stats[k][j]) for k in ("max_sv", "min_sv", "cond"))
        lim = 1.0 / self.resolution[j]
        if smax > 0 and smin < smax / lim:
            return fmt(smax), "<" + fmt(smax / lim), ">" + fmt(lim)
        return fmt(smax), fmt(smin), fmt(cond)

    def to_table(self):
        """Text table: one row per recorded layer, simulation [theory]."""
        head = ["layer", "mean s^2", "Var s^2", "Var/mean^2", "s_max", "s_min", "cond"]
        rows = []
        for j, l in enumerate(self.layers):
            rows.append([str(l), f"{fmt(self.stats['mean_sv2'][j])} [{fmt(self.theory['mean_sv2'][j])}]",
                         f"{fmt(self.stats['var_sv2'][j])} [{fmt(self.theory['var_sv2'][j])}]",
                         f"{fmt(self.stats['norm_var'][j])} [{fmt(self.theory['norm_var'][j])}]", *self.cells(j)])
        return format_table(head, rows, note="(mean over samples [free-probability theory]; cond: median; "
                                             "<, >: beyond the resolution)")

    def __repr__(self):
        c = self.config
        return (f"JacobianResult({c['activation']}, init={c['init']}, widths={_short(c['widths'])}, "
                f"method={self.method}, {c['n_networks']} network(s) x {c['n_inputs']} input(s))\n"
                + self.to_table())


def fmt(v):
    """A number for a table: 3 significant digits, exponent outside [1e-3, 1e4)."""
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if v == 0:
        return "0"
    return f"{v:.3g}" if 1e-3 <= abs(v) < 1e4 else f"{v:.2e}"


def _short(ws):
    return str(list(ws)) if len(ws) <= 6 else f"[{ws[0]}, {len(ws) - 1} x {ws[1]}..]"


# ------------------------------------------------------------------------------------------
def jacobian_spectrum(widths=None, *, depth=None, width=None, input_dim=None, activation="tanh",
                      activation_param=None, init="orthogonal", init_params=None, sigma_w2=None,
                      bias="zeros", bias_value=0.0, bias_std=0.0, input_mean=0.0, input_std=1.0,
                      n_networks=1, n_inputs=1, seed=0, layers=None, method="auto", probes=16, steps=32,
                      dtype="float64", theory=True):
    r"""Singular values of the input-output Jacobian of deep fully-connected nets at initialization.

    The networks are those of :func:`simulate_mlp` (same schemes, streams and seed: network ``k``
    with the same arguments has the same weights, biases and first inputs). For each network and
    each of ``n_inputs`` Gaussian inputs :math:`x`, with :math:`D_l = \mathrm{diag}\,\phi'(z_l(x))`,

    .. math::
        J_l = D_l W_l \cdots D_1 W_1, \qquad \lambda_i = s_i(J_l)^2,

    and at each recorded depth ``l`` it reports the mean and the variance of the :math:`\lambda_i`
    over the :math:`k = \min(n_0, n_l)` singular values, the largest and smallest singular value and
    the condition number :math:`s_{max}/s_{min}` (``inf`` when :math:`s_{min} = 0`). The prediction
    (:func:`fastinit.theory.jacobian_theory`) is :math:`E\lambda = \frac{n_l}{k}\prod\chi` and, for
    equal widths, :math:`\mathrm{Var}\lambda = (E\lambda)^2 \sum_l (E\phi'^4/(E\phi'^2)^2 - 1 + s_W)`
    with :math:`s_W = 1` for i.i.d. and 0 for orthogonal weights; for any widths,
    :math:`\mathrm{Var}\lambda / (E\lambda)^2 = k (1/n_0 + \sum_j (\kappa_j/n_j - o/\max(n_{j-1}, n_j))) - 1`
    with :math:`\kappa_j = E\phi'^4/(E\phi'^2)^2`, :math:`o = 0` i.i.d., 1 orthogonal.

    Parameters
    ----------
    widths, depth, width, input_dim
        The layer widths, as :func:`simulate_mlp`.
    activation, activation_param
        A registry activation (``"tanh"``, ``"relu"``, ...) and its parameter.
    init, init_params
        Weight scheme by :data:`WEIGHT_SCHEMES` name and its parameters, as :func:`simulate_mlp`.
    sigma_w2 : float, optional
        Rescale every weight matrix by the constant that makes :math:`n_{l-1}\,\mathrm{Var}(W_{ij})`
        equal ``sigma_w2`` (the scheme's own scale otherwise). Needs a scheme with random entries.
    bias, bias_value, bias_std
        As :func:`simulate_mlp` (``bias="normal", bias_std=sqrt(sigma_b2)`` for a random bias).
    input_mean, input_std : float
        Inputs are i.i.d. :math:`\mathcal N(\mu_x, \sigma_x^2)` entries.
    n_networks, n_inputs : int
        Independent networks, and inputs per network (each input has its own :math:`D_l`).
    seed : int
    layers : sequence of int, optional
        Depths at which to record the spectrum (default: the last layer only), in ``1..L``.
    method : {"auto", "exact", "randomized"}
        ``"exact"`` forms :math:`J_l` by GEMMs (``l x n^3`` flops per input) and takes all singular
        values (LAPACK ``gesdd``). ``"randomized"`` runs ``steps`` Lanczos steps on :math:`J^\top J`
        (or :math:`JJ^\top`, the smaller side) from ``probes`` Gaussian vectors, with full
        reorthogonalisation, using only products with :math:`J` and :math:`J^\top`
        (``4 l n^2`` flops per probe and step). The Gauss quadrature it yields gives the
        Hutchinson estimates of :math:`\mathrm{tr}(A)/k` and :math:`\mathrm{tr}(A^2)/k` (exact for
        the probes' spectral measures up to degree ``2 steps - 1``) and an estimated density. Its
        largest Ritz value converges quickly to :math:`s_{max}^2` from below; its smallest is only an
        upper bound of :math:`s_{min}^2`, so its condition number is a lower bound. ``"auto"``:
        exact up to width :data:`EXACT_MAX_WIDTH`, randomized beyond.
    probes, steps : int
        Randomized method: probe vectors and Lanczos steps per probe (capped at ``k``). The probes
        run together (GEMMs with ``probes`` columns), and at large width each step costs about one
        pass over the weights whatever ``probes`` is: more probes cost little and sharpen the
        moments (their error falls as ``1/sqrt(probes k)``); two steps already give both moments
        exactly for each probe, more steps sharpen ``s_max`` and the density.
    dtype : {"float64", "float32"}
        Precision of the weights, the forward pass and the products (the SVD and the Lanczos
        recurrence run in float64). The default float64 keeps condition numbers up to ~1e13
        meaningful; float32 halves the weights' memory at large width.
    theory : bool
        Attach the prediction.

    Returns
    -------
    JacobianResult

    Raises
    ------
    TypeError, InitArgumentError
        A bad argument (the message names it); ``sigma_w2`` with a scheme whose entries have no
        variance (``zeros``, ``constant``). Width 1 and ``sigma_w2=0`` are allowed: a width-1
        net has one singular value (variance 0, condition number 1), and ``sigma_w2=0`` gives
        :math:`J = 0` (mean and variance 0, condition number ``inf``).
    MemoryError
        When the weights and working arrays would not fit in the available memory.

    Notes
    -----
    The prediction is a wide-network limit. At finite width the spread carries corrections of
    relative order :math:`L/n` (a deep linear Gaussian net: :math:`E[\mathrm{Var}\lambda]` is
    :math:`L + O(L^2/n)`, exact value in :func:`fastinit.theory.linear_sv2_finite_width`), and the
    largest eigenvalues, which dominate the variance, fluctuate from network to network.

    Examples
    --------
    Tanh at criticality (:math:`q^* = 0.25`): orthogonal weights keep the spectrum concentrated,
    Gaussian weights spread it.

    >>> from fastinit.sim import jacobian_spectrum
    >>> from fastinit.theory import critical_sigmas
    >>> sw2, sb2 = critical_sigmas("tanh", 0.25)
    >>> kw = dict(depth=32, width=128, activation="tanh", sigma_w2=sw2, bias="normal",
    ...           bias_std=sb2 ** 0.5, input_std=((0.25 - sb2) / sw2) ** 0.5, seed=0)
    >>> o = jacobian_spectrum(init="orthogonal", **kw)
    >>> g = jacobian_spectrum(init="xavier_normal", **kw)
    >>> round(float(o.theory["norm_var"][0]), 2), round(float(g.theory["norm_var"][0]), 2)
    (4.38, 36.38)
    >>> round(float(o.norm_var[0]), 2), round(float(g.norm_var[0]), 2)   # one network each: Var(s^2)/mean(s^2)^2
    (4.35, 35.85)
    >>> print(g)                                                         # doctest: +NORMALIZE_WHITESPACE
    JacobianResult(tanh, init=xavier_normal, widths=[128, 32 x 128..], method=exact, 1 network(s) x 1 input(s))
    layer  mean s^2     Var s^2   Var/mean^2  s_max      s_min       cond
    -----  --------  ----------  -----------  -----  ---------  ---------
       32  2.26 [1]  183 [36.4]  35.9 [36.4]   11.7  <3.32e-13  >3.52e+13
    (mean over samples [free-probability theory]; cond: median; <, >: beyond the resolution)

    This network's gain (mean s^2 = 2.26) is a finite-width fluctuation; the normalised spread does not
    depend on it. The smallest singular values of the Gaussian net lie below float64's resolution.
    """
    ws = resolve_widths(widths, depth, width, input_dim)
    L = len(ws) - 1
    dt = check_dtype(dtype)
    act = get_activation(activation, activation_param)
    key, scheme, params = resolve_scheme(init, init_params, dt)
    bias, bias_value, bias_std, input_mean, input_std, n_networks, seed = network_args(
        bias, bias_value, bias_std, input_mean, input_std, n_networks, seed)
    n_inputs = integer(n_inputs, "n_inputs", minimum=1)
    if method not in ("auto", "exact", "randomized"):
        raise InitArgumentError(f"method must be 'auto', 'exact' or 'randomized', got {method!r}")
    probes = integer(probes, "probes", minimum=2)
    steps = integer(steps, "steps", minimum=1)
    rec = _check_layers(layers, L)
    wmom = [weight_moments((ws[l + 1], ws[l]), scheme, params) for l in range(L)]
    scale = np.ones(L)
    if sigma_w2 is not None:
        sigma_w2 = real(sigma_w2, "sigma_w2", minimum=0.0)
        if any(v == 0.0 for _, v in wmom):
            raise InitArgumentError(f"sigma_w2: init={key!r} has entries without variance; rescaling "
                                    f"needs a random scheme (e.g. 'orthogonal', 'xavier_normal')")
        scale = np.sqrt([sigma_w2 / (ws[l] * v) for l, (_, v) in enumerate(wmom)])
    if method == "auto":
        method = "exact" if max(ws) <= EXACT_MAX_WIDTH else "randomized"
    k_max = max(min(ws[0], ws[l]) for l in rec)
    work = (3 * max(ws) * ws[0] if method == "exact"
            else (min(steps, k_max) + 4) * k_max * probes + 2 * max(ws) * probes)
    check_memory(dt.itemsize * sum(ws[l] * ws[l + 1] for l in range(L)) + 8 * work
                 + dt.itemsize * n_inputs * sum(ws),
                 f"jacobian_spectrum(widths={_short(ws)}, method={method}, dtype={dt.name})")

    nl = len(rec)
    per = {s: np.empty((n_networks * n_inputs, nl)) for s in JACOBIAN_STATISTICS}
    svs = [[] for _ in rec] if method == "exact" else None
    ritz = [([], []) for _ in rec] if method == "randomized" else None
    pse = {s: np.empty((n_networks * n_inputs, nl)) for s in ("mean_sv2", "var_sv2")} if ritz else None
    flops = 2.0 * max(ws) ** 2 * (ws[0] if method == "exact" else probes)  # the largest GEMM
    for net in range(n_networks):
        with blas_threads_for(flops):  # one BLAS thread for small GEMMs: 37x faster SVDs at n=128 on a busy machine
            _one_network(net, ws, rec, scheme, params, sigma_w2, scale, bias, bias_value, bias_std, seed,
                         input_mean, input_std, n_inputs, act, dt, method, probes, steps, per, svs, ritz, pse)
    stats, stderr = {}, {}
    with np.errstate(invalid="ignore", over="ignore"):  # inf condition numbers, NaN spreads of J = 0 stay so
        for s, a in per.items():
            stats[s] = np.median(a, axis=0) if s == "cond" else a.mean(axis=0)
            stderr[s] = a.std(axis=0, ddof=1) / math.sqrt(a.shape[0]) if a.shape[0] > 1 else np.full(nl, np.nan)
    config = dict(widths=ws, activation=act.name, activation_param=act.param, init=key, init_params=params,
                  sigma_w2=sigma_w2, bias=bias, bias_value=bias_value, bias_std=bias_std, input_mean=input_mean,
                  input_std=input_std, n_networks=n_networks, n_inputs=n_inputs, seed=seed, method=method,
                  probes=probes if ritz else None, steps=steps if ritz else None, dtype=dt.name)
    th, note = (_theory(ws, rec, act, scheme, wmom, sigma_w2, bias, bias_value, bias_std, input_mean, input_std)
                if theory else ({k: np.full(nl, np.nan) for k in ("mean_sv2", "var_sv2", "norm_var", "chi1", "q")},
                                "theory=False"))
    config["theory_note"] = note
    eps = np.finfo(dt).eps
    resolution = np.array([min(ws[0], ws[l]) * eps for l in rec])
    if method == "randomized":
        resolution = np.sqrt(resolution)
    return JacobianResult(
        layers=np.array(rec), method=method, per_sample=per, stats=stats, stderr=stderr, theory=th, config=config,
        singular_values=[np.array(v) for v in svs] if svs is not None else None,
        ritz=[(np.concatenate(a), np.concatenate(b)) for a, b in ritz] if ritz is not None else None,
        probe_stderr=pse, resolution=resolution)


def _one_network(net, ws, rec, scheme, params, sigma_w2, scale, bias, bias_value, bias_std, seed,
                 input_mean, input_std, n_inputs, act, dt, method, probes, steps, per, svs, ritz, pse):
    """Network ``net``: its weights, biases and inputs, and every input's Jacobian statistics (in place)."""
    Ws = [make_weight((ws[l + 1], ws[l]), scheme, params, seed, stream(net, l + 1, KIND_WEIGHT), dt)
          for l in range(rec[-1])]  # the layers beyond the deepest recorded one do not enter J
    if sigma_w2 is not None:
        Ws = [(W * scale[l]).astype(dt, copy=False) for l, W in enumerate(Ws)]
    bs = [_bias(net, l, ws, bias, bias_value, bias_std, seed) for l in range(rec[-1])]
    X = random_normal((n_inputs, ws[0]), input_mean, input_std, seed, stream(net, 0, KIND_INPUT), dt)
    Ds = _derivatives(X, Ws, bs, act, dt)
    for i in range(n_inputs):
        row = net * n_inputs + i
        d = [D[i] for D in Ds]
        if method == "exact":
            for j, s in enumerate(_exact_svs(Ws, d, rec)):
                svs[j].append(s)
                _record(per, row, j, s * s, s[0], s[-1])
        else:
            V = random_normal((ws[0], probes), 0.0, 1.0, seed, stream(net, i, KIND_PROBE), np.float64)
            for j, l in enumerate(rec):
                nodes, wts, mom, C = _slq(Ws[:l], d[:l], V, steps)
                with np.errstate(over="ignore"):  # C = inf: a spectrum beyond float64's range
                    ritz[j][0].append(nodes.ravel() * C)
                    ritz[j][1].append(wts.ravel() / probes)
                    sv = math.sqrt(max(float(nodes.max()), 0.0) * C), math.sqrt(max(float(nodes.min()), 0.0) * C)
                    _record(per, row, j, mom.mean(axis=0), *sv, unit=C)
                    se1, se2 = _jackknife(mom)
                    pse["mean_sv2"][row, j], pse["var_sv2"][row, j] = se1 * C, se2 * C * C


def _check_layers(layers, L):
    if layers is None:
        return [L]
    if isinstance(layers, (str, bytes)) or not hasattr(layers, "__iter__"):
        raise TypeError(f"layers must be a sequence of depths in 1..{L}, got {layers!r}")
    out = sorted({integer(x, "layers entry", minimum=1, maximum=L) for x in layers})
    if not out:
        raise InitArgumentError("layers must name at least one depth")
    return out


def _bias(net, l, ws, bias, bias_value, bias_std, seed):
    if bias == "normal":
        return random_normal((ws[l + 1],), 0.0, bias_std, seed, stream(net, l + 1, KIND_BIAS), np.float64)
    return np.full(ws[l + 1], bias_value, dtype=np.float64)


def _derivatives(X, Ws, bs, act, dt):
    """phi'(z_l) of every input (rows) at every layer, in ``dt``."""
    Ds = []
    a = X
    for W, b in zip(Ws, bs, strict=True):
        z = (a @ W.T).astype(np.float64) + b
        Ds.append(act.df(z).astype(dt))
        a = act.f(z).astype(dt)
    return Ds


def _exact_svs(Ws, d, rec):
    """Singular values (descending, float64) of J_l = D_l W_l ... D_1 W_1 at each recorded l."""
    out = []
    J = None
    for l, (W, dl) in enumerate(zip(Ws[:rec[-1]], d, strict=False), start=1):
        J = dl[:, None] * (W if J is None else W @ J)
        if l in rec:
            Jf = J.astype(np.float64)
            if not np.all(np.isfinite(Jf)):
                out.append(np.full(min(J.shape), np.nan))
            else:
                out.append(linalg.svdvals(Jf, check_finite=False))
    return out


def _cond(smax, smin):
    """s_max / s_min: inf for a singular J (J = 0 included), NaN when s_max is NaN."""
    if math.isnan(smax) or math.isnan(smin):
        return math.nan
    return smax / smin if smin > 0 else math.inf


def _record(per, row, j, lam, smax, smin, unit=None):
    """Store one sample's statistics, from its squared singular values or from (m1, m2) in units of ``unit``.

    Moments are taken in units of the largest value: lambda^2 of an exploding net (1e160 and
    beyond) would overflow. A variance beyond float64's range is inf; the normalised one stays finite.
    """
    if unit is not None:
        scale = unit
        x1, xv = lam[0], max(lam[1] - lam[0] ** 2, 0.0)
    else:
        top = float(lam.max()) if lam.size else 0.0
        scale = top if 0.0 < top < math.inf else 1.0
        x = lam / scale
        x1, xv = float(x.mean()), float(x.var())
    with np.errstate(over="ignore"):
        per["mean_sv2"][row, j] = x1 * scale
        per["var_sv2"][row, j] = xv * scale * scale
    per["norm_var"][row, j] = xv / (x1 * x1) if x1 > 0 else math.nan
    per["max_sv"][row, j], per["min_sv"][row, j] = smax, smin
    per["cond"][row, j] = _cond(float(smax), float(smin))


def _slq(Ws, d, V, steps):
    """Stochastic Lanczos quadrature of A = J^T J or J J^T (the smaller side) for J = D_l W_l ... D_1 W_1.

    Returns the Ritz values (nodes) and Gauss weights of every probe (shape ``(probes, m)``; padded
    with zero weights where a probe stopped early), each probe's quadrature moments
    ``(sum w node, sum w node^2)``, shape ``(probes, 2)``, both in units of ``C``, and ``C``.
    """
    n0, nl = Ws[0].shape[1], Ws[-1].shape[0]
    dt = Ws[0].dtype
    # Each layer's product is divided by its typical gain c_l = sqrt(mean d_l^2 ||W_l||_F^2 / n_{l-1}),
    # so vanishing or exploding nets (and float32 products) stay in range; lambda = C x Ritz value,
    # C = prod c_l^2 (inf beyond float64's range).
    logc = []
    for W, dl in zip(Ws, d, strict=True):
        g2 = float(np.mean(np.square(dl, dtype=np.float64))) * float(np.sum(np.square(W, dtype=np.float64))) \
            / W.shape[1]
        logc.append(0.5 * math.log(g2) if g2 > 0 and math.isfinite(g2) else 0.0)
    inv = [dt.type(math.exp(-x)) for x in logc]

    def jv(U):  # J U / prod c
        for W, dl, ic in zip(Ws, d, inv, strict=True):
            U = (dl * ic)[:, None] * (W @ U)
        return U

    def jtv(U):  # J^T U / prod c
        for W, dl, ic in zip(reversed(Ws), reversed(d), reversed(inv), strict=True):
            U = W.T @ ((dl * ic)[:, None] * U)
        return U

    if n0 <= nl:
        k, A = n0, (lambda Q: jtv(jv(Q.astype(dt))).astype(np.float64))
        V0 = V
    else:
        k, A = nl, (lambda Q: jv(jtv(Q.astype(dt))).astype(np.float64))
        V0 = V[:nl] if V.shape[0] >= nl else V  # nl < n0: the first nl rows are Gaussian too
    p = V0.shape[1]
    m = min(steps, k)
    Q = np.zeros((m, k, p))
    alpha, beta = np.zeros((m, p)), np.zeros((m, p))
    nsteps = np.full(p, m)
    q = V0 / np.linalg.norm(V0, axis=0)
    q_prev, b_prev = np.zeros_like(q), np.zeros(p)
    active = np.ones(p, dtype=bool)
    for j in range(m):
        Q[j] = q
        w = A(q)
        a = np.einsum("kp,kp->p", q, w)
        w -= a * q + b_prev * q_prev
        for _ in range(2):  # full reorthogonalisation, twice ("twice is enough")
            w -= np.einsum("jkp,jp->kp", Q[:j + 1], np.einsum("jkp,kp->jp", Q[:j + 1], w))
        b = np.linalg.norm(w, axis=0)
        alpha[j] = np.where(active, a, 0.0)
        tol = _BREAKDOWN * np.abs(alpha[:j + 1]).max(axis=0)
        stop = active & ((b <= tol) | ~np.isfinite(b) | (j == m - 1))
        nsteps[stop & (nsteps == m)] = j + 1
        active &= ~stop
        b = np.where(active, b, 0.0)
        beta[j] = b
        q_prev, q = q, np.where(active, w / np.where(b > 0, b, 1.0), 0.0)
        b_prev = b
        if not active.any():
            break
    nodes, wts = np.zeros((p, m)), np.zeros((p, m))
    for c in range(p):
        s = int(nsteps[c])
        if s == 1:
            th, U = alpha[:1, c], np.ones((1, 1))
        else:
            th, U = linalg.eigh_tridiagonal(alpha[:s, c], beta[:s - 1, c])
        nodes[c, :s] = th
        wts[c, :s] = U[0] ** 2
        nodes[c, s:] = th[-1]  # padding: weight 0, a node inside the range
    mom = np.stack([(wts * nodes).sum(axis=1), (wts * nodes * nodes).sum(axis=1)], axis=1)
    return nodes, wts, mom, math.exp(min(2.0 * sum(logc), 1000.0))  # 1000: exp gives inf instead of raising


def _jackknife(mom):
    """Jackknife standard errors over probes of m1 and of m2 - m1^2 (from per-probe moments)."""
    p = mom.shape[0]
    loo = (mom.sum(axis=0) - mom) / (p - 1)
    m1, v = loo[:, 0], loo[:, 1] - loo[:, 0] ** 2
    f = math.sqrt((p - 1) / p)
    return f * math.sqrt(((m1 - m1.mean()) ** 2).sum()), f * math.sqrt(((v - v.mean()) ** 2).sum())


def _theory(ws, rec, act, scheme, wmom, sigma_w2, bias, bias_value, bias_std, input_mean, input_std):
    """The prediction at the recorded layers and a note ("" or why some of it is missing)."""
    nl = len(rec)
    nan = {k: np.full(nl, np.nan) for k in ("mean_sv2", "var_sv2", "norm_var", "chi1", "q")}
    if any(m != 0.0 for m, _ in wmom):
        return nan, "no prediction: the weights do not have zero mean"
    L = rec[-1]
    sw2 = [sigma_w2 if sigma_w2 is not None else ws[l] * v for l, (_, v) in enumerate(wmom[:L])]
    kind = "orthogonal" if scheme == "orthogonal" else "gaussian"
    th = jacobian_theory(L, act, sw2, bias_std ** 2, weights=kind,
                         bias_mean=bias_value if bias == "constant" else 0.0,
                         input_m2=input_mean ** 2 + input_std ** 2, widths=ws[:L + 1])
    idx = np.array(rec) - 1  # every statistic over the k_l = min(n_0, n_l) squared singular values
    return {k: np.asarray(th[k])[idx].astype(np.float64) for k in ("mean_sv2", "var_sv2", "norm_var", "chi1", "q")}, ""
