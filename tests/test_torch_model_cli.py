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
    assert lines[0] == "plan: recipe=gpt2 seed=3 tensors=19 n_layers=4"  # wte, 4 x (c_fc, c_proj) x (weight, bias), ln_f x 2
    row = next(ln for ln in lines if ln.startswith("h.2.c_proj.weight "))
    assert "residual projection" in row and "std=0.00707107" in row  # 0.02 / sqrt(2 * 4)
    assert lines[-1].startswith("plan fingerprint: ") and len(lines[-1].split()[-1]) == 64


def test_plan_json_matches_the_api(factory_dir):
    r = plan_cmd(factory_dir, "tinymodels:tiny", "--recipe", "torch", "--json")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    sys.path.insert(0, str(factory_dir))
    try:
        import tinymodels

        import fastinit.torch as ft

        p = ft.plan(tinymodels.tiny(), "torch", 0)
    finally:
        sys.path.remove(str(factory_dir))
    assert doc["fingerprint"] == p.fingerprint() and doc["tensors"] == json.loads(p.to_json())["tensors"]


@pytest.mark.parametrize("args, message", [
    (("tinymodels:odd", "--recipe", "gpt2"), "no rule for 1 parameter(s): extra"),
    (("tinymodels:tiny", "--recipe", "gpt3"), "recipe='gpt3' is not a recipe"),
    (("tinymodels", "--recipe", "gpt2"), "factory must look like package.module:callable"),
    (("tinymodels:nothing",), "has no attribute 'nothing'"),
])
def test_plan_errors(factory_dir, args, message):
    r = plan_cmd(factory_dir, *args)
    assert r.returncode == 2 and message in r.stderr and r.stdout == ""


def test_keep_unmatched_shows_kept(factory_dir):
    r = plan_cmd(factory_dir, "tinymodels:odd", "--recipe", "gpt2", "--keep-unmatched")
    assert r.returncode == 0, r.stderr
    assert any(ln.startswith("extra ") and "kept" in ln for ln in r.stdout.splitlines())
