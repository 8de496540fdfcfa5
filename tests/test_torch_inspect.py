"""fastinit.torch.inspect: the statistics against a naive recomputation that keeps every tensor, the theory
column against the measurement, and the errors."""

import gc
import json
import math
import weakref

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import fastinit.torch as ft  # noqa: E402
from fastinit._checks import InitArgumentError  # noqa: E402


def _chain(act, depth=4, width=128, recipe="kaiming"):
    m = nn.Sequential(*[x for _ in range(depth) for x in (nn.Linear(width, width), act())])
    ft.init_model(m, recipe, seed=0)
    return m


def _x(b=256, n=128, seed=0):
    return torch.randn(b, n, generator=torch.Generator().manual_seed(seed))


def _naive(model, x, loss):
    """Keep every output, retain its gradient: the obvious (memory-hungry) computation."""
    outs, ins = {}, {}
    hs = []
    for name, mod in model.named_modules():
        if next(mod.children(), None) is None:
            def hook(mod, args, out, name=name):
                out.retain_grad()
                outs[name], ins[name] = out, args[0]
            hs.append(mod.register_forward_hook(hook))
    y = model(x)
    loss(y).backward()
    for h in hs:
        h.remove()
    return outs, ins


def test_statistics_equal_a_naive_recomputation():
    m = nn.Sequential(nn.Linear(32, 48), nn.Tanh(), nn.Linear(48, 16), nn.ReLU(), nn.Linear(16, 8))
    with torch.no_grad():
        m[0].weight.mul_(4.0)  # some saturation
        m[2].bias[:4] = -50.0  # four dead units
    x = _x(64, 32)
    loss = lambda y: (y.double() ** 2).sum() * 0.5  # noqa: E731
    rep = ft.inspect(m, x, loss=loss)
    outs, ins = _naive(m, x, loss)
    assert [r["name"] for r in rep.records] == ["0", "1", "2", "3", "4"]
    for name, y in outs.items():
        r = rep[name]
        yd = y.detach().double()
        assert r["out_mean"] == pytest.approx(float(yd.mean()), rel=1e-9, abs=1e-12)
        # squares are taken in float32 (relative error <= 6e-8 each), summed in float64
        assert r["out_var"] == pytest.approx(float(yd.var(unbiased=False)), rel=1e-6)
        assert r["out_m2"] == pytest.approx(float((yd ** 2).mean()), rel=1e-6)
        assert r["frac_zero"] == float((yd == 0).double().mean())
        assert r["frac_inactive"] == float((yd <= 0).double().mean())
        assert r["frac_dead_units"] == float((yd <= 0).all(0).double().mean())
        assert r["grad_out_m2"] == pytest.approx(float((y.grad.double() ** 2).mean()), rel=1e-6)
    assert rep["1"]["frac_saturated"] == float((ins["1"].abs() > math.atanh(0.99)).double().mean())
    assert 0 < rep["1"]["frac_saturated"] < 1
    assert rep["3"]["frac_dead_units"] == 0.25
    assert math.isnan(rep["3"]["frac_saturated"])
    for name in ("0", "2", "4"):
        assert rep[name]["grad_weight_m2"] == pytest.approx(float((m[int(name)].weight.grad.double() ** 2).mean()),
                                                           rel=1e-9)
        assert rep[name]["grad_bias_m2"] == pytest.approx(float((m[int(name)].bias.grad.double() ** 2).mean()),
                                                         rel=1e-9)


def test_inspect_leaves_no_gradient_and_keeps_no_activation():
    m = _chain(nn.ReLU, depth=2)
    refs = []
    hs = [mod.register_forward_hook(lambda mod, a, out: refs.append(weakref.ref(out))) for mod in m]
    rep = ft.inspect(m, _x())
    for h in hs:
        h.remove()
    gc.collect()
    assert len(refs) == 4 and all(r() is None for r in refs)
    assert all(p.grad is None for p in m.parameters())
    for r in rep.to_records():
        assert all(v is None or isinstance(v, (str, int, float, list)) for v in r.values())


