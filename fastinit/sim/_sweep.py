"""Grids of simulations in one call (:func:`sweep`), run one by one or several at once."""

from __future__ import annotations

import contextlib
from concurrent.futures import BrokenExecutor, Executor, ThreadPoolExecutor, as_completed

import numba
import numpy as np

from fastinit import _blas
from fastinit._checks import InitArgumentError, integer
from fastinit._numba import _SAFE_LAYERS, threading_layer
from fastinit.theory._common import MLP_STATISTICS

from . import _passes, _workspace
from ._activation import resolve_activation
from ._args import available_memory, check_dtype, check_memory, check_seed
from ._mlp import config_theory, simulate_mlp
from ._results import MLPResult, SweepResult, summarise, t975
from ._schemes import SharedWeights, resolve_scheme

__all__ = ["sweep"]


def _spec(x):
    """('name', params) from 'name' or ('name', params)."""
    if isinstance(x, (tuple, list)) and len(x) == 2:
        return x[0], x[1]
    return x, None


def _label(name, params):
    if not params:
        return str(name)
    if isinstance(params, dict):
        return f"{name}(" + ",".join(f"{k}={v}" for k, v in params.items()) + ")"
    return f"{name}({params})"


def sweep(inits=("xavier_normal", "kaiming_normal"), activations=("tanh", "relu"),
          depths=(20,), widths=(128,), seeds=(0,), *, batch=512, n_networks=1, progress=None,
          theory=True, workers=None, client=None, executor=None, **kwargs):
    r"""Simulate a grid of configurations in one call and return a tidy table.

    The grid is ``inits x activations x depths x widths``; each configuration runs once per
    seed with ``n_networks`` networks, and all networks of all seeds are pooled into the mean,
    standard error and 95% confidence interval of every statistic.

    Parameters
    ----------
    inits : str or sequence
        Scheme names, or ``(name, init_params)`` pairs; a single string is one scheme.
    activations : str or sequence
        Activation names, or ``(name, activation_param)`` pairs; a single string is one.
    depths, widths : sequence of int
        Networks are ``[width] * (depth + 1)``.
    seeds : sequence of int
    batch, n_networks :
        As :func:`simulate_mlp`.
    progress : callable, optional
        Called as ``progress(done, total, label)`` after each run.
    theory : bool
        Attach mean-field predictions (computed once per configuration).
    workers : int, optional
        Runs simulated at once, each on one thread (one Numba thread, single-threaded BLAS).
        Default: Numba's thread count (at most the number of runs), fewer when that many runs at
        once would need more than half the available memory; 1 runs one at a time, each on every
        core. One run per core does better than every core on one run: a small run cannot use
        several cores well, and a large one leaves cores idle while it builds its weights and
        hands its blocks of rows between threads (the default ``fastinit simulate`` study's sweep:
        20.1 s against 21.1 s, docs/simulate.md, Performance). Results do not depend on it: every
        run's numbers are fixed by its seed. The runs that differ only in the activation share
        their weights (drawn once: a weight does not depend on the activation).
    client : dask.distributed.Client, optional
        Run on this cluster: one task per (configuration, seed), progress reported as runs
        complete, the theory computed once per configuration here. A task lost with a worker
        is retried by Dask on another one. ``workers`` and the memory estimate do not apply
        (each worker checks its own run). The table is identical to the local sweep's.
    executor : concurrent.futures.Executor, optional
        The same with any executor, e.g. a ``ProcessPoolExecutor`` (its tasks and results
        must pickle: give user activations as module-level functions).
    **kwargs
        Any other :func:`simulate_mlp` argument (``bias``, ``input_std``, ``residual_scale``,
        ``dtype``, ``histograms``, ``hist_layers``, ...). Histograms are those of the first
        network of the first seed.

    Raises
    ------
    TypeError, ValueError
        For an invalid argument (the message names it), before any run; ``client`` and
        ``executor`` together, or of the wrong type, raise ``TypeError``.
    RuntimeError
        When the cluster or executor loses runs it cannot redo (e.g. a worker killed more
        often than Dask's ``allowed-failures``, a broken process pool): no partial table.
    MemoryError
        When the runs in flight at once (``workers``) need more memory than is available
        (estimated before any run; the message gives the estimate and the sizes).

    Returns
    -------
    SweepResult

    Examples
    --------
    >>> from fastinit.sim import sweep
    >>> sw = sweep(inits=["xavier_normal", "kaiming_normal"], activations=["relu"],
    ...            depths=[10], widths=[64], seeds=[0, 1], batch=128)
    >>> len(sw.records)          # 2 configurations x 10 layers
    20
    >>> for r in sw.records[9::10]:  # layer 10: simulation [95% interval] (theory)
    ...     print(f"{r['init']:>14} {r['preact_var']:.4g} [{r['preact_var_ci_low']:.4g}, "
    ...           f"{r['preact_var_ci_high']:.4g}] ({r['preact_var_theory']:.4g})")
     xavier_normal 0.002457 [0.002292, 0.002623] (0.001953)
    kaiming_normal 2.516 [2.347, 2.686] (2)
    """
    for name in ("widths", "depth", "width", "init", "activation", "seed", "init_params",
                 "activation_param"):
        if name in kwargs:
            raise InitArgumentError(f"sweep: pass {name!r} through the grid arguments, not as a keyword")
    remote = _check_remote(client, executor)
    seeds = [check_seed(s) for s in _as_list(seeds, "seeds")]
    if not seeds:
        raise InitArgumentError("seeds must not be empty")
    depths = [integer(d, "depths entry", minimum=1) for d in _as_list(depths, "depths")]
    widths = [integer(w, "widths entry", minimum=1) for w in _as_list(widths, "widths")]
    inits, activations = _as_list(inits, "inits"), _as_list(activations, "activations")
    grid = [(i, a, d, w) for i in inits for a in activations for d in depths for w in widths]
    if not grid:
        raise InitArgumentError("sweep: empty grid (inits, activations, depths and widths must be non-empty)")
    batch = integer(batch, "batch", minimum=1)
    dtype = check_dtype(kwargs.get("dtype", "float32"))
    for spec in inits:  # every scheme and activation, before any run
        resolve_scheme(*_spec(spec), dtype)
    for spec in activations:
        resolve_activation(*_spec(spec), kwargs.get("activation_derivative"))
    # runs that differ only in the activation follow one another: they share their weights (SharedWeights)
    shared = None
    nA, nD, nW = len(activations), len(depths), len(widths)
    jobs = [(((i * nA + a) * nD + d) * nW + w, si) for i in range(len(inits)) for d in range(nD)
            for w in range(nW) for si in range(len(seeds)) for a in range(nA)]
    if remote is None:
        # the peak memory of the runs that are in flight at once, before any of them starts
        input_dim = kwargs.get("input_dim")
        per_run = [_passes.mlp_bytes([w if input_dim is None else int(input_dim)] + [w] * d, batch, dtype.itemsize)
                   for _, _, d, w in grid]
        workers = _sweep_workers(workers, len(jobs), per_run)
        need = sum(sorted(per_run)[-workers:])
        # A group of runs keeps each of its networks' weights until its last run ends, n_networks - 1
        # networks more than a run alone holds: shared only when that fits well within the memory.
        nnet = integer(n_networks, "n_networks", minimum=1)
        extra = workers * (nnet - 1) * dtype.itemsize * max(
            (w if input_dim is None else int(input_dim)) * w + (d - 1) * w * w for _, _, d, w in grid)
        avail = available_memory() if extra else None
        if avail is None or need + extra <= avail // 2:
            shared = SharedWeights()
            need += extra
        check_memory(need, f"sweep(depths={depths}, widths={widths}, batch={batch}, {workers} run(s) at once)")

    def run_kwargs(job):
        gi, si = job
        init_spec, act_spec, depth, width = grid[gi]
        iname, iparams = _spec(init_spec)
        aname, aparam = _spec(act_spec)
        return dict(depth=depth, width=width, batch=batch, activation=aname, activation_param=aparam,
                    init=iname, init_params=iparams, n_networks=n_networks, seed=seeds[si], **kwargs)

    for job in jobs if shared is not None else ():
        shared.expect(_weight_group(job, grid), 1)

    def run(job):  # the theory is computed once per configuration, beside or after the runs
        with shared.run(_weight_group(job, grid)) if shared is not None else contextlib.nullcontext():
            return simulate_mlp(theory=False, **run_kwargs(job))

    def label(job):
        gi, si = job
        init_spec, act_spec, depth, width = grid[gi]
        return (f"{_label(*_spec(init_spec))}/{_label(*_spec(act_spec))} "
                f"L={depth} n={width} seed={seeds[si]}")

    runs = {}
    theories = None
    if remote is not None:
        runs = _run_remote(remote, client if remote == "client" else executor, jobs, run_kwargs, label, progress)
        if theory:  # once per configuration, here: the tasks ran without it
            theories = [config_theory(**run_kwargs((gi, 0))) for gi in range(len(grid))]
    else:
        # The theory (mean field and finite-width bands: single-threaded NumPy quadrature, up to a
        # second per configuration when not cached on disk) runs in a thread of its own while the
        # runs go on; they leave part of the cores idle (Python between kernels, thread hand-offs).
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fastinit-theory") if theory else None
        try:
            pending = [pool.submit(config_theory, **run_kwargs((gi, 0))) for gi in range(len(grid))] if pool else []
            # concurrent runs, and small ones, run on one BLAS thread each: set it once for the whole sweep
            # (toggling OpenBLAS's thread count per run cost about 2 ms a run)
            one_blas_thread = workers > 1 or _all_small(grid, batch, kwargs.get("input_dim"))
            with _blas.single_threaded_blas() if one_blas_thread else contextlib.nullcontext():
                _run_local(jobs, run, label, progress, workers, grid, kwargs, runs)
            theories = [f.result() for f in pending] if pool else None
        finally:
            if pool is not None:
                pool.shutdown(wait=False, cancel_futures=True)  # after a failed run: do not wait for theory
    if theories is not None:
        for gi, (th, note) in enumerate(theories):
            runs[(gi, 0)].theory.update(th)
            runs[(gi, 0)].config["theory_note"] = note

    records, results = [], {}
    for gi, (init_spec, act_spec, depth, width) in enumerate(grid):
        iname, iparams = _spec(init_spec)
        aname, aparam = _spec(act_spec)
        runs_g = [runs.pop((gi, si)) for si in range(len(seeds))]
        per = {n: np.concatenate([r.per_network[n] for r in runs_g]) for n in MLP_STATISTICS}
        stats, stderr = summarise(per, MLP_STATISTICS)
        config = dict(runs_g[0].config, seeds=seeds, n_networks=len(seeds) * n_networks)
        res = MLPResult(runs_g[0].index, stats, stderr, per, runs_g[0].theory, config, runs_g[0].histograms,
                        "layer")
        key = (_label(iname, iparams), _label(aname, aparam), depth, width)
        results[key] = res
        tq = t975(res.n_networks - 1)
        for i, layer in enumerate(res.index):
            row = {"init": key[0], "activation": key[1], "depth": depth, "width": width,
                   "layer": int(layer), "n_networks": res.n_networks}
            for n in MLP_STATISTICS:
                v, se = _pick(stats[n], i), _pick(stderr[n], i)
                row[n] = v
                row[n + "_se"] = se
                row[n + "_ci_low"] = v - tq * se
                row[n + "_ci_high"] = v + tq * se
                row[n + "_theory"] = _pick(res.theory[n], i)
            records.append(row)
    return SweepResult(records, results)


