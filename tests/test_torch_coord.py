"""fastinit.torch.coord_check: width-independent statistics are not flagged, width-growing ones are."""

import doctest

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import fastinit.torch as ft  # noqa: E402
import fastinit.torch._coord  # noqa: E402
from fastinit._checks import InitArgumentError  # noqa: E402


def _make(recipe):
    def make(n):
        m = nn.Sequential(nn.Linear(32, n), nn.ReLU(), nn.Linear(n, n), nn.ReLU(), nn.Linear(n, 8))
        ft.init_model(m, recipe, seed=0)
        return m
    return make


X = torch.randn(128, 32, generator=torch.Generator().manual_seed(0))


def test_docstring_examples():
    assert doctest.testmod(fastinit.torch._coord).failed == 0


def test_he_init_is_width_independent_fixed_std_is_not():
    he = ft.coord_check(_make("kaiming"), [64, 256, 1024], X)
    assert not [r for r in he if r["flagged"]], str(he)
    fixed = ft.coord_check(_make("bert"), [64, 256, 1024], X)
    flagged = [r["name"] for r in fixed if r["flagged"]]
    # std 0.02: Linear 2 sums n inputs, rms grows as sqrt(n) (slope 1/2); Linear 4 sums n of those (slope 1)
    assert flagged == ["2", "3", "4"], str(fixed)
    assert fixed[2]["slope"] == pytest.approx(0.5, abs=0.1)


def test_steps_and_table():
    rep = ft.coord_check(_make("kaiming"), [32, 128], X, steps=2, lr=1e-3)
    assert sorted({r["step"] for r in rep}) == [0, 1, 2]
    lines = str(rep).splitlines()
    assert lines[0].split()[:5] == ["layer", "kind", "step", "w=32", "w=128"]
    assert len(lines) == 2 + len(rep)


def test_bad_arguments():
    with pytest.raises(InitArgumentError, match="two distinct widths"):
        ft.coord_check(_make("kaiming"), [64, 64], X)
    with pytest.raises(TypeError, match="factory"):
        ft.coord_check(3, [8, 16], X)
