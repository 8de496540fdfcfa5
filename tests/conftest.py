"""Shared test configuration.

Numba's on-disk cache goes to a fresh temporary directory for the whole run (numba issue
#4807: a stale cache in the source tree can mask compile errors), so the tests always exercise
a cold compile once and a warm cache afterwards.
"""

import os
import shutil
import tempfile

# made here (not given by the caller): removed again when the session ends
_OWN_CACHE_DIR = None
if "NUMBA_CACHE_DIR" not in os.environ:
    _OWN_CACHE_DIR = os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="fastinit-numba-cache-")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

try:
    from hypothesis import settings

    settings.register_profile("fastinit", deadline=None, max_examples=40, derandomize=True)
    settings.load_profile("fastinit")
except ImportError:  # pragma: no cover
    pass


@pytest.fixture
def rng():
    """A NumPy generator at a fixed seed, for test inputs (never for the code under test)."""
    return np.random.default_rng(20240601)


def pytest_sessionfinish(session, exitstatus):
    if _OWN_CACHE_DIR is not None:
        shutil.rmtree(_OWN_CACHE_DIR, ignore_errors=True)
