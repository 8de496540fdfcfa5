"""Each recipe against its reference's own rules, on real torch modules named as in the reference code.

For every tensor: the plan's law must equal the reference formula written here (from the reference
source, not from fastinit's tables), and the values must follow that law: constants exactly, uniform
values inside the bounds, a one-sample KS test against the law with p > 1e-5 per tensor (about 400
tensors over all recipes, so a false alarm somewhere has probability <= 0.004 at the fixed seeds), and
for normal/uniform tensors of >= 1000 values the variance within 5 standard errors.
``transformers`` is not installed here, so Hugging Face and torchtitan models are torch modules
with the same module types and parameter names.
"""

import math

import numpy as np
import pytest
from scipy import stats

torch = pytest.importorskip("torch")
from _torch_models import GPT, Bert, DeepNet, FixupNet, HFLlama, Recurrent, Titan, TorchZoo  # noqa: E402
from torch import nn  # noqa: E402

import fastinit.torch as ft  # noqa: E402

SEED = 7
P_MIN = 1e-5  # per-tensor KS threshold (see module docstring)


def U(bound):
    return {"dist": "uniform", "low": -bound, "high": bound}


def N(std, mean=0.0):
    return {"dist": "normal", "mean": mean, "std": std}


def C(v):
    return {"dist": "constant", "value": float(v)}


def fans(shape):
    rec = math.prod(shape[2:])
    return shape[1] * rec, shape[0] * rec


def owner(model, name):
    path = name.rsplit(".", 1)[0] if "." in name else ""
    mod = model.get_submodule(path)
    parts = path.split(".") if path else []
    return mod, [model.get_submodule(".".join(parts[:i])) for i in range(len(parts))]


def _last(name):
    return name.rsplit(".", 2)[-2] if name.count(".") else ""


# ---- references ---------------------------------------------------------------------------------

def ref_torch(name, mod, anc, shape, model):
    """torch 2.13 reset_parameters of each module (torch/nn/modules/*.py)."""
    local = name.rsplit(".", 1)[-1]
    if any(isinstance(a, nn.Transformer) for a in anc) and len(shape) > 1:  # Transformer._reset_parameters
        fi, fo = fans(shape)
        return U(math.sqrt(6 / (fi + fo)))
    if isinstance(mod, nn.MultiheadAttention):
        fi, fo = fans(shape) if len(shape) > 1 else (0, 0)
        if local.endswith("proj_weight"):
            return U(math.sqrt(6 / (fi + fo)))
        return C(0) if local == "in_proj_bias" else N(math.sqrt(2 / (fi + fo)))
    if isinstance(mod, nn.modules.linear.NonDynamicallyQuantizableLinear) and local == "bias":
        return C(0)  # MultiheadAttention zeroes out_proj.bias
    if isinstance(mod, (nn.Linear, nn.modules.conv._ConvNd)):
        return U(1 / math.sqrt(fans(tuple(mod.weight.shape))[0]))  # weight and bias: 1/sqrt(fan_in)
    if isinstance(mod, (nn.Embedding, nn.EmbeddingBag)):
        return N(1.0)
    if isinstance(mod, (nn.RNNBase, nn.RNNCellBase)):
        return U(1 / math.sqrt(mod.hidden_size))
    if isinstance(mod, nn.modules.batchnorm._NormBase) and local in ("running_mean", "num_batches_tracked"):
        return C(0)
    return C(1) if local in ("weight", "running_var") else C(0)


def ref_gpt2(name, mod, anc, shape, model, n_layer=3):
    """HF GPT2PreTrainedModel._init_weights / nanoGPT: N(0, 0.02), c_proj.weight 0.02/sqrt(2 n_layer)."""
    if name.endswith("c_proj.weight"):
        return N(0.02 / math.sqrt(2 * n_layer))
    if isinstance(mod, (nn.Linear, nn.Embedding)) and name.endswith("weight"):
        return N(0.02)
    return C(1) if isinstance(mod, nn.LayerNorm) and name.endswith("weight") else C(0)


