"""init_model, materialize and fingerprint: apply a plan to a model's tensors, in place.

Every tensor is filled by fastinit's public initializers at its name-keyed stream, in canonical
name order; each fill runs fastinit's multithreaded kernels. A plan is built (and so every
argument checked) before anything is allocated or written.
"""

from __future__ import annotations

import hashlib

from .. import init as fi
from .._checks import InitArgumentError
from .._names import generator_at
from ._distributed import check_dtensor, empty_like_dtensor, is_dtensor, local_region, piece_region
from ._plan import Plan, check_module, collect, plan

__all__ = ["init_model", "materialize", "fingerprint", "fill_row", "fill_region"]


def fill_row(tensor, row, seed: int) -> None:
    """Write ``row``'s pieces into ``tensor`` (a CPU tensor), each at ``(seed, piece.stream)``.

    A DTensor gets only its local shard, each piece as a block of the piece's logical tensor.
    """
    if is_dtensor(tensor):
        _fill_local(tensor, row, seed)
        return
    base = tensor.detach()
    for p in row.pieces:
        view = base if p.rows is None else base[p.rows[0]:p.rows[1]]
        _fill_piece(view, p, seed, base.is_floating_point(), None)


def _fill_piece(view, p, seed: int, floating: bool, block) -> None:
    kw = dict(p.kwargs)
    if block is not None:
        kw["block"] = block
    if not floating:  # integer buffers (num_batches_tracked): constants only
        view.fill_({"ones_": 1, "zeros_": 0}.get(p.fn, kw.get("val")))
    elif p.stream is None:
        getattr(fi, p.fn)(view, **kw)
    else:
        getattr(fi, p.fn)(view, **kw, generator=generator_at(seed, p.stream))


def _fill_local(tensor, row, seed: int) -> None:
    import torch  # lazy: only DTensor models get here

    with torch.no_grad():
        local, offset, shape = local_region(tensor)
        fill_region(local, offset, shape, row, seed)


def fill_region(local, offset: tuple, shape: tuple, row, seed: int) -> None:
    """Write into ``local`` the block at ``offset`` (of its shape) of ``row``'s logical tensor of
    ``shape``: exactly those elements of what :func:`fill_row` writes into the whole tensor."""
    lshape = tuple(local.shape)
    if 0 in lshape:
        return
    for p in row.pieces:
        part = piece_region(shape, offset, lshape, p.rows)
        if part is not None:
            _fill_piece(local[part[0]], p, seed, local.is_floating_point(), part[1])


def _check_cpu(entries, what: str) -> None:
    for t, _kind, name, *_ in entries:
        if is_dtensor(t):
            check_dtensor(t, name)
        if t.device.type == "meta":
            raise InitArgumentError(f"model: {name} is a meta tensor; {what} fills allocated CPU tensors "
                                    "(use fastinit.torch.materialize(model, ...) for a model built on meta)")
        if t.device.type != "cpu":
            raise InitArgumentError(f"model: {name} is on {t.device}; fastinit fills CPU tensors: initialise on "
                                    "the CPU (or build on meta and materialize(device='cpu')), then "
                                    "model.to(device)")


def _apply(model, p: Plan, entries) -> None:
    by_name = {e[2]: e for e in entries}
    done = set()
    for row in p.rows:  # module-owned buffers first, so rule fills come last
        if row.status == "module":
            m = by_name[row.name][3]
            if id(m) not in done:
                done.add(id(m))
                m.reset_buffers()
    for row in sorted(p.rows, key=lambda r: r.name):
        if row.status == "rule":
            fill_row(by_name[row.name][0], row, p.seed)


