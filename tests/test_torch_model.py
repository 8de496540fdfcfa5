"""The model layer: name-keyed streams, plan, init_model, materialize, fingerprints, bad input.

Invariances are checked bit for bit (fingerprints): thread count, meta-then-materialise vs CPU build,
construction order, what else the model contains, tied parameters.
"""

import hashlib
import json
import math

import numba
import numpy as np
import pytest

torch = pytest.importorskip("torch")
from _torch_models import GPT, HFLlama, Recurrent, Titan, TorchZoo  # noqa: E402
from torch import nn  # noqa: E402

import fastinit  # noqa: E402
import fastinit.torch as ft  # noqa: E402
from fastinit._names import STREAM_FORMAT, canonical_name, stream_of, substream_of  # noqa: E402

SEED = 20240601


def on_meta(factory, *args, **kwargs):
    with torch.device("meta"):
        return factory(*args, **kwargs)


def gen_at(name, seed=SEED):
    return fastinit.Generator(seed).set_state((seed, stream_of(name)))


# ---- name-keyed streams ------------------------------------------------------------------------

def test_stream_is_documented_hash():
    name = "layers.7.mlp.fc1.weight"
    digest = hashlib.sha256(name.encode("utf-8")).digest()
    assert stream_of(name) == sum(b << (8 * i) for i, b in enumerate(digest[:8]))  # little-endian 8 bytes
    assert substream_of(name, 3) == stream_of(name + "\x003")
    assert stream_of("é") == int.from_bytes(hashlib.sha256("é".encode()).digest()[:8], "little")
    assert canonical_name(["b.w", "a.w", "c"]) == "a.w"
    with pytest.raises(TypeError, match="name"):
        stream_of(b"bytes")


def test_values_are_the_public_initializer_at_the_name_stream():
    m = nn.Sequential(nn.Linear(64, 32), nn.Embedding(40, 8, padding_idx=2))
    ft.init_model(m, recipe="torch", seed=SEED)
    w = fastinit.kaiming_uniform_(torch.empty(32, 64), a=math.sqrt(5), generator=gen_at("0.weight"))
    b = fastinit.uniform_(torch.empty(32), -1 / 8, 1 / 8, generator=gen_at("0.bias"))
    e = fastinit.normal_(torch.empty(40, 8), generator=gen_at("1.weight"))
    e[2] = 0
    assert torch.equal(m[0].weight, w) and torch.equal(m[0].bias, b) and torch.equal(m[1].weight, e)


def test_same_name_same_values_whatever_else_the_model_holds():
    small, big = GPT(n_layer=2), GPT(n_layer=4, vocab=96)
    ft.init_model(small, "gpt2", SEED, n_layers=4)
    ft.init_model(big, "gpt2", SEED)
    for name, p in small.named_parameters():
        assert torch.equal(p, big.get_parameter(name)), name
    # the stream is the name's: another seed changes every random tensor
    other = GPT(n_layer=2)
    ft.init_model(other, "gpt2", SEED + 1, n_layers=4)
    assert not torch.equal(other.lm_head.weight, small.lm_head.weight)


def test_construction_order_does_not_matter():
    a, b = GPT(reverse=False), GPT(reverse=True)
    assert [n for n, _ in a.named_parameters()] != [n for n, _ in b.named_parameters()]
    pa, pb = ft.init_model(a, "gpt2", SEED), ft.init_model(b, "gpt2", SEED)
    assert ft.fingerprint(a) == ft.fingerprint(b)
    assert pa.fingerprint() == pb.fingerprint()


def test_tied_parameters_once_under_the_canonical_name():
    a, b = GPT(tie_from_head=False), GPT(tie_from_head=True)  # the shared Parameter object differs
    pa = ft.init_model(a, "torch", SEED)
    ft.init_model(b, "torch", SEED)
    assert ft.fingerprint(a) == ft.fingerprint(b)
    row = pa["transformer.wte.weight"]
    assert row.name == "lm_head.weight" and row.aliases == ("lm_head.weight", "transformer.wte.weight")
    assert sum(r.name == "lm_head.weight" for r in pa) == 1
    # canonical name = lexicographically smallest: lm_head (a Linear) -> torch's Linear rule
    assert row.law["dist"] == "uniform" and row.stream == stream_of("lm_head.weight")
    assert a.lm_head.weight is a.transformer.wte.weight


