"""save_initialized: a seed checkpoint written straight from a meta model, block by block.

safetensors layout (the format of the ``safetensors`` library, which reads these files): an 8-byte
little-endian header length ``N``, ``N`` bytes of JSON (``{name: {"dtype", "shape",
"data_offsets": [begin, end]}, "__metadata__": {...}}``, space-padded to a multiple of 8), then the
tensors' bytes, back to back. Several files: Hugging Face's ``model-0000k-of-0000n.safetensors``
and ``model.safetensors.index.json`` (``{"metadata": {"total_size"}, "weight_map": {name: file}}``).

Each output file is allocated on disk first (``posix_fallocate``: a full disk is an ``OSError``
before anything is written), memory-mapped, and each tensor filled in place in row blocks of at
most ``block_bytes`` through ``fastinit.Block``; each filled block's pages are dropped from the
process (``madvise(MADV_DONTNEED)``; the data stays in the page cache and goes to disk), so the
resident memory stays about one block whatever the model's size. Files are written under
temporary names, fsynced and renamed at the end, the index last: an interrupted or failed run
leaves no file under a checkpoint's name. DTensor models: every tensor is written whole (its
logical tensor, from the streams), so the ranks need no communication to split the files.

``format="dcp"`` is in :mod:`._dcp` (torch.distributed.checkpoint's planner and writer).
"""

from __future__ import annotations

import json
import mmap
import os
import re

from .._checks import InitArgumentError, integer
from ._dcp import rank_and_world, save_dcp
from ._distributed import check_dtensor, is_dtensor
from ._model import fill_region
from ._plan import check_module, collect, plan

__all__ = ["save_initialized", "FORMATS", "SAFETENSORS_DTYPES"]

FORMATS = ("safetensors", "dcp")
SAFETENSORS_DTYPES = {"torch.float64": "F64", "torch.float32": "F32", "torch.float16": "F16",
                      "torch.bfloat16": "BF16", "torch.int64": "I64", "torch.int32": "I32", "torch.int16": "I16",
                      "torch.int8": "I8", "torch.uint8": "U8", "torch.bool": "BOOL"}
SINGLE, INDEX = "model.safetensors", "model.safetensors.index.json"
_SHARD = re.compile(r"^model-\d{5}-of-\d{5}\.safetensors$")
_DONTNEED = getattr(mmap, "MADV_DONTNEED", None)
_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def _size(x, name: str) -> int:
    """Bytes from an int or a string like ``"5GB"`` / ``"512MiB"`` (Hugging Face's units)."""
    if isinstance(x, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?I?B?)\s*", x.upper())
        if not m or m.group(2) not in _UNITS:
            raise InitArgumentError(f"{name} must be a number of bytes or a size like '5GB' or '512MiB', got {x!r}")
        return integer(int(float(m.group(1)) * _UNITS[m.group(2)]), name, minimum=1)
    return integer(x, name, minimum=1)


def _entries(model, p):
    """``(row, tensor, torch dtype)`` of every tensor the checkpoint holds (the state_dict's tensors
    under their canonical names; non-persistent buffers are not saved)."""
    rows = {r.name: r for r in p.rows}
    out = []
    for t, kind, name, m, local, *_ in sorted(collect(model), key=lambda e: e[2]):
        if kind == "buffer" and local in getattr(m, "_non_persistent_buffers_set", ()):
            continue
        row = rows[name]
        if is_dtensor(t):  # written whole by one rank, from the streams: its layout does not matter
            check_dtensor(t, name, checkpoint=True)
            if row.status != "rule":
                raise InitArgumentError(f"model: {name} is a DTensor no rule produces; format='safetensors' writes "
                                        "whole tensors from the streams (use format='dcp' to save its shards)")
        if row.status != "rule" and t.device.type == "meta":
            why = ("its module's reset_buffers()" if row.status == "module" else "no rule")
            raise InitArgumentError(f"model: the meta {kind} {name} has {why}; a seed checkpoint is written from "
                                    "rules alone: add a rule for it (or materialize the model and save its "
                                    "state_dict)")
        if str(t.dtype) not in SAFETENSORS_DTYPES:
            raise InitArgumentError(f"model: {name} has dtype {t.dtype}, which safetensors does not store")
        out.append((row, t))
    return out


def _shards(entries, max_bytes: int) -> list:
    """Consecutive groups of entries of at most ``max_bytes`` each (a larger tensor alone)."""
    groups, cur, size = [], [], 0
    for e in entries:
        n = e[1].numel() * e[1].element_size()
        if cur and size + n > max_bytes:
            groups.append(cur)
            cur, size = [], 0
        cur.append(e)
        size += n
    if cur or not groups:
        groups.append(cur)
    return groups


