"""pytest configuration of the benchmarks.

``pytest benchmarks`` collects the ``bench_*.py`` files here and nothing below ``scripts/`` (the
standalone scripts, some of which import torch at module level) or ``c/`` (C programs). The JSON
of ``--benchmark-json`` gets fastinit's own machine facts (SIMD level, threads, versions) under
``machine_info["fastinit"]``, which ``benchmarks/report.py`` prints above its tables.
"""

from fastinit import _bench

collect_ignore = ["scripts", "c"]


def pytest_benchmark_update_machine_info(config, machine_info):
    info = _bench.machine_info()
    try:
        import torch  # optional: its thread count is part of the comparison's conditions
    except ImportError:
        pass
    else:
        info["torch_threads"] = torch.get_num_threads()
    machine_info["fastinit"] = info
