"""Build a GPT-2-XL-shaped stack on the CPU three ways and print the times.

    python benchmarks/scripts/gpt2.py               # full size: ~1.56e9 float32 parameters, ~6.2 GB per model
    python benchmarks/scripts/gpt2.py --layers 2    # quick smoke run

1. ``floor``: allocate tensors of the same shapes (``torch.empty``) and touch every page once
   (write one float per 4 KiB page). On a fresh allocation the kernel's first-touch page faults
   cost more than a good fill, so no initialiser can beat this.
   ``floor_populate`` does the same with one ``madvise(MADV_POPULATE_WRITE)`` per tensor, which
   maps the pages in bulk instead of one fault per page (what fastinit's fills do on fresh memory);
   ``floor_2threads`` touches every page with one thread per core (each takes half of every
   tensor), the floor for a fill that uses all cores.
2. ``fastinit``: stock ``torch.nn`` modules constructed inside ``fastinit.torch.accelerate()``.
3. ``torch``: the same construction with stock ``torch.nn.init``.

The model is GPT-2 XL's parameter layout (48 blocks, d_model 1600, 4x MLP, 50257-token and
1024-position embeddings) built from nn.Embedding, nn.LayerNorm and nn.Linear; only
construction is timed (after a tiny warm-up build, so JIT compilation and the loading of
fastinit's kernels are not). Each variant's memory is freed before the next one starts.

glibc's malloc is told to serve every allocation above 128 KiB with a fresh mmap (``mallopt``;
otherwise its dynamic threshold keeps freed tensors of up to 32 MiB mapped and a later variant
would reuse pages an earlier one paid for). The variants run in ``--rounds`` interleaved rounds
(default 3) and the medians are reported, after one discarded floor pass: on a virtual machine the
first touch of memory the process never had costs several times more (15 s instead of 2.5 s here),
and that cost would land on whichever variant ran first.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import ctypes
import gc
import statistics
import time

import torch
from torch import nn

import fastinit.torch
from fastinit._lib import lib

PAGE_FLOATS = 4096 // 4  # float32 values per 4 KiB page


class Block(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d)
        self.attn = nn.Linear(d, 3 * d)
        self.attn_proj = nn.Linear(d, d)
        self.ln_2 = nn.LayerNorm(d)
        self.fc = nn.Linear(d, 4 * d)
        self.fc_proj = nn.Linear(4 * d, d)


class GPT2(nn.Module):
    def __init__(self, layers: int = 48, d: int = 1600, vocab: int = 50257, ctx: int = 1024):
        super().__init__()
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(ctx, d)
        self.h = nn.ModuleList(Block(d) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)


def parameter_shapes(layers: int, d: int) -> list[tuple[int, ...]]:
    with torch.device("meta"):
        return [tuple(p.shape) for p in GPT2(layers, d).parameters()]


def floor(shapes):
    out = []
    for s in shapes:
        t = torch.empty(s)
        t.view(-1)[::PAGE_FLOATS].fill_(0.0)  # one write per page: the page faults, nothing else
        out.append(t)
    return out


def floor_populate(shapes):
    out = []
    for s in shapes:
        t = torch.empty(s)
        if lib.fi_prefault(ctypes.c_void_p(t.data_ptr()), t.numel() * t.element_size()) != 0:
            t.view(-1)[::PAGE_FLOATS].fill_(0.0)  # no MADV_POPULATE_WRITE here: fault page by page
        out.append(t)
    return out


def floor_2threads(shapes):
    out = [torch.empty(s) for s in shapes]

    def touch(half):
        for t in out:
            flat = t.view(-1)
            mid = (flat.numel() // 2 // PAGE_FLOATS) * PAGE_FLOATS
            (flat[:mid] if half == 0 else flat[mid:])[::PAGE_FLOATS].fill_(0.0)  # releases the GIL

    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        list(pool.map(touch, (0, 1)))
    return out


def _fresh_mmap_for_large_allocations() -> None:
    try:
        ctypes.CDLL(None).mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD (glibc); fixed, not dynamic
    except (OSError, AttributeError):
        pass


def timed(fn):
    gc.collect()
    t0 = time.perf_counter()
    result = fn()
    dt = time.perf_counter() - t0
    n = sum(p.numel() for p in (result.parameters() if isinstance(result, nn.Module) else result))
    del result
    gc.collect()
    return dt, n


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", type=int, default=48)
    ap.add_argument("--d-model", type=int, default=1600)
    ap.add_argument("--variants", default="floor,floor_populate,floor_2threads,fastinit,torch")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args(argv)
    if args.rounds < 1:
        ap.error("--rounds must be >= 1")
    _fresh_mmap_for_large_allocations()

    shapes = parameter_shapes(args.layers, args.d_model)
    build = {
        "floor": lambda: floor(shapes),
        "floor_populate": lambda: floor_populate(shapes),
        "floor_2threads": lambda: floor_2threads(shapes),
        "fastinit": lambda: _accelerated(args),
        "torch": lambda: GPT2(args.layers, args.d_model),
    }
    print(f"GPT-2 stack: {args.layers} blocks, d_model {args.d_model}, "
          f"{sum(_numel(s) for s in shapes) / 1e9:.3f}e9 float32 parameters; torch threads {torch.get_num_threads()}")
    with fastinit.torch.accelerate(generator=args.seed):   # compile/load fastinit's kernels: not timed
        GPT2(1, 8, 16, 4)
    GPT2(1, 8, 16, 4)
    timed(build["floor"])  # discarded: the VM's first touch of this much memory
    names = args.variants.split(",")
    runs = {name: [] for name in names}
    for r in range(args.rounds):
        for name in names:
            dt, n = timed(build[name])
            runs[name].append(dt)
            print(f"  round {r + 1}  {name:14s} {dt:8.2f} s   ({n / dt / 1e9:.2f} e9 params/s)", flush=True)
    times = {name: statistics.median(v) for name, v in runs.items()}
    print(f"medians of {args.rounds} rounds:")
    for name, dt in times.items():
        print(f"  {name:14s} {dt:8.2f} s")
    for base in ("floor", "floor_populate", "floor_2threads"):
        if base in times:
            for name in ("fastinit", "torch"):
                if name in times:
                    print(f"  {name} / {base} = {times[name] / times[base]:.2f}x")
    if "fastinit" in times and "torch" in times:
        print(f"  torch / fastinit = {times['torch'] / times['fastinit']:.2f}x")


def _accelerated(args):
    with fastinit.torch.accelerate(generator=args.seed):
        return GPT2(args.layers, args.d_model)


def _numel(shape):
    n = 1
    for s in shape:
        n *= s
    return n


if __name__ == "__main__":
    main()
