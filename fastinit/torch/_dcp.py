"""save_initialized(format="dcp"): torch.distributed.checkpoint's own planner and file writer, fed
block by block from fastinit's streams.

The checkpoint is DCP's: ``torch.distributed.checkpoint.save`` with a ``DefaultSavePlanner`` subclass
and a ``FileSystemWriter`` subclass, so the files, the ``.metadata`` and every collective are DCP's.
Two hooks change what is written and when:

* :class:`InitPlanner` (a ``SavePlanner``): ``create_local_plan`` takes DCP's write items (one per
  tensor, or per local shard of a DTensor) and cuts every item larger than ``block_bytes`` into row
  chunks (``WriteItemType.SHARD`` items with their own ``ChunkStorageMetadata``: the way DCP stores a
  tensor saved in parts, which its loader reshards to any layout); ``resolve_data`` makes each chunk
  when the writer asks for it: a new CPU tensor filled with :func:`fill_region` at the chunk's global
  offset. The state dict holds meta tensors only; nothing of the model is allocated.
* :class:`BoundedWriter` (a ``FileSystemWriter``): ``write_data`` hands DCP's writer the rank's items
  in groups of at most ``block_bytes`` (a larger chunk alone), one ``.distcp`` file per group. DCP's
  writer keeps every tensor of the file it is writing until the file is closed, so the group is the
  memory bound: about ``block_bytes`` per rank whatever the model's size.

File names carry a token of this save (``__{rank}_{token}_{group}_0.distcp``), so a failed save never
overwrites a file of a checkpoint already at the path; ``.metadata`` (what makes a DCP checkpoint
loadable) is written by DCP last, after every rank has written its files.

Plain tensors of a meta model are planned on every rank and DCP's deduplication gives each chunk to
one rank: with several ranks, each writes its own part, with or without DTensors.
"""

from __future__ import annotations

import dataclasses
import math
import os
import uuid
import warnings

from .._checks import InitArgumentError
from ._distributed import check_dtensor, is_dtensor, local_region
from ._model import fill_region

__all__ = ["save_dcp", "is_dcp_file", "rank_and_world"]

METADATA = ".metadata"


def is_dcp_file(name: str) -> bool:
    """True for the files of a DCP checkpoint (``.metadata`` and ``*.distcp``)."""
    return name == METADATA or name.endswith(".distcp")


def _split(item, rows_per: int, torch):
    """Row chunks of at most ``rows_per`` rows of a tensor write item (the item itself if one)."""
    from torch.distributed.checkpoint.metadata import ChunkStorageMetadata, MetadataIndex
    from torch.distributed.checkpoint.planner import TensorWriteData, WriteItem, WriteItemType

    chunk = item.tensor_data.chunk
    sizes, offsets = tuple(chunk.sizes), tuple(chunk.offsets)
    if not sizes or rows_per >= sizes[0]:
        return [item]
    out = []
    for r0 in range(0, sizes[0], rows_per):
        n = min(rows_per, sizes[0] - r0)
        off = torch.Size((offsets[0] + r0, *offsets[1:]))
        size = torch.Size((n, *sizes[1:]))
        out.append(WriteItem(index=MetadataIndex(item.index.fqn, off), type=WriteItemType.SHARD,
                             tensor_data=TensorWriteData(chunk=ChunkStorageMetadata(offsets=off, sizes=size),
                                                         properties=item.tensor_data.properties,
                                                         size=item.tensor_data.size)))
    return out