def ref_bert_llama(name, mod, anc, shape, model):
    """HF BERT/Llama _init_weights: Linear and Embedding N(0, 0.02), biases 0, LayerNorm/RMSNorm 1/0."""
    if isinstance(mod, (nn.Linear, nn.Embedding)) and name.endswith("weight"):
        return N(0.02)
    return C(1) if isinstance(mod, (nn.LayerNorm, nn.RMSNorm)) and name.endswith("weight") else C(0)


def TN(std, a, b):
    return {"dist": "trunc_normal", "mean": 0.0, "std": std, "a": a, "b": b}


def ref_titan(name, mod, anc, shape, model):
    """torchtitan llama init_weights (depth_init=True)."""
    if name == "tok_embeddings.weight":
        return N(1.0)
    if name == "output.weight":
        s = shape[1] ** -0.5  # dim ** -0.5, cutoff 3
        return TN(s, -3 * s, 3 * s)
    if _last(name) in ("wo", "w2", "w3"):
        layer_id = int(name.split(".")[1])
        return TN(0.02 / math.sqrt(2 * (layer_id + 1)), -2.0, 2.0)
    if _last(name) in ("wq", "wk", "wv", "w1"):
        return TN(0.02, -2.0, 2.0)
    return C(1)


def ref_kaiming(name, mod, anc, shape, model):
    """Common by-layer practice: Linear kaiming_normal fan_in relu, Conv fan_out relu, biases 0, emb N(0, 0.02), norms 1/0."""
    if name.endswith(("running_mean", "running_var", "num_batches_tracked")):
        return ref_torch(name, mod, anc, shape, model)  # BatchNorm.reset_running_stats
    if isinstance(mod, nn.modules.conv._ConvNd) and name.endswith("weight"):
        return N(math.sqrt(2 / fans(shape)[1]))
    if isinstance(mod, nn.Linear) and name.endswith("weight"):
        return N(math.sqrt(2 / fans(shape)[0]))
    if isinstance(mod, nn.Embedding):
        return N(0.02)
    return C(1) if "norm" in type(mod).__name__.lower() and name.endswith("weight") else C(0)


def ref_xavier(name, mod, anc, shape, model):
    if isinstance(mod, (nn.Linear, nn.modules.conv._ConvNd)) and name.endswith("weight"):
        fi, fo = fans(shape)
        return U(math.sqrt(6 / (fi + fo)))
    return ref_kaiming(name, mod, anc, shape, model)


def ref_lecun(name, mod, anc, shape, model):
    if isinstance(mod, (nn.Linear, nn.modules.conv._ConvNd)) and name.endswith("weight"):
        return N(math.sqrt(1 / fans(shape)[0]))
    return ref_kaiming(name, mod, anc, shape, model)


def ref_recurrent(name, mod, anc, shape, model):
    """Common by-layer practice: weight_ih xavier_uniform, weight_hh orthogonal, biases 0 (forget gate checked apart)."""
    local = name.rsplit(".", 1)[-1]
    if isinstance(mod, (nn.RNNBase, nn.RNNCellBase)):
        if local.startswith("weight_ih"):
            fi, fo = fans(shape)
            return U(math.sqrt(6 / (fi + fo)))
        return {"dist": "orthogonal", "gain": 1.0} if local.startswith("weight_hh") else C(0)
    return ref_torch(name, mod, anc, shape, model)


def ref_deepnet(name, mod, anc, shape, model, n=6):
    """DeepNet (Wang et al. 2022, Fig. 2): xavier_normal gain beta=(8N)^-1/4 for ffn, v_proj, out_proj; 1 for q, k."""
    beta = (8 * n) ** -0.25
    if name.endswith("in_proj_weight"):
        d = shape[1]
        return [N(math.sqrt(2 / (2 * d))), N(math.sqrt(2 / (2 * d))), N(beta * math.sqrt(2 / (2 * d)))]
    if name.endswith("weight") and isinstance(mod, nn.Linear):
        fi, fo = fans(shape)
        return N(beta * math.sqrt(2 / (fi + fo)))
    if isinstance(mod, nn.Embedding):
        return N(0.02)
    return C(1) if isinstance(mod, nn.LayerNorm) and name.endswith("weight") else C(0)


