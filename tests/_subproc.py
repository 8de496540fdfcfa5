"""Run a Python snippet in a fresh interpreter (forced SIMD level, thread count, signals)."""

import os
import subprocess
import sys


def run_python(code: str, env: dict | None = None, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-c", code], env=full_env, capture_output=True, text=True,
                          timeout=timeout, **kw)
