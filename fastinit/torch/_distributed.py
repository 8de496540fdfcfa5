"""DTensor parameters: each rank fills only its local shard, as a block of the logical tensor.

A DTensor on a 1-D or N-D CPU device mesh with placements ``Shard(d)`` (even or uneven, as
``torch.chunk`` splits) and ``Replicate()`` holds on each rank one rectangular block of its
logical tensor: the block's global offset comes from the placements (the same helper
``torch.distributed.checkpoint`` uses to name a shard). The rank fills that block with
``block=fastinit.Block(global_shape, index)``, which gives exactly ``full[index]``: no
communication, and the gathered tensor equals the single-process result (orthogonal_: up to
rounding, see docs/api.md).

This module imports torch lazily, like the rest of :mod:`fastinit.torch`.
"""

from __future__ import annotations

from .._block import Block
from .._checks import InitArgumentError

__all__ = ["is_dtensor", "local_region", "piece_region", "check_dtensor", "empty_like_dtensor"]


def is_dtensor(t) -> bool:
    """True if ``t`` is a ``torch.distributed.tensor.DTensor`` (without importing it when unused)."""
    for c in type(t).__mro__:
        if c.__name__ == "DTensor" and c.__module__.startswith("torch.distributed"):
            return True
    return False


def check_dtensor(t, name: str, checkpoint: bool = False) -> None:
    """Refuse a DTensor fastinit cannot fill shard by shard, naming the tensor and what to do
    (``checkpoint``: for save_initialized, whose checkpoint loads into any layout)."""
    mesh = t.device_mesh
    if mesh.device_type != "cpu" and checkpoint:
        raise InitArgumentError(
            f"model: {name} is a DTensor on a {mesh.device_type!r} device mesh; save_initialized runs on a CPU "
            "mesh (gloo): write the seed checkpoint from the same model laid out on a CPU mesh, or from the plain "
            "meta model (a DCP checkpoint loads into any layout), then load it on the accelerator mesh with "
            "torch.distributed.checkpoint.load")
    if mesh.device_type != "cpu":
        raise InitArgumentError(
            f"model: {name} is a DTensor on a {mesh.device_type!r} device mesh; fastinit fills CPU memory: "
            "build the model on a CPU mesh (init_device_mesh('cpu', ...), gloo), initialise it there and move "
            "the shards (module.to(device)), or write a seed checkpoint with fastinit.torch.save_initialized "
            "and load it on the accelerator mesh with torch.distributed.checkpoint")
    for p in t.placements:
        kind = type(p).__name__
        if kind not in ("Shard", "Replicate"):
            raise InitArgumentError(
                f"model: {name} has placement {p!r}; fastinit fills Shard(d) and Replicate() placements "
                "(a shard that is one rectangular block of the tensor); initialise with those placements, "
                "then redistribute")


def local_region(t) -> tuple:
    """``(local tensor, global offset, global shape)`` of a DTensor ``t`` on this rank.

    The local tensor is ``t.to_local()`` (it shares storage with ``t``: writing it writes ``t``); the
    offset is where its element ``(0, ..., 0)`` sits in the logical tensor.
    """
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset  # lazy: torch

    shape = tuple(t.shape)
    local = t.to_local()
    lshape, offset = compute_local_shape_and_global_offset(shape, t.device_mesh, t.placements)
    if tuple(lshape) != tuple(local.shape):  # a padded local tensor is not the block itself
        raise InitArgumentError(f"DTensor of shape {shape}: local tensor {tuple(local.shape)} is not the "
                                f"{tuple(lshape)} block its placements {t.placements} give")
    return local, tuple(offset), shape


def piece_region(shape: tuple, offset: tuple, lshape: tuple, rows) -> tuple | None:
    """The part of a local block that a piece of rows ``rows`` (``(r0, r1)`` of dim 0, or None for
    all) covers: ``(local slices, Block of the piece's logical tensor)``, or None if it covers none.
    A local block that holds the whole piece (a replicated tensor) gets block None: the plain call,
    so replicas equal the single-process tensor bit for bit for orthogonal_ too.

    A piece is its own logical tensor (``shape`` with dim 0 cut to ``rows``); the local block is
    ``offset + lshape`` of the whole tensor.
    """
    if not shape:
        return (), None
    r0, r1 = (0, shape[0]) if rows is None else rows
    a, b = max(r0, offset[0]), min(r1, offset[0] + lshape[0])
    if a >= b:
        return None
    local = (slice(a - offset[0], b - offset[0]),)
    gshape = (r1 - r0, *shape[1:])
    index = (slice(a - r0, b - r0), *(slice(o, o + n) for o, n in zip(offset[1:], lshape[1:], strict=True)))
    block = Block(gshape, index)
    return local, (None if block.shape == gshape else block)


def empty_like_dtensor(t, torch, dev):
    """An uninitialised DTensor like the meta DTensor ``t`` with its local shard allocated on ``dev``."""
    from torch.distributed.tensor import DTensor  # lazy: torch.distributed only for DTensor models

    lshape, _ = _local_shape(t)
    local = torch.empty(lshape, dtype=t.dtype, device=dev)
    return DTensor.from_local(local, t.device_mesh, t.placements, run_check=False, shape=t.shape, stride=t.stride())


def _local_shape(t):
    from torch.distributed.tensor._utils import compute_local_shape_and_global_offset  # lazy: torch

    return compute_local_shape_and_global_offset(tuple(t.shape), t.device_mesh, t.placements)