def _weight_group(job, grid):
    """The runs with the same weights: the same scheme, depth, width and seed (any activation)."""
    gi, si = job
    init_spec, _, depth, width = grid[gi]
    return (repr(init_spec), depth, width, si)


def _run_local(jobs, run, label, progress, workers, grid, kwargs, runs):
    """Every job in this process, one by one or on ``workers`` threads; results into ``runs``."""
    total = len(jobs)
    if workers > 1:
        # compile each activation's kernels once, here, rather than in several threads at once
        for a in dict.fromkeys(_spec(g[1]) for g in grid):
            _warm_up(a, kwargs)

        def run_one_thread(job):
            numba.set_num_threads(1)  # per thread: the workers supply the parallelism
            _workspace.keep_buffers_in_this_thread()  # the next job reuses them; freed with the thread
            return run(job)

        with ThreadPoolExecutor(max_workers=workers) as ex:
            futures = {ex.submit(run_one_thread, job): job for job in jobs}
            try:
                for done, fut in enumerate(as_completed(futures), 1):
                    runs[futures[fut]] = fut.result()
                    if progress is not None:
                        progress(done, total, label(futures[fut]))
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise
    else:
        with _workspace.keep_buffers():  # each run reuses the previous run's working arrays
            for done, job in enumerate(jobs, 1):
                runs[job] = run(job)
                if progress is not None:
                    progress(done, total, label(job))


