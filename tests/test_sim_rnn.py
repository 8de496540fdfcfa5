"""Tests of fastinit.sim.simulate_rnn: the compiled recurrent net against the NumPy reference
(identical weights), its ``stats=`` selection, and its mean-field prediction (threshold from the
sampling law, the p-value beside it)."""

import math

import numpy as np
import pytest
from scipy import stats

from fastinit import InitArgumentError, sim
from fastinit._reference.sim import reference_rnn
from fastinit.sim import simulate_rnn

P_STRICT = 1e-5  # two-sided false-alarm probability per comparison


def t_quantile(dof, p=P_STRICT):
    """Two-sided Student-t quantile: |T| > t_quantile has probability p."""
    return float(stats.t.ppf(1 - p / 2, dof))


def test_rnn_matches_reference():
    rng = np.random.default_rng(9)
    n, B, T = 48, 64, 7
    W = rng.normal(0, 1.3 / math.sqrt(n), (n, n))
    h0 = rng.normal(size=(B, n))
    G = rng.normal(size=(B, n))
    res = simulate_rnn(n, T, batch=B, activation="tanh", W=W, h0=h0, G=G, dtype="float64",
                       theory=False)
    ref = reference_rnn(h0, W, "tanh", T, G=G)
    for name in sim.RNN_STATISTICS:
        np.testing.assert_allclose(res.stats[name], ref[name], rtol=1e-9, equal_nan=True,
                                   err_msg=name)


# simulate_rnn's stats= selection: the selected statistics keep the full run's bits, the others are
# NaN, and the backward pass through time runs only for grad_h_m2
RNN_SELECTIONS = [["h_m2"], ["h_norm", "post_mean"], ["preact_m2", "preact_mean"], ["grad_h_m2"],
                  ["h_m2", "grad_h_m2"]]


@pytest.mark.parametrize("kw", [
    dict(activation="tanh", dtype="float64", n_networks=2),
    dict(activation="relu", init="kaiming_normal", dtype="float32", input_dim=12, bias="normal",
         bias_std=0.1, n_networks=2),
    dict(activation="gelu", init="xavier_normal", dtype="float32", batch=512, hidden=256),  # threaded blocks
])
def test_rnn_selected_statistics_have_the_full_runs_bits(kw):
    args = dict(hidden=24, steps=5, batch=40, seed=7)
    args.update(kw)
    full = simulate_rnn(**args)
    assert full.config["stats"] == list(sim.RNN_STATISTICS) and full.config["backward"] is True
    for sel in RNN_SELECTIONS:
        part = simulate_rnn(stats=sel, **args)
        assert part.config["stats"] == [n for n in sim.RNN_STATISTICS if n in sel]
        assert part.config["backward"] == ("grad_h_m2" in sel)
        for name in sim.RNN_STATISTICS:
            got = part.per_network[name]
            if name in sel:
                # index 0 of the pre-activation statistics is NaN in every run (there is no z_0)
                assert np.isfinite(got[:, 1:]).all(), (name, sel)
                np.testing.assert_array_equal(got, full.per_network[name], err_msg=f"{name} of {sel}")
                np.testing.assert_array_equal(part.stats[name], full.stats[name], err_msg=name)
            else:
                assert np.isnan(got).all() and np.isnan(part.stats[name]).all(), (name, sel)
                assert np.isnan(part.stderr[name]).all(), (name, sel)
            # the theory does not depend on the selection
            np.testing.assert_array_equal(part.theory[name], full.theory[name], err_msg=name)


def test_rnn_backward_pass_runs_only_for_grad_h_m2(monkeypatch):
    """Observed twice: the ``backward`` argument simulate_rnn hands to ``_passes.rnn_pass`` (and
    whether it draws a seed G), and the per-step backward kernel calls inside the pass."""
    passes, steps = [], []
    real_pass, real_layer = sim._passes.rnn_pass, sim._passes.backward_layer

    def spy_pass(*a, **k):
        passes.append((k["backward"], k["G"] is not None))
        return real_pass(*a, **k)

    monkeypatch.setattr(sim._passes, "rnn_pass", spy_pass)
    monkeypatch.setattr(sim._passes, "backward_layer", lambda *a, **k: steps.append(1) or real_layer(*a, **k))
    T, K = 4, 2
    cases = [(dict(stats=["h_m2", "h_norm", "preact_m2", "preact_mean", "post_mean"]), False),
             (dict(stats="h_norm"), False),
             (dict(stats=None, backward=False), False),
             (dict(stats=["h_m2", "h_norm"], backward=False), False),
             (dict(stats="grad_h_m2"), True),
             (dict(stats=None), True)]
    for kw, backward in cases:
        passes.clear(), steps.clear()
        res = simulate_rnn(16, T, batch=8, n_networks=K, theory=False, **kw)
        assert passes == [(backward, backward)] * K, kw
        assert len(steps) == (T * K if backward else 0), kw
        assert res.config["backward"] is backward
        assert np.isfinite(res.grad_h_m2).all() == backward


@pytest.mark.parametrize("stats, exc, match", [
    (["h_m2", "h_norms"], InitArgumentError, r"stats: unknown statistic 'h_norms'; valid names: h_m2, h_norm, "),
    ("preact_var", InitArgumentError, r"unknown statistic 'preact_var'.*grad_h_m2"),   # an MLP statistic
    ([], InitArgumentError, "stats must select at least one statistic"),
    (["h_m2", 3], TypeError, "stats entries must be statistic names"),
    (3, TypeError, "stats must be a statistic name or a sequence of names"),
    ({"h_m2": 1.0}.values(), TypeError, "stats entries"),
])
def test_rnn_bad_selections_name_the_argument_and_the_valid_statistics(monkeypatch, stats, exc, match):
    monkeypatch.setattr(sim._passes, "rnn_pass", None)   # refused before any pass runs
    with pytest.raises(exc, match=match):
        simulate_rnn(8, 3, batch=4, stats=stats)


def test_rnn_grad_h_m2_with_backward_false_is_refused():
    with pytest.raises(InitArgumentError, match=r"stats: 'grad_h_m2' is a gradient statistic, but backward=False"):
        simulate_rnn(8, 3, batch=4, stats=["h_m2", "grad_h_m2"], backward=False)
    res = simulate_rnn(8, 3, batch=4, stats=["h_m2"], backward=False, theory=False)   # forward only is fine
    assert np.isfinite(res.h_m2).all() and res.config["stats"] == ["h_m2"]


def test_rnn_input_path_and_normal_bias_follow_theory():
    """h_t = tanh(h W^T + x_t U^T + b): inputs and a N(0, 0.1^2) bias add variance each step."""
    K = 8
    res = simulate_rnn(96, 6, batch=128, activation="tanh", init="orthogonal", input_dim=48,
                       input_init="xavier_normal", bias="normal", bias_std=0.1, n_networks=K,
                       seed=2)
    tq = t_quantile(K - 1)
    rel = np.abs(res.h_m2[1:] / res.theory["h_m2"][1:] - 1)
    # untied mean field, ~1% for orthogonal tanh (theory.md 7.7) plus sampling error
    assert np.all(rel < 0.03 + tq * res.stderr["h_m2"][1:] / res.h_m2[1:]), rel
    assert res.config["theory_note"] == ""
