"""`fastinit plan package.module:factory` as a user runs it (python -m fastinit in a subprocess)."""

import json
import os
import subprocess
import sys

import pytest

pytest.importorskip("torch")

FACTORY = '''
import torch
from torch import nn

class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.c_fc = nn.Linear(16, 64)
        self.c_proj = nn.Linear(64, 16)

def tiny():
    m = nn.Module()
    m.wte = nn.Embedding(50, 16)
    m.h = nn.ModuleList([Block() for _ in range(4)])
    m.ln_f = nn.LayerNorm(16)
    return m

def odd():
    m = tiny()
    m.extra = nn.Parameter(torch.zeros(3))
    return m
'''


@pytest.fixture(scope="module")
def factory_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("factory")
    (d / "tinymodels.py").write_text(FACTORY)
    return d


def plan_cmd(d, *args):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(d), env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "fastinit", "plan", *args], capture_output=True, text=True,
                          timeout=300, cwd=str(d), env=env)


def test_plan_prints_the_table(factory_dir):
    r = plan_cmd(factory_dir, "tinymodels:tiny", "--recipe", "gpt2", "--seed", "3")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    # wte, 4 x (c_fc, c_proj) x (weight, bias), ln_f x 2
    assert lines[0] == "plan: recipe=gpt2 seed=3 tensors=19 n_layers=4"
    row = next(ln for ln in lines if ln.startswith("h.2.c_proj.weight "))
    assert "residual projection" in row and "std=0.00707107" in row  # 0.02 / sqrt(2 * 4)
    assert lines[-1].startswith("plan fingerprint: ") and len(lines[-1].split()[-1]) == 64


@pytest.fixture
def in_process(factory_dir, monkeypatch):
    """main() in this process (no interpreter start-up): the argument handling is the same code."""
    from fastinit.cli import main

    monkeypatch.syspath_prepend(str(factory_dir))
    return lambda *args: main(["plan", *args])


@pytest.mark.parametrize("args, message", [
    (("tinymodels:odd", "--recipe", "gpt2"), "no rule for 1 parameter(s): extra"),
    (("tinymodels:tiny", "--recipe", "gpt3"), "recipe='gpt3' is not a recipe"),
    (("tinymodels", "--recipe", "gpt2"), "factory must look like package.module:callable"),
    (("tinymodels:nothing",), "has no attribute 'nothing'"),
])
def test_plan_errors(in_process, capsys, args, message):
    assert in_process(*args) == 2
    out, err = capsys.readouterr()
    assert message in err and out == ""


def test_keep_unmatched_shows_kept(in_process, capsys):
    assert in_process("tinymodels:odd", "--recipe", "gpt2", "--keep-unmatched") == 0
    assert any(ln.startswith("extra ") and "kept" in ln for ln in capsys.readouterr().out.splitlines())


def test_plan_json_matches_the_api(in_process, capsys):
    import tinymodels

    import fastinit.torch as ft

    assert in_process("tinymodels:tiny", "--recipe", "torch", "--json") == 0
    doc = json.loads(capsys.readouterr().out)
    p = ft.plan(tinymodels.tiny(), "torch", 0)
    assert doc["fingerprint"] == p.fingerprint() and doc["tensors"] == json.loads(p.to_json())["tensors"]