def _planner_class():
    from torch.distributed.checkpoint import DefaultSavePlanner

    class InitPlanner(DefaultSavePlanner):
        """DCP's default planner whose items are row chunks made on demand from fastinit's streams."""

        def __init__(self, entries: dict, seed: int, block_bytes: int, torch):
            super().__init__(flatten_state_dict=False, flatten_sharded_tensors=False)
            self.entries, self.seed, self.block_bytes, self.torch = entries, seed, block_bytes, torch

        def create_local_plan(self):
            plan = super().create_local_plan()
            items = []
            for it in plan.items:
                row, t = self.entries[it.index.fqn]
                sizes = tuple(it.tensor_data.chunk.sizes)
                if not sizes or row.status != "rule" or any(q.fn == "orthogonal_" for q in row.pieces):
                    items.append(it)  # orthogonal_ whole: the bits materialize gives this block
                    continue
                per_row = t.element_size() * math.prod(sizes[1:])
                items += _split(it, max(1, self.block_bytes // max(1, per_row)), self.torch)
            self.plan = dataclasses.replace(plan, items=items)
            return self.plan

        def resolve_data(self, write_item):
            torch = self.torch
            row, t = self.entries[write_item.index.fqn]
            td = write_item.tensor_data
            offsets, sizes, shape = tuple(td.chunk.offsets), tuple(td.chunk.sizes), tuple(td.size)
            out = torch.empty(sizes, dtype=td.properties.dtype)
            if row.status != "rule":  # a kept CPU tensor (checked in save_dcp): its own values
                src, base = (local_region(t)[:2] if is_dtensor(t) else (t, (0,) * len(shape)))
                idx = tuple(slice(o - b, o - b + n) for o, b, n in zip(offsets, base, sizes, strict=True))
                with torch.no_grad():
                    out.copy_(src.detach()[idx])
            else:
                fill_region(out, offsets, shape, row, self.seed)
            return out

    return InitPlanner


def _writer_class():
    from torch.distributed.checkpoint import FileSystemWriter
    from torch.futures import Future

    class BoundedWriter(FileSystemWriter):
        """DCP's file writer, given a rank's items in groups of at most ``group_bytes``, a file each."""

        def __init__(self, path: str, group_bytes: int, token: str):
            super().__init__(path, single_file_per_rank=True, sync_files=True, thread_count=1, overwrite=True)
            self.group_bytes, self.token = group_bytes, token

        def write_data(self, plan, planner):
            groups, cur, size = [], [], 0
            for it in plan.items:
                n = it.tensor_storage_size() or 0
                if cur and size + n > self.group_bytes:
                    groups.append(cur)
                    cur, size = [], 0
                cur.append(it)
                size += n
            if cur:
                groups.append(cur)
            results = []
            for g, items in enumerate(groups):
                prefix = f"{plan.storage_data.prefix}{self.token}_{g}_"
                sub = dataclasses.replace(plan, items=items,
                                          storage_data=dataclasses.replace(plan.storage_data, prefix=prefix))
                results += super().write_data(sub, planner).value()
            fut = Future()
            fut.set_result(results)
            return fut

    return BoundedWriter


def _entries(model, p, torch) -> dict:
    """``{state_dict key: (plan row, tensor)}``; tied tensors under every state_dict name."""
    from ._plan import collect

    rows = {r.name: r for r in p.rows}
    canon = {a: (name, kind) for _t, kind, name, _m, _l, _anc, aliases in collect(model) for a in aliases}
    out = {}
    for key, t in model.state_dict(keep_vars=True).items():
        name, kind = canon[key]
        row = rows[name]
        if is_dtensor(t):
            check_dtensor(t, name, checkpoint=True)
        if row.status != "rule" and t.device.type == "meta":
            why = ("its module's reset_buffers()" if row.status == "module" else "no rule")
            raise InitArgumentError(f"model: the meta {kind} {name} has {why}; a seed checkpoint is written from "
                                    "rules alone: add a rule for it (or materialize the model and save its "
                                    "state_dict)")
        if row.status != "rule" and t.device.type != "cpu":
            raise InitArgumentError(f"model: {name} is on {t.device}; a kept tensor is saved from the CPU")
        out[key] = (row, t)
    return out


def rank_and_world(torch) -> tuple:
    """``(rank, world size)`` of the default process group, or ``(0, 1)`` without one."""
    d = torch.distributed
    if d.is_available() and d.is_initialized():
        return d.get_rank(), d.get_world_size()
    return 0, 1


def _unwrap(err, rank: int):
    """The local exception inside DCP's CheckpointException, or a RuntimeError naming the failed ranks."""
    failures = getattr(err, "failures", None)
    if not isinstance(failures, dict):
        return err
    if rank in failures:
        return failures[rank][0]
    return RuntimeError(f"save_initialized: rank(s) {sorted(failures)} failed; rank {rank} removed its files")


def save_dcp(model, path: str, p, overwrite: bool, block_bytes: int, torch) -> None:
    """Write ``model``'s plan ``p`` as a DCP checkpoint at ``path`` (see the module docstring)."""
    import torch.distributed.checkpoint as dcp  # lazy: only this format needs it

    entries = _entries(model, p, torch)
    rank, world = rank_and_world(torch)
    old = sorted(f for f in os.listdir(path) if is_dcp_file(f)) if os.path.isdir(path) else []
    busy = os.path.isdir(path) and bool(os.listdir(path)) and not overwrite
    if world > 1:  # the ranks agree before any collective of DCP (each may see its own file system)
        flag = torch.tensor([int(busy)])
        torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
        busy = bool(flag.item())
    if busy:
        where = " on at least one rank" if world > 1 else ""
        raise InitArgumentError(f"path: {path} is not empty{where}; pass overwrite=True to write the checkpoint "
                                "there")
    os.makedirs(path, exist_ok=True)
    token = uuid.uuid4().hex[:8]
    planner = _planner_class()(entries, p.seed, block_bytes, torch)
    writer = _writer_class()(path, block_bytes, token)
    state = {k: t.detach() for k, (_row, t) in entries.items()}
    try:
        with warnings.catch_warnings():  # DCP warns when it replaces a .metadata: overwrite=True asked for it
            warnings.filterwarnings("ignore", message="Detected an existing checkpoint")
            warnings.filterwarnings("ignore", message="torch.distributed is disabled")
            dcp.save(state, storage_writer=writer, planner=planner, no_dist=world == 1)
    except BaseException as e:
        for f in os.listdir(path):  # this rank's files of this save: the checkpoint at path is untouched
            if f.startswith(f"__{rank}_{token}_") or (rank == 0 and f == METADATA + ".tmp"):
                os.unlink(os.path.join(path, f))
        err = _unwrap(e, rank)
        if err is e:
            raise
        raise err from None
    if rank == 0:
        for f in old:  # the previous checkpoint's data files (its .metadata was replaced by DCP)
            if f != METADATA and os.path.exists(os.path.join(path, f)):
                os.unlink(os.path.join(path, f))
    if world > 1:
        torch.distributed.barrier()
