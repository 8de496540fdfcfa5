"""DTensor materialise on P ranks (gloo, one machine) against one process, same cores in total.

    python benchmarks/scripts/bench_distributed.py --ranks 2 --layers 2 --repeat 5   # Llama-2-7B shape, 2 layers
    python benchmarks/scripts/bench_distributed.py --ranks 2 --layers 2 --dcp /work/bench_dcp   # DCP seed checkpoint

One process: ``fastinit.torch.materialize`` of the meta model (fastinit's threads on every core).
P ranks: each started with ``cores / P`` threads (NUMBA_NUM_THREADS, OMP_NUM_THREADS); the meta model's
parameters are distributed with ``Shard(0)`` on a CPU mesh, each rank materialises its shards only, timed
between barriers; the aggregate rate is the model's bytes over the slowest rank's time. DTensor
collectives issued during the fill are counted with CommDebugMode (bytes communicated: 0 if none).
``--dcp DIR``: instead, the P ranks write a DCP seed checkpoint of the meta DTensor model into DIR with
``save_initialized(format="dcp")`` (each rank its shards), once; per rank: time, local bytes, peak RSS
rise (VmHWM reset before the save) and the files it wrote; DIR is deleted at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time

import torch

import fastinit.torch as ft

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_materialize import Llama, _peak_rss, _reset_peak, _rss  # noqa: E402


def model(layers):
    with torch.device("meta"):
        return Llama(layers).to(torch.float32)


def rank_main(args):
    import torch.distributed as dist
    from torch.distributed.tensor import Shard, distribute_tensor, init_device_mesh
    from torch.distributed.tensor.debug import CommDebugMode

    dist.init_process_group("gloo")
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    def shard(m):
        for mod in m.modules():
            for k, p in list(mod._parameters.items()):
                if p is not None:
                    mod._parameters[k] = torch.nn.Parameter(distribute_tensor(p, mesh, [Shard(0)]))
        return m

    ft.init_model(Llama(1, 64, 96, 128), recipe="llama", seed=0)  # load the kernels (not timed)
    if args.dcp:  # DCP's imports and collectives, the block fills' kernels (~55 MiB of code): not measured
        with torch.device("meta"):
            small = shard(Llama(1, 64, 96, 128))
        ft.save_initialized(small, os.path.join(args.dcp, "warm"), recipe="llama", seed=0, format="dcp",
                            block_bytes=4096)
    m = shard(model(args.layers))
    local = sum(p.to_local().numel() * p.element_size() for p in m.parameters())
    dist.barrier()
    base = _rss()
    _reset_peak()
    t0 = time.perf_counter()
    if args.dcp:  # DCP's own collectives (plans, metadata) carry no tensor data; not counted
        ft.save_initialized(m, os.path.join(args.dcp, "ck"), recipe="llama", seed=0, format="dcp",
                            block_bytes=int(os.environ.get("BENCH_BLOCK_MB", "64")) << 20)
        comm = None
    else:
        with CommDebugMode() as comm:
            ft.materialize(m, recipe="llama", seed=0)
    dt = time.perf_counter() - t0
    peak = _peak_rss() - base
    dist.barrier()
    ck = os.path.join(args.dcp, "ck") if args.dcp else None
    mine = sorted(f for f in os.listdir(ck) if f.startswith(f"__{dist.get_rank()}_")) if ck else []
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, {"seconds": dt, "local_bytes": local,
                                 "collectives": comm.get_total_counts() if comm else 0,
                                 "peak_rise": peak, "files": len(mine)})
    if dist.get_rank() == 0:
        print(json.dumps(out))
    dist.destroy_process_group()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--dcp", default=None, help="write a DCP seed checkpoint here instead (a new directory)")
    ap.add_argument("--rank-main", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.rank_main:
        return rank_main(args)
    if args.dcp:
        return dcp_main(args)
    cores = os.cpu_count()
    ft.init_model(Llama(1, 64, 96, 128), recipe="llama", seed=0)
    nbytes = sum(p.numel() * p.element_size() for p in model(args.layers).parameters())
    print(f"Llama-2-7B shape, {args.layers} layers, float32: {nbytes / 1e9:.2f} GB; {cores} cores; "
          f"load average before: {os.getloadavg()[0]:.1f}")
    ratios = []
    for i in range(args.repeat):  # alternate, so both see the same background load
        m = model(args.layers)
        t0 = time.perf_counter()
        ft.materialize(m, recipe="llama", seed=0)
        single = time.perf_counter() - t0
        del m
        res, threads = _ranks(args)
        slow = max(r["seconds"] for r in res)
        ratios.append(single / slow)
        print(f"[{i}] 1 process {single:.2f} s = {nbytes / single / 1e9:.2f} GB/s | {args.ranks} ranks ({threads} "
              f"thread(s) each): slowest rank {slow:.2f} s = {nbytes / slow / 1e9:.2f} GB/s aggregate = "
              f"{single / slow:.0%} of one process; per rank "
              + ", ".join(f"{r['seconds']:.2f} s / {r['local_bytes'] / 1e9:.2f} GB" for r in res)
              + f"; DTensor collectives during the fill: {sum(r['collectives'] for r in res)}", flush=True)
    ratios.sort()
    print(f"median aggregate / one process: {ratios[len(ratios) // 2]:.0%} "
          f"(min {ratios[0]:.0%}, max {ratios[-1]:.0%}); load average after: {os.getloadavg()[0]:.1f}")


def dcp_main(args):
    import shutil

    if os.path.exists(args.dcp):
        sys.exit(f"--dcp {args.dcp} exists; give a new directory (it is deleted at the end)")
    nbytes = sum(p.numel() * p.element_size() for p in model(args.layers).parameters())
    try:
        res, threads = _ranks(args)
        slow = max(r["seconds"] for r in res)
        print(f"Llama-2-7B shape, {args.layers} layers, float32: {nbytes / 1e9:.2f} GB ({nbytes / 2**20:.0f} MiB); "
              f"DCP seed checkpoint by {args.ranks} ranks ({threads} thread(s) each): slowest rank {slow:.1f} s = "
              f"{nbytes / slow / 1e9:.2f} GB/s aggregate; per rank "
              + ", ".join(f"{r['seconds']:.1f} s, {r['local_bytes'] / 2**20:.0f} MiB of shards, peak RSS rise "
                          f"{r['peak_rise'] / 2**20:.0f} MiB, {r['files']} files" for r in res)
              + "; total files "
              f"{len(os.listdir(os.path.join(args.dcp, 'ck')))}", flush=True)
    finally:
        shutil.rmtree(args.dcp, ignore_errors=True)


def _ranks(args):
    cores = os.cpu_count()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    threads = str(max(1, cores // args.ranks))
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(args.ranks),
           "NUMBA_NUM_THREADS": threads, "OMP_NUM_THREADS": threads}
    cmd = [sys.executable, os.path.abspath(__file__), "--rank-main", "--layers", str(args.layers),
           *(["--dcp", args.dcp] if args.dcp else [])]
    procs = [subprocess.Popen(cmd, env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True) for r in range(args.ranks)]
    outs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        sys.exit(f"a rank failed: {[p.returncode for p in procs]}")
    return json.loads(outs[0].strip().splitlines()[-1]), threads

if __name__ == "__main__":
    main()
