"""One rank of the DTensor tests (tests/test_torch_distributed.py starts WORLD_SIZE of these).

Each scenario builds a small model on meta, lays its parameters out as DTensors on a CPU mesh
(gloo; 1-D, or 2-D for the mesh_* scenarios and dcp_save/st_dtensor), initialises it with fastinit
(or writes a seed checkpoint and reads it back) and saves, from rank 0, the gathered full tensors; every rank
saves its replicated tensors and buffers (to check they are equal on every rank) and, for the
no-communication claim, the number of DTensor collectives issued during the fill (CommDebugMode).

Usage: python tests/_dist_worker.py OUT_DIR SCENARIO[,SCENARIO...]   (env: RANK, WORLD_SIZE,
MASTER_ADDR, MASTER_PORT; FASTINIT_TEST_DCP: the checkpoint dcp_load reads)
"""

import json
import os
import sys

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.tensor import DTensor, Replicate, Shard, distribute_tensor, init_device_mesh
from torch.distributed.tensor.debug import CommDebugMode

import fastinit.torch as ft
from fastinit.torch import _checkpoint

sys.path.insert(0, os.path.dirname(__file__))
from _torch_models import GPT  # noqa: E402


class MLP(nn.Module):
    def __init__(self, d=12, h=22):
        super().__init__()
        self.up = nn.Linear(d, h)
        self.down = nn.Linear(h, d)
        self.norm = nn.LayerNorm(d)


