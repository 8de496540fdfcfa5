"""The one BLAS thread helper (fastinit._blas) used by the Householder kernels and the simulator:
sets and restores every OpenBLAS, nests, keeps one thread while any thread is inside, and a
forked child neither deadlocks nor stays single-threaded."""

import os
import threading
import time

import numpy as np
import pytest

from fastinit import _blas, _householder
from fastinit.sim import _passes as _sim_kernels


def _threads_now():
    return [get() for _, get, _ in _blas.blas_thread_controls()]


def test_numpy_blas_is_controlled():
    # the simulator's GEMMs are numpy.matmul: NumPy's own OpenBLAS must be among the controls
    np.ones((2, 2)) @ np.ones((2, 2))
    paths = [p for p, _, _ in _blas.blas_thread_controls()]
    if not paths:
        pytest.skip("no OpenBLAS thread control in this build")
    assert any("numpy" in p for p in paths), paths


def test_one_helper_for_householder_and_simulator():
    assert _householder.single_threaded_blas is _blas.single_threaded_blas
    before = _threads_now()
    with _sim_kernels.blas_threads_for(1.0):          # a small GEMM: one thread
        assert all(t == 1 for t in _threads_now())
    assert _threads_now() == before
    with _sim_kernels.blas_threads_for(2.0 ** 40):    # a large GEMM: untouched
        assert _threads_now() == before


def test_set_nest_restore():
    before = _threads_now()
    with _blas.single_threaded_blas():
        assert all(t == 1 for t in _threads_now())
        with _blas.single_threaded_blas():
            assert all(t == 1 for t in _threads_now())
        assert all(t == 1 for t in _threads_now())   # the outer block still needs it
    assert _threads_now() == before
    with pytest.raises(KeyError):   # restored on an exception too
        with _blas.single_threaded_blas():
            raise KeyError
    assert _threads_now() == before


def test_concurrent_blocks_restore_only_when_the_last_leaves():
    before = _threads_now()
    inside, release = threading.Event(), threading.Event()

    def holder():
        with _blas.single_threaded_blas():
            inside.set()
            release.wait(10)

    t = threading.Thread(target=holder)
    t.start()
    try:
        assert inside.wait(10)
        with _blas.single_threaded_blas():   # does not wait for the holder's block
            assert all(t == 1 for t in _threads_now())
        assert all(t == 1 for t in _threads_now())   # the holder is still inside
    finally:
        release.set()
        t.join(10)
    assert _threads_now() == before


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_fork_while_another_thread_holds_the_lock():
    """A child forked while another thread is inside a block: the lock is fresh, the child's
    BLAS gets its thread setting back (that thread does not exist there), blocks still work."""
    before = _threads_now()
    inside, release = threading.Event(), threading.Event()

    def holder():
        with _blas.single_threaded_blas():
            inside.set()
            release.wait(30)

    t = threading.Thread(target=holder)
    t.start()
    try:
        assert inside.wait(10)
        pid = os.fork()
        if pid == 0:  # child: the holder thread does not exist here
            code = 1
            try:
                restored = _threads_now() == before
                with _blas.single_threaded_blas():
                    one = all(t == 1 for t in _threads_now())
                code = 0 if restored and one and _threads_now() == before else 3
            finally:
                os._exit(code)
        deadline = time.monotonic() + 20
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                pytest.fail("forked child deadlocked on the BLAS thread lock")
            time.sleep(0.05)
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
    finally:
        release.set()
        t.join(10)