def ref_fixup(name, mod, anc, shape, model, n=4):
    """Fixup (Zhang et al. 2019, ResNet code): conv1 N(0, sqrt(2/(c_out k^2)) L^-1/2), conv2 and fc 0,
    biases 0, scale 1, other convs He-normal fan_out."""
    local = name.rsplit(".", 1)[-1]
    if name.startswith("fc.") or _last(name) == "conv2":
        return C(0)
    if _last(name) == "conv1":
        return N(math.sqrt(2 / fans(shape)[1]) * n ** -0.5)
    if isinstance(mod, nn.Conv2d):
        return N(math.sqrt(2 / fans(shape)[1]))
    return C(1) if local.startswith("scale") else C(0)


class ConvMLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 32, 3)
        self.bn = nn.BatchNorm2d(32)
        self.fc1 = nn.Linear(288, 128)
        self.fc2 = nn.Linear(128, 10)
        self.emb = nn.Embedding(50, 16, padding_idx=1)
        self.ln = nn.LayerNorm(16)


CASES = [
    ("torch", TorchZoo, ref_torch, {}),
    ("gpt2", GPT, ref_gpt2, {}),
    ("bert", Bert, ref_bert_llama, {}),
    ("llama", HFLlama, ref_bert_llama, {}),
    ("torchtitan-llama", Titan, ref_titan, {}),
    ("kaiming", ConvMLP, ref_kaiming, {}),
    ("xavier", ConvMLP, ref_xavier, {}),
    ("lecun", ConvMLP, ref_lecun, {}),
    ("recurrent", Recurrent, ref_recurrent, {}),
    ("deepnet", DeepNet, ref_deepnet, {}),
    ("fixup", FixupNet, ref_fixup, {}),
]


def check_values(x, law, what):
    x = x.detach().double().numpy().ravel()
    d = law["dist"]
    if d == "constant":
        assert (x == law["value"]).all(), what
        return
    if d == "orthogonal":
        return
    if d == "uniform":
        assert x.min() >= law["low"] and x.max() <= law["high"], f"{what}: values outside {law}"
        cdf = stats.uniform(law["low"], law["high"] - law["low"]).cdf
    elif d == "normal":
        cdf = stats.norm(law["mean"], law["std"]).cdf
    else:
        assert x.min() >= law["a"] and x.max() <= law["b"], f"{what}: values outside {law}"
        s = law["std"]
        cdf = stats.truncnorm((law["a"] - law["mean"]) / s, (law["b"] - law["mean"]) / s, law["mean"], s).cdf
    p = stats.kstest(x, cdf).pvalue
    assert p > P_MIN, f"{what}: KS p={p:.2e} against {law}"
    if d in ("normal", "uniform") and x.size >= 1000:
        # variance within 5 standard errors (two-sided p ~ 5.7e-7): Var(s^2)/sigma^4 = (kurtosis - 1)/n,
        # kurtosis 3 (normal) or 9/5 (uniform); a 10% error in std fails at n >= 1000
        var = law["std"] ** 2 if d == "normal" else (law["high"] - law["low"]) ** 2 / 12
        rel = math.sqrt((2.0 if d == "normal" else 0.8) / x.size)
        assert abs(x.var() / var - 1) < 5 * rel, f"{what}: variance {x.var():.4g} vs {var:.4g} ({law})"


def assert_law(got, want, what):
    assert got["dist"] == want["dist"], f"{what}: {got} != {want}"
    for k, v in want.items():
        if k != "dist":
            assert got[k] == pytest.approx(v, rel=1e-12, abs=1e-15), f"{what}: {k} {got[k]} != {v}"