@pytest.mark.parametrize("recipe", ["torch", "gpt2", "kaiming"])
def test_thread_count_does_not_matter(recipe):
    fps = []
    before = numba.get_num_threads()
    try:
        for n in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(n)
            m = GPT(vocab=512, d=256, n_layer=2)  # 512x256 = 2 chunks of 65536 elements
            ft.init_model(m, recipe, SEED)
            fps.append(ft.fingerprint(m))
    finally:
        numba.set_num_threads(before)
    assert fps[0] == fps[1]


@pytest.mark.parametrize("factory, recipe", [(GPT, "gpt2"), (TorchZoo, "torch"), (Titan, "torchtitan-llama"),
                                             (HFLlama, "llama"), (Recurrent, "recurrent")])
def test_materialize_equals_cpu_build(factory, recipe):
    torch.manual_seed(0)
    cpu = factory()
    meta = on_meta(factory)
    p_cpu = ft.init_model(cpu, recipe, SEED)
    p_meta = ft.plan(meta, recipe, SEED)
    assert p_meta.fingerprint() == p_cpu.fingerprint()
    ft.materialize(meta, recipe, SEED)
    assert not any(t.is_meta for t in list(meta.parameters()) + list(meta.buffers()))
    assert ft.fingerprint(meta) == ft.fingerprint(cpu)
    assert all(p.requires_grad for p in meta.parameters())


def test_materialize_keeps_ties_and_allocates_once():
    m = on_meta(GPT)
    ft.materialize(m, "gpt2", SEED)
    assert m.lm_head.weight is m.transformer.wte.weight and m.lm_head.weight.device.type == "cpu"
    assert isinstance(m.lm_head.weight, nn.Parameter)


def test_materialize_recomputes_buffers():
    m = on_meta(Titan)
    p = ft.materialize(m, "torchtitan-llama", SEED)
    assert p["rope.inv_freq"].status == "module"
    assert torch.equal(m.rope.inv_freq, Titan().rope.inv_freq)
    bn = on_meta(nn.BatchNorm1d, 6)
    ft.materialize(bn, "torch", SEED)
    assert bn.running_mean.tolist() == [0.0] * 6 and bn.running_var.tolist() == [1.0] * 6
    assert int(bn.num_batches_tracked) == 0