def _all_small(grid, batch, input_dim):
    """Whether every configuration's layers and GEMMs are small (one thread each does best)."""
    for _, _, _, width in grid:
        n0 = width if input_dim is None else int(input_dim)
        if (2.0 * batch * width * max(width, n0) >= _passes.SMALL_GEMM_FLOPS
                or batch * max(width, n0) >= _passes.SMALL_LAYER_ENTRIES):
            return False
    return True


def _sweep_workers(workers, njobs, per_run):
    """Concurrent runs for :func:`sweep` (see its ``workers`` argument); ``per_run``: each
    configuration's peak bytes (:func:`fastinit.sim._passes.mlp_bytes`)."""
    if workers is not None:
        return integer(workers, "workers", minimum=1)
    if numba.get_num_threads() < 2 or threading_layer() not in _SAFE_LAYERS:
        return 1  # Numba's workqueue layer cannot take parallel kernels from two threads
    k = max(1, min(numba.get_num_threads(), njobs))
    avail = available_memory()
    while k > 1 and avail is not None and sum(sorted(per_run)[-k:]) > avail // 2:
        k -= 1  # fewer at once rather than close to the memory limit
    return k


def _warm_up(act_spec, kwargs):
    """Compile one activation's kernels with a tiny run (cheap once compiled)."""
    name, param = act_spec
    simulate_mlp(depth=1, width=2, batch=2, activation=name, activation_param=param,
                 activation_derivative=kwargs.get("activation_derivative"), init="normal",
                 theory=False, dtype=kwargs.get("dtype", "float32"),
                 residual_scale=kwargs.get("residual_scale"))


