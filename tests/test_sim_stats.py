"""The simulator's ``stats=`` selection: a selected statistic has the bits of the full run, the others
are NaN, unknown names are refused with the valid ones listed, and the work that only unselected
statistics need (the backward pass, the batch-mean weight-gradient GEMM, the input-gradient GEMM)
is not done, counted on the BLAS calls themselves."""

import numpy as np
import pytest

from fastinit import InitArgumentError
from fastinit.sim import MLP_STATISTICS, _passes, simulate_mlp, sweep
from fastinit.theory._common import MLP_FORWARD_STATISTICS

# selections that switch each piece of work on and off on its own
SELECTIONS = [
    ["preact_var"],
    ["post_m2", "frac_inactive"],
    ["preact_unitvar", "preact_unitspread", "frac_dead_units", "frac_saturated"],
    ["grad_preact_m2"],
    ["grad_weight_m2_batchmean"],
    ["grad_weight_m2_per_sample", "grad_bias_m2_per_sample"],
    ["grad_input_m2", "preact_mean"],
    ["preact_mean", "preact_var", "preact_m2", "post_mean", "post_var", "post_m2", "grad_preact_m2",
     "grad_input_m2"],
]


def _run(**kw):
    args = dict(depth=4, width=48, batch=96, activation="tanh", init="xavier_normal", seed=3,
                n_networks=2, theory=False, dtype="float64")
    args.update(kw)
    return simulate_mlp(**args)


@pytest.mark.parametrize("activation, dtype, residual", [("tanh", "float64", None), ("gelu", "float32", None),
                                                         ("relu", "float64", 0.5), ("sigmoid", "float32", 0.3)])
def test_selected_statistics_have_the_full_runs_bits(activation, dtype, residual):
    full = _run(activation=activation, dtype=dtype, residual_scale=residual)
    for sel in SELECTIONS:
        part = _run(activation=activation, dtype=dtype, residual_scale=residual, stats=sel)
        assert part.config["stats"] == [n for n in MLP_STATISTICS if n in sel]
        for name in MLP_STATISTICS:
            got = part.per_network[name]
            if name in sel and not (name == "frac_saturated" and activation not in ("tanh", "sigmoid")):
                np.testing.assert_array_equal(got, full.per_network[name], err_msg=f"{name} of {sel}")
            else:
                assert np.all(np.isnan(got)), (name, sel)


def test_selection_on_the_threaded_path_and_in_a_sweep():
    """Layers of 512 x 256 entries run in blocks on several threads; a sweep passes stats= through."""
    kw = dict(depth=3, width=256, batch=512, activation="selu", init="lecun_normal", seed=5, theory=False)
    full = simulate_mlp(**kw)
    sel = ["preact_m2", "grad_preact_m2", "grad_weight_m2_batchmean"]
    part = simulate_mlp(stats=sel, **kw)
    for name in sel:
        np.testing.assert_array_equal(part.per_network[name], full.per_network[name], err_msg=name)
    sw = sweep(inits="xavier_normal", activations=["relu"], depths=[3], widths=[32], seeds=[0, 1], batch=64,
               theory=False, stats=["post_m2"])
    (res,) = sw.results.values()
    ref = simulate_mlp(depth=3, width=32, batch=64, activation="relu", init="xavier_normal", seed=1, theory=False)
    np.testing.assert_array_equal(res.per_network["post_m2"][1], ref.per_network["post_m2"][0])
    assert np.all(np.isnan(res.per_network["grad_preact_m2"]))
    assert all(np.isnan(r["preact_var"]) and np.isfinite(r["post_m2"]) for r in sw.records)


def test_one_name_as_a_string():
    res = _run(stats="grad_input_m2")
    assert np.isfinite(res.grad_input_m2) and np.all(np.isnan(res.preact_var))


@pytest.mark.parametrize("stats, exc, match", [
    (["preact_var", "preact_variance"], InitArgumentError, r"unknown statistic 'preact_variance'.*preact_mean, "),
    ([], InitArgumentError, "at least one statistic"),
    ([1], TypeError, "stats entries"),
    (3, TypeError, "stats must be"),
])
def test_bad_selections_name_the_valid_statistics(stats, exc, match):
    with pytest.raises(exc, match=match):
        _run(stats=stats)


def test_gradient_statistic_with_backward_false_is_refused():
    with pytest.raises(InitArgumentError, match="grad_preact_m2.*backward=False"):
        _run(stats=["grad_preact_m2"], backward=False)
    res = _run(stats=["preact_var"], backward=False)   # a forward selection is fine
    assert np.all(np.isfinite(res.preact_var))


class _CountingMatmul:
    """numpy.matmul with a count of the calls whose first operand is a transposed (column) slice:
    the batch-mean weight gradient's delta^T a, and of all calls."""

    def __init__(self, real):
        self.real, self.calls, self.weight_gradient = real, 0, 0

    def __call__(self, a, b, *args, **kwargs):
        self.calls += 1
        if not a.flags.c_contiguous:
            self.weight_gradient += 1
        return self.real(a, b, *args, **kwargs)


