"""fastinit.torch.save_initialized: seed checkpoints written block by block from a meta model.

The files load with safetensors.torch.load_file (and torch.distributed.checkpoint for format="dcp")
and equal init_model on the same model built on the CPU, bit for bit; a checkpoint is never left
half-written under its own name.
"""

import json
import math
import os
import subprocess
import sys

import pytest

torch = pytest.importorskip("torch")
st = pytest.importorskip("safetensors.torch")

import fastinit.torch as ft  # noqa: E402
from fastinit import InitArgumentError  # noqa: E402
from fastinit.torch import _checkpoint  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _dist_worker import ORTHO, Mixed  # noqa: E402
from _torch_models import GPT  # noqa: E402


def _gpt():
    return GPT(vocab=37, d=8, n_layer=2, block=11)


def _load(path):
    """Every tensor of the checkpoint at ``path`` (one file or an index and its shards)."""
    index = os.path.join(path, "model.safetensors.index.json")
    if not os.path.exists(index):
        return st.load_file(os.path.join(path, "model.safetensors"))
    out = {}
    weight_map = json.load(open(index))["weight_map"]
    for f in sorted(set(weight_map.values())):
        part = st.load_file(os.path.join(path, f))
        assert {k for k, v in weight_map.items() if v == f} == set(part)
        out.update(part)
    return out


def _reference(make, recipe, seed, dtype):
    m = make().to(dtype)
    ft.init_model(m, recipe=recipe, seed=seed)
    return m.state_dict()


def _bits(t):
    return t.view(torch.uint8) if t.is_floating_point() else t


def _same(saved, ref):
    assert set(saved) <= set(ref)
    for k, v in saved.items():
        assert v.dtype == ref[k].dtype and v.shape == ref[k].shape, k
        assert torch.equal(_bits(v), _bits(ref[k])), k


