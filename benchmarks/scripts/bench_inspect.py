"""Cost of fastinit.torch.inspect on a GPT-2-small-shaped model against a plain forward and backward.

    python benchmarks/scripts/bench_inspect.py [--batch 8] [--seq 512] [--layers 12] [--repeat 2]

GPT-2 small shapes: 12 pre-norm blocks of width 768 (causal self-attention through
scaled_dot_product_attention, 12 heads; MLP 3072 with GELU), vocabulary 50257, learned positions 1024,
tied head. Both timings use the same loss, sum(G * logits) with a fixed Gaussian G, and the same batch of
integer tokens; the plain pass back-propagates G (drawn by fastinit's normal_, as inspect draws it), inspect
adds its hooks and statistics.
"""

import argparse
import time

import torch
from torch import nn

import fastinit
import fastinit.torch as ft


class Attention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.c_attn = nn.Linear(d, 3 * d)
        self.c_proj = nn.Linear(d, d)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.c_attn(x).split(d, dim=2)
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in (q, k, v))
        y = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.ln_1, self.attn, self.ln_2 = nn.LayerNorm(d), Attention(d, heads), nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, vocab=50257, d=768, layers=12, heads=12, block=1024):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(vocab, d), nn.Embedding(block, d)
        self.h = nn.ModuleList([Block(d, heads) for _ in range(layers)])
        self.ln_f = nn.LayerNorm(d)
        self.lm_head = nn.Linear(d, vocab, bias=False)
        self.lm_head.weight = self.wte.weight

    def forward(self, idx):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for b in self.h:
            x = b(x)
        return self.lm_head(self.ln_f(x))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seq", type=int, default=512)
    p.add_argument("--layers", type=int, default=12)
    p.add_argument("--repeat", type=int, default=2)
    a = p.parse_args()
    model = GPT(layers=a.layers)
    ft.init_model(model, "gpt2", seed=0)
    idx = torch.randint(0, 50257, (a.batch, a.seq), generator=torch.Generator().manual_seed(0))

    def plain():  # the same backward seed as inspect's default loss, drawn the same way
        out = model(idx)
        g = fastinit.init.normal_(torch.empty(out.shape), generator=fastinit.Generator(0))
        torch.autograd.grad(out, list(model.parameters()), grad_outputs=g)

    def insp():
        ft.inspect(model, idx)

    for name, f in (("forward+backward", plain), ("inspect", insp)):
        f()  # warm-up
        times = []
        for _ in range(a.repeat):
            t0 = time.perf_counter()
            f()
            times.append(time.perf_counter() - t0)
        print(f"{name:<17} best of {a.repeat}: {min(times):.2f} s  (all: {', '.join(f'{t:.2f}' for t in times)})")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, batch {a.batch} x {a.seq}, "
          f"{a.layers} layers, {sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters")


if __name__ == "__main__":
    main()
