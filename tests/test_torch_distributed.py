"""DTensor models on a CPU device mesh (gloo): real multi-process runs on this machine.

Each rank fills only its local shard (fastinit.Block of the logical tensor); the gathered tensors
equal the single-process init_model result bit for bit (orthogonal_: to the tolerance of
docs/api.md), replicated tensors and buffers are equal on every rank, and no DTensor collective
runs during the fill. The ranks run tests/_dist_worker.py (one process each, 127.0.0.1, a free port).
"""

import json
import math
import os
import socket
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

torch = pytest.importorskip("torch")
dist = pytest.importorskip("torch.distributed")
if not dist.is_available() or not dist.is_gloo_available():
    pytest.skip("torch.distributed with gloo is not available", allow_module_level=True)

import fastinit.torch as ft  # noqa: E402
from fastinit import InitArgumentError  # noqa: E402
from fastinit.torch._distributed import check_dtensor, piece_region  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _dist_worker as worker  # noqa: E402

SCENARIOS = ["shard0", "shard1", "replicate", "ortho_rows", "ortho_cols", "gpt", "fsdp", "tp", "mesh_a", "mesh_b",
             "dcp_save", "dcp_fsdp", "dcp_ortho", "dcp_plain", "st_save", "st_dtensor"]
ERRORS = ["fsdp_materialize", "st_fail", "dcp_fail", "cuda_mesh"]
ORTHOGONAL = {"ortho_rows": ("up.weight", "down.weight"), "ortho_cols": ("up.weight", "down.weight"),
              "dcp_ortho": ("up.weight", "down.weight"),
              "shard0": ("rnn.weight_hh_l0",), "mesh_a": ("rnn.weight_hh_l0",)}  # recurrent: orthogonal gate blocks


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch(world: int, out, scenarios, timeout=300, **extra_env) -> None:
    """Run the worker on ``world`` ranks; fail with every rank's stderr if one fails or hangs."""
    port = _free_port()
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(world),
           "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1", **extra_env}
    procs = [subprocess.Popen([sys.executable, os.path.join(HERE, "_dist_worker.py"), str(out), ",".join(scenarios)],
                              env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True) for r in range(world)]
    errs = []
    try:
        for p in procs:
            errs.append(p.communicate(timeout=timeout)[1])
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
        pytest.fail(f"{world} ranks did not finish within {timeout} s")
    bad = [(r, p.returncode, e[-3000:]) for r, (p, e) in enumerate(zip(procs, errs, strict=True)) if p.returncode]
    assert not bad, f"rank(s) failed: {bad}"


def reference(name):
    """The single-process result: the same model built on the CPU, init_model."""
    make, recipe, _layout, _how = worker.scenario(name)
    model = make()
    ft.init_model(model, recipe=recipe, seed=11)
    return model


def _ortho_tol(shape, gain):  # docs/api.md: 4 sqrt(n) eps |gain|, float32, n the long side
    n = max(shape[0], math.prod(shape[1:]))
    return 4 * math.sqrt(n) * np.finfo(np.float32).eps * abs(gain)


def check(out, world, name):
    res = [torch.load(out / f"{name}.{r}.pt", weights_only=False) for r in range(world)]
    ref = reference(name)
    tensors = dict(ref.named_parameters()) | dict(ref.named_buffers())
    full = res[0]["full"]
    assert set(full) == set(tensors)
    for k, t in tensors.items():
        g = full[k]
        assert g.dtype == t.dtype and g.shape == t.shape, k
        if k in ORTHOGONAL.get(name, ()) and any("Shard" in res[r]["local"].get(k + "#placements", "")
                                                 for r in range(world)):
            gain = 0.5 if name.startswith("ortho") else 1.0
            err = (g - t.detach()).abs().max().item()
            assert err <= _ortho_tol(tuple(t.shape), gain), f"{k}: {err}"
        else:
            assert torch.equal(g.view(torch.uint8) if g.is_floating_point() else g,
                               t.detach().view(torch.uint8) if t.is_floating_point() else t.detach()), k
    # replicated tensors and plain buffers: the same on every rank
    for k, v in res[0]["local"].items():
        for r in range(1, world):
            if isinstance(v, torch.Tensor):
                assert torch.equal(res[r]["local"][k], v), (k, r)
    # the fill issued no DTensor collective; the fingerprint (gathered) is the same on every rank
    assert all(x["collectives"] == 0 for x in res) or name == "dcp_load"
    assert len({x["fingerprint"] for x in res}) == 1
    if name not in ORTHOGONAL:
        assert res[0]["fingerprint"] == ft.fingerprint(ref)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist2")
    launch(2, out, SCENARIOS + ERRORS)
    return out