def _pick(a, i):
    return float(a) if np.ndim(a) == 0 else float(a[i])


def _as_list(x, name):
    """A grid axis as a list: a string is one entry (one scheme), not a sequence of characters."""
    if isinstance(x, (str, bytes)):
        return [x]
    try:
        return list(x)
    except TypeError:
        raise TypeError(f"{name} must be a sequence, got {type(x).__name__}") from None



def run_task(kwargs):
    """One (configuration, seed) run of a remote sweep, without theory (module level: it pickles)."""
    if threading_layer() not in _SAFE_LAYERS:
        numba.set_num_threads(1)  # the workqueue layer cannot take parallel kernels from two worker threads
    return simulate_mlp(theory=False, **kwargs)


def _check_remote(client, executor):
    """'client', 'executor' or None: which remote runner :func:`sweep` uses (TypeError when misused)."""
    if client is not None and executor is not None:
        raise TypeError("sweep: give client or executor, not both")
    if executor is not None:
        if not isinstance(executor, Executor):
            raise TypeError(f"executor must be a concurrent.futures.Executor, got {type(executor).__name__}")
        return "executor"
    if client is not None:
        # lazy: only a sweep on a cluster needs dask (an optional extra)
        try:
            from distributed import Client
        except ImportError:
            raise TypeError(f"client must be a dask.distributed.Client, got {type(client).__name__} "
                            "(and dask.distributed is not installed: pip install fastinit[dask])") from None
        if not isinstance(client, Client):
            raise TypeError(f"client must be a dask.distributed.Client, got {type(client).__name__}")
        return "client"
    return None


def _run_remote(remote, runner, jobs, run_kwargs, label, progress):
    """{job: result} of every job, run on a dask client or an executor ``runner``, as they complete."""
    if remote == "client":
        # lazy: only a sweep on a cluster needs dask (an optional extra)
        from distributed import KilledWorker
        from distributed import as_completed as completed
        lost = (KilledWorker,)
        # pure=False: a repeated seed is a second run, not the first one's key
        futures = {runner.submit(run_task, run_kwargs(job), pure=False): job for job in jobs}
    else:
        completed, lost = as_completed, (BrokenExecutor,)
        futures = {runner.submit(run_task, run_kwargs(job)): job for job in jobs}
    runs, total = {}, len(jobs)
    try:
        for done, fut in enumerate(completed(futures), 1):
            job = futures[fut]
            try:
                runs[job] = fut.result()
            except lost as exc:
                raise RuntimeError(f"sweep: run {label(job)} was lost with its worker and not redone "
                                   f"({type(exc).__name__}: {exc}); no partial table is returned") from exc
            if progress is not None:
                progress(done, total, label(job))
    except BaseException:
        for fut in futures:
            fut.cancel()
        raise
    if len(runs) != total:
        raise RuntimeError(f"sweep: {len(runs)} of {total} runs came back from the {remote}; "
                           "no partial table is returned")
    return runs