def test_theory_beside_the_measurement_he_relu():
    # First layer: the pooled variance of z over 128 units x 256 samples; its spread comes from the weights,
    # relative sd ~ sqrt(2/n)/sqrt(n_out) = 0.011 (n = n_out = 128): 5 sd = 0.055 (two-sided p ~ 6e-7).
    rep = ft.inspect(_chain(nn.ReLU), _x())
    r0 = rep["0"]
    # measured s^2 = mean(W^2) over 128 x 128 entries: relative sd sqrt(2/16384) = 0.011, 5 sd = 0.055
    assert r0["theory_out_var"] == pytest.approx(2 * float((_x() ** 2).mean()), rel=0.055)
    assert r0["out_var"] == pytest.approx(r0["theory_out_var"], rel=0.055)
    assert rep["1"]["out_m2"] == pytest.approx(rep["1"]["theory_out_m2"], rel=0.055)
    assert rep["0"]["frac_inactive"] == pytest.approx(0.5, abs=0.03)
    # deeper layers wander (finite width); the theory stays at 2 while the measurement is within 35%
    for name in ("2", "4", "6"):
        assert rep[name]["theory_out_var"] == pytest.approx(rep["0"]["theory_out_var"], rel=0.02)
        assert rep[name]["out_var"] == pytest.approx(rep[name]["theory_out_var"], rel=0.35)
    # backward: the random-projection loss gives E[g^2] = 1 at the output; the He net keeps
    # E[delta^2] = 1/2 at every Linear
    for name in ("0", "2", "4", "6"):
        assert rep[name]["theory_grad_out_m2"] == pytest.approx(0.5, rel=0.1)
        assert rep[name]["grad_out_m2"] == pytest.approx(rep[name]["theory_grad_out_m2"], rel=0.35)
    assert "mlp_theory" in rep.theory


def test_theory_tracks_xavier_tanh_decay():
    rep = ft.inspect(_chain(nn.Tanh, depth=6, recipe="xavier"), _x())
    th = [rep[str(2 * i)]["theory_out_var"] for i in range(6)]
    assert all(a > b for a, b in zip(th, th[1:], strict=False))  # variance shrinks under tanh at gain 1
    for i in range(6):
        r = rep[str(2 * i)]
        assert r["out_var"] == pytest.approx(r["theory_out_var"], rel=0.1)


def test_no_theory_for_a_residual_model():
    class Res(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(16, 16)
            self.act = nn.ReLU()

        def forward(self, x):
            return x + self.act(self.fc(x))

    m = nn.Sequential(Res(), Res())
    rep = ft.inspect(m, _x(32, 16))
    assert "theory_out_var" not in rep["0.fc"]
    assert rep.theory.startswith("not a plain")
    assert "var theory" not in str(rep)


def test_nan_and_inf_counted_and_left_out_of_the_moments():
    m = nn.Linear(4, 3)
    with torch.no_grad():
        m.weight[1, 0] = float("nan")
        m.weight[2, 0] = float("inf")
    x = torch.ones(5, 4)
    rep = ft.inspect(m, x)
    r = rep["Linear"]
    assert (r["n_nan"], r["n_inf"]) == (5, 5)
    y0 = m(x)[:, 0].detach().double()
    assert r["out_mean"] == pytest.approx(float(y0.mean()))


def test_table_and_json():
    rep = ft.inspect(_chain(nn.ReLU, depth=2), _x())
    lines = str(rep).splitlines()
    assert lines[0].split()[:3] == ["layer", "kind", "mean"]
    assert len({len(line) for line in lines[:-1]}) <= 2  # aligned: header, rule and rows of equal width
    data = json.loads(rep.to_json())
    assert [d["name"] for d in data["layers"]] == ["0", "1", "2", "3"]
    assert data["layers"][1]["frac_saturated"] is None
    assert data["batch"] == 256


def test_bad_input_names_the_layer():
    m = nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(9, 2))
    with pytest.raises(InitArgumentError, match=r"layer '2' \(Linear\).*\(4, 8\)"):
        ft.inspect(m, torch.randn(4, 8))
    with pytest.raises(InitArgumentError, match="loss must return a scalar"):
        ft.inspect(nn.Linear(3, 3), torch.randn(4, 3), loss=lambda y: y.sum(0))
    with pytest.raises(TypeError, match="loss must be a callable"):
        ft.inspect(nn.Linear(3, 3), torch.randn(4, 3), loss=3)

    class Dict(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 3)

        def forward(self, x):
            return {"y": self.fc(x)}

    with pytest.raises(TypeError, match="returned dict, not a tensor"):
        ft.inspect(Dict(), torch.randn(4, 3))
    rep = ft.inspect(Dict(), torch.randn(4, 3), loss=lambda o: o["y"].sum())
    assert rep["fc"]["grad_out_m2"] == 1.0
    with pytest.raises(TypeError, match="torch.nn.Module"):
        ft.inspect(lambda x: x, torch.randn(2))


