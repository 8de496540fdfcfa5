"""fastinit.torch.lint: for each check, a model that triggers it and the fixed model that does not."""

import doctest

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import fastinit.torch as ft  # noqa: E402
import fastinit.torch._inspect  # noqa: E402
import fastinit.torch._lint  # noqa: E402
from fastinit._checks import InitArgumentError  # noqa: E402


def _x(b=256, n=128, seed=0):
    return torch.randn(b, n, generator=torch.Generator().manual_seed(seed))


def _codes(findings):
    return sorted({f.code for f in findings})


def _mlp(act, recipe, depth=3, width=128):
    m = nn.Sequential(*[x for _ in range(depth) for x in (nn.Linear(width, width), act())])
    ft.init_model(m, recipe, seed=0)
    return m


def test_docstring_examples():
    for mod in (fastinit.torch._inspect, fastinit.torch._lint):
        assert doctest.testmod(mod).failed == 0


def test_xavier_in_front_of_relu():
    bad = ft.lint(_mlp(nn.ReLU, "xavier"), _x())
    assert _codes(bad) == ["relu-variance"]
    assert [f.where for f in bad] == ["0.weight", "2.weight", "4.weight"]
    # the evidence: E[relu(z)^2]/E[x^2] measured beside fan_in Var(W)/2 = 0.5
    assert "measured" in str(bad[0]) and "0.50 mean-field" in str(bad[0]) and "\n" not in str(bad[0])
    assert ft.lint(_mlp(nn.ReLU, "kaiming"), _x()) == []
    assert ft.lint(_mlp(nn.ReLU, "lecun"), _x())[0].code == "relu-variance"


def test_he_in_front_of_tanh():
    m = _mlp(nn.Tanh, "kaiming")
    bad = ft.lint(m, _x())
    assert _codes(bad) == ["tanh-variance"]
    assert "saturated" in bad[0].evidence
    assert ft.lint(_mlp(nn.Tanh, "xavier"), _x()) == []
    assert _codes(ft.lint(_mlp(nn.Sigmoid, "kaiming"), _x())) == ["tanh-variance"]


def test_constant_weights():
    m = _mlp(nn.ReLU, "kaiming")
    with torch.no_grad():
        m[2].weight.fill_(0.01)
    assert "symmetry" in _codes(ft.lint(m, _x()))
    with torch.no_grad():
        m[2].weight.zero_()
    assert [f.where for f in ft.lint(m, _x()) if f.code == "symmetry"] == ["2.weight"]
    # zero last layer (Fixup-style) is deliberate: not flagged
    m = _mlp(nn.ReLU, "kaiming")
    with torch.no_grad():
        m[4].weight.zero_()
    assert "symmetry" not in _codes(ft.lint(m, _x()))


class _Block(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.ln = nn.LayerNorm(d)
        self.c_fc = nn.Linear(d, 4 * d)
        self.act = nn.GELU()
        self.c_proj = nn.Linear(4 * d, d)

    def forward(self, x):
        return x + self.c_proj(self.act(self.c_fc(self.ln(x))))


class _GPT(nn.Module):
    def __init__(self, vocab=64, d=32, n_layer=6):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.h = nn.ModuleList([_Block(d) for _ in range(n_layer)])
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)

    def forward(self, idx):
        x = self.wte(idx)
        for b in self.h:
            x = b(x)
        return self.head(self.ln_f(x))


def _tokens():
    return torch.randint(0, 64, (8, 16), generator=torch.Generator().manual_seed(0))


def test_residual_projection_scale_and_embedding_scale():
    m = _GPT()
    ft.init_model(m, "bert", seed=0)  # every Linear N(0, 0.02^2): projections unscaled
    codes = _codes(ft.lint(m, _tokens()))
    assert "residual-scale" in codes and "embedding-scale" not in codes
    ft.init_model(m, "gpt2", seed=0)
    fixed = ft.lint(m, _tokens())
    assert "residual-scale" not in _codes(fixed)
    assert not [f for f in fixed if f.where.endswith("c_proj")]  # scaled down on purpose: no variance-jump
    # shallow stack: not flagged
    shallow = _GPT(n_layer=2)
    ft.init_model(shallow, "bert", seed=0)
    assert "residual-scale" not in _codes(ft.lint(shallow, _tokens()))
    # embedding N(0, 1) (torch's default) in front of a 0.02-std transformer
    with torch.no_grad():
        m.wte.weight.normal_(generator=torch.Generator().manual_seed(0))
    bad = [f for f in ft.lint(m, _tokens()) if f.code == "embedding-scale"]
    assert [f.where for f in bad] == ["wte.weight"]


def test_lstm_forget_bias():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(16, 32, batch_first=True)
            self.head = nn.Linear(32, 4)

        def forward(self, x):
            return self.head(self.lstm(x)[0])

    m = Net()
    ft.init_model(m, "torch", seed=0)
    x = torch.randn(4, 5, 16, generator=torch.Generator().manual_seed(0))
    bad = [f for f in ft.lint(m, x) if f.code == "forget-bias"]
    assert [f.where for f in bad] == ["lstm.bias_ih_l0"]
    ft.init_model(m, "recurrent", seed=0)
    assert "forget-bias" not in _codes(ft.lint(m, x))


def test_variance_jump():
    m = _mlp(nn.ReLU, "kaiming")
    with torch.no_grad():
        m[2].weight.mul_(3.0)  # variance x9 at layer 2
    bad = ft.lint(m, _x())
    assert [f.where for f in bad if f.code == "variance-jump"] == ["2"]
    assert [f.where for f in ft.lint(m, _x(), factor=20.0) if f.code == "variance-jump"] == []
    with pytest.raises(InitArgumentError, match="factor"):
        ft.lint(m, _x(), factor=1.0)


def test_nonfinite():
    m = _mlp(nn.ReLU, "kaiming")
    with torch.no_grad():
        m[2].weight[0, 0] = float("nan")
    bad = [f for f in ft.lint(m, _x()) if f.code == "nonfinite"]
    assert [f.where for f in bad] == ["2.weight", "2"]
    assert "1 of 16384" in bad[0].evidence


FACTORY = '''
from torch import nn


def relu_mlp(width=64):
    return nn.Sequential(*[x for _ in range(3) for x in (nn.Linear(width, width), nn.ReLU())])
'''


def test_cli_lint_exit_status(tmp_path):
    import os
    import subprocess
    import sys

    (tmp_path / "lintmodels.py").write_text(FACTORY)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])

    def run(*args):
        return subprocess.run([sys.executable, "-m", "fastinit", "lint", "lintmodels:relu_mlp", *args],
                              capture_output=True, text=True, timeout=300, cwd=str(tmp_path), env=env)

    bad = run("--input-shape", "128,64", "--recipe", "xavier")
    assert bad.returncode == 1, bad.stderr
    lines = bad.stdout.splitlines()
    assert lines[-1] == "3 findings"
    assert lines[0].startswith("0.weight: relu-variance: fan_in*Var(W) = 1.00")
    good = run("--input-shape", "128,64", "--recipe", "kaiming", "--seed", "1")
    assert (good.returncode, good.stdout) == (0, "0 findings\n"), good.stderr
    err = run("--input-shape", "128,65", "--recipe", "kaiming")
    assert err.returncode == 2 and "layer '0' (Linear)" in err.stderr