def init_model(model, recipe="torch", seed=0, *, unmatched="error", n_layers=None) -> Plan:
    """Initialise every parameter of a CPU model (and every buffer a rule owns) in place.

    Each tensor gets the values of its row of :func:`plan`: the rule's fastinit initializer at
    stream ``stream_of(canonical name)`` under ``seed``. So a tensor's values depend only on
    (seed, recipe, its name, shape and dtype, and its module's attributes the rule reads), not on
    construction order, what else the model holds, or the thread count.

    Parameters
    ----------
    model : torch.nn.Module
        Every tensor on the CPU, float16/bfloat16/float32/float64 (integer buffers take constant
        rules only). A CUDA model: initialise on the CPU first, then ``model.to("cuda")``.
        DTensor parameters on a CPU device mesh (``Shard(d)``, ``Replicate()``; FSDP2's
        ``fully_shard``, tensor-parallel Colwise/Rowwise): each rank fills only its local shard, as
        a ``fastinit.Block`` of the logical tensor, with no communication; the gathered tensors
        equal the single-process result (see docs/distributed.md).
    recipe, seed, unmatched, n_layers
        As :func:`plan`. Kept tensors are not touched; buffers of a module with
        ``reset_buffers()`` and no rule are recomputed by it.

    Returns
    -------
    Plan
        The plan that was applied.

    Examples
    --------
    >>> import torch, fastinit.torch
    >>> m = torch.nn.Linear(64, 32)
    >>> p = fastinit.torch.init_model(m, recipe="torch", seed=0)
    >>> bound = p["weight"].law["high"]               # kaiming_uniform_(a=sqrt(5)): 1/sqrt(64)
    >>> round(bound, 12), bool(m.weight.abs().max() <= bound)
    (0.125, True)
    """
    check_module(model)
    p = plan(model, recipe, seed, unmatched=unmatched, n_layers=n_layers)
    entries = collect(model)
    _check_cpu(entries, "init_model")
    _apply(model, p, entries)
    return p


def materialize(model, recipe="torch", seed=0, *, device="cpu", unmatched="error", n_layers=None) -> Plan:
    """Allocate a model built under ``torch.device("meta")`` on the CPU and fill it in place.

    Each meta tensor is replaced by an uninitialised CPU tensor of the same shape, dtype and
    ``requires_grad`` (tied tensors stay tied: one allocation), then filled exactly as
    :func:`init_model` fills the same model built on the CPU: the result is bit-identical, and the
    peak memory is the model (no second copy). Tensors already on the CPU are filled in place too.

    Buffers: a buffer with a rule is filled by it (BatchNorm's running_mean 0, running_var 1,
    num_batches_tracked 0, as ``reset_running_stats()``); a buffer of a module that defines
    ``reset_buffers()`` is recomputed by calling it (e.g. a rotary cache); any other meta buffer
    has no producer and is an error naming it, raised before anything is allocated. With
    ``unmatched="keep"``, a meta parameter no rule matches is produced by its module's
    ``reset_parameters()`` (torch's RNG, so not name-keyed), called before the rule fills.

    Parameters
    ----------
    model : torch.nn.Module
        Tensors on meta or the CPU; meta DTensors on a CPU device mesh get their local shard
        allocated and filled. An FSDP2 model (``fully_shard``) is refused: call
        ``model.to_empty(device="cpu")`` (FSDP2 resets its handles), then :func:`init_model`.
    device : str or torch.device
        ``"cpu"`` (fastinit fills CPU memory; move the model afterwards with ``model.to(device)``).
    recipe, seed, unmatched, n_layers
        As :func:`plan`.

    Returns
    -------
    Plan

    Examples
    --------
    >>> import torch, fastinit.torch
    >>> with torch.device("meta"):
    ...     m = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.BatchNorm1d(8))
    >>> _ = fastinit.torch.materialize(m, recipe="kaiming", seed=1)
    >>> c = torch.nn.Sequential(torch.nn.Linear(8, 8), torch.nn.BatchNorm1d(8))
    >>> _ = fastinit.torch.init_model(c, recipe="kaiming", seed=1)
    >>> fastinit.torch.fingerprint(m) == fastinit.torch.fingerprint(c), m[1].running_var.tolist()[:2]
    (True, [1.0, 1.0])
    """
    torch = check_module(model)
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InitArgumentError(f"device must name a torch device, got {device!r}") from None
    if dev.type != "cpu":
        raise InitArgumentError(f"device={device!r}: materialize fills CPU memory; materialize on 'cpu', "
                                "then model.to(device)")
    p = plan(model, recipe, seed, unmatched=unmatched, n_layers=n_layers)
    entries = collect(model)
    _check_not_fsdp(model, entries)
    rows = {r.name: r for r in p.rows}
    reset_params = {}
    for t, kind, name, m, *_ in entries:
        if is_dtensor(t):
            check_dtensor(t, name)
        if t.device.type not in ("meta", "cpu"):
            raise InitArgumentError(f"model: {name} is on {t.device}; materialize takes a model built on meta "
                                    "(or the CPU): build it there, materialize, then model.to(device)")
        if t.device.type == "meta" and rows[name].status == "kept":
            if kind == "parameter" and callable(getattr(m, "reset_parameters", None)):
                reset_params[id(m)] = m
            else:
                fix = ("add a rule for it" if kind == "parameter" else
                       f"add a buffer rule for it, or define {type(m).__name__}.reset_buffers()")
                raise InitArgumentError(f"model: no rule and no module method produces the meta {kind} {name} "
                                        f"({type(m).__name__}); {fix}")
    _allocate(model, torch, dev)
    entries = collect(model)
    for m in reset_params.values():
        m.reset_parameters()
    _apply(model, p, entries)
    return p