FACTORY = '''
from torch import nn


class TinyLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.wte = nn.Embedding(50, 16)
        self.fc = nn.Linear(16, 16)
        self.act = nn.Tanh()

    def forward(self, idx):
        return self.act(self.fc(self.wte(idx)))
'''


def test_cli_inspect_writes_table_json_and_plots(tmp_path):
    import os
    import subprocess
    import sys

    pytest.importorskip("matplotlib")
    (tmp_path / "inspmodels.py").write_text(FACTORY)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    r = subprocess.run([sys.executable, "-m", "fastinit", "inspect", "inspmodels:TinyLM", "--input-shape", "4,8",
                        "--recipe", "gpt2", "--json", "out.json", "--plots", "plots"],
                       capture_output=True, text=True, timeout=300, cwd=str(tmp_path), env=env)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:2] == ["layer", "kind"]
    assert [ln.split()[0] for ln in lines[2:5]] == ["wte", "fc", "act"]
    data = json.loads((tmp_path / "out.json").read_text())
    assert [d["name"] for d in data["layers"]] == ["wte", "fc", "act"]
    # integer tokens went in: the embedding output is N(0, 0.02^2) rows (gpt2 recipe); 32 rows of 16
    assert data["layers"][0]["out_var"] == pytest.approx(0.02 ** 2, rel=0.5)
    for name in ("variance.png", "gradient.png", "histograms.png"):
        assert (tmp_path / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not any(d["branch"] for d in data["layers"])
    r = subprocess.run([sys.executable, "-m", "fastinit", "inspect", "inspmodels:TinyLM", "--input-shape", "4,8",
                        "--branches", "fc,h.*.attn"], capture_output=True, text=True, timeout=300, cwd=str(tmp_path),
                       env=env)
    assert r.returncode == 2 and "branches" in r.stderr and "'h.*.attn'" in r.stderr
    r = subprocess.run([sys.executable, "-m", "fastinit", "inspect", "inspmodels:TinyLM", "--input-shape", "4,8",
                        "--branches", "f*"], capture_output=True, text=True, timeout=300, cwd=str(tmp_path), env=env)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[0].split()[:3] == ["layer", "kind", "branch"]
    assert r.stdout.splitlines()[3].split()[:3] == ["fc", "Linear", "branch"]


def test_tuple_outputs_and_gradient_into_the_input():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(6, 8, batch_first=True)
            self.head = nn.Linear(8, 3)

        def forward(self, x):
            return self.head(self.lstm(x)[0])

    m = Net()
    x = torch.randn(4, 5, 6, generator=torch.Generator().manual_seed(0))
    loss = lambda y: (y ** 2).sum()  # noqa: E731
    rep = ft.inspect(m, x, loss=loss)
    xr = x.clone().requires_grad_(True)
    y_lstm = m.lstm(xr)[0]
    y_lstm.retain_grad()
    loss(m.head(y_lstm)).backward()
    r = rep["lstm"]
    assert r["out_m2"] == pytest.approx(float((y_lstm.detach().double() ** 2).mean()), rel=1e-6)
    assert r["grad_out_m2"] == pytest.approx(float((y_lstm.grad.double() ** 2).mean()), rel=1e-6)
    w = [p.grad.double() for n, p in m.lstm.named_parameters() if n.startswith("weight")]
    assert r["grad_weight_m2"] == pytest.approx(float(sum((g ** 2).sum() for g in w) / sum(g.numel() for g in w)),
                                                rel=1e-6)
    assert rep.grad_input_m2 == pytest.approx(float((xr.grad.double() ** 2).mean()), rel=1e-6)


class _Block(nn.Module):
    """x + mlp(ln(x)); the mlp's output (0.5 * fc2(gelu(fc1 h))) is no leaf's output."""

    class MLP(nn.Module):
        def __init__(self, w):
            super().__init__()
            self.fc1, self.act, self.fc2 = nn.Linear(w, 4 * w), nn.GELU(), nn.Linear(4 * w, w)

        def forward(self, h):
            return 0.5 * self.fc2(self.act(self.fc1(h)))

    def __init__(self, w):
        super().__init__()
        self.ln, self.mlp = nn.LayerNorm(w), self.MLP(w)

    def forward(self, x):
        return x + self.mlp(self.ln(x))


class _Residual(nn.Module):
    def __init__(self, w=16, depth=3):
        super().__init__()
        self.layers = nn.ModuleList(_Block(w) for _ in range(depth))

    def forward(self, x):
        for b in self.layers:
            x = b(x)
        return x


def test_branches_equal_a_hand_written_hook():
    torch.manual_seed(0)
    m = _Residual()
    x = _x(64, 16)
    loss = lambda y: (y.double() ** 3).sum()  # noqa: E731
    rep = ft.inspect(m, x, loss=loss, branches="layers.*.mlp")
    plain = ft.inspect(m, x, loss=loss)
    outs = {}
    hs = []
    for i, b in enumerate(m.layers):
        def hook(mod, args, out, i=i):
            out.retain_grad()
            outs[f"layers.{i}.mlp"] = out
        hs.append(b.mlp.register_forward_hook(hook))
    loss(m(x)).backward()
    for h in hs:
        h.remove()
    assert [r["name"] for r in rep.records if r["branch"]] == list(outs)
    for name, y in outs.items():
        r, yd = rep[name], y.detach().double()
        assert r["kind"] == "MLP"
        assert r["out_mean"] == pytest.approx(float(yd.mean()), rel=1e-9, abs=1e-12)
        assert r["out_var"] == pytest.approx(float(yd.var(unbiased=False)), rel=1e-6)
        assert r["out_m2"] == pytest.approx(float((yd ** 2).mean()), rel=1e-6)
        assert r["grad_out_m2"] == pytest.approx(float((y.grad.double() ** 2).mean()), rel=1e-6)
        assert r["frac_dead_units"] == float((yd <= 0).all(0).double().mean())
        assert sum(r["hist_counts"]) + r["hist_under"] + r["hist_over"] == yd.numel()
        # the branch comes after its children, the leaves' numbers are those of a run without branches
        assert [q["name"] for q in rep.records].index(name) > [q["name"] for q in rep.records].index(name + ".fc2")
    leaves = [{k: v for k, v in r.items() if k != "branch"} for r in rep.records if not r["branch"]]
    assert leaves == [{k: v for k, v in r.items() if k != "branch"} for r in plain.records]
    assert not any(r["branch"] for r in plain.records)
    lines = str(rep).splitlines()
    assert lines[0].split()[:3] == ["layer", "kind", "branch"]
    assert [ln.split()[:3] for ln in lines if ln.startswith("layers.1.mlp ")] == [["layers.1.mlp", "MLP", "branch"]]
    assert "branch" not in str(plain).splitlines()[0]
    assert [d["name"] for d in json.loads(rep.to_json())["layers"] if d["branch"]] == list(outs)
    # a list of globs; a leaf that matches is marked, not measured twice
    rep2 = ft.inspect(m, x, loss=loss, branches=["layers.0.mlp", "layers.2.ln"])
    assert [r["name"] for r in rep2.records if r["branch"]] == ["layers.0.mlp", "layers.2.ln"]
    assert len(rep2) == len(plain) + 1


def test_bad_branch_pattern_names_the_argument():
    m = _Residual()
    with pytest.raises(InitArgumentError, match=r"branches: pattern 'h\.\*\.attn' matches no module"):
        ft.inspect(m, _x(4, 16), branches=["layers.*.mlp", "h.*.attn"])
    with pytest.raises(TypeError, match="branches must be"):
        ft.inspect(m, _x(4, 16), branches=3)
    for b in m.layers:  # no hook is left behind by a failed call
        assert not b.mlp._forward_hooks


def test_histogram_of_a_known_output_equals_numpy():
    lin = nn.Linear(128, 128)
    with torch.no_grad():
        lin.weight.copy_(torch.eye(128))
        lin.bias.zero_()
    m = nn.Sequential(lin, nn.ReLU())
    x = _x(256, 128)
    rep = ft.inspect(m, x)
    xs = x.numpy()
    r = rep["0"]
    edges = np.asarray(r["hist_edges"])
    assert len(edges) == 65 and len(r["hist_counts"]) == 64
    # the range rule: [min, max] cut to mean +- 8 std (float32); Gaussian input: min and max are inside 8 std
    assert (edges[0], edges[-1]) == (float(np.float32(xs.min())), float(np.float32(xs.max())))
    ref, _ = np.histogram(xs, bins=edges)
    assert np.abs(np.asarray(r["hist_counts"]) - ref).sum() <= 4  # float32 rounding at bin edges only
    assert sum(r["hist_counts"]) == xs.size and r["hist_under"] == r["hist_over"] == 0
    relu = rep["1"]
    ref1, _ = np.histogram(np.maximum(xs, 0), bins=np.asarray(relu["hist_edges"]))
    assert np.abs(np.asarray(relu["hist_counts"]) - ref1).sum() <= 4
    assert relu["hist_counts"][0] >= int((xs <= 0).sum())  # the zeros in the first bin
    assert sum(relu["hist_counts"]) == xs.size


def test_histogram_counts_every_finite_value_of_every_call():
    fc = nn.Linear(8, 8)

    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = fc

        def forward(self, x):
            return self.fc(10.0 * self.fc(x))  # the second call's outputs fall outside the first call's range

    x = _x(32, 8)
    rep = ft.inspect(Twice(), x)
    r = rep["fc"]
    assert r["calls"] == 2
    assert sum(r["hist_counts"]) + r["hist_under"] + r["hist_over"] == 2 * x.numel()
    assert r["hist_under"] + r["hist_over"] > 0
    assert isinstance(r["hist_counts"][0], int)
    # an outlier: the range is cut at mean + 8 std, the outlier counted above it
    y = _x(64, 64)
    y[0, 0] = 1e6
    y[1, 1] = float("nan")
    ident = nn.Sequential(nn.Identity())
    r = ft.inspect(ident, y, loss=lambda o: o.nansum())["0"]
    assert r["hist_over"] == 1 and r["n_nan"] == 1
    assert sum(r["hist_counts"]) + r["hist_over"] == y.numel() - 1
    assert r["hist_edges"][-1] < 1e6