@pytest.mark.parametrize("name", SCENARIOS)
def test_two_ranks_equal_single_process(two_ranks, name):
    check(two_ranks, 2, name)


@pytest.mark.slow
def test_four_ranks_equal_single_process(tmp_path):
    launch(4, tmp_path, SCENARIOS)
    for name in SCENARIOS:
        check(tmp_path, 4, name)
    for name in ("dcp_save", "dcp_fsdp", "dcp_ortho"):  # (2, 2) mesh, FSDP2 and column shards over 4 ranks
        for r in range(4):
            assert torch.load(tmp_path / f"{name}.{r}.pt", weights_only=False)["same_as_init_model"] is True


def test_shard_layout_differs_across_scenarios(two_ranks):
    """The worker really shards: the layouts are the placements each scenario asks for."""
    placements = {name: torch.load(two_ranks / f"{name}.1.pt", weights_only=False)["local"]
                  for name in ("shard0", "shard1", "fsdp", "tp")}
    assert placements["shard0"]["fc.weight#placements"] == "(Shard(dim=0),)"
    assert placements["shard1"]["fc.weight#placements"] == "(Shard(dim=1),)"
    assert placements["fsdp"]["transformer.h.0.mlp.c_fc.weight#placements"] == "(Shard(dim=0),)"
    assert placements["tp"]["up.weight#placements"] == "(Shard(dim=0),)"
    assert placements["tp"]["down.weight#placements"] == "(Shard(dim=1),)"


def test_fsdp2_model_materialize_says_to_use_to_empty(two_ranks):
    for r in range(2):
        err = torch.load(two_ranks / f"fsdp_materialize.{r}.pt", weights_only=False)["error"]
        assert err is not None and err.startswith("InitArgumentError: model: the model is managed by FSDP2")
        assert "model.to_empty(device='cpu'), then fastinit.torch.init_model" in err


def test_one_rank_failing_leaves_no_checkpoint(two_ranks):
    """Rank 1's disk is full: it raises the OSError, rank 0 raises that another rank failed, and
    neither leaves a file (no shard, no index, no temporary)."""
    res = [torch.load(two_ranks / f"st_fail.{r}.pt", weights_only=False) for r in range(2)]
    assert res[1]["error"].startswith("OSError: [Errno 28] No space left")
    assert res[0]["error"].startswith("RuntimeError: save_initialized: another rank failed")
    assert res[0]["left"] == res[1]["left"] == []


def test_non_cpu_mesh_is_refused_by_every_entry_point(two_ranks):
    """Meta DTensors on a 'cuda' mesh: materialize says to build on a CPU mesh; save_initialized (both
    formats) says to write from a CPU mesh or the plain meta model and load with DCP; nothing is written."""
    for r in range(2):
        res = torch.load(two_ranks / f"cuda_mesh.{r}.pt", weights_only=False)
        mat, st_, dcp_ = json.loads(res["error"].removeprefix("RuntimeError: "))
        assert mat.startswith("InitArgumentError: model: up.weight is a DTensor on a 'cuda' device mesh")
        assert "init_device_mesh('cpu'" in mat
        for e in (st_, dcp_):
            assert e.startswith("InitArgumentError: model: ") and "save_initialized runs on a CPU mesh" in e
            assert "torch.distributed.checkpoint.load" in e
    assert not (two_ranks / "cuda_st").exists() or not os.listdir(two_ranks / "cuda_st")
    assert not (two_ranks / "cuda_dcp").exists()


def test_one_rank_failing_leaves_no_dcp_checkpoint(two_ranks):
    """format="dcp": rank 1's disk fills up while it writes (DCP gathers the failure to every rank):
    rank 1 raises its OSError, rank 0 that rank 1 failed, no .metadata and no data file is left."""
    res = [torch.load(two_ranks / f"dcp_fail.{r}.pt", weights_only=False) for r in range(2)]
    assert res[1]["error"].startswith("OSError: [Errno 28] No space left")
    assert res[0]["error"].startswith("RuntimeError: save_initialized: rank(s) [1] failed")
    assert res[0]["left"] == res[1]["left"] == []


def test_safetensors_written_by_two_ranks_is_one_checkpoint(two_ranks):
    """st_save (checked against init_model above): files round-robin over the ranks, one index, no temporaries."""
    files = sorted(os.listdir(two_ranks / "st"))
    shards = [f for f in files if f.endswith(".safetensors")]
    assert len(shards) > 2 and "model.safetensors.index.json" in files
    assert len(files) == len(shards) + 1 and all(f.startswith("model") for f in files)