CASES = [(_gpt, "gpt2"), (Mixed, "recurrent"), (Mixed, "torch"), (lambda: Mixed().fc, ORTHO)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("make,recipe", CASES)
@pytest.mark.parametrize("shard,block", [("5GB", 64 << 20), (700, 40)])  # one file; many files, tiny blocks
def test_checkpoint_equals_init_model(tmp_path, make, recipe, dtype, shard, block):
    with torch.device("meta"):
        m = make().to(dtype)
    ft.save_initialized(m, tmp_path, recipe=recipe, seed=9, max_shard_size=shard, block_bytes=block)
    saved = _load(tmp_path)
    ref = _reference(make, recipe, 9, dtype)
    _same(saved, ref)
    # every state_dict tensor is there, tied ones once (under the canonical name)
    tied = {k for k in ref if k not in saved}
    assert tied == ({"transformer.wte.weight"} if make is _gpt else set())
    many = shard == 700 and sum(v.numel() * v.element_size() for v in saved.values()) > 700
    assert os.path.exists(tmp_path / "model.safetensors.index.json") == many
    assert not [f for f in os.listdir(tmp_path) if f.startswith(".")]  # no temporaries left


def test_blocks_cut_inside_gate_pieces(tmp_path):
    """LSTM weights: 4 gate pieces, blocks of 3 rows (40 bytes / 6 float32 columns) cut across them."""
    with torch.device("meta"):
        m = torch.nn.LSTM(6, 5)
    ft.save_initialized(m, tmp_path, recipe="recurrent", seed=2, block_bytes=72)
    ref = torch.nn.LSTM(6, 5)
    ft.init_model(ref, recipe="recurrent", seed=2)
    _same(_load(tmp_path), ref.state_dict())


def test_header_and_metadata(tmp_path):
    with torch.device("meta"):
        m = _gpt()
    p = ft.save_initialized(m, tmp_path, recipe="gpt2", seed=4)
    raw = open(tmp_path / "model.safetensors", "rb").read()
    n = int.from_bytes(raw[:8], "little")
    head = json.loads(raw[8:8 + n])
    assert n % 8 == 0
    assert head["__metadata__"]["fastinit.plan_fingerprint"] == p.fingerprint()
    assert head["__metadata__"]["fastinit.seed"] == "4"
    ends = sorted(v["data_offsets"] for k, v in head.items() if k != "__metadata__")
    assert ends[0][0] == 0 and all(a[1] == b[0] for a, b in zip(ends, ends[1:], strict=False))
    assert len(raw) == 8 + n + ends[-1][1]


def test_existing_checkpoint_is_refused_unless_overwrite(tmp_path):
    with torch.device("meta"):
        m = _gpt()
    ft.save_initialized(m, tmp_path, recipe="gpt2", seed=1, max_shard_size=700)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(InitArgumentError, match=r"path: .* already holds a checkpoint .*overwrite=True"):
        ft.save_initialized(m, tmp_path, recipe="gpt2", seed=2)
    assert sorted(os.listdir(tmp_path)) == before
    ft.save_initialized(m, tmp_path, recipe="gpt2", seed=2, overwrite=True)  # one file now: old shards gone
    assert sorted(os.listdir(tmp_path)) == ["model.safetensors"]
    _same(_load(tmp_path), _reference(_gpt, "gpt2", 2, torch.float32))


@pytest.mark.parametrize("where", ["allocate", "fill"])
def test_failure_leaves_no_checkpoint(tmp_path, monkeypatch, where):
    """A full disk (ENOSPC when the file is allocated) or an error in the middle of a fill: the
    previous checkpoint is intact, no new file and no temporary is left."""
    with torch.device("meta"):
        m = _gpt()
    ft.save_initialized(m, tmp_path, recipe="gpt2", seed=1)
    good = open(tmp_path / "model.safetensors", "rb").read()
    calls = []

    def fail(*a, **k):
        calls.append(1)
        raise OSError(28, "No space left on device")

    if where == "allocate":
        monkeypatch.setattr(_checkpoint.os, "posix_fallocate", fail)
    else:
        real = _checkpoint.fill_region

        def fill_then_fail(*a):  # the first tensor is written, then the "disk" fails
            real(*a)
            fail()

        monkeypatch.setattr(_checkpoint, "fill_region", fill_then_fail)
    with pytest.raises(OSError, match="No space left"):
        ft.save_initialized(m, tmp_path, recipe="gpt2", seed=2, overwrite=True, max_shard_size=700)
    assert calls
    assert sorted(os.listdir(tmp_path)) == ["model.safetensors"]
    assert open(tmp_path / "model.safetensors", "rb").read() == good


def test_bad_arguments(tmp_path):
    with torch.device("meta"):
        m = _gpt()
    with pytest.raises(InitArgumentError, match="format must be one of"):
        ft.save_initialized(m, tmp_path, format="npz")
    with pytest.raises(InitArgumentError, match="max_shard_size must be a number of bytes or a size"):
        ft.save_initialized(m, tmp_path, recipe="gpt2", max_shard_size="lots")
    with pytest.raises(TypeError, match="overwrite must be a bool"):
        ft.save_initialized(m, tmp_path, recipe="gpt2", overwrite="yes")
    f = tmp_path / "file"
    f.write_text("x")
    with pytest.raises(InitArgumentError, match="exists and is not a directory"):
        ft.save_initialized(m, f, recipe="gpt2")
    with pytest.raises(InitArgumentError, match="has no rule for"):
        ft.save_initialized(m, tmp_path / "new", recipe=[ft.Rule("zeros_", param="bias")])
    assert not (tmp_path / "new").exists()
    assert _checkpoint._size("512MiB", "s") == 512 << 20 and _checkpoint._size("5GB", "s") == 5 * 10**9


def test_meta_tensor_without_rule_is_refused(tmp_path):
    with torch.device("meta"):
        m = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 4))
    with pytest.raises(InitArgumentError, match=r"meta parameter 1.weight has no rule"):
        ft.save_initialized(m, tmp_path, recipe=[ft.Rule("zeros_", param="bias"), ft.Rule("ones_", name="^0")],
                            unmatched="keep")
    assert os.listdir(tmp_path) == []


