"""The one BLAS thread helper (fastinit._blas) used by the Householder kernels and the simulator:
sets and restores every OpenBLAS, nests, serialises threads, and a forked child does not deadlock."""

import os
import threading
import time

import numpy as np
import pytest

from fastinit import _blas, _householder, _sim_kernels


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
    with _blas.blas_threads(2):
        assert all(t == 2 for t in _threads_now())
        with _blas.single_threaded_blas():
            assert all(t == 1 for t in _threads_now())
        assert all(t == 2 for t in _threads_now())
    assert _threads_now() == before
    with pytest.raises(KeyError):   # restored on an exception too
        with _blas.single_threaded_blas():
            raise KeyError
    assert _threads_now() == before


def test_threads_do_not_restore_under_each_other():
    inside, release, order = threading.Event(), threading.Event(), []

    def holder():
        with _blas.single_threaded_blas():
            inside.set()
            release.wait(10)
            order.append("holder out")

    t = threading.Thread(target=holder)
    t.start()
    assert inside.wait(10)

    def other():
        with _blas.single_threaded_blas():
            order.append("other in")

    u = threading.Thread(target=other)
    u.start()
    time.sleep(0.2)
    assert order == []          # waits for the holder's block
    release.set()
    t.join(10)
    u.join(10)
    assert order == ["holder out", "other in"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork on this platform")
def test_fork_while_another_thread_holds_the_lock():
    """A child forked while another thread is inside the block gets a fresh lock."""
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
                with _blas.single_threaded_blas():
                    code = 0
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