@pytest.mark.parametrize("recipe, factory, ref, opts", CASES, ids=[c[0] for c in CASES])
def test_recipe_matches_reference(recipe, factory, ref, opts):
    torch.manual_seed(0)
    model = factory()
    plan = ft.init_model(model, recipe, SEED, **opts)
    tensors = dict(model.named_parameters(remove_duplicate=False)) | dict(model.named_buffers())
    checked = 0
    for row in plan:
        if row.status != "rule":
            continue
        mod, anc = owner(model, row.name)
        want = ref(row.name, mod, anc, row.shape, model)
        t = tensors[row.name]
        if isinstance(want, list):  # one law per block (DeepNet's packed q, k, v)
            h = row.shape[0] // len(want)
            for j, w in enumerate(want):
                assert_law(row.law["blocks"][j], w, f"{row.name}[block {j}]")
                check_values(t[j * h:(j + 1) * h], w, f"{row.name}[block {j}]")
            checked += 1
            continue
        assert_law(row.law, want, row.name)
        pad = getattr(mod, "padding_idx", None)
        if pad is not None and row.name.endswith("weight"):
            assert not t[pad].any(), f"{row.name}: padding row {pad} not zero"
            t = torch.cat([t[:pad], t[pad + 1:]])
        elif recipe == "recurrent" and isinstance(mod, (nn.LSTM, nn.LSTMCell)) and ".bias_ih" in row.name:
            h = row.shape[0] // 4
            assert t[h:2 * h].eq(1).all()
            t = torch.cat([t[:h], t[2 * h:]])
        if want["dist"] == "orthogonal":
            k = {nn.LSTM: 4, nn.GRU: 3, nn.LSTMCell: 4}.get(type(mod), 1)
            h = row.shape[0] // k
            for j in range(k):
                b = t[j * h:(j + 1) * h].detach().double()
                eye = torch.eye(min(b.shape), dtype=torch.float64)
                assert torch.allclose(b @ b.T if b.shape[0] <= b.shape[1] else b.T @ b, eye, atol=2e-5), row.name
        check_values(t, want, row.name)
        checked += 1
    assert checked == sum(r.status == "rule" for r in plan) > 0


def test_torch_recipe_has_torch_distributions():
    """Two-sample KS between each tensor of torch's own reset_parameters and the torch recipe
    (tensors of >= 500 values; p > 1e-5 each, 23 tensors: false alarm <= 2.3e-4)."""
    torch.manual_seed(1)
    stock = TorchZoo()
    ours = TorchZoo()
    ft.init_model(ours, "torch", SEED)
    ref = dict(stock.named_parameters())
    n = 0
    for name, p in ours.named_parameters():
        a, b = p.detach().double().numpy().ravel(), ref[name].detach().double().numpy().ravel()
        if a.size >= 500 and np.ptp(b) > 0:
            pv = stats.ks_2samp(a, b).pvalue
            assert pv > P_MIN, f"{name}: KS p={pv:.2e}"
            n += 1
        elif np.ptp(b) == 0:
            assert np.array_equal(a, b), name
    assert n >= 15


def test_gpt2_layer_count_from_model_or_argument():
    m = GPT(n_layer=3)
    std = ft.plan(m, "gpt2")["transformer.h.0.mlp.c_proj.weight"].law["std"]
    assert std == pytest.approx(0.02 / math.sqrt(6))
    std = ft.plan(m, "gpt2", n_layers=12)["transformer.h.0.mlp.c_proj.weight"].law["std"]
    assert std == pytest.approx(0.02 / math.sqrt(24))
    # residual pattern is an option
    p = ft.plan(m, ft.recipe("gpt2", residual=("c_fc",)))
    assert p["transformer.h.0.mlp.c_fc.weight"].law["std"] == pytest.approx(0.02 / math.sqrt(6))
    assert p["transformer.h.0.mlp.c_proj.weight"].law["std"] == 0.02


def test_torchtitan_depth_init_off_uses_n_layers():
    p = ft.plan(Titan(n_layers=4), ft.recipe("torchtitan-llama", depth_init=False))
    for i in range(4):
        assert p[f"layers.{i}.feed_forward.w2.weight"].law["std"] == pytest.approx(0.02 / math.sqrt(8))


def test_deepnet_reports_alpha():
    p = ft.plan(DeepNet(n_layers=6), "deepnet")
    assert p.notes["deepnorm_alpha"] == pytest.approx(12 ** 0.25)  # (2N)^(1/4)
    assert p.notes["deepnorm_beta"] == pytest.approx(48 ** -0.25)
    assert "deepnorm_alpha" in str(p).splitlines()[0]