# ---- format="dcp": DCP's planner and writer, each row chunk made on demand -------------------------

dcp = pytest.importorskip("torch.distributed.checkpoint")
DCP_QUIET = pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning")


def _dcp_load(make, path, dtype=torch.float32):
    fresh = make().to(dtype)
    sd = fresh.state_dict()
    dcp.load(sd, checkpoint_id=str(path))
    return sd


@DCP_QUIET
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("make,recipe", CASES)
def test_dcp_checkpoint_equals_init_model(tmp_path, make, recipe, dtype):
    """Blocks of 40 bytes: every tensor in row chunks (several per file only when they fit), each file
    at most one block of tensor data (or one chunk: a row or an orthogonal_ tensor that is larger)."""
    with torch.device("meta"):
        m = make().to(dtype)
    ft.save_initialized(m, tmp_path, recipe=recipe, seed=9, format="dcp", block_bytes=40)
    _same(_dcp_load(make, tmp_path, dtype), _reference(make, recipe, 9, dtype))
    md = dcp.FileSystemReader(str(tmp_path)).read_metadata()
    item = dtype.itemsize
    per_file, largest = {}, {}
    for idx, info in md.storage_data.items():
        chunk = next(c for c in md.state_dict_metadata[idx.fqn].chunks if tuple(c.offsets) == tuple(idx.offset))
        n = math.prod(chunk.sizes) * item
        per_file[info.relative_path] = per_file.get(info.relative_path, 0) + n
        largest[info.relative_path] = max(largest.get(info.relative_path, 0), n)
    assert all(per_file[f] <= max(40, largest[f]) for f in per_file)
    chunks = {k: len(v.chunks) for k, v in md.state_dict_metadata.items()}
    for k, v in md.state_dict_metadata.items():  # a tensor of several rows per block... is cut into row chunks
        rows, row_bytes = (v.size[0], math.prod(v.size[1:]) * item) if len(v.size) else (1, item)
        ortho = recipe is ORTHO and k == "weight" or (recipe == "recurrent" and "weight_hh" in k)
        want = 1 if ortho else math.ceil(rows / max(1, 40 // row_bytes))
        assert chunks[k] == want, (k, chunks[k], want)
    assert set(os.listdir(tmp_path)) == {".metadata", *per_file}


@DCP_QUIET
def test_dcp_blocks_cut_inside_gate_pieces(tmp_path):
    with torch.device("meta"):
        m = torch.nn.LSTM(6, 5)
    ft.save_initialized(m, tmp_path, recipe="recurrent", seed=2, format="dcp", block_bytes=72)
    ref = torch.nn.LSTM(6, 5)
    ft.init_model(ref, recipe="recurrent", seed=2)
    _same(_dcp_load(lambda: torch.nn.LSTM(6, 5), tmp_path), ref.state_dict())


@DCP_QUIET
def test_dcp_single_process_loads_into_a_fresh_model(tmp_path):
    with torch.device("meta"):
        m = _gpt()
    ft.save_initialized(m, tmp_path / "ck", recipe="gpt2", seed=6, format="dcp")
    fresh = _gpt()
    fresh.load_state_dict(_dcp_load(_gpt, tmp_path / "ck"))
    assert ft.fingerprint(fresh) == ft.fingerprint(
        (lambda c: (ft.init_model(c, recipe="gpt2", seed=6), c)[1])(_gpt()))
    assert all(t.is_meta for t in m.parameters())  # nothing of the model was allocated
    with pytest.raises(InitArgumentError, match="is not empty; pass overwrite=True"):
        ft.save_initialized(m, tmp_path / "ck", recipe="gpt2", seed=6, format="dcp")


@DCP_QUIET
def test_dcp_overwrite_replaces_the_checkpoint(tmp_path):
    with torch.device("meta"):
        m = _gpt()
    ft.save_initialized(m, tmp_path, recipe="gpt2", seed=1, format="dcp", block_bytes=200)
    before = set(os.listdir(tmp_path))
    ft.save_initialized(m, tmp_path, recipe="gpt2", seed=2, format="dcp", block_bytes=200, overwrite=True)
    after = set(os.listdir(tmp_path))
    assert after & before == {".metadata"}  # the old data files are gone
    _same(_dcp_load(_gpt, tmp_path), _reference(_gpt, "gpt2", 2, torch.float32))


@DCP_QUIET
def test_dcp_full_disk_leaves_the_old_checkpoint(tmp_path, monkeypatch):
    """The third file write fails with ENOSPC after writing part of its bytes: an OSError, no new file
    left, the checkpoint already at the path intact (its files are never overwritten)."""
    with torch.device("meta"):
        m = _gpt()
    ft.save_initialized(m, tmp_path, recipe="gpt2", seed=1, format="dcp", block_bytes=200)
    before = {f: open(tmp_path / f, "rb").read() for f in os.listdir(tmp_path)}
    real, calls = torch.save, []

    def save_then_fail(obj, f, *a, **k):
        calls.append(1)
        if len(calls) == 3:
            f.write(b"partial")
            raise OSError(28, "No space left on device")
        return real(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", save_then_fail)
    with pytest.raises(OSError, match="No space left"):
        ft.save_initialized(m, tmp_path, recipe="gpt2", seed=2, format="dcp", block_bytes=200, overwrite=True)
    monkeypatch.undo()
    assert len(calls) == 3
    assert {f: open(tmp_path / f, "rb").read() for f in os.listdir(tmp_path)} == before
    _same(_dcp_load(_gpt, tmp_path), _reference(_gpt, "gpt2", 1, torch.float32))


PEAK = """
import sys, torch, fastinit.torch as ft
def hwm():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmHWM:")).split()[1]) << 10
def make():
    return torch.nn.Sequential(torch.nn.Linear(2048, 4096), torch.nn.Linear(4096, 2048, bias=False))  # 64 MiB
for fmt in ("dcp", "safetensors"):
    # warm-up: compiles or loads every kernel (a weight above one chunk, so the parallel fill driver too)
    ft.save_initialized(torch.nn.Linear(512, 256, device="meta"), sys.argv[1] + "/warm-" + fmt, format=fmt)
    with torch.device("meta"):
        m = make()
    open("/proc/self/clear_refs", "w").write("5")
    base = hwm()
    ft.save_initialized(m, sys.argv[1] + "/" + fmt, recipe="torch", format=fmt, block_bytes=2 << 20)
    print(fmt, hwm() - base)
"""


def _peak_model():
    return torch.nn.Sequential(torch.nn.Linear(2048, 4096), torch.nn.Linear(4096, 2048, bias=False))


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux's VmHWM reset")
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_peak_memory_is_about_one_block(tmp_path):
    """A 64 MiB model written in 2 MiB blocks, both formats: the peak resident memory grows by far less
    than the model (the writer holds about one block; 16 MiB leaves room for allocator and page-table
    slack), and the checkpoints are the model."""
    r = subprocess.run([sys.executable, "-c", PEAK, str(tmp_path)], capture_output=True, text=True, timeout=300,
                       env={**os.environ, "NUMBA_NUM_THREADS": "1"}, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr[-2000:]
    rise = dict(line.split() for line in r.stdout.splitlines())
    assert set(rise) == {"dcp", "safetensors"}
    assert all(int(v) < 16 << 20 for v in rise.values()), rise
    ref = _peak_model()
    ft.init_model(ref, recipe="torch", seed=0)
    _same(_dcp_load(_peak_model, tmp_path / "dcp"), ref.state_dict())
    _same(st.load_file(tmp_path / "safetensors" / "model.safetensors"), ref.state_dict())
