"""Materialise a Llama-2-7B-shaped model from meta: fastinit against the floor and stock torch.

    python benchmarks/scripts/bench_materialize.py                  # full size: 6.74e9 bfloat16 parameters, 13.5 GB
    python benchmarks/scripts/bench_materialize.py --layers 2       # quick smoke run

The model has Hugging Face Llama's module names and types (model.embed_tokens, model.layers.N.self_attn.
{q,k,v,o}_proj, mlp.{gate,up,down}_proj, RMSNorms, lm_head; a rotary inv_freq buffer with
reset_buffers()), built under ``torch.device("meta")`` (not timed). Variants, each timed from the meta
model to a filled CPU model, memory freed before the next one:

1. ``floor``: ``torch.empty`` of the same shapes and dtype, one write per 4 KiB page (the first-touch
   page faults, nothing else); ``floor_populate`` maps each tensor with one
   ``madvise(MADV_POPULATE_WRITE)`` (as fastinit's fills do on fresh memory); ``floor_2threads`` touches
   every page with one thread per core.
2. ``fastinit_llama``: ``fastinit.torch.materialize(model, recipe="llama")`` (Hugging Face's
   N(0, 0.02) rule, name-keyed); ``fastinit_torch``: the same with ``recipe="torch"``.
3. ``torch_reset``: ``model.to_empty(device="cpu")``, then every module's ``reset_parameters()``
   (kaiming_uniform_ for the Linears, normal_ for the embedding, ones for RMSNorm) and the rotary
   buffer's ``reset_buffers()``: what ``torch_reset`` does is what ``fastinit_torch`` does.
4. ``torch_hf``: ``to_empty`` and a Hugging Face style ``_init_weights`` applied to every module
   with ``torch.nn.init`` (normal_(0, 0.02), padding row zero, RMSNorm ones): the same law as
   ``fastinit_llama``.

Peak memory: each variant's rise of the process's peak RSS (VmHWM, reset through /proc/self/clear_refs
before it), next to the model's bytes. ``plan`` of the meta model is timed separately.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import math
import time

import torch
from torch import nn

import fastinit.torch as ft
from fastinit._lib import lib

PAGE = 4096


class Rotary(nn.Module):
    def __init__(self, dim: int, theta: float = 10000.0):
        super().__init__()
        self.dim, self.theta = dim, theta
        self.register_buffer("inv_freq", torch.empty(dim // 2), persistent=False)

    def reset_buffers(self):
        with torch.no_grad():
            self.inv_freq.copy_(1.0 / self.theta ** (torch.arange(0, self.dim, 2, dtype=torch.float32) / self.dim))


class Layer(nn.Module):
    def __init__(self, d: int, hidden: int):
        super().__init__()
        self.self_attn = nn.Module()
        for k in ("q_proj", "k_proj", "v_proj", "o_proj"):
            setattr(self.self_attn, k, nn.Linear(d, d, bias=False))
        self.mlp = nn.Module()
        self.mlp.gate_proj = nn.Linear(d, hidden, bias=False)
        self.mlp.up_proj = nn.Linear(d, hidden, bias=False)
        self.mlp.down_proj = nn.Linear(hidden, d, bias=False)
        self.input_layernorm = nn.RMSNorm(d, eps=1e-5)
        self.post_attention_layernorm = nn.RMSNorm(d, eps=1e-5)


class Llama(nn.Module):
    """Llama-2-7B: vocab 32000, dim 4096, 32 layers, 32 heads (head dim 128), MLP 11008."""

    def __init__(self, layers: int = 32, d: int = 4096, hidden: int = 11008, vocab: int = 32000, heads: int = 32):
        super().__init__()
        self.model = nn.Module()
        self.model.embed_tokens = nn.Embedding(vocab, d)
        self.model.layers = nn.ModuleList(Layer(d, hidden) for _ in range(layers))
        self.model.norm = nn.RMSNorm(d, eps=1e-5)
        self.model.rotary_emb = Rotary(d // heads)
        self.lm_head = nn.Linear(d, vocab, bias=False)


def meta_model(args):
    with torch.device("meta"):
        return Llama(args.layers, args.dim, args.hidden, args.vocab).to(torch.bfloat16)


def _page_values(t):
    return PAGE // t.element_size()


def floor(args):
    out = []
    for p in meta_model(args).parameters():
        t = torch.empty(p.shape, dtype=p.dtype)
        t.view(-1)[::_page_values(t)].fill_(0)
        out.append(t)
    return out


def floor_populate(args):
    out = []
    for p in meta_model(args).parameters():
        t = torch.empty(p.shape, dtype=p.dtype)
        if lib.fi_prefault(ctypes.c_void_p(t.data_ptr()), t.numel() * t.element_size()) != 0:
            t.view(-1)[::_page_values(t)].fill_(0)
        out.append(t)
    return out


def floor_2threads(args):
    import concurrent.futures

    out = [torch.empty(p.shape, dtype=p.dtype) for p in meta_model(args).parameters()]

    def touch(half):
        for t in out:
            flat, step = t.view(-1), _page_values(t)
            mid = (flat.numel() // 2 // step) * step
            (flat[:mid] if half == 0 else flat[mid:])[::step].fill_(0)  # releases the GIL

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        list(pool.map(touch, (0, 1)))
    return out


def fastinit_variant(recipe):
    def run(args, model):
        ft.materialize(model, recipe, args.seed)
        return model
    return run


def torch_reset(args, model):
    model.to_empty(device="cpu")
    for m in model.modules():
        if callable(getattr(m, "reset_parameters", None)):
            m.reset_parameters()
    model.model.rotary_emb.reset_buffers()
    return model


def torch_hf(args, model):
    def _init_weights(m):  # Hugging Face LlamaPreTrainedModel._init_weights, initializer_range 0.02
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, mean=0.0, std=0.02)
            if m.padding_idx is not None:
                m.weight.data[m.padding_idx].zero_()
        elif isinstance(m, nn.RMSNorm):
            nn.init.ones_(m.weight)

    model.to_empty(device="cpu")
    with torch.no_grad():
        model.apply(_init_weights)
    model.model.rotary_emb.reset_buffers()
    return model


FLOORS = {"floor": floor, "floor_populate": floor_populate, "floor_2threads": floor_2threads}
MODELS = {"fastinit_llama": fastinit_variant("llama"), "fastinit_torch": fastinit_variant("torch"),
          "torch_reset": torch_reset, "torch_hf": torch_hf}


def _reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _peak_rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def timed(name, args):
    gc.collect()
    model = meta_model(args) if name in MODELS else None
    base = _rss()
    _reset_peak()
    t0 = time.perf_counter()
    result = MODELS[name](args, model) if model is not None else FLOORS[name](args)
    dt = time.perf_counter() - t0
    peak = _peak_rss() - base
    tensors = list(result.parameters()) if isinstance(result, nn.Module) else result
    nbytes = sum(t.numel() * t.element_size() for t in tensors)
    if isinstance(result, nn.Module):
        assert not any(t.is_meta for t in tensors)
    del result, tensors, model
    gc.collect()
    return dt, nbytes, peak


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--dim", type=int, default=4096)
    ap.add_argument("--hidden", type=int, default=11008)
    ap.add_argument("--vocab", type=int, default=32000)
    ap.add_argument("--variants", default="floor,floor_populate,floor_2threads,fastinit_llama,fastinit_torch,"
                                          "torch_reset,torch_hf")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = ap.parse_args(argv)
    try:
        ctypes.CDLL(None).mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD: freed tensors go back to the kernel
    except (OSError, AttributeError):
        pass
    meta = meta_model(args)
    n = sum(p.numel() for p in meta.parameters())
    t0 = time.perf_counter()
    p = ft.plan(meta, "llama", args.seed)
    t_plan = time.perf_counter() - t0
    t0 = time.perf_counter()
    p.fingerprint()
    t_fp = time.perf_counter() - t0
    print(f"Llama stack: {args.layers} layers, dim {args.dim}, hidden {args.hidden}, vocab {args.vocab}: "
          f"{n / 1e9:.3f}e9 bfloat16 parameters ({2 * n / 1e9:.2f} GB); torch threads {torch.get_num_threads()}")
    print(f"plan (llama recipe, {len(p)} tensors): {t_plan:.3f} s; plan.fingerprint(): {t_fp:.3f} s")
    small = argparse.Namespace(**{**vars(args), "layers": 1, "dim": 64, "hidden": 96, "vocab": 128})
    for name in MODELS:  # compile/load the kernels: not timed
        MODELS[name](small, meta_model(small))
    del meta
    timed("floor", args)  # discarded: the first touch of this much memory by the process costs more
    rows = {}
    for name in args.variants.split(","):
        dt, nbytes, peak = timed(name, args)
        rows[name] = {"seconds": dt, "bytes": nbytes, "peak_rss_rise": peak}
        print(f"  {name:15s} {dt:8.2f} s  {nbytes / dt / 1e9:6.2f} GB/s  peak RSS rise {peak / 1e9:6.2f} GB "
              f"({peak / nbytes:.2f}x the model)", flush=True)
    for base in FLOORS:
        for name in ("fastinit_llama", "fastinit_torch"):
            if base in rows and name in rows:
                print(f"  {name} / {base} = {rows[name]['seconds'] / rows[base]['seconds']:.2f}x")
    for slow, fast in (("torch_hf", "fastinit_llama"), ("torch_reset", "fastinit_torch")):
        if slow in rows and fast in rows:
            print(f"  {slow} / {fast} = {rows[slow]['seconds'] / rows[fast]['seconds']:.1f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"parameters": n, "plan_seconds": t_plan, "rows": rows, "argv": vars(args)}, f, indent=2)
    return 0 if math.isfinite(t_plan) else 1


if __name__ == "__main__":
    main()