@pytest.mark.parametrize("stats, gemms", [
    (None, "fwd+bwd+input+dW"),
    (["preact_var", "post_m2", "frac_dead_units"], "fwd"),
    (["grad_preact_m2", "grad_weight_m2_per_sample"], "fwd+bwd"),
    (["grad_input_m2"], "fwd+bwd+input"),
    (["grad_weight_m2_batchmean"], "fwd+bwd+dW"),
])
def test_only_the_needed_gemms_run(monkeypatch, stats, gemms):
    """Counts the BLAS calls (numpy.matmul as the simulator calls it): forward a W^T per layer,
    backward delta W for layers 2..L, the input gradient delta_1 W_1, the batch-mean weight
    gradient delta^T a per layer; each in row blocks of ``_passes.row_blocks``."""
    L, n, B = 3, 40, 64
    counter = _CountingMatmul(np.matmul)
    monkeypatch.setattr(np, "matmul", counter)
    res = simulate_mlp(depth=L, width=n, batch=B, activation="relu", init="he", theory=False, stats=stats)
    monkeypatch.undo()
    nb = len(_passes.row_blocks(B, n, 4)) - 1
    nbw = len(_passes.row_blocks(n, n, 4)) - 1
    parts = {"fwd": L * nb, "bwd": (L - 1) * nb, "input": nb, "dW": L * nbw}
    assert counter.calls == sum(parts[p] for p in gemms.split("+"))
    assert counter.weight_gradient == (L * nbw if "dW" in gemms else 0)
    assert np.isfinite(res.grad_weight_m2_batchmean).all() == ("dW" in gemms)


def test_no_backward_pass_without_a_gradient_statistic(monkeypatch):
    calls = []
    real = _passes.backward_layer
    monkeypatch.setattr(_passes, "backward_layer", lambda *a, **k: calls.append(1) or real(*a, **k))
    _run(stats=list(MLP_FORWARD_STATISTICS))
    assert calls == []
    _run(stats=["grad_bias_m2_per_sample"])
    assert len(calls) == 2 * 4      # one per layer and network


def test_kernels_loaded_from_the_cache_keep_their_activation(tmp_path):
    """Two processes on one fresh Numba cache directory: the first compiles the kernels of ReLU and
    tanh, the second loads both from the cache. Every activation must keep its own row loops (each
    kind's loops have their own symbol names; with shared names the second process ran ReLU's loops
    for tanh too)."""
    import json

    from _subproc import run_python

    code = ("import json; from fastinit.sim import simulate_mlp\n"
            "print(json.dumps({a: simulate_mlp(depth=2, width=16, batch=32, activation=a, theory=False,"
            " dtype='float64').post_m2.tolist() for a in ('relu', 'tanh')}))")
    env = {"NUMBA_CACHE_DIR": str(tmp_path), "FASTINIT_NUMBA_CACHE": "1"}
    runs = []
    for _ in range(2):
        proc = run_python(code, env=env)
        assert proc.returncode == 0, proc.stderr
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    here = {a: simulate_mlp(depth=2, width=16, batch=32, activation=a, theory=False, dtype="float64").post_m2.tolist()
            for a in ("relu", "tanh")}
    assert runs[0] == runs[1] == here
    assert here["relu"] != here["tanh"]


def test_theory_cached_on_disk_gives_the_same_numbers(tmp_path, monkeypatch):
    """The mean-field theory of a configuration is kept on disk beside Numba's cache; a later call
    (another process: here the in-memory cache is cleared) reads the same numbers, bit for bit."""
    from fastinit.sim import _mlp

    monkeypatch.setenv("NUMBA_CACHE_DIR", str(tmp_path))
    if not _mlp.NUMBA_CACHE:
        pytest.skip("on-disk caches are off (FASTINIT_NUMBA_CACHE=0)")
    kw = dict(depth=5, width=64, batch=128, activation="gelu", init="he", seed=2)
    _mlp._mlp_theory_cached.cache_clear()
    first = simulate_mlp(**kw).theory
    files = list((tmp_path / "fastinit-sim-theory").glob("*.npz"))
    assert len(files) == 1
    _mlp._mlp_theory_cached.cache_clear()
    second = simulate_mlp(**kw).theory
    for name in MLP_STATISTICS:
        np.testing.assert_array_equal(second[name], first[name], err_msg=name)
    files[0].write_bytes(b"not an npz file")   # a damaged entry is recomputed
    _mlp._mlp_theory_cached.cache_clear()
    third = simulate_mlp(**kw).theory
    np.testing.assert_array_equal(third["preact_m2"], first["preact_m2"])
    _mlp._mlp_theory_cached.cache_clear()


@pytest.mark.parametrize("kw, stats, weight_gradient, floor", [
    (dict(depth=6, width=256, activation="tanh"), None, True, 0.5),                      # keeps a_l too
    (dict(depth=6, width=256, activation="relu", residual_scale=0.5), None, True, 0.5),  # keeps h_l
    (dict(depth=6, width=256, activation="relu", residual_scale=0.5), ["grad_preact_m2"], False, 0.5),
    (dict(depth=6, width=256, activation="tanh"), ["grad_preact_m2", "post_m2"], False, 0.5),
    (dict(depth=6, width=256, activation="gelu"), ["post_m2"], False, 0.0),  # forward only: z not kept
])
def test_peak_memory_stays_within_the_estimate(kw, stats, weight_gradient, floor):
    """What a run allocates (tracemalloc sees NumPy's buffers) stays below mlp_bytes, the estimate the
    memory check uses, and with a backward pass is more than half of it (not wildly loose either)."""
    import tracemalloc

    from fastinit.sim import _workspace

    B, n, L = 1024, kw["width"], kw["depth"]
    simulate_mlp(batch=B, theory=False, stats=stats, **kw)  # compile outside the traced run
    estimate = _passes.mlp_bytes([n] * (L + 1), B, 4, weight_gradient)
    assert not _workspace._state()["pool"]  # no buffers kept from another run
    tracemalloc.start()
    try:
        simulate_mlp(batch=B, theory=False, stats=stats, **kw)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert floor * estimate < peak <= estimate, (peak, estimate)