class Mixed(nn.Module):
    """Uneven dims everywhere (10, 7, 5, 3 rows over 2/3/4 ranks), a conv, an embedding with a
    padding row, BatchNorm buffers, an LSTM (gate blocks cut across shard boundaries)."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(10, 6, padding_idx=1)
        self.fc = nn.Linear(6, 7)
        self.conv = nn.Conv2d(3, 5, 3)
        self.bn = nn.BatchNorm1d(7)
        self.head = nn.Linear(7, 3)
        self.rnn = nn.LSTM(6, 5)


ORTHO = [ft.Rule("orthogonal_", {"gain": 0.5}, module="Linear", param="weight"), *ft.recipe("torch").rules]


def _disk_full(*a):
    raise OSError(28, "No space left on device")


S0, S1, R = Shard(0), Shard(1), Replicate()
# 2-D meshes: every combination of Shard(0)/Shard(1)/Replicate over the two mesh dims, in turn
COMBOS_2D = [(S0, S1), (S1, S0), (S0, S0), (R, S1), (S0, R), (S1, S1), (R, R), (S1, R), (R, S0)]
COMBOS_1D = [(S0, R), (R, S0), (S0, S0), (R, R)]
# the mesh of a scenario, from the world size (default: 1-D, every rank)
MESH = {"mesh_a": lambda w: (w // 2, 2), "mesh_b": lambda w: (2, w // 2), "dcp_save": lambda w: (w // 2, 2),
        "st_dtensor": lambda w: (2, w // 2)}


def mesh_2d():
    """Placements for a 2-D mesh: the combinations in turn, over the parameters in model order."""
    seen = [0, 0]

    def layout(p):
        combos = COMBOS_2D if p.dim() >= 2 else COMBOS_1D
        i = seen[p.dim() >= 2]
        seen[p.dim() >= 2] += 1
        return list(combos[i % len(combos)])
    return layout


def _bits(t):
    """The local bytes of a tensor or DTensor."""
    t = (t.to_local() if isinstance(t, DTensor) else t).detach().contiguous()
    return t.view(torch.uint8) if t.is_floating_point() else t


def _full_on_second(real):
    calls = []

    def save(obj, f, *a, **k):  # DCP writes each tensor with torch.save into the open file
        calls.append(1)
        if len(calls) == 2:
            f.write(b"partial")
            raise OSError(28, "No space left on device")
        return real(obj, f, *a, **k)
    return save


def scenario(name):
    """(model factory, recipe, layout, how) of a scenario; layout maps a parameter to placements."""
    def shard(d):
        return lambda p: [Shard(d)] if p.dim() > d else [Replicate()]
    return {
        "shard0": (Mixed, "recurrent", shard(0), "materialize"),
        "shard1": (Mixed, "torch", shard(1), "to_empty"),
        "replicate": (Mixed, "kaiming", lambda p: [Replicate()], "materialize"),
        "ortho_rows": (MLP, ORTHO, shard(0), "materialize"),
        "ortho_cols": (MLP, ORTHO, shard(1), "to_empty"),
        "gpt": (lambda: GPT(vocab=37, d=8, n_layer=2, block=11), "gpt2", shard(0), "materialize"),
        "fsdp": (lambda: GPT(vocab=37, d=8, n_layer=2, block=11), "gpt2", "fsdp", "to_empty"),
        "st_fail": (lambda: GPT(vocab=37, d=8, n_layer=2, block=11), "gpt2", "plain", "expect_error"),
        "dcp_fail": (lambda: GPT(vocab=37, d=8, n_layer=2, block=11), "gpt2", shard(0), "expect_error"),
        "fsdp_materialize": (lambda: GPT(vocab=37, d=8, n_layer=2, block=11), "gpt2", "fsdp", "expect_error"),
        # meta DTensors on a 'cuda' device mesh (made without CUDA: the mesh's backend is not started)
        "cuda_mesh": (MLP, "torch", "cuda", "expect_error"),
        "tp": (MLP, "torch", "tp", "to_empty"),
        # 2-D meshes ((1, 2) and (2, 1) on 2 ranks, (2, 2) on 4), Shard/Replicate combinations
        "mesh_a": (Mixed, "recurrent", mesh_2d(), "materialize"),
        "mesh_b": (lambda: GPT(vocab=37, d=8, n_layer=2, block=11), "gpt2", mesh_2d(), "to_empty"),
        # a DCP seed checkpoint written by these ranks from meta DTensors on a 2-D mesh, read back here and
        # by a run with another rank count (dcp_load)
        "dcp_save": (lambda: GPT(vocab=37, d=8, n_layer=2, block=11), "gpt2", mesh_2d(), "dcp_save"),
        "dcp_load": (lambda: GPT(vocab=37, d=8, n_layer=2, block=11), "gpt2", shard(1), "dcp_load"),
        # the same from a meta model under FSDP2 (fully_shard), read back into it after to_empty
        "dcp_fsdp": (lambda: GPT(vocab=37, d=8, n_layer=2, block=11), "gpt2", "fsdp", "dcp_save"),
        # orthogonal_ column shards: each local shard one chunk (its block, as init_model fills it)
        "dcp_ortho": (MLP, ORTHO, shard(1), "dcp_save"),
        # a DCP seed checkpoint of a plain meta model: DCP gives each chunk to one rank
        "dcp_plain": (Mixed, "recurrent", "plain", "dcp_plain"),
        # safetensors files of a plain meta model, written round-robin by the ranks
        "st_save": (lambda: GPT(vocab=37, d=8, n_layer=2, block=11), "gpt2", "plain", "st_save"),
        # safetensors files of meta DTensors on a 2-D mesh: whole tensors, each file by one rank
        "st_dtensor": (Mixed, "recurrent", mesh_2d(), "st_save"),
    }[name]


def build(name, mesh):
    make, recipe, layout, how = scenario(name)
    with torch.device("meta"):
        model = make()
    if layout == "fsdp":
        from torch.distributed.fsdp import fully_shard
        for blk in model.transformer.h:
            fully_shard(blk, mesh=mesh)
        fully_shard(model, mesh=mesh)
    elif layout == "plain":
        pass
    elif layout == "cuda":
        from torch.distributed.device_mesh import DeviceMesh
        cuda = DeviceMesh("cuda", torch.arange(dist.get_world_size()), _init_backend=False)
        for m in model.modules():
            for k, p in list(m._parameters.items()):
                m._parameters[k] = nn.Parameter(DTensor.from_local(p, cuda, [Replicate()], run_check=False))
    elif layout == "tp":
        from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module
        parallelize_module(model, mesh, {"up": ColwiseParallel(), "down": RowwiseParallel()})
    else:
        seen = {}
        for m in model.modules():
            for k, p in list(m._parameters.items()):
                if p is None:
                    continue
                if id(p) not in seen:
                    seen[id(p)] = nn.Parameter(distribute_tensor(p, mesh, layout(p)), requires_grad=p.requires_grad)
                m._parameters[k] = seen[id(p)]
    return model, recipe, how


def main():
    out, names = sys.argv[1], sys.argv[2].split(",")
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    meshes = {}
    for name in names:
        shape = MESH.get(name, lambda w: (w,))(world)
        if shape not in meshes:
            meshes[shape] = init_device_mesh("cpu", shape)
        model, recipe, how = build(name, meshes[shape])
        dist.barrier()
        if how == "expect_error":
            real, real_save = _checkpoint.os.posix_fallocate, torch.save
            if name == "st_fail" and rank == 1:  # this rank's disk is full
                _checkpoint.os.posix_fallocate = _disk_full
            if name == "dcp_fail" and rank == 1:  # this rank's disk fills up in its second file
                torch.save = _full_on_second(real_save)
            try:
                if name == "st_fail":
                    ft.save_initialized(model, os.path.join(out, "st_fail"), recipe=recipe, seed=11, max_shard_size=700)
                elif name == "cuda_mesh":  # every entry point refuses; one message per call
                    errs = []
                    for fn, kw in ((ft.materialize, {}), (ft.save_initialized, {"path": os.path.join(out, "cuda_st")}),
                                   (ft.save_initialized, {"path": os.path.join(out, "cuda_dcp"), "format": "dcp"})):
                        try:
                            fn(model, recipe=recipe, **kw)
                            errs.append(None)
                        except Exception as e:
                            errs.append(f"{type(e).__name__}: {e}")
                    raise RuntimeError(json.dumps(errs))
                elif name == "dcp_fail":
                    ft.save_initialized(model, os.path.join(out, "dcp_fail"), recipe=recipe, seed=11, format="dcp",
                                        block_bytes=64)
                else:
                    ft.materialize(model, recipe=recipe, seed=11)
                err = None
            except Exception as e:
                err = f"{type(e).__name__}: {e}"
            finally:
                _checkpoint.os.posix_fallocate, torch.save = real, real_save
            dist.barrier()
            left = sorted(os.listdir(os.path.join(out, name))) if name in ("st_fail", "dcp_fail") else None
            torch.save({"error": err, "left": left}, os.path.join(out, f"{name}.{rank}.pt"))
            continue
        extra = {}
        if how in ("to_empty", "dcp_load"):
            model.to_empty(device="cpu")
        with CommDebugMode() as comm:  # counts every DTensor collective issued inside
            if how == "materialize":
                ft.materialize(model, recipe=recipe, seed=11)
            elif how == "to_empty":
                ft.init_model(model, recipe=recipe, seed=11)
        if how in ("dcp_save", "dcp_plain"):  # tiny blocks: every tensor (shard) in row chunks
            import torch.distributed.checkpoint as dcp
            ck = os.path.join(out, "dcp" if name == "dcp_save" else name)
            ft.save_initialized(model, ck, recipe=recipe, seed=11, format="dcp", block_bytes=64)
            assert all(t.is_meta for t in model.parameters())  # nothing of the model was allocated
            if how == "dcp_plain":
                model = scenario(name)[0]()
            else:
                model.to_empty(device="cpu")
            sd = model.state_dict()
            dcp.load(sd, checkpoint_id=ck)  # in place, into the tensors (or local shards) of the model
            if how == "dcp_save":  # the same layout initialised in memory: the same local bytes
                twin = build(name, meshes[shape])[0]
                twin.to_empty(device="cpu")
                ft.init_model(twin, recipe=recipe, seed=11)
                pairs = zip(model.state_dict().values(), twin.state_dict().values(), strict=True)
                extra["same_as_init_model"] = all(torch.equal(_bits(a), _bits(b)) for a, b in pairs)
        elif how == "st_save":
            ck = os.path.join(out, "st" if name == "st_save" else name)
            ft.save_initialized(model, ck, recipe=recipe, seed=11, max_shard_size=700)
            from safetensors.torch import load_file
            index = json.load(open(os.path.join(ck, "model.safetensors.index.json")))
            sd = {}
            for f in sorted(set(index["weight_map"].values())):
                sd.update(load_file(os.path.join(ck, f)))
            model = scenario(name)[0]()
            model.load_state_dict(sd, strict=False)  # the tied embedding comes with lm_head.weight
        elif how == "dcp_load":
            import torch.distributed.checkpoint as dcp
            sd = model.state_dict()
            dcp.load(sd, checkpoint_id=os.environ["FASTINIT_TEST_DCP"])
        full, local = {}, {}
        for k, t in list(model.named_parameters()) + list(model.named_buffers()):
            if isinstance(t, DTensor):
                full[k] = t.full_tensor().detach().clone()
                if all(isinstance(p, Replicate) for p in t.placements):
                    local[k] = t.to_local().detach().clone()
                local[k + "#placements"] = repr(t.placements)
            else:
                full[k] = local[k] = t.detach().clone()
        torch.save({"full": full if rank == 0 else None, "local": local, **extra,
                    "fingerprint": ft.fingerprint(model),
                    "collectives": comm.get_total_counts()}, os.path.join(out, f"{name}.{rank}.pt"))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
