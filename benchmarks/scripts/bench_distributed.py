"""DTensor materialise on P ranks (gloo, one machine) against one process, same cores in total.

    python benchmarks/scripts/bench_distributed.py --ranks 2 --layers 2 --repeat 5   # Llama-2-7B shape, 2 layers

One process: ``fastinit.torch.materialize`` of the meta model (fastinit's threads on every core).
P ranks: each started with ``cores / P`` threads (NUMBA_NUM_THREADS, OMP_NUM_THREADS); the meta model's
parameters are distributed with ``Shard(0)`` on a CPU mesh, each rank materialises its shards only, timed
between barriers; the aggregate rate is the model's bytes over the slowest rank's time. DTensor
collectives issued during the fill are counted with CommDebugMode (bytes communicated: 0 if none).
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
from bench_materialize import Llama  # noqa: E402


def model(layers):
    with torch.device("meta"):
        return Llama(layers).to(torch.float32)


def rank_main(args):
    import torch.distributed as dist
    from torch.distributed.tensor import Shard, distribute_tensor, init_device_mesh
    from torch.distributed.tensor.debug import CommDebugMode

    dist.init_process_group("gloo")
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    ft.init_model(Llama(1, 64, 96, 128), recipe="llama", seed=0)  # load the kernels (not timed)
    m = model(args.layers)
    for mod in m.modules():
        for k, p in list(mod._parameters.items()):
            if p is not None:
                mod._parameters[k] = torch.nn.Parameter(distribute_tensor(p, mesh, [Shard(0)]))
    local = sum(p.to_local().numel() * p.element_size() for p in m.parameters())
    dist.barrier()
    t0 = time.perf_counter()
    with CommDebugMode() as comm:
        ft.materialize(m, recipe="llama", seed=0)
    dt = time.perf_counter() - t0
    dist.barrier()
    out = [None] * dist.get_world_size()
    dist.all_gather_object(out, {"seconds": dt, "local_bytes": local, "collectives": comm.get_total_counts()})
    if dist.get_rank() == 0:
        print(json.dumps(out))
    dist.destroy_process_group()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ranks", type=int, default=2)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--rank-main", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.rank_main:
        return rank_main(args)
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


def _ranks(args):
    cores = os.cpu_count()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    threads = str(max(1, cores // args.ranks))
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(args.ranks),
           "NUMBA_NUM_THREADS": threads, "OMP_NUM_THREADS": threads}
    cmd = [sys.executable, os.path.abspath(__file__), "--rank-main", "--layers", str(args.layers)]
    procs = [subprocess.Popen(cmd, env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True) for r in range(args.ranks)]
    outs = [p.communicate()[0] for p in procs]
    if any(p.returncode for p in procs):
        sys.exit(f"a rank failed: {[p.returncode for p in procs]}")
    return json.loads(outs[0].strip().splitlines()[-1]), threads

if __name__ == "__main__":
    main()
