"""A seed checkpoint of a Llama-2-7B-shaped model, written from meta, against the disk's own write rate.

    python benchmarks/scripts/bench_checkpoint.py --dir /work/bench_ck                 # full size, float32: 27 GB
    python benchmarks/scripts/bench_checkpoint.py --dir /work/bench_ck --layers 4      # ~4.5 GB
    python benchmarks/scripts/bench_checkpoint.py --dir /work/bench_ck --layers 2 --format dcp   # DCP, 2.67 GB

The model (Hugging Face Llama names, from bench_materialize.py) is built under ``torch.device("meta")``
and written with ``fastinit.torch.save_initialized(recipe="llama", format="safetensors")`` in 5 GB
shards (``--format dcp``: a torch.distributed.checkpoint directory, one process). In the same run,
before it, the disk's sequential write rate is measured by writing the same number of bytes (one
64 MiB buffer again and again, then fsync) to a file in the same directory (``--disk-after``: again
after the save, with the checkpoint on disk). Both times include the final fsync. Peak RSS: the rise
of VmHWM (reset through /proc/self/clear_refs) over the RSS before the save. The checkpoint is then
read back (safetensors memory-mapped; DCP with ``torch.distributed.checkpoint.load``) and a sample of
tensors compared against fastinit.init on single tensors (``--verify``). ``--stock``: afterwards, the
way without fastinit's writer, for comparison: ``materialize`` the model, then save its state_dict
(``safetensors.torch.save_file`` or ``torch.distributed.checkpoint.save``), with its peak RSS (it needs
the model in RAM: only for models that fit). Every file written is deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

import numpy as np
import torch

import fastinit.torch as ft

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_materialize import Llama, _peak_rss, _reset_peak, _rss  # noqa: E402

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def disk_rate(path: str, nbytes: int) -> float:
    """Seconds to write ``nbytes`` sequentially to a new file in ``path`` and fsync it."""
    buf = np.random.default_rng(0).integers(0, 255, 64 << 20, dtype=np.uint8).tobytes()
    f = os.path.join(path, "disk_rate.bin")
    fd = os.open(f, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    t0 = time.perf_counter()
    try:
        left = nbytes
        while left > 0:
            left -= os.write(fd, buf[:min(left, len(buf))])
        os.fsync(fd)
    finally:
        os.close(fd)
    dt = time.perf_counter() - t0
    os.unlink(f)
    return dt


def read_back(ck: str, files, names, model, fmt):
    """``(name, tensor)`` of the tensors ``names`` read from the checkpoint."""
    if fmt == "dcp":
        import torch.distributed.checkpoint as dcp
        from torch.distributed.checkpoint import DefaultLoadPlanner

        shapes = dict(model.state_dict().items())
        sd = {k: torch.empty(shapes[k].shape, dtype=shapes[k].dtype) for k in names}
        dcp.load(sd, checkpoint_id=ck, planner=DefaultLoadPlanner(allow_partial_load=True))
        yield from sd.items()
        return
    from safetensors import safe_open

    for f in files:
        if f.endswith(".safetensors"):
            with safe_open(os.path.join(ck, f), "pt") as sf:
                for k in set(sf.keys()) & set(names):
                    yield k, sf.get_tensor(k)


def stock(model, ck: str, args, nbytes: int) -> None:
    """materialize, then save the state_dict: the model in RAM."""
    base = _rss()
    _reset_peak()
    t0 = time.perf_counter()
    ft.materialize(model, recipe="llama", seed=args.seed)
    if args.format == "dcp":
        import torch.distributed.checkpoint as dcp

        dcp.save(model.state_dict(), checkpoint_id=ck, no_dist=True)
    else:
        from safetensors.torch import save_file

        os.makedirs(ck)
        save_file(model.state_dict(), os.path.join(ck, "model.safetensors"))
    dt = time.perf_counter() - t0
    print(f"stock (materialize, then {'dcp.save' if args.format == 'dcp' else 'save_file'}): {dt:.1f} s = "
          f"{nbytes / dt / 1e9:.2f} GB/s; peak RSS rise {(_peak_rss() - base) / 2**20:.0f} MiB "
          f"(the model: {nbytes / 2**20:.0f} MiB)", flush=True)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", required=True, help="a new directory on the disk to measure (deleted at the end)")
    ap.add_argument("--layers", type=int, default=32)
    ap.add_argument("--dtype", default="float32", choices=sorted(DTYPES))
    ap.add_argument("--block-mb", type=int, default=64)
    ap.add_argument("--shard", default="5GB")
    ap.add_argument("--format", default="safetensors", choices=["safetensors", "dcp"])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--disk-after", action="store_true", help="measure the disk again after the save")
    ap.add_argument("--stock", action="store_true", help="also materialize + save the state_dict (needs the RAM)")
    ap.add_argument("--verify", type=int, default=3, help="tensors compared with materialize of that tensor alone")
    args = ap.parse_args(argv)
    if os.path.exists(args.dir):
        sys.exit(f"--dir {args.dir} exists; give a new directory (it is deleted at the end)")
    os.makedirs(args.dir)
    try:
        with torch.device("meta"):
            model = Llama(args.layers).to(DTYPES[args.dtype])
        nbytes = sum(p.numel() * p.element_size() for p in model.parameters())
        print(f"Llama-2-7B shape, {args.layers} layers, {args.dtype}: {nbytes / 1e9:.2f} GB; "
              f"free disk {shutil.disk_usage(args.dir).free / 1e9:.0f} GB", flush=True)
        small = Llama(1, 64, 96, 128)  # load the kernels (not timed)
        ft.init_model(small, recipe="llama", seed=0)
        t_disk = disk_rate(args.dir, nbytes)
        print(f"disk: {nbytes / 1e9:.2f} GB written + fsync in {t_disk:.1f} s = {nbytes / t_disk / 1e9:.2f} GB/s",
              flush=True)
        base = _rss()
        _reset_peak()
        t0 = time.perf_counter()
        ft.save_initialized(model, os.path.join(args.dir, "ck"), recipe="llama", seed=args.seed, format=args.format,
                            max_shard_size=args.shard, block_bytes=args.block_mb << 20)
        dt = time.perf_counter() - t0
        peak = _peak_rss() - base
        files = sorted(os.listdir(os.path.join(args.dir, "ck")))
        t_disk2 = disk_rate(args.dir, nbytes) if args.disk_after else None
        print(f"save_initialized: {dt:.1f} s = {nbytes / dt / 1e9:.2f} GB/s = {t_disk / dt:.0%} of the disk's rate; "
              f"peak RSS rise {peak / 2**20:.0f} MiB (RSS before {base / 2**20:.0f} MiB); {len(files)} files",
              flush=True)
        if t_disk2 is not None:
            print(f"disk again after the save: {nbytes / t_disk2 / 1e9:.2f} GB/s; save_initialized = "
                  f"{t_disk2 / dt:.0%} of it", flush=True)
        if args.verify:
            names = [r.name for r in ft.plan(model, "llama", args.seed).rows]
            pick = [names[i] for i in np.linspace(0, len(names) - 1, args.verify).astype(int)]
            ok = True
            for k, t in read_back(os.path.join(args.dir, "ck"), files, pick, model, args.format):
                one = torch.nn.Module()  # the tensor alone, under its own name: same stream
                sub = one
                parts = k.split(".")
                for part in parts[:-1]:
                    sub.add_module(part, torch.nn.Module()) if not hasattr(sub, part) else None
                    sub = getattr(sub, part)
                sub.register_parameter(parts[-1], torch.nn.Parameter(torch.empty_like(t)))
                rule = [ft.Rule("normal_", {"std": 0.02}, name=".")] if t.dim() > 1 else [ft.Rule("ones_", name=".")]
                ft.init_model(one, recipe=rule, seed=args.seed)
                same = torch.equal(dict(one.named_parameters())[k], t)
                ok &= same
                print(f"  verify {k} {tuple(t.shape)}: {'equal' if same else 'DIFFERENT'}")
            print("verify:", "all equal" if ok else "MISMATCH")
        if args.stock:
            shutil.rmtree(os.path.join(args.dir, "ck"))
            stock(model, os.path.join(args.dir, "stock"), args, nbytes)
    finally:
        shutil.rmtree(args.dir)
        print(f"deleted {args.dir}")


if __name__ == "__main__":
    main()
