"""fastinit.sim.sweep on other processes: a two-process dask.distributed cluster and a process pool give the
local sweep's table exactly; a worker killed mid-sweep gives the same table (Dask redoes its run) or a clear
error, never a short table; bad arguments; `simulate --scheduler` on a cluster and on a closed port."""

import csv
import multiprocessing
import os
import signal
import socket
import sys
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import cloudpickle
import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

from _subproc import run_python  # noqa: E402
from fastinit._simulate_cli import main as simulate_main  # noqa: E402  (after the importorskip guard)
from fastinit.sim import sweep  # noqa: E402

# small: every run takes milliseconds, the test time is the cluster's
GRID = dict(inits=["xavier_normal", ("normal", {"std": 0.3})], activations=["tanh", "relu"], depths=[3],
            widths=[16], seeds=[0, 1, 2], batch=32, n_networks=2)
RUNS = 2 * 2 * 3

# the worker hooks below are sent by value: worker processes cannot import this test module
cloudpickle.register_pickle_by_value(sys.modules[__name__])


def _same(a, b):
    """Same records (NaN equal to NaN), same configurations, theory and histograms, in the same order."""
    assert len(a.records) == len(b.records)
    for r, s in zip(a.records, b.records, strict=True):
        assert list(r) == list(s)
        for k in r:
            assert r[k] == s[k] or (np.isnan(r[k]) and np.isnan(s[k])), (k, r[k], s[k])
    assert list(a.results) == list(b.results)
    for ra, rb in zip(a.results.values(), b.results.values(), strict=True):
        assert ra.config == rb.config
        for n in ra.theory:  # the mean field and the finite-width band (<stat>_median, <stat>_logsd)
            np.testing.assert_array_equal(ra.theory[n], rb.theory[n])
        for n in ra.per_network:
            np.testing.assert_array_equal(ra.per_network[n], rb.per_network[n])


@pytest.fixture(scope="module")
def local():
    return sweep(**GRID)


@pytest.fixture(scope="module")
def cluster():
    with distributed.LocalCluster(processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None,
                                  memory_limit="1GiB") as cl:
        yield cl


@pytest.fixture
def client(cluster):
    with distributed.Client(cluster) as c:
        c.wait_for_workers(2, timeout=60)
        yield c


def test_cluster_sweep_equals_local(local, client):
    seen = []
    sw = sweep(**GRID, client=client, progress=lambda done, total, label: seen.append((done, total, label)))
    _same(local, sw)
    assert [d for d, _, _ in seen] == list(range(1, RUNS + 1)) and {t for _, t, _ in seen} == {RUNS}
    assert len({lab for _, _, lab in seen}) == RUNS  # every run reported once
    assert np.isfinite(sw.records[0]["preact_var_theory"])  # the theory was attached, once per configuration


def test_process_pool_sweep_equals_local(local):
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as ex:
        _same(local, sweep(**GRID, executor=ex))


def _install_killer(marker):
    """In a worker: the first run_task of the whole cluster (the one creating ``marker``) kills its process."""
    import fastinit.sim._sweep as sw

    run = getattr(sw.run_task, "original", sw.run_task)

    def killer(kwargs):
        try:
            os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return run(kwargs)
        os.kill(os.getpid(), signal.SIGKILL)

    killer.original = run
    sw.run_task = killer  # tasks name run_task by reference: unpickled here, they get this one


def test_worker_killed_mid_sweep_is_redone(local, client, tmp_path):
    marker = str(tmp_path / "killed")
    client.run(_install_killer, marker)
    sw = sweep(**GRID, client=client)
    assert os.path.exists(marker)  # a worker did die during the sweep
    _same(local, sw)


def test_worker_killed_without_retries_raises(client, tmp_path):
    marker = str(tmp_path / "killed")
    before = client.run_on_scheduler(lambda dask_scheduler: dask_scheduler.allowed_failures)
    client.run_on_scheduler(lambda dask_scheduler: setattr(dask_scheduler, "allowed_failures", 0))
    try:
        client.run(_install_killer, marker)
        with pytest.raises(RuntimeError, match="lost with its worker and not redone.*no partial table"):
            sweep(**GRID, client=client)
    finally:
        client.run_on_scheduler(lambda dask_scheduler: setattr(dask_scheduler, "allowed_failures", before))
    assert os.path.exists(marker)


def test_process_killed_in_pool_raises(tmp_path):
    marker = str(tmp_path / "killed")
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn"), initializer=_install_killer,
                             initargs=(marker,)) as ex:
        with pytest.raises(RuntimeError, match="lost with its worker and not redone.*BrokenProcessPool"):
            sweep(**GRID, executor=ex)
    assert os.path.exists(marker)


def test_bad_client_and_executor():
    with pytest.raises(TypeError, match="client must be a dask.distributed.Client, got str"):
        sweep(**GRID, client="tcp://127.0.0.1:8786")
    with pytest.raises(TypeError, match="executor must be a concurrent.futures.Executor, got object"):
        sweep(**GRID, executor=object())
    with ThreadPoolExecutor(1) as ex, pytest.raises(TypeError, match="client or executor, not both"):
        sweep(**GRID, executor=ex, client=object())


def test_sim_does_not_import_dask():
    code = ("import sys, fastinit.sim; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))")
    r = run_python(code)  # outside the checkout, so the installed package is the one imported
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


CLI = ["--schemes", "he,xavier", "--activations", "relu,tanh", "--depth", "3", "--width", "16", "--batch", "32",
       "--networks", "2", "--no-plots", "--no-progress"]


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_cli_scheduler_equals_local(cluster, tmp_path):
    assert simulate_main([*CLI, "--output-dir", str(tmp_path / "local")]) == 0
    assert simulate_main([*CLI, "--output-dir", str(tmp_path / "remote"), "--scheduler",
                          cluster.scheduler_address]) == 0
    local_rows = _rows(tmp_path / "local" / "results.csv")
    assert len(local_rows) == 2 * 2 * 3
    remote_rows = _rows(tmp_path / "remote" / "results.csv")
    assert len(remote_rows) == len(local_rows)
    # The text of the table (configurations, verdicts) is identical; the numbers are compared to
    # 1e-12 relative: the CLI in this process and the cluster's worker processes may call OpenBLAS
    # with differently aligned buffers, which changes the last bits of a float64 GEMM (seen once
    # in this test, never in one process). The sweep tests above compare the arrays exactly.
    for a, b in zip(local_rows, remote_rows, strict=True):
        assert a.keys() == b.keys()
        for k in a:
            x, y = _number(a[k]), _number(b[k])
            if x is None or y is None:
                assert a[k] == b[k], (k, a[k], b[k])
            else:
                assert x == pytest.approx(y, rel=1e-12, abs=0) or (np.isnan(x) and np.isnan(y)), (k, a[k], b[k])


def _number(text):
    try:
        return float(text)
    except ValueError:
        return None


def test_cli_unreachable_scheduler(tmp_path, capsys):
    with socket.socket() as s:  # a port that was free a moment ago, closed now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "out"
    assert simulate_main([*CLI, "--output-dir", str(out), "--scheduler", f"tcp://127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith(f"fastinit simulate: error: --scheduler: cannot reach 'tcp://127.0.0.1:{port}'")
    assert not out.exists()  # before any work