class _Cache(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.register_buffer("table", torch.arange(4.0))


def test_materialize_names_a_buffer_nothing_can_produce():
    m = on_meta(_Cache)
    with pytest.raises(fastinit.InitArgumentError, match=r"table .*reset_buffers"):
        ft.materialize(m, "torch", SEED)
    assert m.lin.weight.is_meta and m.table.is_meta  # nothing allocated
    # on the CPU the buffer is kept, as the module made it, and shown so
    c = _Cache()
    p = ft.init_model(c, "torch", SEED)
    assert p["table"].status == "kept" and c.table.tolist() == [0.0, 1.0, 2.0, 3.0]
    # a buffer rule produces it
    rules = [ft.Rule("zeros_", kind="buffer", param="table"), *ft.recipe("torch").rules]
    ft.materialize(m, rules, SEED)
    assert m.table.tolist() == [0.0] * 4


# ---- plan ---------------------------------------------------------------------------------------

def test_plan_allocates_nothing_and_reports_each_tensor():
    m = on_meta(GPT, n_layer=2)
    p = ft.plan(m, "gpt2", 7)
    assert all(t.is_meta for t in m.parameters())
    assert len(p) == len(dict(m.named_parameters()))  # tied: one row
    row = p["transformer.h.1.mlp.c_proj.weight"]
    assert row.rule_text.startswith("residual projection")
    assert row.law == {"dist": "normal", "mean": 0.0, "std": 0.02 / math.sqrt(2 * 2)}
    assert p.n_layers == 2 and row.stream == stream_of(row.name)
    recs = p.to_records()
    assert [r["name"] for r in recs] == [r.name for r in p]
    assert recs[0].keys() >= {"name", "shape", "dtype", "rule", "distribution", "stream"}
    doc = json.loads(p.to_json())
    assert doc["seed"] == 7 and doc["stream_format"] == STREAM_FORMAT and doc["fingerprint"] == p.fingerprint()
    assert int(doc["tensors"][0]["stream"], 16) == p.rows[0].stream
    text = str(p).splitlines()
    assert "recipe=gpt2" in text[0] and text[1].split()[:5] == ["name", "shape", "dtype", "rule", "distribution"]
    assert len({line.index("float32") for line in text[2:]}) == 1  # aligned columns


def test_plan_fingerprint_depends_on_seed_and_values_not_labels():
    m = GPT(n_layer=1)
    p0, p1 = ft.plan(m, "gpt2", 0), ft.plan(m, "gpt2", 1)
    assert p0.fingerprint() != p1.fingerprint()
    relabelled = [ft.Rule(r.init, r.args, r.module, r.param, r.name, r.within, r.min_ndim, r.kind, "x")
                  for r in ft.recipe("gpt2").rules]
    assert ft.plan(m, relabelled, 0).fingerprint() == p0.fingerprint()
    before = ft.fingerprint(m)
    ft.plan(m, "gpt2", 0)
    assert ft.fingerprint(m) == before  # a dry run writes nothing


class _Odd(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.alpha = nn.Parameter(torch.full((3,), 7.0))
        self.inner = nn.Module()
        self.inner.beta = nn.Parameter(torch.full((2, 2), 5.0))


def test_unmatched_is_an_error_listing_names_or_kept_by_option():
    m = _Odd()
    with pytest.raises(fastinit.InitArgumentError, match=r"2 parameter\(s\): alpha, inner.beta"):
        ft.init_model(m, "gpt2", 0)
    p = ft.init_model(m, "gpt2", 0, unmatched="keep")
    assert p["alpha"].status == "kept" and "kept" in str(p).splitlines()[2]
    assert m.alpha.tolist() == [7.0] * 3 and m.inner.beta.sum().item() == 20.0


class _Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.gain = nn.Parameter(torch.empty(4))
        self.reset_parameters()

    def reset_parameters(self):
        with torch.no_grad():
            self.gain.fill_(3.0)


def test_materialize_keep_uses_the_module_reset_parameters():
    m = on_meta(_Scaled)
    p = ft.materialize(m, "gpt2", SEED, unmatched="keep")
    assert p["gain"].status == "kept" and m.gain.tolist() == [3.0] * 4
    c = _Scaled()
    ft.init_model(c, "gpt2", SEED, unmatched="keep")
    assert ft.fingerprint(m) == ft.fingerprint(c)
    odd = on_meta(_Odd)
    with pytest.raises(fastinit.InitArgumentError, match=r"meta parameter alpha \(_Odd\); add a rule"):
        ft.materialize(odd, "gpt2", SEED, unmatched="keep")
    assert odd.lin.weight.is_meta


def test_user_rules_come_first_and_show_in_the_plan():
    m = GPT(n_layer=1)
    mine = ft.Rule("zeros_", name=r"\.c_attn\.weight$", label="mine")
    p = ft.init_model(m, [mine, *ft.recipe("gpt2").rules], SEED)
    assert p["transformer.h.0.attn.c_attn.weight"].rule == 0
    assert not m.transformer.h[0].attn.c_attn.weight.any()
    p2 = ft.plan(m, [{"init": "normal_", "args": {"std": 0.5}, "module": "Linear"},
                     *ft.recipe("gpt2").rules])
    assert p2["lm_head.weight"].law["std"] == 0.5


def test_lstm_forget_gate_bias_goes_to_bias_ih():
    m = nn.LSTM(8, 16)
    ft.init_model(m, "recurrent", SEED)
    assert m.bias_ih_l0[16:32].eq(1).all() and not m.bias_ih_l0[:16].any() and not m.bias_ih_l0[32:].any()
    assert not m.bias_hh_l0.any()
    for k in range(4):  # weight_hh: one orthogonal block per gate (i, f, g, o)
        blk = m.weight_hh_l0[16 * k:16 * (k + 1)].detach().double()
        assert torch.allclose(blk.T @ blk, torch.eye(16, dtype=torch.float64), atol=1e-5)


def test_bfloat16_model_fills_and_materializes():
    cpu = GPT(n_layer=1).to(torch.bfloat16)
    meta = on_meta(GPT, n_layer=1).to(torch.bfloat16)
    ft.init_model(cpu, "gpt2", SEED)
    ft.materialize(meta, "gpt2", SEED)
    assert meta.lm_head.weight.dtype == torch.bfloat16 and ft.fingerprint(cpu) == ft.fingerprint(meta)


# ---- bad input: clear errors naming the argument, nothing written -------------------------------

def _bad(m, exc, match, **kw):
    before = ft.fingerprint(m)
    with pytest.raises(exc, match=match):
        ft.init_model(m, **kw)
    assert ft.fingerprint(m) == before


def test_bad_input():
    m = GPT(n_layer=1)
    _bad(m, fastinit.InitArgumentError, "recipe='gpt3' is not a recipe", recipe="gpt3")
    _bad(m, fastinit.InitArgumentError, r"recipe\[0\]: unknown rule key\(s\) \['modul'\]",
         recipe=[{"init": "zeros_", "modul": "Linear"}])
    _bad(m, fastinit.InitArgumentError, r"recipe\[0\]: init='he_normal_' names no initializer",
         recipe=[{"init": "he_normal_"}])
    _bad(m, fastinit.InitArgumentError, r"recipe\[0\]: normal_ takes no argument\(s\) \['sigma'\]",
         recipe=[{"init": "normal_", "args": {"sigma": 1}}])
    _bad(m, fastinit.InitArgumentError, r"recipe\[0\]: a rule needs an 'init'", recipe=[{"module": "Linear"}])
    _bad(m, fastinit.InitArgumentError, r"constant_ needs the argument 'val'", recipe=[{"init": "constant_"}])
    _bad(m, ValueError, r"Unsupported nonlinearity gelu",
         recipe=[{"init": "kaiming_normal_", "args": {"nonlinearity": "gelu"}}])
    _bad(m, TypeError, "recipe must be", recipe=3)
    # a bad value found on the last tensor still writes nothing
    _bad(m, fastinit.InitArgumentError, r"transformer.ln_f.bias: rule #0 .*std must be >= 0",
         recipe=[ft.Rule("normal_", {"std": lambda t: -1.0 if t.name == "transformer.ln_f.bias" else 1.0})])
    _bad(m, fastinit.InitArgumentError, "unmatched must be one of", unmatched="ignore")
    _bad(m, fastinit.InitArgumentError, "n_layers must be >= 1", recipe="gpt2", n_layers=0)
    _bad(m, TypeError, "seed must be an integer", seed=1.5)
    with pytest.raises(fastinit.InitArgumentError, match="has no option"):
        ft.recipe("gpt2", n_layer=3)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        ft.init_model(torch.zeros(3))
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        ft.plan("gpt2")


def test_device_errors_say_what_to_do():
    meta = on_meta(GPT, n_layer=1)
    with pytest.raises(fastinit.InitArgumentError, match="meta tensor.*materialize"):
        ft.init_model(meta, "gpt2", 0)
    with pytest.raises(fastinit.InitArgumentError, match=r"device='cuda'.*materialize on 'cpu', then model.to"):
        ft.materialize(meta, "gpt2", 0, device="cuda")
    assert all(t.is_meta for t in meta.parameters())
    with pytest.raises(fastinit.InitArgumentError, match="device must name a torch device"):
        ft.materialize(meta, "gpt2", 0, device="nowhere")
    with pytest.raises(fastinit.InitArgumentError, match="meta tensor"):
        ft.fingerprint(meta)


def test_depth_recipe_without_layer_count_names_n_layers():
    m = nn.Sequential(nn.Linear(4, 4))
    m.add_module("c_proj", nn.Linear(4, 4))
    with pytest.raises(fastinit.InitArgumentError, match="n_layers: recipe 'gpt2' needs the layer count"):
        ft.plan(m, "gpt2")
    assert ft.plan(m, "gpt2", n_layers=8)["c_proj.weight"].law["std"] == 0.02 / 4


def test_integer_tensors_take_constants_only():
    m = nn.Module()
    m.register_buffer("count", torch.zeros(3, dtype=torch.int64))
    rules = [ft.Rule("normal_", kind="buffer")]
    with pytest.raises(fastinit.InitArgumentError, match="count has dtype torch.int64"):
        ft.init_model(m, rules)
    np.testing.assert_array_equal(m.count.numpy(), 0)


def test_importing_fastinit_and_its_torch_package_does_not_import_torch():
    from _subproc import run_python

    r = run_python("import sys, fastinit, fastinit.torch, fastinit._names, fastinit.cli\n"
                   "fastinit.cli.make_parser()\n"
                   "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"