def _check_not_fsdp(model, entries) -> None:
    """FSDP2 keeps its own handles on the parameters: allocating new ones here would leave it the
    meta ones. Its own ``to_empty`` resets them."""
    if not any(t.is_meta for t, *_ in entries):
        return
    for name, m in model.named_modules():
        if any(c.__name__ == "FSDPModule" for c in type(m).__mro__):
            raise InitArgumentError(f"model: {name or 'the model'} is managed by FSDP2 (fully_shard), which keeps "
                                    "its own handles on the parameters; call model.to_empty(device='cpu'), then "
                                    "fastinit.torch.init_model(model, ...)")


def _allocate(model, torch, dev) -> None:
    memo = {}  # id(meta tensor) -> (meta tensor, its CPU replacement); keeps ids unique while in use
    for m in model.modules():
        for store, is_param in ((m._parameters, True), (m._buffers, False)):
            for k, t in list(store.items()):
                if t is None or not t.is_meta:
                    continue
                if id(t) not in memo:
                    e = empty_like_dtensor(t, torch, dev) if is_dtensor(t) else torch.empty_like(t, device=dev)
                    memo[id(t)] = (t, torch.nn.Parameter(e, requires_grad=t.requires_grad) if is_param else e)
                store[k] = memo[id(t)][1]


def fingerprint(model) -> str:
    """SHA-256 (hex) of a model's tensors: for each tensor in canonical-name order, its name, dtype,
    shape and bytes (tied tensors once, under the canonical name). A DTensor counts as its gathered
    logical tensor (``full_tensor()``, a collective: every rank calls fingerprint).

    Examples
    --------
    >>> import torch, fastinit.torch
    >>> a, b = torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)
    >>> _ = fastinit.torch.init_model(a, seed=3), fastinit.torch.init_model(b, seed=3)
    >>> fastinit.torch.fingerprint(a) == fastinit.torch.fingerprint(b)
    True
    """
    torch = check_module(model)
    h = hashlib.sha256()
    for t, _kind, name, *_ in sorted(collect(model), key=lambda e: e[2]):
        if t.device.type == "meta":
            raise InitArgumentError(f"model: {name} is a meta tensor (no values to fingerprint)")
        h.update(f"{name}\0{t.dtype}\0{tuple(t.shape)}\0".encode())
        if is_dtensor(t):  # the logical tensor: a collective, every rank calls fingerprint
            t = t.full_tensor()
        flat = t.detach().cpu().contiguous().reshape(-1)
        h.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    return h.hexdigest()
