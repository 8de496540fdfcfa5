"""Concurrency, fork, interrupt and read-only-install safety, as tested features."""

import hashlib
import sys
import textwrap
import threading

import numpy as np
import pytest

import fastinit
from _subproc import run_interrupted, run_python
from fastinit import _fill, _numba


def test_threading_layer_is_tbb_where_it_is_a_dependency():
    """pyproject makes tbb a dependency on x86-64 Linux: there the layer must be TBB (thread and fork safe)."""
    layer = _numba.threading_layer()
    if sys.platform.startswith("linux") and __import__("platform").machine() == "x86_64":
        assert layer == "tbb"
    else:
        assert layer in ("tbb", "omp", "workqueue")


def test_concurrent_fills_from_python_threads():
    n, streams = 400_003, list(range(8))
    serial = {s: _fill.fill_normal(np.empty(n, np.float32), 0, 1, 5, s).tobytes() for s in streams}
    results, errors = {}, []

    def work(s):
        try:
            for _ in range(3):
                results[s] = _fill.fill_normal(np.empty(n, np.float32), 0, 1, 5, s).tobytes()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in streams]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors
    assert results == serial


def test_fork_after_parallel_use():
    """A forked child can fill (no deadlock in the threading layer) and gets the same bytes."""
    code = textwrap.dedent("""
        import hashlib, os, sys, numpy as np
        from fastinit import _fill
        h = lambda: hashlib.sha256(_fill.fill_normal(np.empty(1_000_000, np.float32), 0, 1, 3, 4).tobytes()).hexdigest()
        parent = h()
        pid = os.fork()
        if pid == 0:
            os._exit(0 if h() == parent else 3)
        _, status = os.waitpid(pid, 0)
        print("child", os.waitstatus_to_exitcode(status))
    """)
    if not hasattr(__import__("os"), "fork"):
        pytest.skip("no fork on this platform")
    proc = run_python(code, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("child 0"), proc.stdout + proc.stderr


def test_interrupt_during_a_large_fill():
    """SIGINT raises KeyboardInterrupt promptly; afterwards the library still works correctly."""
    code = textwrap.dedent("""
        import hashlib, signal, sys, time, numpy as np
        from fastinit import _fill
        # A parent started in the background (nohup, `cmd &` in a script) hands down SIGINT as
        # ignored, and Python then installs no KeyboardInterrupt handler: install it explicitly.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        ref = hashlib.sha256(_fill.fill_normal(np.empty(100_000, np.float32), 0, 1, 1, 1).tobytes()).hexdigest()
        big = np.empty(1 << 27, np.float32)   # 512 MiB: many super-chunks
        print("ready", flush=True)
        t0 = time.perf_counter()
        try:
            for _ in range(1000):
                _fill.fill_normal(big, 0, 1, 1, 2)
            print("not interrupted")
        except KeyboardInterrupt:
            print("interrupted after", round(time.perf_counter() - t0, 3), flush=True)
        again = hashlib.sha256(_fill.fill_normal(np.empty(100_000, np.float32), 0, 1, 1, 1).tobytes()).hexdigest()
        print("same" if again == ref else "different")
    """)
    out, err = run_interrupted(code, delay=1.0)
    assert "interrupted after" in out, out + err
    assert out.strip().endswith("same"), out + err


def test_unwritable_cache_directory_still_works(tmp_path):
    """Numba caching must not break a read-only install: with no writable cache location the
    kernels compile in memory and give the same bytes."""
    expected = hashlib.sha256(_fill.fill_uniform(np.empty(1000, np.float32), 0, 1, 8, 0).tobytes()).hexdigest()
    code = ("import hashlib, numpy as np\nfrom fastinit import _fill\n"
            "print(hashlib.sha256(_fill.fill_uniform(np.empty(1000, np.float32), 0, 1, 8, 0).tobytes()).hexdigest())")
    # /proc does not accept new directories, even for root
    proc = run_python(code, env={"NUMBA_CACHE_DIR": "/proc/fastinit-no-cache-here"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == expected


def test_cache_can_be_disabled():
    proc = run_python("from fastinit import _numba; print(_numba.CACHE)", env={"FASTINIT_NUMBA_CACHE": "0"})
    assert proc.stdout.strip() == "False", proc.stderr


def test_generator_shared_by_threads_gives_distinct_streams():
    g = fastinit.Generator(1)
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(g.take_stream()[1])) for _ in range(32)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seen) == list(range(32))