def test_two_dim_meshes_lay_out_every_combination(two_ranks):
    """mesh_a on a (1, 2) mesh, mesh_b on (2, 1): the parameters take every pair of Shard(0)/Shard(1)/
    Replicate (checked equal to one process above)."""
    want = {repr(tuple(c)) for c in worker.COMBOS_2D}
    for name in ("mesh_a", "mesh_b"):
        local = torch.load(two_ranks / f"{name}.0.pt", weights_only=False)["local"]
        got = {v for k, v in local.items() if k.endswith("#placements")}
        assert all(v.count("(dim=") + v.count("Replicate") == 2 for v in got), got
        if name == "mesh_b":  # 15 two-dimensional parameters: all nine pairs
            assert want <= got, want - got


@pytest.mark.parametrize("name", ["dcp_save", "dcp_fsdp", "dcp_ortho"])
def test_dcp_checkpoint_read_back_equals_init_model_of_the_layout(two_ranks, name):
    """Every rank's local shards read back from the DCP checkpoint equal, bit for bit, init_model of
    the same layout in memory (orthogonal_ column shards included: each one chunk, the same block)."""
    for r in range(2):
        assert torch.load(two_ranks / f"{name}.{r}.pt", weights_only=False)["same_as_init_model"] is True


def test_dcp_plain_model_each_rank_writes_its_part(two_ranks):
    """dcp_plain (checked against init_model above): a plain meta model saved by 2 ranks; DCP gave
    each row chunk to one rank, and both wrote files."""
    files = os.listdir(two_ranks / "dcp_plain")
    writers = {f.split("_")[2] for f in files if f.endswith(".distcp")}
    assert writers == {"0", "1"} and ".metadata" in files


def test_safetensors_of_a_dtensor_model(two_ranks):
    """st_dtensor (checked bit for bit above, orthogonal gate blocks included): meta DTensors on a
    2-D mesh, whole tensors written from the streams into Hugging Face's sharded layout."""
    files = sorted(os.listdir(two_ranks / "st_dtensor"))
    shards = [f for f in files if f.endswith(".safetensors")]
    assert len(shards) > 2 and files == sorted([*shards, "model.safetensors.index.json"])
    k = len(shards)
    assert shards == [f"model-{i:05d}-of-{k:05d}.safetensors" for i in range(1, k + 1)]


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_dcp_seed_checkpoint_loads_on_another_rank_count(two_ranks):
    """save_initialized(format="dcp") on 2 ranks (meta DTensors on a (1, 2) mesh, each local shard
    in row chunks); loaded by 3 ranks into Shard(1)."""
    assert (two_ranks / "dcp" / ".metadata").exists()
    launch(3, two_ranks, ["dcp_load"], FASTINIT_TEST_DCP=str(two_ranks / "dcp"))
    check(two_ranks, 3, "dcp_load")


# ---- pieces and checks, in process -------------------------------------------------------------

def test_piece_region_cuts_gate_blocks_at_shard_edges():
    # rows 4..9 of a (12, 3) tensor held locally; a piece of rows 3..6 (gate 1 of 4): its rows 1..3
    local, block = piece_region((12, 3), (4, 0), (6, 3), (3, 6))
    assert local == (slice(0, 2),) and block.global_shape == (3, 3) and block.start == (1, 0)
    assert block.shape == (2, 3)
    assert piece_region((12, 3), (4, 0), (6, 3), (0, 3)) is None           # gate 0 is elsewhere
    assert piece_region((12, 3), (0, 0), (12, 3), None) == ((slice(0, 12),), None)  # whole: plain call
    local, block = piece_region((12, 8), (0, 4), (12, 4), None)            # column shard
    assert block.index == (slice(0, 12), slice(4, 8))


def _fake(device_type="cpu", placements=()):
    return SimpleNamespace(device_mesh=SimpleNamespace(device_type=device_type), placements=placements)


def test_non_cpu_mesh_is_refused_saying_what_to_do():
    with pytest.raises(InitArgumentError, match=r"w is a DTensor on a 'cuda' device mesh.*init_device_mesh\('cpu'"):
        check_dtensor(_fake("cuda"), "w")


def test_partial_placement_is_refused():
    from torch.distributed.tensor import Partial, Shard

    with pytest.raises(InitArgumentError, match=r"w has placement Partial.*Shard\(d\) and Replicate"):
        check_dtensor(_fake("cpu", (Shard(0), Partial())), "w")
    check_dtensor(_fake("cpu", (Shard(0), Shard(1))), "w")  # a 2-D mesh of shards is fine
