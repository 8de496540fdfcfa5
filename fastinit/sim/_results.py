"""Results of the simulator: per-layer statistics with standard errors, medians and bands across networks,
the mean-field theory and its finite-width band, sweeps' tidy tables, verdicts, and the one text-table
formatter they (and ``fastinit simulate``) print with."""

from __future__ import annotations

import csv
import math
from dataclasses import dataclass, field

import numpy as np
from scipy.special import stdtrit  # inverse Student-t CDF; scipy.stats costs ~1 s to import

from fastinit.theory import FLUCTUATION_STATISTICS, fluctuation_theory, log_normal_band

__all__ = ["SimulationResult", "MLPResult", "RNNResult", "SweepResult", "verdict", "summarise", "t975",
           "format_table", "fluctuation_keys", "BAND_LEVEL", "VERDICT_Z"]

#: Probability inside the finite-width band that tables, records and plots show (one network).
BAND_LEVEL = 0.95
#: The verdict's threshold in standard deviations of the mean of ln X over the networks (two-sided p = 0.0027
#: under the log-normal law of the finite-width theory).
VERDICT_Z = 3.0


def format_table(head, rows, align="right", note=None):
    """Text table: a header row, a rule, one line per row; columns padded to their widest cell.

    Examples
    --------
    >>> print(format_table(["a", "bb"], [["1", "22"], ["333", "4"]]))
      a  bb
    ---  --
      1  22
    333   4
    """
    cells = [list(map(str, head))] + [list(map(str, r)) for r in rows]
    widths = [max(len(r[j]) for r in cells) for j in range(len(head))]
    pad = (lambda c, w: c.rjust(w)) if align == "right" else (lambda c, w: c.ljust(w))
    lines = ["  ".join(pad(c, w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if note:
        lines.append(note)
    return "\n".join(lines)


def _pick(a, i):
    """Entry ``i`` of a per-layer array, or the value of a scalar statistic."""
    return float(a) if np.ndim(a) == 0 else float(a[i])


def t975(dof):
    """Two-sided 95% Student-t quantile (NaN without degrees of freedom)."""
    if dof < 1:
        return np.nan
    return float(stdtrit(dof, 0.975))


@dataclass
class SimulationResult:
    r"""Per-layer (or per-step) statistics of a simulation.

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
        no prediction). For the pooled second moments of an MLP
        (:data:`fastinit.theory.FLUCTUATION_STATISTICS`) also ``<stat>_median`` and ``<stat>_logsd``:
        the finite-width median :math:`e^{E\ln X}` of one network and the standard deviation of
        :math:`\ln X` across networks (:func:`fastinit.theory.fluctuation_theory`); see
        :meth:`theory_band`.
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

    @property
    def median(self):
        """Median across the networks of each statistic (a dict like ``stats``)."""
        return {n: np.median(np.asarray(v, dtype=np.float64), axis=0) for n, v in self.per_network.items()}

    def spread(self, name, level=0.8):
        """Central ``level`` range of a statistic across the networks: its ``(1 - level)/2`` and
        ``(1 + level)/2`` quantiles, per layer (``(low, high)``)."""
        a = np.asarray(self.per_network[name], dtype=np.float64)
        lo, hi = np.quantile(a, [0.5 - 0.5 * level, 0.5 + 0.5 * level], axis=0)
        return lo, hi

    def theory_band(self, name, level=BAND_LEVEL):
        r"""Finite-width band of one network: the central ``level`` interval of the log-normal law
        :math:`\ln X \sim N(\ln \text{median}, \text{logsd}^2)` (NaN where there is none).

        Examples
        --------
        >>> from fastinit.sim import simulate_mlp
        >>> res = simulate_mlp(depth=10, width=100, batch=1, activation="relu", init="he")
        >>> lo, hi = res.theory_band("preact_var")    # ReLU/He: Var ln q_10 = 2/100 + 5 * 9/100 + 2/100
        >>> round(float(lo[-1]), 2), round(float(hi[-1]), 2)
        (0.39, 6.11)
        """
        med, sd = self.theory.get(name + "_median"), self.theory.get(name + "_logsd")
        if med is None or sd is None:
            nan = np.full(np.shape(self.stats[name]), np.nan)
            return nan, nan.copy()
        return log_normal_band(med, sd, level)

    def ci95(self, name):
        """95% confidence interval ``(low, high)`` of a statistic's mean across networks."""
        half = t975(self.n_networks - 1) * self.stderr[name]
        return self.stats[name] - half, self.stats[name] + half

    def to_records(self, stats=None):
        """One dict per layer (step): ``{index_name, stat, stat_se, stat_median, stat_theory, ...}``.

        ``stat_median`` is the median across networks; statistics with a finite-width theory add
        ``stat_theory_median``, ``stat_theory_lo`` and ``stat_theory_hi`` (the :data:`BAND_LEVEL` band
        of one network). Scalars (``grad_input_m2``) are repeated on every row.
        """
        names = list(stats) if stats is not None else list(self.stats)
        med = self.median
        bands = {n: self.theory_band(n) for n in names if n + "_median" in self.theory}
        rows = []
        for i, idx in enumerate(self.index):
            row = {self.index_name: int(idx)}
            for n in names:
                v, se, th = self.stats[n], self.stderr[n], self.theory.get(n)
                row[n] = _pick(v, i)
                row[n + "_se"] = _pick(se, i)
                row[n + "_median"] = _pick(med[n], i)
                row[n + "_theory"] = _pick(th, i) if th is not None else float("nan")
                if n in bands:
                    row[n + "_theory_median"] = _pick(self.theory[n + "_median"], i)
                    row[n + "_theory_lo"] = _pick(bands[n][0], i)
                    row[n + "_theory_hi"] = _pick(bands[n][1], i)
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
        rows = []
        n = len(self.index)
        for i in range(n):
            if i % every and i != n - 1:
                continue
            row = [str(int(self.index[i]))]
            for s in stats:
                v, se = _pick(self.stats[s], i), _pick(self.stderr[s], i)
                th = self.theory.get(s)
                th = _pick(th, i) if th is not None else np.nan
                txt = fmt.format(v)
                if np.isfinite(se):
                    txt += " ±" + fmt.format(se)
                if np.isfinite(th):
                    txt += " [" + fmt.format(th) + "]"
                row.append(txt)
            rows.append(row)
        return format_table([self.index_name, *stats], rows, note="(value ±stderr [mean-field theory])")

    def __repr__(self):
        return (f"{type(self).__name__}({self.index_name}s={len(self.index)}, "
                f"n_networks={self.n_networks}, stats={list(self.stats)})")


class MLPResult(SimulationResult):
    """Result of :func:`simulate_mlp` (see :class:`SimulationResult`)."""


class RNNResult(SimulationResult):
    """Result of :func:`simulate_rnn` (see :class:`SimulationResult`); index is t = 0..T."""


def summarise(per_network, names):
    """Mean over networks and its standard error (NaN for one network) of each statistic in ``names``."""
    stats, stderr = {}, {}
    with np.errstate(all="ignore"):  # exploding networks: inf and NaN pass through without warnings
        for n in names:
            arr = np.asarray(per_network[n], dtype=np.float64)
            k = arr.shape[0]
            if k == 1:  # the mean of one value is that value
                stats[n] = arr[0].copy()
                stderr[n] = np.full_like(stats[n], np.nan)
            else:
                stats[n] = arr.mean(axis=0)
                stderr[n] = arr.std(axis=0, ddof=1) / math.sqrt(k)
    return stats, stderr


def fluctuation_keys(widths, act, weight_means, weight_vars, bias_mean, bias_var, input_mean, input_std, batch,
                     residual_scale=None, orthogonal=False, mean_field=None):
    """The finite-width theory's ``<stat>_median`` and ``<stat>_logsd`` arrays of one simulator configuration
    (:func:`fastinit.theory.fluctuation_theory`; NaN where it does not apply: residual nets, weights of nonzero
    mean). ``grad_input_m2`` keys are 0-d, as the statistic is. ``mean_field``: the configuration's mean-field
    theory, if computed already. Cached per configuration; callers get their own arrays."""
    args = (tuple(widths), act, tuple(weight_means), tuple(weight_vars), bias_mean, bias_var, input_mean, input_std,
            batch, residual_scale, orthogonal)
    try:
        hash(args)
    except TypeError:  # an unhashable user activation
        return _fluctuation_keys(*args, mean_field)
    out = _fluctuation_keys_cached(*args, mean_field=mean_field)
    return {k: np.array(v, copy=True) for k, v in out.items()}


def _fluctuation_keys_cached(*args, mean_field=None):
    out = _FLUCT_CACHE.get(args)
    if out is None:
        out = _fluctuation_keys(*args, mean_field)
        if len(_FLUCT_CACHE) >= 512:
            _FLUCT_CACHE.clear()  # (sweeps run in threads: no iteration over a dict another thread may change)
        _FLUCT_CACHE[args] = out
    return out


_FLUCT_CACHE = {}  # configuration -> keys (the mean-field dict is not hashable, so no functools.lru_cache)


def _fluctuation_keys(widths, act, weight_means, weight_vars, bias_mean, bias_var, input_mean, input_std, batch,
                      residual_scale, orthogonal, mean_field):
    L = len(widths) - 1
    out = {f"{k}_{s}": np.full(L, np.nan) for k in FLUCTUATION_STATISTICS for s in ("median", "logsd")}
    if residual_scale is None and not any(m != 0.0 for m in weight_means):
        out.update(fluctuation_theory(list(widths), act.spec, act.theory_param, weight_var=list(weight_vars),
                                      bias_mean=bias_mean, bias_var=bias_var, input_mean=input_mean,
                                      input_std=input_std, batch=batch, orthogonal=orthogonal,
                                      mean_field=mean_field))
    for s in ("median", "logsd"):
        out[f"grad_input_m2_{s}"] = np.array(float(np.ravel(out[f"grad_input_m2_{s}"])[0]))
    return out


def _theory_grade(result, name, i, z, k):
    """``mean field``, ``finite width``, ``mismatch`` or ``n/a`` for statistic ``name`` at entry ``i``."""
    th = result.theory
    mf, med, sd = th.get(name), th.get(name + "_median"), th.get(name + "_logsd")
    per = np.asarray(result.per_network.get(name, np.empty((0,))), dtype=np.float64)
    if mf is None or med is None or sd is None or per.size == 0:
        return "n/a"
    x = per[:, i] if per.ndim == 2 else per
    mf, med, sd = _pick(mf, i), _pick(med, i), _pick(sd, i)
    if not (np.all(np.isfinite(x)) and np.all(x > 0) and mf > 0 and med > 0 and np.isfinite(sd)):
        return "n/a"
    widths = result.config.get("widths")
    # the theory's own error in the mean, O(L/n) for smooth activations (docs/theory.md section 2.7)
    floor = 0.02 + (0.5 * float(np.sum(1.0 / np.asarray(widths[1:], dtype=float))) if widths else 0.0)
    tol = math.sqrt(sd * sd / k + floor * floor)
    g = float(np.mean(np.log(x)))
    if abs(g - math.log(mf)) <= z * tol and abs(math.log(med / mf)) <= tol:
        return "mean field"
    if abs(g - math.log(med)) <= z * tol:
        return "finite width"
    return "mismatch"


def verdict(result, factor=10.0, z=VERDICT_Z):
    r"""Classify a simulated MLP as ``symmetric``, ``exploding``, ``vanishing`` or ``stable``, and grade the
    theory against it.

    * ``symmetric``: every unit of the last layer computes the same value for every sample
      (``preact_unitspread`` is 0 up to rounding), as with constant or zero weights.
    * ``exploding`` / ``vanishing``: the forward second moment ``post_m2`` or the backward
      ``grad_preact_m2`` changes by more than ``factor`` between the first and the last layer
      (non-finite values count as exploding).
    * ``stable`` otherwise.

    With :math:`m_l` = ``post_m2`` and :math:`g_l` = ``grad_preact_m2``, the forward grade
    compares :math:`m_L / m_1` and the backward grade :math:`g_1 / g_L` with
    :math:`[1/\text{factor}, \text{factor}]`.

    The theory grade compares the mean over the ``k`` networks of :math:`\ln X`, for ``preact_var`` at the
    last layer and ``grad_preact_m2`` at the first (the deepest point of each pass), with the mean-field
    value and the finite-width median (:func:`fastinit.theory.fluctuation_theory`), in units of
    :math:`t = \sqrt{\sigma^2/k + f^2}` (:math:`\sigma`: the predicted sd of :math:`\ln X`; :math:`f`: an
    allowance for the theory's own error in the mean, :math:`0.02 + \tfrac12\sum_l 1/n_l`):

    * ``mean field``: within ``z`` t of the mean-field value, whose distance to the finite-width median is
      below t (this run cannot tell the two apart);
    * ``finite width``: not that, but within ``z`` t of the finite-width median: the distance to the
      mean-field line is what networks of this width do;
    * ``mismatch``: neither; ``n/a``: no theory, or a zero or non-finite value.

    ``theory_forward`` and ``theory_backward`` are the two grades; ``theory`` the worse of them
    (mismatch > finite width > mean field > n/a).

    Returns
    -------
    dict
        ``{"forward", "backward", "overall", "theory", "theory_forward", "theory_backward"}``; ``overall`` is
        the worst of the first two in the order symmetric > exploding > vanishing > stable.

    Examples
    --------
    >>> from fastinit.sim import simulate_mlp, verdict
    >>> verdict(simulate_mlp(depth=8, width=64, batch=64, init="zeros"))["overall"]
    'symmetric'
    >>> v = verdict(simulate_mlp(depth=8, width=64, batch=64, activation="tanh", init="small"))
    >>> v["forward"], v["backward"], v["overall"], v["theory"]
    ('vanishing', 'vanishing', 'vanishing', 'mean field')
    """
    s = result.stats
    m2_last = float(s["preact_m2"][-1])
    spread = float(s["preact_unitspread"][-1])
    if np.isfinite(spread) and spread <= 1e-12 * max(m2_last, 1e-300):
        return {"forward": "symmetric", "backward": "symmetric", "overall": "symmetric", "theory": "n/a",
                "theory_forward": "n/a", "theory_backward": "n/a"}

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
    k = result.n_networks
    tf = _theory_grade(result, "preact_var", len(result.index) - 1, z, k)
    tb = _theory_grade(result, "grad_preact_m2", 0, z, k) if g is not None and np.isfinite(g).any() else "n/a"
    theory = max((tf, tb), key=["n/a", "mean field", "finite width", "mismatch"].index)
    return {"forward": fwd, "backward": bwd, "overall": overall, "theory": theory, "theory_forward": tf,
            "theory_backward": tb}


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
        ``(init, activation, depth, width) -> MLPResult`` (networks of every seed pooled), in grid
        order: inits outermost, then activations, depths, widths.
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
        cells = []
        for r in rows:
            c = [str(r[h]) for h in head]
            for s in stats:
                c.append(f"{fmt.format(r[s])} [{fmt.format(r[s + '_ci_low'])}, "
                         f"{fmt.format(r[s + '_ci_high'])}] ({fmt.format(r[s + '_theory'])})")
            cells.append(c)
        return format_table(head + [f"{s} [ci95] (theory)" for s in stats], cells)

    def to_csv(self, path):
        """Write the rows to ``path`` as CSV."""
        with open(path, "w", newline="") as fh:
            w = csv.DictWriter(fh, fieldnames=list(self.records[0]))
            w.writeheader()
            w.writerows(self.records)