def _header(group, metadata: dict) -> tuple:
    head, off = {}, 0
    for row, t in group:
        n = t.numel() * t.element_size()
        head[row.name] = {"dtype": SAFETENSORS_DTYPES[str(t.dtype)], "shape": list(t.shape),
                          "data_offsets": [off, off + n]}
        off += n
    head["__metadata__"] = metadata
    raw = json.dumps(head, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return raw, off


def _write_file(path: str, group, metadata: dict, seed: int, block_bytes: int, torch) -> int:
    """Write one safetensors file at ``path`` (a temporary name); returns its data bytes."""
    raw, data = _header(group, metadata)
    start = 8 + len(raw)
    total = start + data
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        if total and hasattr(os, "posix_fallocate"):
            os.posix_fallocate(fd, 0, total)  # ENOSPC here, not a SIGBUS in the middle of a fill
        elif total:  # no posix_fallocate (macOS): a sparse file of the right size
            os.ftruncate(fd, total)
        os.pwrite(fd, len(raw).to_bytes(8, "little") + raw, 0)
        if data:
            with mmap.mmap(fd, total, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE) as mm:
                pos = start
                for row, t in group:
                    _fill_mapped(mm, pos, row, t, seed, block_bytes, torch)
                    pos += t.numel() * t.element_size()
                mm.flush()
        os.fsync(fd)
    finally:
        os.close(fd)
    return data


def _fill_mapped(mm, pos: int, row, t, seed: int, block_bytes: int, torch) -> None:
    """Fill tensor ``t``'s bytes at ``pos`` of the mapping, in row blocks of at most ``block_bytes``."""
    shape, n = tuple(t.shape), t.numel()
    if n == 0:
        return
    item = t.element_size()
    flat = torch.frombuffer(mm, dtype=t.dtype, count=n, offset=pos)
    if t.device.type != "meta" and row.status != "rule":  # a kept CPU tensor: its own values
        flat.copy_(t.detach().reshape(-1))
        return
    if not shape:
        fill_region(flat.reshape(()), (), (), row, seed)
        return
    per_row = n // shape[0]
    rows_per = max(1, block_bytes // max(1, per_row * item))
    if rows_per >= shape[0] or any(q.fn == "orthogonal_" for q in row.pieces):
        rows_per = shape[0]  # orthogonal_ whole: the bits of materialize (a block of it is equal to rounding)
    page = mmap.PAGESIZE
    for r0 in range(0, shape[0], rows_per):
        r1 = min(shape[0], r0 + rows_per)
        local = flat[r0 * per_row:r1 * per_row].view((r1 - r0, *shape[1:]))
        fill_region(local, (r0, *(0 for _ in shape[1:])), shape, row, seed)
        a = pos + r0 * per_row * item
        b = pos + r1 * per_row * item
        a, b = -(-a // page) * page, b // page * page  # whole pages inside this block
        if b > a and _DONTNEED is not None:
            mm.madvise(_DONTNEED, a, b - a)  # the data stays in the page cache


def _targets(path: str, overwrite: bool) -> list:
    existing = [f for f in os.listdir(path) if f in (SINGLE, INDEX) or _SHARD.match(f)]
    if existing and not overwrite:
        raise InitArgumentError(f"path: {path} already holds a checkpoint ({', '.join(sorted(existing))}); "
                                "pass overwrite=True to replace it")
    return existing


def save_initialized(model, path, recipe="torch", seed=0, *, format="safetensors", max_shard_size="5GB",
                     overwrite=False, block_bytes=64 << 20, unmatched="error", n_layers=None):
    """Write the initialised tensors of ``model`` (built on meta) as a checkpoint, without building it.

    Every tensor gets exactly the values :func:`materialize` gives it (the same plan, streams and
    initializers), made in row blocks and written straight to the output files, so the memory used
    is about one block per process (``block_bytes``, default 64 MiB, or one row if a row is larger)
    whatever the model's size. ``orthogonal_`` tensors are made whole (so their bits are those of
    :func:`materialize`; a DTensor's local shard of one: its block): their memory is the tensor (or
    shard) plus its QR working arrays.

    Parameters
    ----------
    model : torch.nn.Module
        Built under ``torch.device("meta")`` (tensors on the CPU are planned the same way; kept CPU
        tensors are saved as they are). Its parameters may be DTensors on a CPU device mesh (every
        rank calls this function): ``"dcp"`` saves each rank's shards, ``"safetensors"`` whole
        tensors, each file written by one rank.
    path : str or os.PathLike
        Output directory (created if missing). ``format="safetensors"`` writes ``model.safetensors``,
        or with several shards ``model-0000k-of-0000n.safetensors`` and ``model.safetensors.index.json``
        (Hugging Face's names). ``format="dcp"`` writes a ``torch.distributed.checkpoint`` directory.
    recipe, seed, unmatched, n_layers
        As :func:`plan`.
    format : {"safetensors", "dcp"}
        ``"dcp"``: ``torch.distributed.checkpoint.save`` with a planner whose ``resolve_data`` makes
        each row chunk of at most ``block_bytes`` (of a tensor, or of a DTensor's local shard) when
        DCP's file writer asks for it, and files of at most ``block_bytes`` each; with several ranks
        DCP gives each chunk of a plain tensor to one rank. The checkpoint loads with
        ``torch.distributed.checkpoint.load`` into the model laid out on any number of ranks.
    max_shard_size : int or str
        Largest safetensors file (with a process group, e.g. under torchrun, the files go round-robin
        to the ranks and each rank writes its own; every rank calls this function), in bytes or as
        ``"5GB"``/``"512MiB"``; a larger tensor gets a file
        of its own.
    overwrite : bool
        Replace a checkpoint already at ``path`` (else an error, before anything is written).
    block_bytes : int
        Bytes filled per block.

    Returns
    -------
    Plan
        The plan that was written. Tied tensors are saved once, under their canonical name; buffers
        the state_dict does not hold (non-persistent) are not saved.

    Raises
    ------
    InitArgumentError
        A checkpoint exists at ``path`` (``"dcp"``: ``path`` is not empty) and ``overwrite`` is
        False; a meta tensor no rule produces; a DTensor on a non-CPU mesh or with a ``Partial``
        placement; a bad ``format``, ``max_shard_size`` or ``block_bytes``.
    OSError
        The disk is full (safetensors: raised when the file is allocated, before it is filled; DCP:
        when a write fails); no file is left under a checkpoint's name and a checkpoint already at
        ``path`` is left as it was. With several ranks, the others raise a ``RuntimeError``.

    Examples
    --------
    >>> import tempfile, torch, fastinit.torch
    >>> from safetensors.torch import load_file
    >>> with torch.device("meta"):
    ...     m = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.LayerNorm(32))
    >>> d = tempfile.mkdtemp()
    >>> _ = fastinit.torch.save_initialized(m, d, recipe="gpt2", seed=5)
    >>> sd = load_file(f"{d}/model.safetensors")
    >>> c = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.LayerNorm(32))
    >>> _ = fastinit.torch.init_model(c, recipe="gpt2", seed=5)
    >>> all(torch.equal(sd[k], v) for k, v in c.state_dict().items())
    True
    """
    torch = check_module(model)
    if format not in FORMATS:
        raise InitArgumentError(f"format must be one of {FORMATS}, got {format!r}")
    if not isinstance(overwrite, bool):
        raise TypeError(f"overwrite must be a bool, got {type(overwrite).__name__}")
    max_bytes = _size(max_shard_size, "max_shard_size")
    block_bytes = _size(block_bytes, "block_bytes")
    try:
        path = os.fspath(path)
    except TypeError:
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}") from None
    if os.path.exists(path) and not os.path.isdir(path):
        raise InitArgumentError(f"path: {path} exists and is not a directory")
    p = plan(model, recipe, seed, unmatched=unmatched, n_layers=n_layers)
    if format == "dcp":
        save_dcp(model, path, p, overwrite, block_bytes, torch)
        return p
    entries = _entries(model, p)
    rank, world = rank_and_world(torch)
    groups = _shards(entries, max_bytes)
    k = len(groups)
    names = [SINGLE] if k == 1 else [f"model-{i + 1:05d}-of-{k:05d}.safetensors" for i in range(k)]
    mine = [i for i in range(k) if i % world == rank]  # with a process group, files round-robin over ranks
    meta = {"format": "pt", "fastinit.recipe": p.recipe, "fastinit.seed": str(p.seed),
            "fastinit.plan_fingerprint": p.fingerprint()}
    tmp = {i: os.path.join(path, f".{names[i]}.tmp-{os.getpid()}") for i in mine}
    index_tmp = os.path.join(path, f".{INDEX}.tmp-{os.getpid()}")
    error, old = None, []
    try:
        os.makedirs(path, exist_ok=True)
        old = _targets(path, overwrite)
        for i in mine:
            _write_file(tmp[i], groups[i], meta, p.seed, block_bytes, torch)
        if k > 1 and rank == 0:
            total = sum(t.numel() * t.element_size() for _, t in entries)
            index = {"metadata": {"total_size": total, **meta},
                     "weight_map": {row.name: n for n, g in zip(names, groups, strict=True) for row, _ in g}}
            with open(index_tmp, "x") as f:
                json.dump(index, f, indent=2)
                f.flush()
                os.fsync(f.fileno())
    except BaseException as e:
        error = e
    failed = _any_failed(torch, world, error is not None)
    try:
        if failed:
            if error is not None:
                raise error
            raise RuntimeError(f"save_initialized: another rank failed; rank {rank} removed its temporary files")
        if rank == 0:
            for stale in old:  # the previous checkpoint goes before the new one takes its names
                os.unlink(os.path.join(path, stale))
        _barrier(torch, world)
        for i in mine:
            os.replace(tmp[i], os.path.join(path, names[i]))
        _barrier(torch, world)
        if k > 1 and rank == 0:  # the index last: the checkpoint looks complete only when it is
            os.replace(index_tmp, os.path.join(path, INDEX))
        _fsync_dir(path)
        _barrier(torch, world)
    except BaseException:
        for t in (*tmp.values(), index_tmp):
            if os.path.exists(t):
                os.unlink(t)
        raise
    return p


def _any_failed(torch, world: int, failed: bool) -> bool:
    if world == 1:
        return failed
    flag = torch.tensor([int(failed)])
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    return bool(flag.item())


def _barrier(torch, world: int) -> None:
    if world > 1:
        torch.distributed.barrier()


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
