"""fastinit.torch.lsuv_: every scaled layer ends at the target std, the forward pass stops at the layer being
measured, the result depends on the seed only, and bad input names the layer."""

import doctest

import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import fastinit.torch as ft  # noqa: E402
import fastinit.torch._lsuv  # noqa: E402
from fastinit._checks import InitArgumentError  # noqa: E402


def _convnet():
    return nn.Sequential(nn.Conv2d(3, 16, 3), nn.ReLU(), nn.Conv2d(16, 16, 3), nn.ReLU(), nn.Flatten(),
                         nn.Linear(16 * 12 * 12, 32), nn.Tanh(), nn.Linear(32, 10))


def _x(seed=0):
    return torch.randn(32, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def _stds(model, x):
    stds = {}

    def hook(name):
        def f(mod, args, out):
            stds.setdefault(name, float(out.double().std(unbiased=False)))
        return f

    hs = [m.register_forward_hook(hook(n)) for n, m in model.named_modules() if n]
    with torch.no_grad():
        model(x)
    for h in hs:
        h.remove()
    return stds


def test_docstring_examples():
    assert doctest.testmod(fastinit.torch._lsuv).failed == 0


@pytest.mark.parametrize("target", [1.0, 2.5])
def test_every_layer_reaches_the_target(target):
    m = _convnet()
    rep = ft.lsuv_(m, _x(), target_std=target, tol=0.05, seed=3)
    assert [r["name"] for r in rep] == ["0", "2", "5", "7"]
    assert [r["kind"] for r in rep] == ["Conv2d", "Conv2d", "Linear", "Linear"]
    assert all(r["converged"] for r in rep)
    stds = _stds(m, _x())  # measured again, after all layers were scaled
    for r in rep:
        assert abs(stds[r["name"]] - target) <= 0.05 * target
        assert stds[r["name"]] == pytest.approx(r["std"], rel=1e-6)
    assert all(float(m[i].bias.detach().abs().max()) == 0.0 for i in (0, 2, 5, 7))  # pre-init biases 0


def test_forward_stops_at_the_layer_being_measured():
    m = _convnet()
    calls = {"last": 0}
    m[7].register_forward_hook(lambda *a: calls.__setitem__("last", calls["last"] + 1))
    rep = ft.lsuv_(m, _x(), seed=0)
    # the last layer runs once in the pass that finds the order, then only for its own measurements
    assert calls["last"] == 1 + rep[-1]["iterations"] + 1


def test_depends_on_the_seed_only():
    a, b = _convnet(), _convnet()  # different torch default inits
    ft.lsuv_(a, _x(), seed=7)
    ft.lsuv_(b, _x(), seed=7)
    for (n, p), q in zip(a.named_parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q), n
    c = _convnet()
    ft.lsuv_(c, _x(), seed=8)
    assert not torch.equal(a[0].weight, c[0].weight)


def test_pre_init_is_orthonormal_and_name_keyed():
    m = nn.Sequential(nn.Linear(64, 32))
    ft.lsuv_(m, torch.randn(16, 64), seed=1, max_iter=1, tol=0.99)  # tol: keep the pre-init as it is
    w = m[0].weight.detach().double()
    assert torch.allclose(w @ w.T, torch.eye(32, dtype=torch.float64), atol=1e-5)
    ref = nn.Sequential(nn.Linear(64, 32))
    ft.init_model(ref, [ft.Rule("orthogonal_", name=r"^0\.weight$"), ft.Rule("zeros_", name=r"^0\.bias$")], seed=1)
    assert torch.equal(ref[0].weight, m[0].weight)


def test_any_module_with_a_weight():
    class Scaled(nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.empty(8, 8))

        def forward(self, x):
            return x @ self.weight.T

    m = nn.Sequential(Scaled(), nn.ReLU(), Scaled())
    rep = ft.lsuv_(m, torch.randn(64, 8, generator=torch.Generator().manual_seed(0)), seed=0, tol=0.02)
    assert [r["kind"] for r in rep] == ["Scaled", "Scaled"] and all(r["converged"] for r in rep)


def test_bad_input_names_the_layer():
    m = _convnet()
    with pytest.raises(InitArgumentError, match=r"'1' \(ReLU\) has no floating weight"):
        ft.lsuv_(m, _x(), modules=["0", "1"])
    with pytest.raises(InitArgumentError, match="'nope' is not a module"):
        ft.lsuv_(m, _x(), modules=["nope"])
    with pytest.raises(InitArgumentError, match=r"layer '0' \(Conv2d\): output std is 0"):
        ft.lsuv_(m, torch.zeros(4, 3, 16, 16))
    with torch.no_grad():
        m[2].weight[0, 0, 0, 0] = float("nan")
    with pytest.raises(InitArgumentError, match=r"layer '2' \(Conv2d\): output std is nan"):
        ft.lsuv_(m, _x(), orthogonal=False)
    with pytest.raises(InitArgumentError, match=r"layer '0' \(Conv2d\) on inputs of shape \(4, 5, 16, 16\)"):
        ft.lsuv_(_convnet(), torch.randn(4, 5, 16, 16))
    with pytest.raises(InitArgumentError, match="no module with a weight"):
        ft.lsuv_(nn.Sequential(nn.ReLU()), torch.randn(2, 2))
    with pytest.raises(InitArgumentError, match="target_std"):
        ft.lsuv_(_convnet(), _x(), target_std=0.0)
    with pytest.raises(InitArgumentError, match="tol"):
        ft.lsuv_(_convnet(), _x(), tol=1.5)
